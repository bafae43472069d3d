"""Reads: what the API, the admin and the workers ask of jobs and their images."""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Count, F, Max, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs.models import MAX_JOB_ID, Chunk, ImageResult, Job, OutcomeCount, Visit
from stores.models import Store

ERRORS_LISTED_PER_STORE = 5  # failed images named in one store's error; the rest are counted


def get_job(job_id: int) -> Job | None:
    """Any client's job: for workers, operators and the command line, never for an API client."""
    return Job.objects.filter(pk=job_id).first()


def api_client(user) -> User | None:
    """The client an API request acts for: the user behind its token, or None, the one anonymous
    client of a service without tokens (DRF's request.user is then None)."""
    return user if user is not None and user.is_authenticated else None


def jobs_visible_to(client: User | None) -> QuerySet:
    """The jobs an API client may read: its own. Every API read of a job starts here, so another
    client's job is answered exactly as a missing one, by the same single query."""
    return Job.objects.filter(client=client)


def visible_job(client: User | None, job_id: int, *fields: str) -> Job | None:
    """The client's job `job_id`, or None: one that does not exist and another client's alike.

    Only `fields` are read if given: a polling client's status needs two columns of twenty-one,
    which takes a quarter off the request's CPU (docs/performance.md, "Tuning"). Unordered: one
    row at most.
    """
    if not 0 < job_id <= MAX_JOB_ID:  # no such row can exist, and a larger id would overflow a query
        return None
    jobs = jobs_visible_to(client).filter(pk=job_id).order_by()
    return next(iter(jobs.only(*fields) if fields else jobs), None)


def job_by_idempotency_key(client: User | None, key: str) -> Job | None:
    return jobs_visible_to(client).filter(idempotency_key=key).first()


def pending_images(client: User | None) -> int:
    """Images of the client's ongoing jobs that have no outcome yet (the quota's count)."""
    counters = jobs_visible_to(client).filter(status=Job.Status.ONGOING)
    pending = counters.aggregate(pending=Sum(F("images_total") - F("images_done") - F("images_failed"), default=0))[
        "pending"
    ]
    return int(pending)


def is_current_callback(job_id: int, delivery_id: str) -> bool:
    return Job.objects.filter(pk=job_id, callback_delivery=delivery_id).exists()


STATUS_FIELDS = ("status", "errors")  # what status_body reads of a job


def status_body(job: Job) -> dict:
    """The body of GET /api/status, exactly as the contract has it (and what a callback POSTs)."""
    body = {"status": job.status, "job_id": job.pk}
    if job.status == Job.Status.FAILED:
        body["error"] = job.errors
    return body


def chunk_pending_images(chunk: Chunk) -> QuerySet:
    """(id, url) of the chunk's images that have no outcome yet."""
    return ImageResult.objects.filter(
        job_id=chunk.job_id,
        id__gte=chunk.first_image_id,
        id__lte=chunk.last_image_id,
        status=ImageResult.Status.PENDING,
    ).values_list("id", "url")


def claimable_chunks(now: datetime) -> QuerySet:
    """Chunks a worker may claim: pending, not held (or held under a lease that ran out), and not
    backing off after an error."""
    return (
        Chunk.objects.filter(state=Chunk.State.PENDING)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now))
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
    )


def held_chunks(now: datetime) -> list[tuple[int, int]]:
    """(job id, client id) of each chunk held now (its lease runs): a few, one per busy worker. The
    anonymous client's NULL is 0, one client like any other."""
    held = Chunk.objects.filter(state=Chunk.State.PENDING, leased_until__gt=now).order_by()
    return list(held.values_list("job_id", Coalesce("job__client_id", 0)))


def chunk_queue(now: datetime) -> dict[str, int]:
    """Pending chunks: `held` (a worker's lease runs) and `free` (waiting for a claim, or backing off)."""
    return Chunk.objects.filter(state=Chunk.State.PENDING).aggregate(
        held=Count("id", filter=Q(leased_until__gt=now)),
        free=Count("id", filter=Q(leased_until__isnull=True) | Q(leased_until__lte=now)),
    )


def chunks_wait() -> bool:
    """Whether a chunk waits for a worker to claim it now."""
    return claimable_chunks(timezone.now()).exists()


def chunk_must_make_way(chunk_id: int) -> bool:
    """Whether a submit asked the chunk's holder to hand it back (services.chunks._make_way)."""
    return Chunk.objects.filter(pk=chunk_id, make_way=True).exists()


def store_errors(job_id: int) -> list[dict]:
    """One entry per store with a failed image, in the order of the job's visits.

    Computed once, when the job finishes, and kept on the job: status stays one query.
    """
    failures: dict[str, dict[str, None]] = {}  # store -> its distinct messages, in order
    rows = (
        ImageResult.objects.filter(job_id=job_id, status=ImageResult.Status.FAILED)
        .order_by("id")
        .values_list("visit__store_code", "visit__store_id", "url", "error")
    )
    for store_code, known_store, url, error in rows.iterator(chunk_size=2000):
        # An unknown store fails as a whole; for a known one, name each failed image and its cause.
        message = f"{url}: {error}" if known_store else error
        failures.setdefault(store_code, {})[message] = None
    entries = []
    for store_code, distinct in failures.items():
        messages = list(distinct)
        text = "; ".join(messages[:ERRORS_LISTED_PER_STORE])
        if len(messages) > ERRORS_LISTED_PER_STORE:
            text += f"; and {len(messages) - ERRORS_LISTED_PER_STORE} more failed images"
        entries.append({"store_id": store_code, "error": text})
    return entries


def job_images(job_id: int, *, store_id: str | None = None, status: str | None = None) -> QuerySet:
    images = ImageResult.objects.filter(job_id=job_id).order_by("id")
    if store_id:
        images = images.filter(visit__store_code=store_id)
    if status:
        images = images.filter(status=status)
    return images.select_related("visit")


# A per-image result as the API shows it (its name) and where each value comes from (its lookup):
# the image list's serializer, the CSV export and `job_results` all use these names in this order.
IMAGE_COLUMNS = {
    "id": "id",
    "store_id": "visit__store_code",
    "visit_time": "visit__visit_time",
    "url": "url",
    "width": "width",
    "height": "height",
    "perimeter": "perimeter",
    "status": "status",
    "error": "error",
    "processed_at": "processed_at",
}


def job_image_rows(job_id: int, *, store_id: str | None = None, status: str | None = None) -> QuerySet:
    """The same images as `job_images`, as tuples in IMAGE_COLUMNS order (no model instances:
    exports stream them with .iterator())."""
    images = job_images(job_id, store_id=store_id, status=status).select_related(None)
    return images.values_list(*IMAGE_COLUMNS.values())


@dataclass(frozen=True)
class VisitCursor:
    """Where a page of GET /api/visits ended: its last data point, in (store, time, visit, image) order."""

    store_id: str
    visit_time: datetime
    visit_id: int
    image_id: int


def visit_results(
    client: User | None,
    *,
    area: str | None = None,
    store_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    after: VisitCursor | None = None,
    limit: int = 1000,
) -> list[tuple]:
    """Measured images (status done) of the client's jobs' visits to stores of the master, in
    (store, visit time, visit, image) order, after `after`: (store_id, area_code, store name,
    visit_time, perimeter, visit_id, image_id).

    Keyset pagination: a page is an index range scan from the cursor, so the last page costs what
    the first does. SQL rather than the ORM, which would order by the visit's store column (it drops
    the join for a key): ordered by the store table's own key, SQLite walks stores, then visits by
    (store, visit_time, id), then images, in page order, and stops at the limit instead of sorting
    every match; PostgreSQL sorts only within a visit (incremental sort). The `>=` row comparisons give both an index
    range to start from; the `>` one is the exact cursor.
    """
    ops = connection.ops
    store_table = ops.quote_name(Store._meta.db_table)
    visit_table = ops.quote_name(Visit._meta.db_table)
    image_table = ops.quote_name(ImageResult._meta.db_table)
    job_table = ops.quote_name(Job._meta.db_table)
    where, params = ["i.status = %s"], [ImageResult.Status.DONE.value]
    if client is None:
        where.append("j.client_id IS NULL")
    else:
        where.append("j.client_id = %s")
        params.append(client.pk)
    if area:
        where.append("s.area_code = %s")
        params.append(area)
    if store_id:
        where.append("s.store_id = %s")
        params.append(store_id)
    if start:
        where.append("v.visit_time >= %s")
        params.append(ops.adapt_datetimefield_value(start))
    if end:
        where.append("v.visit_time <= %s")
        params.append(ops.adapt_datetimefield_value(end))
    if after:
        time = ops.adapt_datetimefield_value(after.visit_time)
        where += [
            "s.store_id >= %s",
            "(v.store_id, v.visit_time, v.id) >= (%s, %s, %s)",
            "(v.store_id, v.visit_time, v.id, i.id) > (%s, %s, %s, %s)",
        ]
        params += [after.store_id, after.store_id, time, after.visit_id]
        params += [after.store_id, time, after.visit_id, after.image_id]
    sql = (
        "SELECT s.store_id, s.area_code, s.name, v.visit_time, i.perimeter, v.id, i.id"
        # CROSS JOIN makes SQLite's join order stores, visits, jobs (one primary key lookup per
        # visit, for its client), images whatever its statistics say (without ANALYZE it may pick
        # the visit_time index and sort every match); PostgreSQL plans it as the inner join it is.
        f" FROM {store_table} s CROSS JOIN {visit_table} v CROSS JOIN {job_table} j CROSS JOIN {image_table} i"
        f" WHERE v.store_id = s.store_id AND j.id = v.job_id AND i.visit_id = v.id AND {' AND '.join(where)}"
        " ORDER BY s.store_id, v.visit_time, v.id, i.id"
        " LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return [(*row[:3], _aware(row[3]), *row[4:]) for row in cursor.fetchall()]


def _aware(value: datetime | str) -> datetime:
    """A date-time read by raw SQL: SQLite gives naive UTC (or text), PostgreSQL an aware value."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def ongoing_jobs(limit: int) -> tuple[int, list[Job]]:
    """How many jobs are ongoing, and the `limit` oldest of them."""
    ongoing = Job.objects.filter(status=Job.Status.ONGOING)
    return ongoing.count(), list(ongoing.order_by("id")[:limit])


# The dashboard's figures come from the per-minute outcome counts (OutcomeCount), never from the
# image table: an hour is a few thousand rows however many images it measured.
# Measured images are counted under the empty cause, failed ones under their cause.
MEASURED_AND_FAILED = {"measured": Sum("images", filter=Q(cause="")), "failed": Sum("images", filter=~Q(cause=""))}


def outcomes_per_minute(since: datetime) -> dict[datetime, tuple[int, int]]:
    """(measured, failed) images per minute from `since`, for the minutes that had any."""
    rows = (
        OutcomeCount.objects.filter(minute__gte=since)
        .order_by()
        .values("minute")
        .annotate(**MEASURED_AND_FAILED)
        .values_list("minute", "measured", "failed")
    )
    return {minute: (measured or 0, failed or 0) for minute, measured, failed in rows}


def failure_causes(since: datetime, limit: int) -> list[tuple[str, int]]:
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


def last_outcome_by_worker(since: datetime) -> dict[str, datetime]:
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


def outcomes_by_client(since: datetime) -> list[tuple[int | None, str | None, int, int]]:
    """(client id, username, measured, failed) of each client whose jobs got outcomes since `since`;
    None for the anonymous client (jobs submitted without a token)."""
    rows = (
        OutcomeCount.objects.filter(minute__gte=since)
        .order_by()
        .values("job__client_id", "job__client__username")
        .annotate(**MEASURED_AND_FAILED)
        .values_list("job__client_id", "job__client__username", "measured", "failed")
    )
    return [(client_id, username, measured or 0, failed or 0) for client_id, username, measured, failed in rows]
