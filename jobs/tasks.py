"""django-q2 entry points. Each runs in a qcluster worker process."""

import threading
import time

from django.conf import settings

from jobs import callbacks, imaging, processing, selectors, services


def process_chunk(chunk_id: int) -> str:
    """Measure the pending images of one chunk, write their outcomes, then queue the next chunk."""
    config = settings.RETAILPULSE
    chunk = services.start_chunk(chunk_id)
    if chunk is None:
        return "already done"
    if chunk.deliveries > config["MAX_DELIVERIES"]:
        services.fail_pending_images(
            chunk, f"gave up after {chunk.deliveries - 1} deliveries of its task (its worker kept dying)"
        )
        return "gave up"
    images = list(selectors.chunk_pending_images(chunk))
    started = time.monotonic()
    making_way = threading.Event()
    batches = processing.measure_images(
        images,
        limits=imaging.FetchLimits.from_settings(config),
        in_flight=config["IN_FLIGHT"],
        gpu_delay=config["GPU_DELAY"],
        deadline=time.monotonic() + config["CHUNK_DEADLINE"],
        stop=making_way,
    )
    for outcomes in batches:  # written while the next images are fetched
        if outcomes:
            services.record_outcomes(chunk.job_id, outcomes)
        if not making_way.is_set() and selectors.chunk_must_make_way(chunk.pk):
            making_way.set()  # the rest of the chunk goes back to the queue, behind the new job
    services.finish_chunk(chunk, fetch_seconds=time.monotonic() - started, made_way=making_way.is_set())
    return "made way for a new job" if making_way.is_set() else f"{len(images)} images"


def deliver_callback(job_id: int, url: str, body: dict, delivery_id: str, attempt: int) -> str:
    """POST a finished job's status to its callback URL; a failed attempt schedules the next one.

    A delivery that a later end of the job replaced (a retried job that ended again) is dropped.
    """
    if not selectors.is_current_callback(job_id, delivery_id):
        return "superseded"
    error = callbacks.post(url, body, delivery_id=delivery_id, attempt=attempt)
    return services.record_callback_attempt(job_id, url, body, delivery_id, attempt, error)


def requeue_stalled_jobs() -> str:
    """Every minute (a django-q2 schedule made by a migration): see services.requeue_stalled_jobs."""
    return f"requeued jobs {services.requeue_stalled_jobs()}"
