"""A worker's turn: claim the next chunk, measure its pending images under the lease, end the claim."""

import logging
import threading
import time
from collections.abc import Generator

from django.conf import settings
from django.db import connection

from jobs import selectors, services
from jobs.services import ClaimEnd
from jobs.worker import imaging, processing

log = logging.getLogger(__name__)

Batches = Generator[list[services.Outcome], None, None]  # of processing.measure_images

# Held while this process measures a chunk: by a task, or by the watchdog thread (jobs.worker.watchdog).
measuring = threading.Lock()


def work_on_next_chunk() -> str:
    """Claim the next chunk, measure it, and say how the turn ended (the task's result).

    If more chunks wait once this one is claimed, another worker is woken at once rather than after
    the measuring, so that this worker goes on to the next chunk without a pause. The worker is free
    as soon as nothing is left to fetch: the images still in their GPU stage are written, and the
    claim ended, by another thread.
    """
    if not measuring.acquire(blocking=False):  # the watchdog thread measures one: pass the wake-up on
        services.wake_workers()
        return "this process is measuring a chunk already"
    try:
        claim = services.claim_chunk()
        if claim is None:
            return "nothing to claim"
        if selectors.any_chunk_claimable():
            services.wake_workers()
        end = _measure_chunk(claim)
    finally:
        measuring.release()
    if end not in (ClaimEnd.DONE, ClaimEnd.IN_BACKGROUND):
        _wake_workers_if_chunks_wait()  # it handed its chunk back: someone takes it on
    return f"job {claim.chunk.job_id} chunk {claim.chunk.number}: {end}"


def _wake_workers_if_chunks_wait() -> None:
    if selectors.any_chunk_claimable():
        services.wake_workers()


def _measure_chunk(claim: services.Claim) -> ClaimEnd:
    config, chunk = settings.RETAILPULSE, claim.chunk
    if chunk.expired_leases > config["MAX_DELIVERIES"]:
        reason = f"gave up: its worker died or froze {chunk.expired_leases} times measuring it"
        services.fail_chunk(chunk=chunk, reason=reason)
        return ClaimEnd.GAVE_UP
    images = list(selectors.chunk_pending_images(chunk=chunk))
    started = time.monotonic()
    stop, fetched = threading.Event(), threading.Event()
    batches = processing.measure_images(
        images,
        limits=imaging.FetchLimits.from_settings(config),
        gpu_delay=config["GPU_DELAY"],
        deadline=started + config["CHUNK_DEADLINE"],
        stop=stop,
        fetched=fetched,
    )
    renew_at = started + config["LEASE_RENEW"]
    end = _write_outcomes(claim, batches, started, renew_at=renew_at, stop=stop, fetched=fetched)
    if end is None:
        # Not a daemon: a worker process that stops (SIGTERM, recycling) waits for it to end the claim.
        threading.Thread(target=_write_the_rest, args=(claim, batches, started), name="gpu-stage-writer").start()
        return ClaimEnd.IN_BACKGROUND
    return end


def _write_outcomes(
    claim: services.Claim,
    batches: Batches,
    started: float,
    *,
    renew_at: float,
    stop: threading.Event | None = None,
    fetched: threading.Event | None = None,
) -> ClaimEnd | None:
    """Write the batches as they come, renewing the lease, then end the claim; how it ended.

    None once `fetched` is set: the rest of the batches (the GPU stage's) are left to the caller.
    """
    config, chunk = settings.RETAILPULSE, claim.chunk
    held = True
    try:
        for outcomes in batches:  # written while the next images are fetched
            if outcomes:
                services.record_outcomes(job_id=chunk.job_id, outcomes=outcomes)
            if time.monotonic() >= renew_at:
                held, renew_at = services.renew_lease(claim=claim), time.monotonic() + config["LEASE_RENEW"]
            if not held:
                break  # another worker holds the chunk: what is unfinished is its to measure
            if fetched is not None and fetched.is_set():
                return None  # the batches go on, in the caller's hands
            if stop is not None and selectors.chunk_must_make_way(chunk_id=chunk.pk):
                stop.set()  # no fetch starts; what was sent or downloaded finishes, the rest stays pending
    except Exception as exc:
        # Not swallowed: logged with its traceback, and counted on the chunk, which backs off.
        batches.close()
        log.exception("chunk %s of job %s failed", chunk.number, chunk.job_id)
        connection.close_if_unusable_or_obsolete()  # a cut connection reconnects for the record
        return services.record_chunk_error(claim=claim, error=f"{type(exc).__name__}: {exc}")
    batches.close()  # after a lost lease, drops what is unfinished at once (else a no-op)
    if not held:
        return ClaimEnd.LOST
    return services.end_claim(claim=claim, fetch_seconds=time.monotonic() - started)


def _write_the_rest(claim: services.Claim, batches: Batches, started: float) -> None:
    """In a thread of its own: the images of a chunk in their GPU stage, then the end of the claim."""
    try:
        end = _write_outcomes(claim, batches, started, renew_at=time.monotonic())
        log.info("job %s chunk %s: %s", claim.chunk.job_id, claim.chunk.number, end)
        if end != ClaimEnd.DONE:
            _wake_workers_if_chunks_wait()
    except Exception:  # the database is gone too: the lease runs out, and the chunk is measured again
        log.exception("chunk %s of job %s: its last images were not written", claim.chunk.number, claim.chunk.job_id)
    finally:
        connection.close()  # this thread's own connection
