"""Fair share between API clients with a real qcluster: a client's many jobs do not crowd out
another client's one (the claim order of services.chunks.claim_chunk). bench/fairness.py measures
the same at full size."""

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from jobs import services
from jobs.models import ImageResult, Job
from jobs.tests.helpers import wait_until
from stores.models import Store

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_clients(transactional_db):
    Store.objects.create(store_id="S1", name="One", area_code="700")
    return User.objects.create_user("chain-a"), User.objects.create_user("chain-b")


def submit(image_server, client, images: int, tag: str) -> Job:
    urls = [image_server.url(f"/img/{n % 50 + 1}x5.png?{tag}") for n in range(images)]
    return services.create_job(visits=[services.VisitInput("S1", urls, timezone.now())], client=client)


def test_two_clients_share_the_workers_whatever_their_number_of_jobs(
    two_clients, image_server, start_cluster, settings
):
    """A's three jobs and B's one, all waiting when the cluster starts: by the time B's job ends, A
    measured about as many images as B (a share per job would give B a quarter)."""
    a, b = two_clients
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 4}
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 25}
    for n in range(3):
        submit(image_server, a, 400, f"a{n}")
    b_job = submit(image_server, b, 400, "b")
    start_cluster(RETAILPULSE_WORKERS="4", RETAILPULSE_HOST_CONNECTIONS="5", RETAILPULSE_GPU_DELAY="0.2")

    wait_until(lambda: Job.objects.get(pk=b_job.pk).status != "ongoing", timeout=120, what="B's job to end")
    b_end = Job.objects.get(pk=b_job.pk).finished_at
    a_meanwhile = ImageResult.objects.filter(job__client=a, status="done", processed_at__lte=b_end).count()
    b_share = 400 / (400 + a_meanwhile)

    # Not exactly a half: while B's last chunks run, fewer than its two workers, A's take the rest.
    assert 0.35 <= b_share <= 0.65, f"B measured 400 images while A measured {a_meanwhile}"


def test_a_small_job_of_another_client_ends_within_3_s_while_a_client_runs_four_big_ones(
    two_clients, image_server, start_cluster, settings
):
    """The issue's figure, scaled down (bench/fairness.py runs it at full size): every worker busy
    with A's four jobs, B's 5 images (0.1-0.4 s of simulated GPU each) end within 3 s of the submit."""
    a, b = two_clients
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 4}
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 200}
    start_cluster(RETAILPULSE_WORKERS="4", RETAILPULSE_HOST_CONNECTIONS="20", RETAILPULSE_GPU_DELAY="0.1-0.4")
    big = [submit(image_server, a, 1600, f"a{n}") for n in range(4)]
    wait_until(
        lambda: all(ImageResult.objects.filter(job=job, status="done").exists() for job in big),
        timeout=60,
        what="every one of A's jobs under way",
    )

    small = submit(image_server, b, 5, "b")
    wait_until(lambda: Job.objects.get(pk=small.pk).status != "ongoing", timeout=30, what="B's job to end")
    small = Job.objects.get(pk=small.pk)

    assert small.status == "completed"
    assert Job.objects.filter(pk__in=[job.pk for job in big], status="ongoing").count() == 4  # A still busy
    # 3 s: the target; the work itself is one claim and at most 0.4 s of delay after making way (0.5 s)
    assert (small.finished_at - small.created_at).total_seconds() <= 3
