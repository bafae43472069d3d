"""What operators read: the dashboard's figures (ongoing jobs, the per-minute outcome counts) and the
readiness checks' and metrics' counts. Each is an indexed read or a read of the jobs' counters, never
a scan of the image table."""

from datetime import datetime
from typing import NamedTuple

from django.db.models import Count, Max, Q, Sum

from jobs.models import CallbackStatus, Chunk, Job, OutcomeCount


class ImageTotals(NamedTuple):
    total: int
    done: int
    failed: int


class FetchHistogram(NamedTuple):
    """Cumulative counts of chunks whose fetch took at most each bucket's seconds, as Prometheus has them."""

    buckets: list[tuple[float, int]]
    chunks: int
    seconds: float


def ongoing_jobs(*, limit: int) -> tuple[int, list[Job]]:
    """How many jobs are ongoing, and the `limit` oldest of them."""
    ongoing = Job.objects.filter(status=Job.Status.ONGOING)
    return ongoing.count(), list(ongoing.order_by("id")[:limit])


# The dashboard's figures come from the per-minute outcome counts (OutcomeCount), never from the
# image table: an hour is a few thousand rows however many images it measured.
# Measured images are counted under the empty cause, failed ones under their cause.
MEASURED, FAILED = Sum("images", filter=Q(cause="")), Sum("images", filter=~Q(cause=""))


def outcomes_per_minute(*, since: datetime) -> dict[datetime, tuple[int, int]]:
    """(measured, failed) images per minute from `since`, for the minutes that had any."""
    rows = (
        OutcomeCount.objects.filter(minute__gte=since)
        .order_by()
        .values("minute")
        .annotate(measured=MEASURED, failed=FAILED)
        .values_list("minute", "measured", "failed")
    )
    return {minute: (measured or 0, failed or 0) for minute, measured, failed in rows}


def failure_causes(*, since: datetime, limit: int) -> list[tuple[str, int]]:
    """The `limit` commonest causes of failed images since `since`, with their image counts."""
    return list(
        OutcomeCount.objects.filter(minute__gte=since)
        .exclude(cause="")
        .order_by()
        .values("cause")
        .annotate(images=Sum("images"))
        .order_by("-images", "cause")
        .values_list("cause", "images")[:limit]
    )


def last_outcome_by_worker(*, since: datetime) -> dict[str, datetime]:
    """Each worker ("host pid") that recorded outcomes since `since`, and when it last did."""
    rows = (
        OutcomeCount.objects.filter(minute__gte=since)
        .exclude(worker="")
        .order_by()
        .values("worker")
        .annotate(last=Max("last_at"))
        .values_list("worker", "last")
    )
    return dict(rows)


def outcomes_by_client(*, since: datetime) -> list[tuple[int | None, str | None, int, int]]:
    """(client id, username, measured, failed) of each client whose jobs got outcomes since `since`;
    None for the anonymous client (jobs submitted without a token)."""
    rows = (
        OutcomeCount.objects.filter(minute__gte=since)
        .order_by()
        .values("job__client_id", "job__client__username")
        .annotate(measured=MEASURED, failed=FAILED)
        .values_list("job__client_id", "job__client__username", "measured", "failed")
    )
    return [(client_id, username, measured or 0, failed or 0) for client_id, username, measured, failed in rows]


def jobs_by_status() -> dict[str, int]:
    """How many jobs there are of each status (every status, 0 for none)."""
    counts = dict(Job.objects.order_by().values_list("status").annotate(n=Count("id")))
    return {status: counts.get(status, 0) for status in Job.Status.values}


def image_totals() -> ImageTotals:
    """Images of every job, from the jobs' counters."""
    totals = Job.objects.aggregate(total=Sum("images_total"), done=Sum("images_done"), failed=Sum("images_failed"))
    return ImageTotals(*(totals[key] or 0 for key in ("total", "done", "failed")))


def chunk_fetch_histogram(*, buckets: tuple[float, ...]) -> FetchHistogram:
    """The chunks' fetch times (summed over their claims) in cumulative buckets of seconds."""
    counts = Chunk.objects.filter(fetch_seconds__isnull=False).aggregate(
        count=Count("id"),
        sum=Sum("fetch_seconds"),
        **{f"le{i}": Count("id", filter=Q(fetch_seconds__lte=le)) for i, le in enumerate(buckets)},
    )
    return FetchHistogram(
        buckets=[(le, counts[f"le{i}"]) for i, le in enumerate(buckets)],
        chunks=counts["count"],
        seconds=counts["sum"] or 0.0,
    )


def callbacks_by_status() -> dict[str, int]:
    """How many jobs' latest completion callbacks are pending, delivered or failed."""
    counts = dict(
        Job.objects.exclude(callback_status="").order_by().values_list("callback_status").annotate(n=Count("id"))
    )
    statuses = (CallbackStatus.PENDING, CallbackStatus.DELIVERED, CallbackStatus.FAILED)
    return {status.value: counts.get(status.value, 0) for status in statuses}


def latest_progress() -> datetime | None:
    """The last time an ongoing job got an image outcome (or was created or re-queued)."""
    return Job.objects.filter(status=Job.Status.ONGOING).aggregate(latest=Max("progressed_at"))["latest"]
