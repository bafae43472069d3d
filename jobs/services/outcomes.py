"""Recording image outcomes and ending jobs.

Every function here is safe to run twice for the same input (a chunk can be measured twice: a
worker that froze and lost its lease wakes up): image rows change only from `pending`, counters
add only the rows that changed, and a job is finished once, each by a conditional UPDATE in one
transaction.
"""

import itertools
import logging
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from jobs import selectors
from jobs.models import ImageResult, Job, OutcomeCount
from jobs.services.callbacks import queue_callback

# One structured line per job event (created, started, finished), per failed image and per callback
# attempt: the message reads well as text, the `extra` fields are what LOG_FORMAT=json shows.
events = logging.getLogger("retailpulse.events")


class Outcome(NamedTuple):
    """What became of one image: its size, or why it failed. Made per image on the fetching's hot
    path, where a NamedTuple is the cheapest record."""

    image_id: int
    width: int | None = None
    height: int | None = None
    error: str = ""


CAUSE_MAX_LENGTH = OutcomeCount._meta.get_field("cause").max_length
# An error's cause is its text up to the first detail: "HTTP 404", "timed out after 30 s",
# "refused" (of "refused: 10.0.0.1 is not a public address"), "unsupported image format ICO".
_CAUSE_END = re.compile(r"[:(]")


def worker_name(*, host: str | None = None, pid: int | None = None) -> str:
    """A worker process as chunks, outcome counts and the dashboard name it: "host pid" (by default
    this process)."""
    return f"{host or socket.gethostname()} {pid or os.getpid()}"


def failure_cause(error: str) -> str:
    """The short form of a failed image's error that the dashboard counts: every error text
    starts with its cause, so the images of a cause are those whose error starts with it."""
    return _CAUSE_END.split(error, maxsplit=1)[0].strip()[:CAUSE_MAX_LENGTH] or "other"


# Rows per UPDATE on SQLite, whose statements take at most 32,766 values: a failed chunk's images
# come in one call.
SQLITE_ROWS_PER_UPDATE = 1000


def _set_pending_images(status: str, at, columns: dict[str, str], rows: list[tuple]) -> int:
    """Give pending image rows `status`, `processed_at = at` and per-row values; return how many
    changed. `columns` maps each column to its PostgreSQL type; each row is (id, *its values).

    Not bulk_update: its CASE/WHEN per column is slow on SQLite and holds the write lock longer.
    A statement takes many rows, which costs both server and client less CPU than a statement per
    row (docs/performance.md, "Where the CPU goes"): on SQLite up to SQLITE_ROWS_PER_UPDATE as a
    VALUES list, on PostgreSQL all of them as arrays (unnest).
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
            return cursor.rowcount
        changed, row = 0, f"({', '.join(['%s'] * (len(columns) + 1))})"
        for start in range(0, len(rows), SQLITE_ROWS_PER_UPDATE):
            batch = rows[start : start + SQLITE_ROWS_PER_UPDATE]
            cursor.execute(
                f"UPDATE {table} SET status = %s, processed_at = %s,"
                f" {', '.join(f'{name} = outcome.column{n}' for n, name in enumerate(columns, start=2))}"
                f" FROM (VALUES {', '.join([row] * len(batch))}) AS outcome"
                f" WHERE {table}.id = outcome.column1 AND {table}.status = 'pending'",
                [status, at, *itertools.chain.from_iterable(batch)],
            )
            changed += cursor.rowcount
        return changed


def record_outcomes(*, job_id: int, outcomes: Iterable[Outcome]) -> None:
    """Write a batch of image outcomes and add what really changed to the job's counters."""
    recorded_at = timezone.now()
    now = connection.ops.adapt_datetimefield_value(recorded_at)
    done_rows: list[tuple] = []
    failed_rows: list[tuple] = []
    for o in outcomes:
        if o.error:
            failed_rows.append((o.image_id, o.error))
        else:
            assert o.width is not None, "a measured image has a size"
            assert o.height is not None, "a measured image has a size"
            done_rows.append((o.image_id, o.width, o.height, 2 * (o.width + o.height), ""))
    with transaction.atomic():
        done = _set_pending_images(
            ImageResult.Status.DONE.value,
            now,
            {"width": "integer", "height": "integer", "perimeter": "integer", "error": "text"},
            done_rows,
        )
        failed = _set_pending_images(ImageResult.Status.FAILED.value, now, {"error": "text"}, failed_rows)
        causes: Counter[str] = Counter()
        if failed:
            failed_images = _images_failed_by(failed_rows, recorded_at)
            _log_failed_images(job_id, failed_images)
            causes.update(failure_cause(error) for *_, error in failed_images)
        if done or failed:
            left = _add_to_counters(job_id, done, failed, now)
            count_outcomes(job_id=job_id, worker=worker_name(), at=recorded_at, images_by_cause={"": done, **causes})
            if left == 0:
                finish_job_if_complete(job_id=job_id)


def _add_to_counters(job_id: int, done: int, failed: int, at) -> int | None:
    """Add a batch's outcomes to its job's counters; return how many of the job's images still have
    none (None if the job is gone).

    SQL for RETURNING, which the ORM's update() lacks: the counters' row is locked until commit, so
    exactly the batch that leaves nothing sees 0, and only it tries to finish the job.
    """
    table = connection.ops.quote_name(Job._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET images_done = images_done + %s, images_failed = images_failed + %s,"
            f" progressed_at = %s WHERE id = %s RETURNING images_total - images_done - images_failed",
            [done, failed, at, job_id],
        )
        row = cursor.fetchone()
    return None if row is None else row[0]


def count_outcomes(*, job_id: int, worker: str, at: datetime, images_by_cause: dict[str, int]) -> None:
    """Add images that got an outcome at `at` to the job's counts of that minute, by cause ("" for
    measured): one statement for the whole batch.

    SQL because the ORM's upsert (bulk_create with update_conflicts) can only replace a count, not
    add to it. SQLite and PostgreSQL share the syntax. Each (job, worker) has rows of its own, so
    workers of different jobs never wait on each other's counts.
    """
    rows = [(cause, images) for cause, images in images_by_cause.items() if images]
    if not rows:
        return
    minute = connection.ops.adapt_datetimefield_value(at.replace(second=0, microsecond=0))
    last_at = connection.ops.adapt_datetimefield_value(at)
    table = connection.ops.quote_name(OutcomeCount._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (minute, job_id, worker, cause, images, last_at)"
            f" VALUES {', '.join(['(%s, %s, %s, %s, %s, %s)'] * len(rows))}"
            f" ON CONFLICT (minute, job_id, worker, cause) DO UPDATE"
            f" SET images = {table}.images + excluded.images, last_at = excluded.last_at",
            [value for cause, images in rows for value in (minute, job_id, worker, cause, images, last_at)],
        )


PRUNE_SLICE_ROWS = 2000


def prune_outcome_counts(*, now: datetime | None = None, slice_rows: int = PRUNE_SLICE_ROWS) -> int:
    """Delete the outcome counts older than RETAILPULSE_OUTCOME_COUNTS_DAYS; returns how many went.

    `slice_rows` rows per DELETE, each its own transaction, oldest first: on SQLite every worker's
    outcomes wait for the write lock, so no statement holds it long, and after each slice the
    pruner waits as long as the slice took, leaving writers at least half the time.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.RETAILPULSE["OUTCOME_COUNTS_DAYS"])
    old = OutcomeCount.objects.filter(minute__lt=cutoff).order_by("minute")  # the key's leading column
    deleted = 0
    while ids := list(old.values_list("id", flat=True)[:slice_rows]):
        started = time.monotonic()
        deleted += OutcomeCount.objects.filter(pk__in=ids).delete()[0]
        time.sleep(time.monotonic() - started)
    return deleted


def _images_failed_by(failed_rows: list[tuple], failed_at: datetime) -> list[tuple]:
    """(id, store id, url, error) of the images a batch failed: those it changed carry its
    timestamp (a repeat or a late outcome for a cancelled image changes nothing)."""
    return list(
        ImageResult.objects.filter(
            id__in=[row[0] for row in failed_rows], status=ImageResult.Status.FAILED, processed_at=failed_at
        )
        .order_by("id")
        .values_list("id", "visit__store_code", "url", "error")
    )


def _log_failed_images(job_id: int, failed_images: list[tuple]) -> None:
    """One line per image this batch failed."""
    for image_id, store_id, url, error in failed_images:
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


def finish_job_if_complete(*, job_id: int) -> None:
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
    job = Job.objects.get(pk=job_id)
    if job.status == Job.Status.FAILED:  # a completed job has no errors to list
        Job.objects.filter(pk=job_id).update(errors=selectors.store_errors(job_id=job_id))
        job.refresh_from_db(fields=["errors"])  # as the database returns them (jsonb orders keys), as status does
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
        queue_callback(job=job)
