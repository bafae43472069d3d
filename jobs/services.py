"""Writes: creating jobs, queueing their chunks, recording image outcomes, finishing jobs.

Every function here is safe to run twice for the same input (tasks can be delivered more than
once): image rows change only from `pending`, counters add only the rows that changed, a chunk is
closed once and a job is finished once, each by a conditional UPDATE in one transaction.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from django_q.conf import Conf
from django_q.tasks import async_task

from jobs import selectors
from jobs.models import Chunk, ImageResult, Job, Visit
from jobs.processing import Outcome
from stores.models import Store
from stores.selectors import existing_store_ids

UNKNOWN_STORE = "store not in store master"


@dataclass(frozen=True)
class VisitInput:
    store_id: str
    image_urls: list[str]
    visit_time: datetime


def create_job(visits: list[VisitInput]) -> Job:
    """Store a job with all its visits and (pending) image rows, and queue its first chunks."""
    known = existing_store_ids({v.store_id for v in visits})
    with transaction.atomic():
        job = Job.objects.create(images_total=sum(len(v.image_urls) for v in visits))
        visit_rows = Visit.objects.bulk_create(
            [
                Visit(
                    job=job,
                    store_code=v.store_id,
                    store_id=v.store_id if v.store_id in known else None,
                    visit_time=v.visit_time,
                )
                for v in visits
            ],
            batch_size=2000,
        )
        failed_now = _insert_images(job, visit_rows, visits)
        if failed_now:
            Job.objects.filter(pk=job.pk).update(images_failed=failed_now)

        pending_ids = list(
            ImageResult.objects.filter(job=job, status=ImageResult.Status.PENDING)
            .order_by("id")
            .values_list("id", flat=True)
        )
        _add_chunks(job.pk, pending_ids)
        _finish_job_if_complete(job.pk)
    job.refresh_from_db()
    return job


def _insert_images(job: Job, visit_rows: list[Visit], visits: list[VisitInput]) -> int:
    """Insert one row per image URL of each visit; return how many failed at once (unknown store).

    A plain executemany INSERT: bulk_create builds a model instance per row and, on SQLite, one
    statement per 111 rows; for a 100,000-image job that was most of the submit time.
    """
    pending, failed = ImageResult.Status.PENDING.value, ImageResult.Status.FAILED.value
    failed_at = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = [
        # A store that is not in the master fails its images at once; the other visits go on.
        (job.pk, visit.pk, url, pending, "", None)
        if visit.store_id
        else (job.pk, visit.pk, url, failed, UNKNOWN_STORE, failed_at)
        for visit, visit_input in zip(visit_rows, visits, strict=True)
        for url in visit_input.image_urls
    ]
    table = connection.ops.quote_name(ImageResult._meta.db_table)
    _execute_many(
        f"INSERT INTO {table} (job_id, visit_id, url, status, error, processed_at) VALUES (%s, %s, %s, %s, %s, %s)",
        rows,
    )
    return sum(1 for row in rows if row[3] == failed)


def _enqueue_chunk(chunk: Chunk) -> None:
    def enqueue() -> None:
        async_task("jobs.tasks.process_chunk", chunk.pk, task_name=f"job-{chunk.job_id}-chunk-{chunk.number}")

    if Conf.ORM:
        enqueue()  # the queue is a table in this database: queued in the same transaction
    else:
        transaction.on_commit(enqueue)


def queue_next_chunks(job_id: int) -> None:
    """Top the job up to CHUNKS_PER_JOB queued chunks, lowest numbers first.

    Queueing a few chunks per job, instead of all of them at submit, keeps the broker's FIFO fair:
    a job submitted behind a 100,000-image job waits for a few chunks, not for hundreds.
    """
    queued = Chunk.objects.filter(job_id=job_id, state=Chunk.State.QUEUED).count()
    wanted = settings.RETAILPULSE["CHUNKS_PER_JOB"] - queued
    if wanted <= 0:
        return
    waiting = Chunk.objects.filter(job_id=job_id, state=Chunk.State.WAITING).order_by("number")[:wanted]
    for chunk in waiting:
        # Conditional, so two finishing chunks of one job never queue the same successor twice.
        if Chunk.objects.filter(pk=chunk.pk, state=Chunk.State.WAITING).update(state=Chunk.State.QUEUED):
            _enqueue_chunk(chunk)


def start_chunk(chunk_id: int) -> Chunk | None:
    """Count a delivery of the chunk's task; None if the chunk is already done (a redelivery)."""
    with transaction.atomic():
        if not Chunk.objects.filter(pk=chunk_id).exclude(state=Chunk.State.DONE).update(deliveries=F("deliveries") + 1):
            return None
        chunk = Chunk.objects.get(pk=chunk_id)
        Job.objects.filter(pk=chunk.job_id, started_at=None).update(started_at=timezone.now())
    return chunk


def _execute_many(sql: str, rows: list[tuple]) -> int:
    if not rows:
        return 0
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
        return cursor.rowcount


def record_outcomes(job_id: int, outcomes: Iterable[Outcome]) -> None:
    """Write a batch of image outcomes and add what really changed to the job's counters.

    A plain executemany UPDATE: on SQLite, Django's bulk_update (one CASE/WHEN per column) took
    0.12-0.3 s per 100 rows under the write lock, this 2-8 ms.
    """
    table = connection.ops.quote_name(ImageResult._meta.db_table)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    done_rows, failed_rows = [], []
    for o in outcomes:
        if o.error:
            failed_rows.append((o.error, now, o.image_id))
        else:
            done_rows.append((o.width, o.height, 2 * (o.width + o.height), now, o.image_id))
    with transaction.atomic():
        done = _execute_many(
            f"UPDATE {table} SET status = 'done', width = %s, height = %s, perimeter = %s, error = '',"
            f" processed_at = %s WHERE id = %s AND status = 'pending'",
            done_rows,
        )
        failed = _execute_many(
            f"UPDATE {table} SET status = 'failed', error = %s, processed_at = %s WHERE id = %s AND status = 'pending'",
            failed_rows,
        )
        if done or failed:
            Job.objects.filter(pk=job_id).update(
                images_done=F("images_done") + done, images_failed=F("images_failed") + failed
            )
            _finish_job_if_complete(job_id)


def finish_chunk(chunk: Chunk) -> None:
    """Close a chunk whose images are all done or failed, and queue the job's next chunk.

    If some images are still pending (the chunk hit its deadline), the chunk goes back to the queue.
    """
    with transaction.atomic():
        if selectors.chunk_pending_images(chunk).exists():
            _enqueue_chunk(chunk)
            return
        if Chunk.objects.filter(pk=chunk.pk).exclude(state=Chunk.State.DONE).update(state=Chunk.State.DONE):
            queue_next_chunks(chunk.job_id)


def fail_pending_images(chunk: Chunk, reason: str) -> None:
    """Give up on a chunk's remaining images (its task keeps killing its worker)."""
    record_outcomes(
        chunk.job_id,
        [Outcome(image_id, error=reason) for image_id, _url in selectors.chunk_pending_images(chunk)],
    )
    finish_chunk(chunk)


def _finish_job_if_complete(job_id: int) -> None:
    """Mark the job completed or failed once every image is done or failed: exactly once."""
    finished = Job.objects.filter(
        pk=job_id, status=Job.Status.ONGOING, images_total=F("images_done") + F("images_failed")
    ).update(
        status=Case(When(images_failed__gt=0, then=Value(Job.Status.FAILED)), default=Value(Job.Status.COMPLETED)),
        finished_at=timezone.now(),
    )
    if finished:
        Job.objects.filter(pk=job_id).update(errors=selectors.store_errors(job_id))


def _add_chunks(job_id: int, image_ids: list[int]) -> None:
    """Split image ids (ascending) into new chunks numbered after the job's last one, and queue them."""
    size = settings.RETAILPULSE["CHUNK_SIZE"]
    last = Chunk.objects.filter(job_id=job_id).order_by("-number").values_list("number", flat=True).first()
    start = 0 if last is None else last + 1
    Chunk.objects.bulk_create(
        [
            Chunk(job_id=job_id, number=start + n, first_image_id=ids[0], last_image_id=ids[-1])
            for n, ids in enumerate(image_ids[i : i + size] for i in range(0, len(image_ids), size))
        ]
    )
    queue_next_chunks(job_id)


def retry_failed_images(job_id: int) -> int:
    """Send a finished job's failed images back to work; return how many.

    Images of a store that is still not in the master stay failed. A store added to the master
    since the submit is linked to its visits and their images are retried too.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status != Job.Status.FAILED:
            return 0
        unknown_visits = Visit.objects.filter(job_id=job_id, store=None)
        for store_id in Store.objects.filter(store_id__in=unknown_visits.values("store_code")).values_list(
            "store_id", flat=True
        ):
            unknown_visits.filter(store_code=store_id).update(store_id=store_id)
        retried = ImageResult.objects.filter(job_id=job_id, status=ImageResult.Status.FAILED).exclude(visit__store=None)
        ids = list(retried.order_by("id").values_list("id", flat=True))
        if not ids:
            return 0
        retried.update(status=ImageResult.Status.PENDING, error="", processed_at=None)
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.ONGOING, images_failed=F("images_failed") - len(ids), errors=[], finished_at=None
        )
        _add_chunks(job_id, ids)
        _finish_job_if_complete(job_id)
    return len(ids)


def cancel_job(job_id: int, reason: str = "job cancelled by an operator") -> int:
    """Fail every pending image of an ongoing job with `reason`; return how many.

    Chunks already running skip the cancelled images: outcomes only ever replace `pending`.
    """
    with transaction.atomic():
        if not Job.objects.filter(pk=job_id, status=Job.Status.ONGOING).exists():
            return 0
        Chunk.objects.filter(job_id=job_id).update(state=Chunk.State.DONE)
        pending = ImageResult.objects.filter(job_id=job_id, status=ImageResult.Status.PENDING)
        cancelled = pending.update(status=ImageResult.Status.FAILED, error=reason, processed_at=timezone.now())
        Job.objects.filter(pk=job_id).update(images_failed=F("images_failed") + cancelled)
        _finish_job_if_complete(job_id)
    return cancelled
