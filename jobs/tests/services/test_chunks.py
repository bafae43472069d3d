"""jobs.services.chunks: cutting jobs into chunks, the order of claims, leases (renewed, lost, run
out), hand-backs that count nothing, errors that back off, making way, and the stall repair."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ

from jobs import services, tasks
from jobs.models import Chunk, ImageResult, Job
from jobs.services import ClaimEnd, chunks
from jobs.services.outcomes import Outcome
from jobs.tests.helpers import migration_schedule
from stores.models import Store

pytestmark = pytest.mark.django_db

WHEN = datetime(2024, 1, 21, 16, 23, 40, tzinfo=UTC)


@pytest.fixture(autouse=True)
def small_chunks(settings, db):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 3, "CHUNK_ATTEMPTS": 3}
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    Store.objects.create(store_id="S1", name="One", area_code="1")


def make_job(images: int = 10) -> Job:
    urls = [f"https://img.example.com/{n}.jpg" for n in range(images)]
    return services.create_job(visits=[services.VisitInput("S1", urls, WHEN)])


def image_ids(job: Job) -> list[int]:
    return list(ImageResult.objects.filter(job=job).order_by("id").values_list("id", flat=True))


def run_out(chunk: Chunk) -> None:
    """The holder stops renewing (it died or froze) and its lease runs out."""
    Chunk.objects.filter(pk=chunk.pk).update(leased_until=timezone.now() - timedelta(seconds=1))


def test_a_job_is_cut_into_pending_chunks_and_wakes_as_many_workers_as_it_can_use():
    job = make_job(10)

    chunks = list(Chunk.objects.filter(job=job).order_by("number"))
    ids = image_ids(job)
    assert [(c.state, c.claim, c.first_image_id, c.last_image_id) for c in chunks] == [  # 3, 3, 2, 2
        ("pending", "", ids[0], ids[2]),
        ("pending", "", ids[3], ids[5]),
        ("pending", "", ids[6], ids[7]),
        ("pending", "", ids[8], ids[9]),
    ]
    assert OrmQ.objects.count() == 2  # one task per worker: more would only find nothing to claim


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

    assert services.chunk_sizes(images=images) == sizes


def claimed(count: int) -> list[tuple[int, int]]:
    return [(claim.chunk.job_id, claim.chunk.number) for claim in (services.claim_chunk() for _ in range(count))]


def test_claims_share_the_workers_between_jobs_oldest_first():
    first, second = make_job(12), make_job(6)  # 4 chunks, 2 chunks

    assert claimed(6) == [
        (first.pk, 0),  # neither job has a chunk held: the oldest
        (second.pk, 0),  # the job with the fewest held
        (first.pk, 1),
        (second.pk, 1),
        (first.pk, 2),
        (first.pk, 3),
    ]
    assert services.claim_chunk() is None  # every chunk is held
    assert Job.objects.get(pk=second.pk).started_at is not None


def test_a_claim_counts_the_held_chunks_once_not_for_each_pending_chunk():
    jobs = [make_job(12) for _ in range(3)]
    claimed(2)  # two busy workers

    with CaptureQueriesContext(connection) as queries:
        claim = services.claim_chunk()
    assert (claim.chunk.job_id, claim.chunk.number) == (jobs[2].pk, 0)  # the one job holding none
    [ordered] = [q["sql"] for q in queries.captured_queries if "ORDER BY" in q["sql"] and "jobs_chunk" in q["sql"]]
    # A count of held chunks per candidate row (a correlated subquery) makes a claim quadratic in
    # the backlog: thousands of queued small jobs would take seconds a claim, under SQLite's lock.
    assert ordered.count("SELECT") == 1


@pytest.mark.parametrize("a_name", ["chain-a", None])  # None: the anonymous client, one client too
def test_claims_share_the_workers_between_clients_whatever_their_number_of_jobs(a_name):
    a = User.objects.create_user(a_name) if a_name else None
    b = User.objects.create_user("chain-b")
    urls = [f"https://img.example.com/{n}.jpg" for n in range(12)]  # 4 chunks each
    a1, a2, b1 = (services.create_job(visits=[services.VisitInput("S1", urls, WHEN)], client=c) for c in (a, a, b))

    assert claimed(6) == [
        (a1.pk, 0),  # no client holds a chunk: the oldest job
        (b1.pk, 0),  # the client holding the fewest
        (a2.pk, 0),  # a tie between clients: within A, the job holding none
        (b1.pk, 1),
        (a1.pk, 1),
        (b1.pk, 2),
    ]


def test_a_lease_that_ran_out_is_claimed_again_and_counted():
    job = make_job(3)
    first = services.claim_chunk()
    assert services.claim_chunk() is None
    run_out(first.chunk)

    second = services.claim_chunk()

    assert second.chunk.pk == first.chunk.pk
    assert second.id != first.id
    assert second.chunk.expired_leases == 1
    assert services.renew_lease(claim=first) is False  # the frozen worker wakes up: its claim is gone
    assert services.renew_lease(claim=second) is True
    assert services.end_claim(claim=first, fetch_seconds=1.0) == ClaimEnd.LOST  # and it changes nothing
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(i, 1, 1) for i in image_ids(job)])
    assert services.end_claim(claim=second, fetch_seconds=2.0) == ClaimEnd.DONE
    chunk = Chunk.objects.get(pk=first.chunk.pk)
    assert (chunk.state, chunk.claim, chunk.leased_until, chunk.fetch_seconds) == ("done", "", None, 2.0)


def test_renewing_extends_the_lease(settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "LEASE_SECONDS": 30.0}
    make_job(3)
    claim = services.claim_chunk()
    run_out(claim.chunk)

    assert services.renew_lease(claim=claim) is True

    leased_until = Chunk.objects.get(pk=claim.chunk.pk).leased_until
    assert timedelta(seconds=25) < leased_until - timezone.now() <= timedelta(seconds=30)
    assert services.claim_chunk() is None


def test_a_chunk_handed_back_is_free_at_once_and_nothing_is_counted():
    job = make_job(3)
    claim = services.claim_chunk()
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(image_ids(job)[0], 1, 1)])

    assert services.end_claim(claim=claim, fetch_seconds=1.0) == ClaimEnd.HANDED_BACK

    chunk = Chunk.objects.get(pk=claim.chunk.pk)
    assert (chunk.state, chunk.claim, chunk.expired_leases, chunk.errors) == ("pending", "", 0, 0)
    again = services.claim_chunk()
    assert again.chunk.pk == chunk.pk
    assert again.chunk.expired_leases == 0  # released, not run out


def test_an_error_backs_off_and_the_last_attempt_fails_the_images_with_its_text():
    job = make_job(3)
    for attempt in (1, 2):
        claim = services.claim_chunk()
        error = "OperationalError: server closed the connection"
        assert services.record_chunk_error(claim=claim, error=error) == ClaimEnd.BACKING_OFF
        backoff = (Chunk.objects.get(pk=claim.chunk.pk).not_before - timezone.now()).total_seconds()
        assert 2**attempt - 1 < backoff <= 2**attempt
        assert services.claim_chunk() is None  # backing off
        Chunk.objects.filter(pk=claim.chunk.pk).update(not_before=timezone.now())

    assert services.record_chunk_error(
        claim=services.claim_chunk(), error="OperationalError: server closed the connection"
    ) == (ClaimEnd.GAVE_UP)

    chunk = Chunk.objects.get(job=job)
    assert (chunk.state, chunk.errors, chunk.expired_leases) == ("done", 3, 0)
    assert set(ImageResult.objects.filter(job=job).values_list("status", "error")) == {
        ("failed", "gave up after 3 attempts: OperationalError: server closed the connection")
    }
    assert Job.objects.get(pk=job.pk).status == "failed"


def test_failing_a_chunk_fails_only_its_pending_images():
    job = make_job(3)
    claim = services.claim_chunk()
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(image_ids(job)[0], 2, 2)])

    services.fail_chunk(chunk=claim.chunk, reason="gave up")

    job.refresh_from_db()
    assert (job.status, job.images_done, job.images_failed) == ("failed", 1, 2)
    assert job.errors == [
        {"store_id": "S1", "error": "https://img.example.com/1.jpg: gave up; https://img.example.com/2.jpg: gave up"}
    ]


def test_cancelling_a_job_takes_its_leases_away():
    job = make_job(3)
    claim = services.claim_chunk()

    services.cancel_job(job_id=job.pk)

    assert services.renew_lease(claim=claim) is False  # its worker stops at the next renewal


# --- Making way --------------------------------------------------------------------------------


def making_way() -> list[tuple[int, int]]:
    return list(Chunk.objects.filter(make_way=True).values_list("job_id", "number"))


@pytest.fixture
def three_workers(settings, monkeypatch):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 3}
    # A chunk of 3 images is wider than the fewest images in flight.
    monkeypatch.setattr(chunks, "MAKE_WAY_WIDER_THAN", 2)


def test_a_new_job_asks_one_held_chunk_to_make_way_when_every_worker_is_busy(three_workers):
    make_job(2)  # one chunk of 2 images
    big = make_job(12)  # 4 chunks of 3 images
    claimed(3)  # three held chunks: every worker busy

    make_job(1)
    assert making_way() == [(big.pk, 0)]  # the widest chunk, not the small job's
    make_job(1)
    assert making_way() == [(big.pk, 0)], "a second chunk made way while the first still was"


@pytest.mark.parametrize(
    ("first_jobs", "held", "fewest_in_flight"),
    [
        ([12], 2, 2),  # two held chunks of 3 images: a worker is free
        ([12, 2], 3, 3),  # every worker busy, but each chunk has all its images in flight already
    ],
)
def test_no_chunk_makes_way_while_a_worker_is_free_or_none_is_wider_than_its_window(
    three_workers, monkeypatch, first_jobs, held, fewest_in_flight
):
    monkeypatch.setattr(chunks, "MAKE_WAY_WIDER_THAN", fewest_in_flight)
    for images in first_jobs:
        make_job(images)
    claimed(held)

    make_job(1)

    assert making_way() == []


def test_a_chunk_that_made_way_is_handed_back_and_the_new_job_is_claimed_first(three_workers):
    big = make_job(9)
    held = [services.claim_chunk() for _ in range(3)]
    small = make_job(1)
    [(job_id, number)] = making_way()
    making = next(claim for claim in held if claim.chunk.number == number)

    assert services.end_claim(claim=making, fetch_seconds=0.5) == ClaimEnd.HANDED_BACK

    assert (services.claim_chunk().chunk.job_id, job_id) == (small.pk, big.pk)
    chunk = Chunk.objects.get(pk=making.chunk.pk)
    assert (chunk.make_way, chunk.expired_leases, chunk.claim) == (False, 0, "")


# --- The stall repair ----------------------------------------------------------------------------


def make_stalled(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(progressed_at=timezone.now() - timedelta(hours=1))


def test_pending_images_outside_any_pending_chunk_get_a_new_chunk():
    job = make_job(4)
    Chunk.objects.filter(job=job, number=0).update(state=Chunk.State.DONE)  # a hand-edited row, say
    OrmQ.objects.all().delete()
    make_stalled(job)

    assert tasks.requeue_stalled_jobs() == f"requeued jobs [{job.pk}]"

    ids = image_ids(job)
    new = Chunk.objects.filter(job=job, number__gte=2).order_by("number")
    assert [(c.state, c.first_image_id, c.last_image_id) for c in new] == [("pending", ids[0], ids[1])]
    assert OrmQ.objects.count() == 2  # the new chunk's task and a wake-up
    job.refresh_from_db()
    assert timezone.now() - job.progressed_at < timedelta(minutes=1)
    assert services.requeue_stalled_jobs() == []  # it is not stalled any more


def test_a_job_with_recent_progress_is_left_alone():
    job = make_job(5)
    OrmQ.objects.all().delete()
    Job.objects.filter(pk=job.pk).update(progressed_at=timezone.now() - timedelta(seconds=30))

    assert services.requeue_stalled_jobs() == []
    assert OrmQ.objects.count() == 0


def test_a_migration_schedules_the_stall_check_every_minute():
    schedule = migration_schedule()
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == ("jobs.tasks.requeue_stalled_jobs", "I", 1)
