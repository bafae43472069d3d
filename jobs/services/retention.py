"""Retention: removing finished jobs older than a cut-off, with their visits, images, chunks and
outcome counts.

A job is removed in slices, each its own short transaction: a range of its image ids, then of its
visit ids, then the job row with its chunks and counts. Workers keep recording outcomes in between
(on SQLite they wait for the write lock a slice holds), and after each slice the pruner waits as
long as the slice took, leaving writers at least half the time. A job is first marked (`pruned_at`,
by a conditional UPDATE that only a finished job passes): from then on the API sees no such job and
an operator's retry leaves it alone, so no job that runs again is ever half removed. A marked job
is finished first by the next run, whatever its cut-off.
"""

import time
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min, Model
from django.utils import timezone

from jobs.models import CallbackStatus, ImageResult, Job, Visit

FINISHED = (Job.Status.COMPLETED, Job.Status.FAILED)
# Image rows per slice: a slice of this many holds SQLite's write lock (and PostgreSQL's row locks)
# for well under 100 ms at 100,000-image jobs (docs/performance.md, "Retention"; bench/prune.py).
SLICE_ROWS = 2000
# A scheduled run stops after this long, mid-job if need be; the next run (a minute later) goes on.
RUN_SECONDS = 20.0


class Pruned(NamedTuple):
    """What a run removed, whether it stopped on its time budget with old jobs left, and its
    longest slice (the longest it held the write lock), in seconds."""

    jobs: int
    images: int
    interrupted: bool
    longest_slice: float

    def __str__(self) -> str:
        return f"removed {self.jobs:,} job{'s' * (self.jobs != 1)}, {self.images:,} image{'s' * (self.images != 1)}"


def prune_jobs(
    *,
    older_than: timedelta,
    now: datetime | None = None,
    slice_rows: int = SLICE_ROWS,
    run_seconds: float | None = None,
) -> Pruned:
    """Remove the jobs that finished more than `older_than` ago (and any job a previous run marked),
    oldest first; stop after `run_seconds` if given. Ongoing jobs are never touched, nor a job whose
    completion callback is still being retried."""
    cutoff = (now or timezone.now()) - older_than
    deadline = None if run_seconds is None else time.monotonic() + run_seconds
    jobs = images = 0
    slices: list[float] = [0.0]
    while (job_id := _next_job(cutoff)) is not None:
        removed, complete = _remove_job(job_id, slice_rows, deadline, slices)
        images += removed
        if not complete:
            return Pruned(jobs, images, interrupted=True, longest_slice=max(slices))
        jobs += 1
    return Pruned(jobs, images, interrupted=False, longest_slice=max(slices))


def prune_expired_jobs(*, now: datetime | None = None, run_seconds: float = RUN_SECONDS) -> Pruned | None:
    """The scheduler's run: the jobs older than RETAILPULSE_RETENTION_DAYS, or None when it is 0 (off)."""
    days = settings.RETAILPULSE["RETENTION_DAYS"]
    if not days:
        return None
    return prune_jobs(older_than=timedelta(days=days), now=now, run_seconds=run_seconds)


def _next_job(cutoff: datetime) -> int | None:
    """The job being removed (marked by an earlier run), else the oldest finished one before the
    cut-off, marked now. Marking frees its Idempotency-Key: a client may use it again at once."""
    marked = Job.objects.filter(pruned_at__isnull=False).order_by("pk").values_list("pk", flat=True).first()
    if marked is not None:
        return marked
    expired = Job.objects.filter(status__in=FINISHED, finished_at__lt=cutoff, pruned_at=None).exclude(
        callback_status=CallbackStatus.PENDING
    )
    for job_id in expired.order_by("finished_at").values_list("pk", flat=True)[:10]:
        # Conditional: an operator's retry may have made it ongoing since it was read.
        if expired.filter(pk=job_id).update(pruned_at=timezone.now(), idempotency_key=None):
            return job_id
    return None


def _remove_job(job_id: int, slice_rows: int, deadline: float | None, slices: list[float]) -> tuple[int, bool]:
    """Delete a marked job's images, then its visits, a slice at a time, then the job; return the
    images deleted and whether the job is gone (False: the deadline came first). Each slice's
    seconds are added to `slices`."""
    images = 0
    for model in (ImageResult, Visit):
        bounds = model.objects.filter(job_id=job_id).aggregate(low=Min("id"), high=Max("id"))
        if bounds["low"] is None:
            continue
        for start in range(bounds["low"], bounds["high"] + 1, slice_rows):
            if deadline is not None and time.monotonic() > deadline:
                return images, False
            started = time.monotonic()
            with transaction.atomic():
                deleted = _delete_id_range(model, job_id, start, start + slice_rows)
            slices.append(time.monotonic() - started)
            if model is ImageResult:
                images += deleted
            time.sleep(slices[-1])
    started = time.monotonic()
    # The cascade takes its chunks and outcome counts (a few rows) in the same transaction.
    Job.objects.filter(pk=job_id).delete()
    slices.append(time.monotonic() - started)
    return images, True


def _delete_id_range(model: type[Model], job_id: int, start: int, end: int) -> int:
    """Delete the job's rows of `model` with ids in [start, end): one statement, bounded by the range
    (a job's rows are inserted together, so their ids are nearly contiguous). SQL rather than the
    ORM's delete(), which would first read every visit to find the images that point at it (there
    are none left by then)."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE job_id = %s AND id >= %s AND id < %s", [job_id, start, end])
        return cursor.rowcount
