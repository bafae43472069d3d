"""Idempotency of the write path: tasks can be delivered more than once."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import F
from django.utils import timezone
from django_q.models import OrmQ

from jobs import services, tasks
from jobs.models import Chunk, ImageResult, Job
from jobs.processing import Outcome
from stores.models import Store

pytestmark = pytest.mark.django_db

WHEN = datetime(2024, 1, 21, 16, 23, 40, tzinfo=UTC)


@pytest.fixture(autouse=True)
def small_chunks(settings, db):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 3, "CHUNKS_PER_JOB": 2}
    Store.objects.create(store_id="S1", name="One", area_code="1")


def make_job(images: int = 10, store_id: str = "S1") -> Job:
    urls = [f"https://img.example.com/{n}.jpg" for n in range(images)]
    return services.create_job([services.VisitInput(store_id, urls, WHEN)])


def image_ids(job: Job) -> list[int]:
    return list(ImageResult.objects.filter(job=job).order_by("id").values_list("id", flat=True))


def test_a_job_is_split_into_chunks_and_only_a_few_are_queued():
    job = make_job(10)

    chunks = list(Chunk.objects.filter(job=job).order_by("number"))
    assert [(c.number, c.state) for c in chunks] == [(0, "queued"), (1, "queued"), (2, "waiting"), (3, "waiting")]
    ids = image_ids(job)
    assert [(c.first_image_id, c.last_image_id) for c in chunks] == [  # 3, 3, 2, 2: see chunk_sizes
        (ids[0], ids[2]),
        (ids[3], ids[5]),
        (ids[6], ids[7]),
        (ids[8], ids[9]),
    ]
    assert OrmQ.objects.count() == 2


@pytest.mark.parametrize(
    ("images", "sizes"),
    [
        (10_000, [834] * 4 + [833] * 8),  # 12 chunks, not 10: three full rounds of 4 workers
        (100_000, [1000] * 100),
        (1000, [250] * 4),  # one round over every worker
        (250, [125, 125]),  # not below MIN_CHUNK_SIZE
        (5, [5]),
        (0, []),
    ],
)
def test_chunk_sizes_spread_a_job_evenly_over_the_workers(settings, images, sizes):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 1000}
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 4}

    assert services.chunk_sizes(images) == sizes


def test_finishing_a_chunk_queues_the_next_once():
    job = make_job(10)
    first = Chunk.objects.get(job=job, number=0)
    services.record_outcomes(job.pk, [Outcome(i, 1, 1) for i in image_ids(job)[:3]])

    services.finish_chunk(first)
    services.finish_chunk(first)  # a redelivered task finishing again

    states = dict(Chunk.objects.filter(job=job).values_list("number", "state"))
    assert states == {0: "done", 1: "queued", 2: "queued", 3: "waiting"}
    assert OrmQ.objects.count() == 3


def test_a_chunk_with_pending_images_goes_back_to_the_queue():
    job = make_job(3)
    chunk = Chunk.objects.get(job=job)
    services.record_outcomes(job.pk, [Outcome(image_ids(job)[0], 1, 1)])

    services.finish_chunk(chunk)

    chunk.refresh_from_db()
    assert chunk.state == "queued"
    assert OrmQ.objects.count() == 2  # the first delivery and the hand-back


def start_queued_chunks() -> None:
    for chunk_id in Chunk.objects.filter(state=Chunk.State.QUEUED).values_list("pk", flat=True):
        services.start_chunk(chunk_id)


def making_way() -> list[tuple[int, int]]:
    return list(Chunk.objects.filter(make_way=True).values_list("job_id", "number"))


@pytest.fixture
def three_workers(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 3}
    # A chunk of 3 images is wider than the images in flight.
    settings.RETAILPULSE = {**settings.RETAILPULSE, "IN_FLIGHT": 2}
    return settings.RETAILPULSE


def test_a_new_job_asks_one_running_chunk_to_make_way_when_every_worker_is_busy(three_workers):
    make_job(2)  # one chunk of 2 images
    big = make_job(12)  # 4 chunks of 3 images, 2 of them queued
    start_queued_chunks()  # three running chunks: every worker busy

    make_job(1)
    assert making_way() == [(big.pk, 0)]  # the widest chunk, not the small job's
    make_job(1)
    assert making_way() == [(big.pk, 0)], "a second chunk made way while the first still was"


@pytest.mark.parametrize(
    ("first_jobs", "in_flight"),
    [
        ([12], 2),  # two running chunks of 3 images: a worker is free
        ([12, 2], 3),  # every worker busy, but each chunk has all its images in flight already
    ],
)
def test_no_chunk_makes_way_while_a_worker_is_free_or_none_is_wider_than_its_window(
    three_workers, first_jobs, in_flight
):
    three_workers["IN_FLIGHT"] = in_flight
    for images in first_jobs:
        make_job(images)
    start_queued_chunks()

    make_job(1)

    assert making_way() == []


def test_a_chunk_that_made_way_is_queued_again_without_counting_the_delivery():
    job = make_job(3)
    chunk = services.start_chunk(Chunk.objects.get(job=job).pk)
    Chunk.objects.filter(pk=chunk.pk).update(make_way=True)
    services.record_outcomes(job.pk, [Outcome(image_ids(job)[0], 1, 1)])

    services.finish_chunk(chunk, made_way=True)

    chunk.refresh_from_db()
    assert (chunk.state, chunk.deliveries, chunk.make_way) == ("queued", 0, False)
    assert OrmQ.objects.count() == 2  # the first delivery and the hand-back
    Chunk.objects.filter(pk=chunk.pk).update(make_way=True)  # asked again, but it was already handed back:
    assert services.start_chunk(chunk.pk).make_way is False  # its next delivery runs to the end


def test_recording_the_same_outcomes_twice_counts_them_once():
    job = make_job(4)
    ids = image_ids(job)
    outcomes = [Outcome(ids[0], 10, 20), Outcome(ids[1], error="HTTP 404")]

    services.record_outcomes(job.pk, outcomes)
    services.record_outcomes(job.pk, [*outcomes, Outcome(ids[1], 5, 5)])  # redelivery, then a late success

    job.refresh_from_db()
    assert (job.images_done, job.images_failed, job.status) == (1, 1, "ongoing")
    second = ImageResult.objects.get(pk=ids[1])
    assert (second.status, second.error, second.width) == ("failed", "HTTP 404", None)
    first = ImageResult.objects.get(pk=ids[0])
    assert (first.width, first.height, first.perimeter) == (10, 20, 60)


def test_a_job_finishes_exactly_once():
    job = make_job(2)
    ids = image_ids(job)
    services.record_outcomes(job.pk, [Outcome(ids[0], 1, 1), Outcome(ids[1], 1, 1)])
    job.refresh_from_db()
    finished_at = job.finished_at

    services.record_outcomes(job.pk, [Outcome(ids[0], 1, 1)])

    job.refresh_from_db()
    assert (job.status, job.images_done, job.finished_at) == ("completed", 2, finished_at)


def test_start_chunk_counts_deliveries_and_skips_done_chunks():
    job = make_job(3)
    chunk = Chunk.objects.get(job=job)

    assert services.start_chunk(chunk.pk).deliveries == 1
    assert services.start_chunk(chunk.pk).deliveries == 2
    job.refresh_from_db()
    assert job.started_at is not None
    Chunk.objects.filter(pk=chunk.pk).update(state=Chunk.State.DONE)
    assert services.start_chunk(chunk.pk) is None


def test_giving_up_on_a_chunk_fails_its_pending_images_with_the_reason():
    job = make_job(3)
    chunk = Chunk.objects.get(job=job)
    services.record_outcomes(job.pk, [Outcome(image_ids(job)[0], 2, 2)])

    services.fail_pending_images(chunk, "gave up")

    job.refresh_from_db()
    assert (job.status, job.images_done, job.images_failed) == ("failed", 1, 2)
    assert job.errors == [
        {
            "store_id": "S1",
            "error": "https://img.example.com/1.jpg: gave up; https://img.example.com/2.jpg: gave up",
        }
    ]


# --- Structured event logs ---------------------------------------------------------------------


def events(caplog, name: str) -> list:
    return [r for r in caplog.records if r.name == "retailpulse.events" and getattr(r, "event", None) == name]


def test_a_job_logs_created_started_and_finished_once_each(caplog):
    caplog.set_level("INFO", logger="retailpulse.events")
    job = services.create_job(
        [services.VisitInput("S1", ["https://img.example.com/a.jpg"], WHEN), services.VisitInput("NOPE", ["x"], WHEN)]
    )
    chunk = Chunk.objects.get(job=job)
    services.start_chunk(chunk.pk)
    services.start_chunk(chunk.pk)  # a redelivery
    services.record_outcomes(job.pk, [Outcome(image_ids(job)[0], 2, 3)])

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

    services.record_outcomes(job.pk, outcomes)
    services.record_outcomes(job.pk, outcomes)  # a redelivered chunk changes nothing, logs nothing
    services.cancel_job(job.pk)
    services.record_outcomes(job.pk, [Outcome(ids[3], error="HTTP 500")])  # too late: it was cancelled

    failed = events(caplog, "image.failed")
    assert [(r.job_id, r.image_id, r.store_id, r.url, r.error) for r in failed] == [
        (job.pk, ids[0], "S1", "https://img.example.com/0.jpg", "HTTP 404"),
        (job.pk, ids[2], "S1", "https://img.example.com/2.jpg", "timed out after 30 s"),
    ]
    assert failed[0].levelname == "WARNING"
    assert failed[0].getMessage() == (
        f"job {job.pk} image {ids[0]} of store S1 failed: https://img.example.com/0.jpg: HTTP 404"
    )


def make_stalled(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(progressed_at=timezone.now() - timedelta(hours=1))


def test_a_stalled_job_gets_its_queued_chunks_queued_again(settings):
    job = make_job(5)  # chunks 0 and 1 queued
    OrmQ.objects.all().delete()  # the tasks were lost
    make_stalled(job)

    assert tasks.requeue_stalled_jobs() == f"requeued jobs [{job.pk}]"

    assert OrmQ.objects.count() == 2
    job.refresh_from_db()
    assert timezone.now() - job.progressed_at < timedelta(minutes=1)
    assert services.requeue_stalled_jobs() == []  # it is not stalled any more


def test_a_job_with_recent_progress_is_left_alone():
    job = make_job(5)
    OrmQ.objects.all().delete()
    services.record_outcomes(job.pk, [Outcome(image_ids(job)[0], 1, 1)])
    Job.objects.filter(pk=job.pk).update(progressed_at=F("progressed_at") - timedelta(seconds=30))

    assert services.requeue_stalled_jobs() == []
    assert OrmQ.objects.count() == 0


def test_pending_images_outside_any_live_chunk_get_a_new_chunk():
    job = make_job(4)
    Chunk.objects.filter(job=job).update(state=Chunk.State.DONE)
    OrmQ.objects.all().delete()
    make_stalled(job)

    services.requeue_stalled_jobs()

    ids = image_ids(job)
    new = Chunk.objects.filter(job=job, number__gte=2).order_by("number")  # chunks 0 and 1 were closed
    assert [(c.state, c.first_image_id, c.last_image_id) for c in new] == [
        ("queued", ids[0], ids[1]),
        ("queued", ids[2], ids[3]),
    ]
    assert OrmQ.objects.count() == 2


def test_a_migration_schedules_the_stall_check_every_minute():
    from importlib import import_module

    from django.apps import apps
    from django_q.models import Schedule

    migration = import_module("jobs.migrations.0005_stall_check_schedule")
    Schedule.objects.filter(name=migration.NAME).delete()  # a transactional test may have flushed it anyway
    migration.create_schedule(apps, None)

    schedule = Schedule.objects.get(name=migration.NAME)
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == ("jobs.tasks.requeue_stalled_jobs", "I", 1)
