"""Chunks: cutting a job's images into chunks, and the lease under which one worker measures one.

A worker claims a chunk with a conditional UPDATE (SKIP LOCKED on PostgreSQL; SQLite has one writer
at a time) and holds it for LEASE_SECONDS, renewing while it works. A worker that dies or freezes
stops renewing; once its lease ran out any worker, on any machine, claims the chunk. Tasks on the
broker only wake workers up: which chunk runs next is decided here, so recovery depends neither on
the broker's redelivery, nor on its order, nor on its prefetch.
"""

import logging
import math
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs import selectors
from jobs.models import Chunk, ImageResult, Job
from jobs.services.outcomes import Outcome, record_outcomes, worker_name
from jobs.services.queue import enqueue

MIN_CHUNK_SIZE = 100  # images: below this, a chunk's own claim and writes cost more than they spread
MAKE_WAY_WIDER_THAN = 32  # images: a narrower chunk has them all in flight at once (jobs.worker.concurrency)

log = logging.getLogger(__name__)
events = logging.getLogger("retailpulse.events")


class ClaimEnd(StrEnum):
    """How a worker's claim of a chunk ended (the text is what the task's result and the log say)."""

    DONE = "done"
    HANDED_BACK = "handed back"  # its deadline passed, or it made way: any worker may claim it at once
    LOST = "lost its lease: another worker took the chunk over"
    BACKING_OFF = "an attempt failed: handed back with a backoff"
    GAVE_UP = "gave up: its remaining images failed"
    IN_BACKGROUND = "fetched: its last images finish their GPU work in the background"


@dataclass(frozen=True)
class Claim:
    chunk: Chunk
    id: str  # random: a worker that lost its lease cannot mistake the next holder's claim for its own


def chunk_sizes(*, images: int) -> list[int]:
    """How many images each chunk of a job gets: at most CHUNK_SIZE, in a multiple of the worker
    count of nearly equal chunks, unless that would make them smaller than MIN_CHUNK_SIZE.

    Equal rounds keep every worker busy to the end of a job: 10 chunks of 1,000 on 4 workers leave
    two of them idle for the last 2,000 images (12 of 833-834 do not), and a 1,000-image job is
    fetched by 4 workers, not 1.
    """
    if not images:
        return []
    limit, workers = settings.RETAILPULSE["CHUNK_SIZE"], settings.Q_CLUSTER["workers"]
    fewest = math.ceil(images / limit)
    balanced = workers * math.ceil(fewest / workers)
    count = max(fewest, min(balanced, images // min(MIN_CHUNK_SIZE, limit)))
    size, bigger = divmod(images, count)
    return [size + 1] * bigger + [size] * (count - bigger)


def add_chunks(*, job_id: int, image_ids: list[int]) -> None:
    """Split image ids (ascending) into new chunks numbered after the job's last one; wake workers."""
    last = Chunk.objects.filter(job_id=job_id).order_by("-number").values_list("number", flat=True).first()
    start = 0 if last is None else last + 1
    chunks, first = [], 0
    for number, size in enumerate(chunk_sizes(images=len(image_ids)), start=start):
        chunks.append(
            Chunk(
                job_id=job_id, number=number, first_image_id=image_ids[first], last_image_id=image_ids[first + size - 1]
            )
        )
        first += size
    if not chunks:
        return
    Chunk.objects.bulk_create(chunks)
    wake_workers(count=min(len(chunks), settings.Q_CLUSTER["workers"]))
    _make_way()


def _make_way() -> None:
    """If every worker is busy, ask one running chunk to hand its worker over to the chunks just added.

    Without it a new job waits for a running chunk to end: up to a chunk's whole run when a big
    job's chunks started together. The holder sees the flag at its next batch (at most FLUSH_EVERY
    later), starts no more fetches, gives those in flight a second to end (the rest are cancelled
    and stay pending), lets the images it downloaded finish their simulated GPU work (at most the
    delay's upper bound), releases the chunk and claims again:
    the new job's chunk comes first, its job having none running. Only while no other chunk is
    making way, so a burst of submits stops one worker, not all of them. The widest chunk is picked,
    and only one wider than a worker's fewest images in flight: a narrower one has all its images
    in flight already, and ends about as soon as it would make way.
    """
    running = selectors.held_chunks(now=timezone.now())
    if len(running) < settings.Q_CLUSTER["workers"] or any(chunk.make_way for chunk in running):
        return
    widest = max(running, key=lambda chunk: (chunk.images, -chunk.id))
    if widest.images > MAKE_WAY_WIDER_THAN:
        Chunk.objects.filter(pk=widest.id).update(make_way=True)


def wake_workers(*, count: int = 1) -> None:
    """Queue `count` tasks that each claim the next chunk: any worker of any cluster may run them."""
    for _ in range(count):
        enqueue("jobs.tasks.work_on_next_chunk", task_name="claim-next-chunk")


def _lease_end():
    return timezone.now() + timedelta(seconds=settings.RETAILPULSE["LEASE_SECONDS"])


def claim_chunk() -> Claim | None:
    """Claim the next chunk, or None if no chunk is free.

    Free: pending, not held (or its lease ran out: counted in expired_leases, its worker died or
    froze), not backing off after an error. Next: of the client whose jobs hold the fewest chunks
    now, then of its job with the fewest held, then a job not yet started, then the oldest job, its
    lowest-numbered chunk. So clients share the workers whatever the number of jobs each submitted,
    a client's jobs share its part, and a new job goes first among its client's (also when a chunk
    made way for it: the big job then holds none either).
    """
    now = timezone.now()
    with transaction.atomic():
        # The chunks held now are a few (one per busy worker): counted here once, then looked up per
        # candidate, rather than counted again for every pending chunk (quadratic in a backlog).
        held = selectors.held_chunks(now=now)
        chunk = (
            selectors.claimable_chunks(now=now)
            .annotate(owner=Coalesce("job__client_id", 0))
            .annotate(
                held_by_client=_count_of("owner", Counter(chunk.client_id for chunk in held)),
                held_in_job=_count_of("job_id", Counter(chunk.job_id for chunk in held)),
            )
            .order_by("held_by_client", "held_in_job", F("job__started_at").asc(nulls_first=True), "job_id", "number")
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if chunk is None:
            return None
        # The row is locked (or the database is, on SQLite) until commit: its values read above hold.
        claimed = {
            "claim": uuid.uuid4().hex,
            "leased_until": _lease_end(),
            "worker": worker_name(),
            "make_way": False,
            "expired_leases": chunk.expired_leases + (1 if chunk.claim else 0),  # never released: its holder died
        }
        Chunk.objects.filter(pk=chunk.pk).update(**claimed)
        for field, value in claimed.items():
            setattr(chunk, field, value)
        if Job.objects.filter(pk=chunk.job_id, started_at=None).update(started_at=now):
            events.info("job %s started", chunk.job_id, extra={"event": "job.started", "job_id": chunk.job_id})
    return Claim(chunk, chunk.claim)


def _count_of(field: str, counts: Counter) -> Case | Value:
    """An expression giving each row the count of its `field`'s value in `counts` (0 if absent)."""
    if not counts:
        return Value(0)
    return Case(*(When(**{field: key}, then=Value(count)) for key, count in counts.items()), default=Value(0))


def renew_lease(*, claim: Claim) -> bool:
    """Extend the claim's lease; False if it is lost (it ran out and another worker took the chunk,
    or an operator cancelled the job)."""
    return bool(Chunk.objects.filter(pk=claim.chunk.pk, claim=claim.id).update(leased_until=_lease_end()))


def end_claim(*, claim: Claim, fetch_seconds: float) -> ClaimEnd:
    """Close the chunk if none of its images is pending, else hand it back for any worker to claim
    (the deadline, or making way: not counted against anything). A lost claim changes nothing."""
    with transaction.atomic():
        mine = Chunk.objects.filter(pk=claim.chunk.pk, claim=claim.id)
        pending = selectors.chunk_pending_images(chunk=claim.chunk).exists()
        ended = mine.update(
            state=Chunk.State.PENDING if pending else Chunk.State.DONE,
            claim="",
            leased_until=None,
            make_way=False,
            fetch_seconds=Coalesce(F("fetch_seconds"), 0.0) + fetch_seconds,
        )
    if not ended:
        return ClaimEnd.LOST
    return ClaimEnd.HANDED_BACK if pending else ClaimEnd.DONE


def record_chunk_error(*, claim: Claim, error: str) -> ClaimEnd:
    """An attempt raised: hand the chunk back with exponential backoff, or after CHUNK_ATTEMPTS
    attempts fail its pending images with the error's text."""
    attempts = settings.RETAILPULSE["CHUNK_ATTEMPTS"]
    with transaction.atomic():
        errors = claim.chunk.errors + 1
        backoff = timedelta(seconds=min(2**errors, 60))
        if not Chunk.objects.filter(pk=claim.chunk.pk, claim=claim.id).update(
            errors=errors, last_error=error, not_before=timezone.now() + backoff, claim="", leased_until=None
        ):
            return ClaimEnd.LOST
        if errors < attempts:
            log.warning(
                "chunk %s of job %s: attempt %s of %s failed, retried in %s s",
                claim.chunk.number,
                claim.chunk.job_id,
                errors,
                attempts,
                backoff.seconds,
            )
            return ClaimEnd.BACKING_OFF
        fail_chunk(chunk=claim.chunk, reason=f"gave up after {errors} attempts: {error}")
    return ClaimEnd.GAVE_UP


def fail_chunk(*, chunk: Chunk, reason: str) -> None:
    """Fail the chunk's pending images with `reason` and close it."""
    with transaction.atomic():
        pending = selectors.chunk_pending_images(chunk=chunk)
        record_outcomes(job_id=chunk.job_id, outcomes=[Outcome(image_id, error=reason) for image_id, _url in pending])
        Chunk.objects.filter(pk=chunk.pk).update(state=Chunk.State.DONE, claim="", leased_until=None)


def requeue_stalled_jobs() -> list[int]:
    """Give new chunks to the pending images of ongoing jobs without progress for STALL_AFTER seconds
    that no pending chunk covers, and wake a worker. Returns the ids of the jobs it touched.

    A safety net: every write keeps images and chunks consistent, and lapsed leases are claimed
    again on their own; this repairs whatever a bug or a hand-edited row left behind.
    """
    now = timezone.now()
    stalled_before = now - timedelta(seconds=settings.RETAILPULSE["STALL_AFTER"])
    touched = []
    for job_id in Job.objects.filter(status=Job.Status.ONGOING, progressed_at__lt=stalled_before).values_list(
        "id", flat=True
    ):
        with transaction.atomic():
            # Conditional, so two schedulers never both repair one job.
            if not Job.objects.filter(pk=job_id, progressed_at__lt=stalled_before).update(progressed_at=now):
                continue
            covered = Q()
            for first, last in Chunk.objects.filter(job_id=job_id, state=Chunk.State.PENDING).values_list(
                "first_image_id", "last_image_id"
            ):
                covered |= Q(id__range=(first, last))
            orphans = ImageResult.objects.filter(job_id=job_id, status=ImageResult.Status.PENDING)
            if covered:
                orphans = orphans.exclude(covered)
            add_chunks(job_id=job_id, image_ids=list(orphans.order_by("id").values_list("id", flat=True)))
            wake_workers()
        events.warning(
            "job %s stalled: its unfinished work is queued again",
            job_id,
            extra={"event": "job.requeued", "job_id": job_id},
        )
        touched.append(job_id)
    return touched
