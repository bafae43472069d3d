"""Reads of image results: a failed job's errors per store, a job's images, measured perimeters by store
and visit time."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs.models import ImageResult, Job, Visit
from stores.models import Store

ERRORS_LISTED_PER_STORE = 5  # failed images named in one store's error; the rest are counted


def store_errors(*, job_id: int) -> list[dict]:
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


def job_images(*, job_id: int, store_id: str | None = None, status: str | None = None) -> QuerySet:
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


def job_image_rows(*, job_id: int, store_id: str | None = None, status: str | None = None) -> QuerySet:
    """The same images as `job_images`, as tuples in IMAGE_COLUMNS order (no model instances:
    exports stream them with .iterator())."""
    images = job_images(job_id=job_id, store_id=store_id, status=status).select_related(None)
    return images.values_list(*IMAGE_COLUMNS.values())


@dataclass(frozen=True)
class VisitCursor:
    """Where a page of GET /api/visits ended: its last data point, in (store, time, visit, image) order."""

    store_id: str
    visit_time: datetime
    visit_id: int
    image_id: int


class VisitPoint(NamedTuple):
    """One measured image of GET /api/visits, with the store it belongs to and its place in the order."""

    store_id: str
    area_code: str
    store_name: str
    visit_time: datetime
    perimeter: int
    visit_id: int
    image_id: int


def visit_results(
    *,
    client: User | None,
    area: str | None = None,
    store_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    after: VisitCursor | None = None,
    limit: int = 1000,
) -> list[VisitPoint]:
    """Measured images (status done) of the client's jobs' visits to stores of the master, in
    (store, visit time, visit, image) order, after `after`.

    Keyset pagination: a page is an index range scan from the cursor, so the last page costs what
    the first does. SQL rather than the ORM, so that the order is the store table's own key, which
    lets both databases walk the indexes in page order and stop at the limit (docs/design.md). The
    `>=` row comparisons give an index range to start from; the `>` one is the exact cursor.
    """
    ops = connection.ops
    store_table = ops.quote_name(Store._meta.db_table)
    visit_table = ops.quote_name(Visit._meta.db_table)
    image_table = ops.quote_name(ImageResult._meta.db_table)
    job_table = ops.quote_name(Job._meta.db_table)
    where: list[str] = ["i.status = %s", "j.pruned_at IS NULL"]  # a job retention is removing is gone
    params: list[Any] = [ImageResult.Status.DONE.value]
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
        return [
            VisitPoint(store_id, area_code, name, _aware(visit_time), perimeter, visit_id, image_id)
            for store_id, area_code, name, visit_time, perimeter, visit_id, image_id in cursor.fetchall()
        ]


def _aware(value: datetime | str) -> datetime:
    """A date-time read by raw SQL: SQLite gives naive UTC (or text), PostgreSQL an aware value."""
    parsed = parse_datetime(value) if isinstance(value, str) else value
    if parsed is None:
        raise ValueError(f"not a date-time: {value!r}")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)
