"""The write path is idempotent: a chunk can be measured twice (a worker that froze past its lease
wakes up and writes what it measured). Outcomes, job endings and event logs count once."""

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import Chunk, ImageResult, Job
from jobs.services.outcomes import Outcome
from stores.models import Store

pytestmark = pytest.mark.django_db

WHEN = datetime(2024, 1, 21, 16, 23, 40, tzinfo=UTC)


@pytest.fixture(autouse=True)
def small_chunks(settings, db):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 3}
    Store.objects.create(store_id="S1", name="One", area_code="1")


def make_job(images: int = 10, store_id: str = "S1") -> Job:
    urls = [f"https://img.example.com/{n}.jpg" for n in range(images)]
    return services.create_job(visits=[services.VisitInput(store_id, urls, WHEN)])


def image_ids(job: Job) -> list[int]:
    return list(ImageResult.objects.filter(job=job).order_by("id").values_list("id", flat=True))


def test_recording_the_same_outcomes_twice_counts_them_once():
    job = make_job(4)
    ids = image_ids(job)
    outcomes = [Outcome(ids[0], 10, 20), Outcome(ids[1], error="HTTP 404")]

    services.record_outcomes(job_id=job.pk, outcomes=outcomes)
    services.record_outcomes(
        job_id=job.pk, outcomes=[*outcomes, Outcome(ids[1], 5, 5)]
    )  # redelivery, then a late success

    job.refresh_from_db()
    assert (job.images_done, job.images_failed, job.status) == (1, 1, "ongoing")
    second = ImageResult.objects.get(pk=ids[1])
    assert (second.status, second.error, second.width) == ("failed", "HTTP 404", None)
    first = ImageResult.objects.get(pk=ids[0])
    assert (first.width, first.height, first.perimeter) == (10, 20, 60)


def test_a_job_finishes_exactly_once():
    job = make_job(2)
    ids = image_ids(job)
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(ids[0], 1, 1), Outcome(ids[1], 1, 1)])
    job.refresh_from_db()
    finished_at = job.finished_at

    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(ids[0], 1, 1)])

    job.refresh_from_db()
    assert (job.status, job.images_done, job.finished_at) == ("completed", 2, finished_at)


# --- Structured event logs ---------------------------------------------------------------------


def events(caplog, name: str) -> list:
    return [r for r in caplog.records if r.name == "retailpulse.events" and getattr(r, "event", None) == name]


def test_a_job_logs_created_started_and_finished_once_each(caplog):
    caplog.set_level("INFO", logger="retailpulse.events")
    job = services.create_job(
        visits=[
            services.VisitInput("S1", ["https://img.example.com/a.jpg"], WHEN),
            services.VisitInput("NOPE", ["x"], WHEN),
        ]
    )
    services.claim_chunk()
    Chunk.objects.update(leased_until=timezone.now())  # its lease ran out: another worker claims it
    services.claim_chunk()
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(image_ids(job)[0], 2, 3)])

    [created] = events(caplog, "job.created")
    assert (created.job_id, created.visits, created.images, created.unknown_stores) == (job.pk, 2, 2, 1)
    assert created.getMessage() == f"job {job.pk} created: 2 visits, 2 images, 1 unknown stores"
    [started] = events(caplog, "job.started")
    assert started.job_id == job.pk
    [finished] = events(caplog, "job.finished")
    assert (finished.job_id, finished.status, finished.images_done, finished.images_failed) == (job.pk, "failed", 1, 1)
    assert finished.failed_stores == 1


def test_each_failed_image_is_logged_once_with_its_store_url_and_cause(caplog):
    caplog.set_level("INFO", logger="retailpulse.events")
    job = make_job(4)
    ids = image_ids(job)
    outcomes = [Outcome(ids[0], error="HTTP 404"), Outcome(ids[1], 5, 5), Outcome(ids[2], error="timed out after 30 s")]

    services.record_outcomes(job_id=job.pk, outcomes=outcomes)
    services.record_outcomes(job_id=job.pk, outcomes=outcomes)  # a redelivered chunk changes nothing, logs nothing
    services.cancel_job(job_id=job.pk)
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(ids[3], error="HTTP 500")])  # too late: it was cancelled

    failed = events(caplog, "image.failed")
    assert [(r.job_id, r.image_id, r.store_id, r.url, r.error) for r in failed] == [
        (job.pk, ids[0], "S1", "https://img.example.com/0.jpg", "HTTP 404"),
        (job.pk, ids[2], "S1", "https://img.example.com/2.jpg", "timed out after 30 s"),
    ]
    assert failed[0].levelname == "WARNING"
    assert failed[0].getMessage() == (
        f"job {job.pk} image {ids[0]} of store S1 failed: https://img.example.com/0.jpg: HTTP 404"
    )


def test_a_batch_larger_than_one_statement_counts_every_image_once():
    """A failed chunk's images come in one call: on SQLite more rows than one UPDATE takes."""
    job = make_job(2 * services.outcomes.SQLITE_ROWS_PER_UPDATE + 5)
    ids = image_ids(job)
    measured = [Outcome(image_id, image_id % 7 + 1, 3) for image_id in ids[:-3]]
    services.record_outcomes(
        job_id=job.pk, outcomes=[*measured, *measured[:10]]
    )  # a repeat within the batch changes nothing

    job.refresh_from_db()
    assert (job.images_done, job.images_failed, job.status) == (len(ids) - 3, 0, "ongoing")
    widths = dict(ImageResult.objects.filter(job=job, status="done").values_list("id", "width"))
    assert widths == {image_id: image_id % 7 + 1 for image_id in ids[:-3]}
