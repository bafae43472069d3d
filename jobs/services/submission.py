"""Submitting a job: its visits and image rows in one transaction, then its chunks."""

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from jobs import selectors
from jobs.models import ImageResult, Job, Visit
from jobs.services.chunks import add_chunks
from jobs.services.outcomes import count_outcomes, failure_cause, finish_job_if_complete
from stores.selectors import existing_store_ids

UNKNOWN_STORE = "store not in store master"
# The first key of the PostgreSQL advisory lock that makes one client's submits take turns while the
# quota is on; the second is the client's id (0: the anonymous client).
QUOTA_LOCK = 7_355_001

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


class QuotaExceeded(Exception):
    """The client's pending images and the submit's would pass CLIENT_MAX_PENDING_IMAGES."""

    def __init__(self, limit: int, pending: int, images: int):
        super().__init__(
            f"this client has {pending:,} images pending, and {images:,} more would pass its limit of {limit:,} "
            "pending images (RETAILPULSE_CLIENT_MAX_PENDING_IMAGES); retry once some have finished"
        )


def body_fingerprint(*, body: object) -> str:
    """SHA-256 of a submit's body as canonical JSON (key order and spacing do not matter): tells a
    retried submit from another body under the same idempotency key."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_job(
    *,
    visits: list[VisitInput],
    client: User | None = None,
    callback_url: str = "",
    idempotency_key: str | None = None,
    body: object = None,
) -> Submission:
    """Create the client's job, or with an idempotency key the client already used for the same
    body, return that job.

    `body` is the submit as the client sent it, whose fingerprint (body_fingerprint) goes with the
    key; the same key with another body raises IdempotencyKeyReused. Two submits racing with one key
    create one job: the unique key makes the second insert fail (or, under a quota, the first one's
    images make it raise QuotaExceeded), and it returns the first one's job.
    """
    fingerprint = "" if idempotency_key is None else body_fingerprint(body=body)
    if idempotency_key is not None:
        earlier = selectors.job_by_idempotency_key(client=client, key=idempotency_key)
        if earlier is not None:
            return _replay(earlier, fingerprint)
    try:
        job = create_job(
            visits=visits,
            client=client,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
            idempotency_fingerprint=fingerprint,
        )
    except (IntegrityError, QuotaExceeded):
        earlier = (
            None if idempotency_key is None else selectors.job_by_idempotency_key(client=client, key=idempotency_key)
        )
        if earlier is None:
            raise
        return _replay(earlier, fingerprint)
    return Submission(job, replayed=False)


def _replay(job: Job, fingerprint: str) -> Submission:
    if job.idempotency_fingerprint != fingerprint:
        raise IdempotencyKeyReused(f"this Idempotency-Key was already used for a different body (job {job.pk})")
    return Submission(job, replayed=True)


def create_job(
    *,
    visits: list[VisitInput],
    client: User | None = None,
    callback_url: str = "",
    idempotency_key: str | None = None,
    idempotency_fingerprint: str = "",
) -> Job:
    """Store the client's job with all its visits and (pending) image rows, and queue its first
    chunks; QuotaExceeded if its images would pass the client's quota."""
    store_ids = {v.store_id for v in visits}
    known = existing_store_ids(store_ids)
    with transaction.atomic():
        _check_quota(client, sum(len(v.image_urls) for v in visits if v.store_id in known))
        job = Job.objects.create(
            client=client,
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
            count_outcomes(
                job_id=job.pk, worker="", at=timezone.now(), images_by_cause={failure_cause(UNKNOWN_STORE): failed_now}
            )

        pending_ids = list(
            ImageResult.objects.filter(job=job, status=ImageResult.Status.PENDING)
            .order_by("id")
            .values_list("id", flat=True)
        )
        add_chunks(job_id=job.pk, image_ids=pending_ids)
        if not pending_ids:  # every image failed at once (unknown stores), or there are none
            finish_job_if_complete(job_id=job.pk)
    job.refresh_from_db()
    return job


def _check_quota(client: User | None, images: int) -> None:
    """Raise QuotaExceeded if `images` more pending images would pass the client's quota.

    Run inside the submit's transaction, and one client's submits take turns from here to their
    commit: two cannot both fit under the limit. On SQLite every write transaction takes the
    database's lock at BEGIN; on PostgreSQL a transaction-scoped advisory lock per client does it.
    """
    limit = settings.RETAILPULSE["CLIENT_MAX_PENDING_IMAGES"]
    if not limit:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s::integer, %s::integer)", [QUOTA_LOCK, client.pk if client else 0]
            )
    pending = selectors.pending_images(client=client)
    if pending + images > limit:
        raise QuotaExceeded(limit, pending, images)


def _insert_images(job: Job, visit_rows: list[Visit], visits: list[VisitInput]) -> int:
    """Insert one row per image URL of each visit; return how many failed at once (unknown store).

    Not bulk_create: it builds a model instance per row and, on SQLite, sends one statement per
    111 rows, which dominates a big job's submit. PostgreSQL takes the rows by COPY, SQLite by a
    plain executemany INSERT (docs/design.md, "Writes in bulk").
    """
    pending, failed = ImageResult.Status.PENDING.value, ImageResult.Status.FAILED.value
    failed_at = connection.ops.adapt_datetimefield_value(timezone.now())
    rows: list[tuple] = []
    job_id = job.pk
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
