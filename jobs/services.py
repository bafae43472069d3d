"""Writes: creating jobs, queueing their chunks, recording image outcomes, finishing jobs.

Every function here is safe to run twice for the same input (tasks can be delivered more than
once): image rows change only from `pending`, counters add only the rows that changed, a chunk is
closed once and a job is finished once, each by a conditional UPDATE in one transaction.
"""

import logging
import math
import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.tasks import async_task, schedule

from jobs import selectors
from jobs.models import CallbackStatus, Chunk, ImageResult, Job, Visit
from jobs.processing import Outcome
from stores.models import Store
from stores.selectors import existing_store_ids

UNKNOWN_STORE = "store not in store master"

# One structured line per job event (created, started, finished), per failed image and per callback
# attempt: the message reads well as text, the `extra` fields are what LOG_FORMAT=json shows.
events = logging.getLogger("retailpulse.events")


@dataclass(frozen=True)
class VisitInput:
    store_id: str
    image_urls: list[str]
    visit_time: datetime


@dataclass(frozen=True)
class Submission:
    job: Job
    replayed: bool  # an earlier submit with the same idempotency key created the job


class IdempotencyKeyReused(Exception):
    """The idempotency key was already used for a submit with a different body."""


def submit_job(
    visits: list[VisitInput],
    *,
    callback_url: str = "",
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> Submission:
    """Create a job, or with an idempotency key already used for the same body, return its job.

    `fingerprint` identifies the body (see SubmitJobSerializer.fingerprint); the same key with
    another body raises IdempotencyKeyReused. Two submits racing with one key create one job: the
    unique key makes the second insert fail, and it returns the first one's job.
    """
    if idempotency_key is not None:
        earlier = selectors.job_by_idempotency_key(idempotency_key)
        if earlier is not None:
            return _replay(earlier, fingerprint)
    try:
        job = create_job(
            visits, callback_url=callback_url, idempotency_key=idempotency_key, idempotency_fingerprint=fingerprint
        )
    except IntegrityError:
        earlier = selectors.job_by_idempotency_key(idempotency_key) if idempotency_key is not None else None
        if earlier is None:
            raise
        return _replay(earlier, fingerprint)
    return Submission(job, replayed=False)


def _replay(job: Job, fingerprint: str) -> Submission:
    if job.idempotency_fingerprint != fingerprint:
        raise IdempotencyKeyReused(f"this Idempotency-Key was already used for a different body (job {job.pk})")
    return Submission(job, replayed=True)


def create_job(
    visits: list[VisitInput],
    *,
    callback_url: str = "",
    idempotency_key: str | None = None,
    idempotency_fingerprint: str = "",
) -> Job:
    """Store a job with all its visits and (pending) image rows, and queue its first chunks."""
    store_ids = {v.store_id for v in visits}
    known = existing_store_ids(store_ids)
    with transaction.atomic():
        job = Job.objects.create(
            images_total=sum(len(v.image_urls) for v in visits),
            callback_url=callback_url,
            idempotency_key=idempotency_key,
            idempotency_fingerprint=idempotency_fingerprint,
        )
        events.info(
            "job %s created: %s visits, %s images, %s unknown stores",
            job.pk,
            len(visits),
            job.images_total,
            len(store_ids - known),
            extra={
                "event": "job.created",
                "job_id": job.pk,
                "visits": len(visits),
                "images": job.images_total,
                "unknown_stores": len(store_ids - known),
            },
        )
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

    Not bulk_create: it builds a model instance per row and, on SQLite, sends one statement per
    111 rows; for a 100,000-image job that was most of the submit time. PostgreSQL takes the rows
    by COPY, SQLite by a plain executemany INSERT (README, "Writes in bulk": the figures).
    """
    pending, failed = ImageResult.Status.PENDING.value, ImageResult.Status.FAILED.value
    failed_at = connection.ops.adapt_datetimefield_value(timezone.now())
    rows, job_id = [], job.pk
    for visit, visit_input in zip(visit_rows, visits, strict=True):
        # A store that is not in the master fails its images at once; the other visits go on.
        status, error, at = (pending, "", None) if visit.store_id else (failed, UNKNOWN_STORE, failed_at)
        visit_id = visit.pk  # read once: a model's pk is a property
        rows.extend((job_id, visit_id, url, status, error, at) for url in visit_input.image_urls)
    table = connection.ops.quote_name(ImageResult._meta.db_table)
    columns = "job_id, visit_id, url, status, error, processed_at"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s)", rows)
    return sum(1 for row in rows if row[3] == failed)


def _enqueue(func: str, *args, task_name: str) -> None:
    def enqueue() -> None:
        async_task(func, *args, task_name=task_name)

    if Conf.ORM:
        enqueue()  # the queue is a table in this database: queued in the same transaction
    else:
        transaction.on_commit(enqueue)


def _enqueue_chunk(chunk: Chunk) -> None:
    _enqueue("jobs.tasks.process_chunk", chunk.pk, task_name=f"job-{chunk.job_id}-chunk-{chunk.number}")


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
        delivered = Chunk.objects.filter(pk=chunk_id).exclude(state=Chunk.State.DONE)
        worker = f"{socket.gethostname()} {os.getpid()}"
        if not delivered.update(deliveries=F("deliveries") + 1, worker=worker, make_way=False):
            return None
        chunk = Chunk.objects.get(pk=chunk_id)
        if Job.objects.filter(pk=chunk.job_id, started_at=None).update(started_at=timezone.now()):
            events.info("job %s started", chunk.job_id, extra={"event": "job.started", "job_id": chunk.job_id})
    return chunk


def _set_pending_images(status: str, at, columns: dict[str, str], rows: list[tuple]) -> int:
    """Give pending image rows `status`, `processed_at = at` and per-row values; return how many
    changed. `columns` maps each column to its PostgreSQL type; each row is (id, *its values).

    Not bulk_update: on SQLite its CASE/WHEN per column took 0.12-0.3 s per 100 rows under the
    write lock. SQLite runs one prepared UPDATE per row (about 5 us a row). PostgreSQL takes the
    batch as arrays in one statement (unnest): per-row statements cost it 22 us of server and 17 us
    of client CPU a row, the arrays 15 and 6.
    """
    if not rows:
        return 0
    table = connection.ops.quote_name(ImageResult._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{kind}[]" for kind in columns.values())
            cursor.execute(
                f"UPDATE {table} AS image SET status = %s, processed_at = %s,"
                f" {', '.join(f'{name} = outcome.{name}' for name in columns)}"
                f" FROM unnest(%s::bigint[], {arrays}) AS outcome(id, {', '.join(columns)})"
                f" WHERE image.id = outcome.id AND image.status = 'pending'",
                [status, at, *(list(values) for values in zip(*rows, strict=True))],
            )
        else:
            cursor.executemany(
                f"UPDATE {table} SET status = %s, processed_at = %s, {', '.join(f'{name} = %s' for name in columns)}"
                f" WHERE id = %s AND status = 'pending'",
                [(status, at, *values, image_id) for image_id, *values in rows],
            )
        return cursor.rowcount


def record_outcomes(job_id: int, outcomes: Iterable[Outcome]) -> None:
    """Write a batch of image outcomes and add what really changed to the job's counters."""
    recorded_at = timezone.now()
    now = connection.ops.adapt_datetimefield_value(recorded_at)
    done_rows, failed_rows = [], []
    for o in outcomes:
        if o.error:
            failed_rows.append((o.image_id, o.error))
        else:
            done_rows.append((o.image_id, o.width, o.height, 2 * (o.width + o.height), ""))
    with transaction.atomic():
        done = _set_pending_images(
            ImageResult.Status.DONE.value,
            now,
            {"width": "integer", "height": "integer", "perimeter": "integer", "error": "text"},
            done_rows,
        )
        failed = _set_pending_images(ImageResult.Status.FAILED.value, now, {"error": "text"}, failed_rows)
        if failed:
            _log_failed_images(job_id, [row[0] for row in failed_rows], recorded_at)
        if done or failed:
            Job.objects.filter(pk=job_id).update(
                images_done=F("images_done") + done,
                images_failed=F("images_failed") + failed,
                progressed_at=recorded_at,
            )
            _finish_job_if_complete(job_id)


def _log_failed_images(job_id: int, image_ids: list[int], failed_at: datetime) -> None:
    """One line per image this batch failed: those it changed carry its timestamp (a repeat or a
    late outcome for a cancelled image changes nothing, and is not logged)."""
    failed = (
        ImageResult.objects.filter(id__in=image_ids, status=ImageResult.Status.FAILED, processed_at=failed_at)
        .order_by("id")
        .values_list("id", "visit__store_code", "url", "error")
    )
    for image_id, store_id, url, error in failed:
        events.warning(
            "job %s image %s of store %s failed: %s: %s",
            job_id,
            image_id,
            store_id,
            url,
            error,
            extra={
                "event": "image.failed",
                "job_id": job_id,
                "image_id": image_id,
                "store_id": store_id,
                "url": url,
                "error": error,
            },
        )


def finish_chunk(chunk: Chunk, fetch_seconds: float | None = None, made_way: bool = False) -> None:
    """Close a chunk whose images are all done or failed, and queue the job's next chunk.

    If some images are still pending (the chunk hit its deadline, or `made_way` for a new job), the
    chunk goes back to the queue. `fetch_seconds`, the time this delivery spent fetching, is added
    to the chunk's.
    """
    with transaction.atomic():
        if fetch_seconds is not None:
            Chunk.objects.filter(pk=chunk.pk).update(fetch_seconds=Coalesce(F("fetch_seconds"), 0.0) + fetch_seconds)
        if selectors.chunk_pending_images(chunk).exists():
            if made_way:  # a delivery that stepped aside is not one that died: MAX_DELIVERIES ignores it
                Chunk.objects.filter(pk=chunk.pk).update(deliveries=F("deliveries") - 1, make_way=False)
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


def requeue_stalled_jobs() -> list[int]:
    """Queue again the unfinished work of ongoing jobs without progress for STALL_AFTER seconds.

    A job should never stay ongoing forever, whatever was lost: a task dropped by a broker, a chunk
    left queued by a crash between its last write and its hand-back. Queued chunks are queued once
    more (a chunk that is in fact still running or done does nothing the second time; each delivery
    counts towards MAX_DELIVERIES), and pending images outside any live chunk get new chunks.
    Returns the ids of the jobs it touched.
    """
    now = timezone.now()
    stalled_before = now - timedelta(seconds=settings.RETAILPULSE["STALL_AFTER"])
    touched = []
    for job_id in Job.objects.filter(status=Job.Status.ONGOING, progressed_at__lt=stalled_before).values_list(
        "id", flat=True
    ):
        with transaction.atomic():
            # Conditional, so two schedulers never both requeue one job.
            if not Job.objects.filter(pk=job_id, progressed_at__lt=stalled_before).update(progressed_at=now):
                continue
            live = Chunk.objects.filter(job_id=job_id).exclude(state=Chunk.State.DONE)
            for chunk in live.filter(state=Chunk.State.QUEUED):
                _enqueue_chunk(chunk)
            queue_next_chunks(job_id)
            if not live.exists():
                pending = ImageResult.objects.filter(job_id=job_id, status=ImageResult.Status.PENDING)
                _add_chunks(job_id, list(pending.order_by("id").values_list("id", flat=True)))
        events.warning(
            "job %s stalled: its unfinished work is queued again",
            job_id,
            extra={"event": "job.requeued", "job_id": job_id},
        )
        touched.append(job_id)
    return touched


def _finish_job_if_complete(job_id: int) -> None:
    """Mark the job completed or failed once every image is done or failed: exactly once.

    The one place a job ends (at submit, after its last outcome, on cancel, or again after a retry),
    so its completion callback is queued here, in the same transaction.
    """
    finished = Job.objects.filter(
        pk=job_id, status=Job.Status.ONGOING, images_total=F("images_done") + F("images_failed")
    ).update(
        status=Case(When(images_failed__gt=0, then=Value(Job.Status.FAILED)), default=Value(Job.Status.COMPLETED)),
        finished_at=timezone.now(),
    )
    if not finished:
        return
    Job.objects.filter(pk=job_id).update(errors=selectors.store_errors(job_id))
    job = Job.objects.get(pk=job_id)
    events.info(
        "job %s finished: %s (%s done, %s failed of %s images)",
        job.pk,
        job.status,
        job.images_done,
        job.images_failed,
        job.images_total,
        extra={
            "event": "job.finished",
            "job_id": job.pk,
            "status": job.status,
            "images_done": job.images_done,
            "images_failed": job.images_failed,
            "images": job.images_total,
            "failed_stores": len(job.errors),
        },
    )
    if job.callback_url:
        _queue_callback(job)


def _callback_task_name(delivery_id: str, attempt: int) -> str:
    return f"callback-{delivery_id}-{attempt}"


def _queue_callback(job: Job) -> None:
    """Queue the POST of the job's final status to its callback URL (first attempt right away)."""
    delivery_id = uuid.uuid4().hex
    Job.objects.filter(pk=job.pk).update(
        callback_status=CallbackStatus.PENDING, callback_attempts=0, callback_error="", callback_delivery=delivery_id
    )
    _enqueue(
        "jobs.tasks.deliver_callback",
        job.pk,
        job.callback_url,
        selectors.status_body(job),
        delivery_id,
        1,
        task_name=_callback_task_name(delivery_id, 1),
    )


def record_callback_attempt(job_id: int, url: str, body: dict, delivery_id: str, attempt: int, error: str) -> str:
    """Record how a callback attempt went and schedule the next one, with backoff; return the state.

    An attempt of a delivery that a later end of the job replaced (a retried job ended again) is not
    recorded, nor retried: the newer body is the one that counts.
    """
    config = settings.RETAILPULSE_CALLBACKS
    current = Job.objects.filter(pk=job_id, callback_delivery=delivery_id)
    log_fields = {"job_id": job_id, "url": url, "attempt": attempt, "delivery": delivery_id}
    if not error:
        if not current.update(callback_status=CallbackStatus.DELIVERED, callback_attempts=attempt, callback_error=""):
            return "superseded"
        events.info(
            "job %s callback delivered to %s (attempt %s)",
            job_id,
            url,
            attempt,
            extra={"event": "callback.delivered", **log_fields},
        )
        return "delivered"
    last = attempt >= config["ATTEMPTS"]
    with transaction.atomic():
        status = CallbackStatus.FAILED if last else CallbackStatus.PENDING
        if not current.update(callback_status=status, callback_attempts=attempt, callback_error=error):
            return "superseded"
        if not last:
            delay = config["BACKOFF"] * 2 ** (attempt - 1)
            name = _callback_task_name(delivery_id, attempt + 1)
            if not Schedule.objects.filter(name=name).exists():  # a redelivered task schedules it once
                schedule(
                    "jobs.tasks.deliver_callback",
                    job_id,
                    url,
                    body,
                    delivery_id,
                    attempt + 1,
                    name=name,
                    schedule_type=Schedule.ONCE,
                    next_run=timezone.now() + timedelta(seconds=delay),
                )
    events.warning(
        "job %s callback to %s failed (attempt %s of %s): %s%s",
        job_id,
        url,
        attempt,
        config["ATTEMPTS"],
        error,
        "; giving up" if last else "",
        extra={"event": "callback.failed", "error": error, "gave_up": last, **log_fields},
    )
    return str(status)


MIN_CHUNK_SIZE = 100  # images: below this, a chunk's own queueing and writes cost more than they spread


def chunk_sizes(images: int) -> list[int]:
    """How many images each chunk of a job gets: at most CHUNK_SIZE, in a multiple of the worker
    count of nearly equal chunks, unless that would make them smaller than MIN_CHUNK_SIZE.

    Equal rounds keep every worker busy to the end of a job: 10 chunks of 1,000 on 4 workers left
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


def _add_chunks(job_id: int, image_ids: list[int]) -> None:
    """Split image ids (ascending) into new chunks numbered after the job's last one, and queue them."""
    last = Chunk.objects.filter(job_id=job_id).order_by("-number").values_list("number", flat=True).first()
    start = 0 if last is None else last + 1
    chunks, first = [], 0
    for number, size in enumerate(chunk_sizes(len(image_ids)), start=start):
        chunks.append(
            Chunk(
                job_id=job_id, number=number, first_image_id=image_ids[first], last_image_id=image_ids[first + size - 1]
            )
        )
        first += size
    Chunk.objects.bulk_create(chunks)
    queue_next_chunks(job_id)
    if chunks:
        _make_way()


def _make_way() -> None:
    """If every worker is busy, ask one running chunk to hand its worker over to the chunks just queued.

    Without it a new job waits for a running chunk to end: up to a chunk's whole run (4-6 s for
    1,000 images on the second machine, README) when a big job's chunks started together. The chunk's task sees the flag
    at its next batch (at most FLUSH_EVERY later), cancels its images in flight (they stay
    pending), and queues the chunk again, behind the new job (jobs.tasks.process_chunk). Only
    while no other chunk is making way, so a burst of submits stops one worker, not all of them.
    The widest chunk is picked, and only one wider than a worker's images in flight: a narrower
    one has all its images in flight already, and ends about as soon as it would make way.
    """
    running = list(  # a few rows (chunks queued and delivered): one query, decided here
        Chunk.objects.filter(state=Chunk.State.QUEUED, deliveries__gt=0)
        .order_by()
        .values_list("pk", "make_way", "first_image_id", "last_image_id", named=True)
    )
    if len(running) < settings.Q_CLUSTER["workers"] or any(chunk.make_way for chunk in running):
        return
    widest = max(running, key=lambda chunk: (chunk.last_image_id - chunk.first_image_id, -chunk.pk))
    if widest.last_image_id - widest.first_image_id >= settings.RETAILPULSE["IN_FLIGHT"]:
        Chunk.objects.filter(pk=widest.pk).update(make_way=True)


def retry_failed_images(job_id: int) -> int:
    """Send a finished job's failed images back to work; return how many.

    Images of a store that is still not in the master stay failed. A store added to the master
    since the submit is linked to its visits and their images are retried too.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status != Job.Status.FAILED:
            return 0
        Visit.objects.filter(job_id=job_id, store=None, store_code__in=Store.objects.values("store_id")).update(
            store=F("store_code")
        )
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
