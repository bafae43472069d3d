"""Retention: old finished jobs go with every row that points at them, in slices; ongoing, recent
and still-calling-back jobs stay."""

import math
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import selectors, services
from jobs.models import CallbackStatus, Chunk, ImageResult, Job, OutcomeCount, Visit
from jobs.services.outcomes import Outcome
from stores.models import Store

pytestmark = pytest.mark.django_db

WHEN = datetime(2024, 1, 21, 16, 23, 40, tzinfo=UTC)
NOW = timezone.now()
KEPT_DAYS = timedelta(days=30)


@pytest.fixture(autouse=True)
def small_chunks(settings, db):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 4}
    Store.objects.create(store_id="S1", name="One", area_code="1")


def finished_job(*, age: timedelta, images: int = 6, visits: int = 2, failed: int = 0, **fields) -> Job:
    """A job measured (its last `failed` images failed) and finished `age` before NOW, with its
    outcome counts, chunks and visits."""
    job = services.create_job(
        visits=[
            services.VisitInput("S1", [f"https://img.example.com/{v}/{n}.jpg" for n in range(images // visits)], WHEN)
            for v in range(visits)
        ],
        idempotency_key=f"key-{age}-{images}",
    )
    ids = list(ImageResult.objects.filter(job=job).order_by("id").values_list("id", flat=True))
    outcomes = [Outcome(i, 3, 4) for i in ids[: len(ids) - failed]] + [
        Outcome(i, error="HTTP 404") for i in ids[-failed or len(ids) :]
    ]
    services.record_outcomes(job_id=job.pk, outcomes=outcomes)
    Job.objects.filter(pk=job.pk).update(finished_at=NOW - age, **fields)
    job.refresh_from_db()
    assert job.status == ("failed" if failed else "completed")
    return job


def rows_of(job: Job) -> tuple[int, int, int, int, int]:
    """The job's own row and the rows pointing at it: (jobs, visits, images, chunks, outcome counts)."""
    return (
        Job.objects.filter(pk=job.pk).count(),
        Visit.objects.filter(job_id=job.pk).count(),
        ImageResult.objects.filter(job_id=job.pk).count(),
        Chunk.objects.filter(job_id=job.pk).count(),
        OutcomeCount.objects.filter(job_id=job.pk).count(),
    )


def test_old_finished_jobs_go_with_every_row_pointing_at_them_and_the_rest_stay():
    old_completed = finished_job(age=KEPT_DAYS + timedelta(days=1))
    old_failed = finished_job(age=timedelta(days=400), images=4, failed=1)
    recent = finished_job(age=KEPT_DAYS - timedelta(minutes=1))
    assert rows_of(old_completed)[1:] == (2, 6, 2, 1)  # something to remove from each table

    pruned = services.prune_jobs(older_than=KEPT_DAYS, now=NOW)

    assert (pruned.jobs, pruned.images, pruned.interrupted) == (2, 10, False)
    assert str(pruned) == "removed 2 jobs, 10 images"
    assert rows_of(old_completed) == rows_of(old_failed) == (0, 0, 0, 0, 0)
    assert rows_of(recent) == (1, 2, 6, 2, 1)
    if connection.vendor == "sqlite":  # PostgreSQL checks its foreign keys itself
        with connection.cursor() as cursor:
            assert cursor.execute("PRAGMA foreign_key_check").fetchall() == []
    assert services.prune_jobs(older_than=KEPT_DAYS, now=NOW) == (0, 0, False, 0.0)


def test_an_ongoing_job_is_never_touched_however_old():
    old = NOW - timedelta(days=400)
    ongoing = services.create_job(visits=[services.VisitInput("S1", ["https://img.example.com/1.jpg"], WHEN)])
    Job.objects.filter(pk=ongoing.pk).update(created_at=old, progressed_at=old)
    # A failed job retried by an operator: ongoing again, its finished_at cleared.
    retried = finished_job(age=timedelta(days=400), images=2, visits=1, failed=1)
    assert services.retry_failed_images(job_id=retried.pk) == 1
    # Finished long ago, but its completion callback is still being retried.
    calling_back = finished_job(age=timedelta(days=400), callback_status=CallbackStatus.PENDING)

    assert services.prune_jobs(older_than=KEPT_DAYS, now=NOW).jobs == 0

    assert rows_of(ongoing)[:3] == (1, 1, 1)
    assert rows_of(retried)[:3] == (1, 1, 2)
    assert rows_of(calling_back)[:3] == (1, 2, 6)


def test_images_and_visits_go_a_slice_at_a_time():
    job = finished_job(age=timedelta(days=400), images=25, visits=5)

    with CaptureQueriesContext(connection) as context:
        pruned = services.prune_jobs(older_than=KEPT_DAYS, now=NOW, slice_rows=4)

    assert (pruned.jobs, pruned.images) == (1, 25)
    # The slices' statements (the job's own delete then finds no image or visit left).
    slices = [q["sql"] for q in context.captured_queries if q["sql"].startswith("DELETE") and " AND id >= " in q["sql"]]
    image_deletes = [sql for sql in slices if f'"{ImageResult._meta.db_table}"' in sql]
    visit_deletes = [sql for sql in slices if f'"{Visit._meta.db_table}"' in sql]
    assert len(image_deletes) == math.ceil(25 / 4)  # the image ids of one job are contiguous
    assert len(visit_deletes) == math.ceil(5 / 4)
    assert rows_of(job) == (0, 0, 0, 0, 0)
    assert 0 < pruned.longest_slice < 5


def test_a_run_out_of_time_leaves_the_job_gone_for_clients_and_the_next_run_finishes_it(client):
    job = finished_job(age=timedelta(days=400), images=4, visits=1, failed=1)

    pruned = services.prune_jobs(older_than=KEPT_DAYS, now=NOW, run_seconds=0)

    assert (pruned.jobs, pruned.images, pruned.interrupted) == (0, 0, True)
    job.refresh_from_db()
    assert job.pruned_at is not None
    assert job.idempotency_key is None  # free for a new job at once
    assert client.get(f"/api/status?jobid={job.pk}").json() == {}
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 404
    assert selectors.visit_results(client=None, store_id="S1") == []
    assert services.retry_failed_images(job_id=job.pk) == 0  # never ongoing again
    # The next run finishes it first, whatever its cut-off.
    assert services.prune_jobs(older_than=timedelta(days=1000), now=NOW)[:3] == (1, 4, False)
    assert rows_of(job) == (0, 0, 0, 0, 0)


def test_the_scheduled_run_uses_the_retention_setting_and_is_off_at_zero(settings):
    job = finished_job(age=timedelta(days=3))
    settings.RETAILPULSE = {**settings.RETAILPULSE, "RETENTION_DAYS": 0.0}
    assert services.prune_expired_jobs(now=NOW) is None
    settings.RETAILPULSE = {**settings.RETAILPULSE, "RETENTION_DAYS": 3.5}
    assert services.prune_expired_jobs(now=NOW).jobs == 0
    settings.RETAILPULSE = {**settings.RETAILPULSE, "RETENTION_DAYS": 2.5}
    assert services.prune_expired_jobs(now=NOW)[:2] == (1, 6)
    assert rows_of(job)[0] == 0
