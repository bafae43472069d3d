"""Processing end to end: a real qcluster worker, a local image server, both databases."""

import os
import subprocess
import sys
import time

import pytest
from django_q.models import OrmQ

from conftest import BASE_DIR
from jobs import tasks
from jobs.models import Chunk, ImageResult, Job
from jobs.services import ClaimEnd
from jobs.tests.helpers import submit, visit, wait_for_job
from jobs.tests.image_samples import MEASURED, REFUSED
from stores.models import Store

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stores(transactional_db):
    Store.objects.bulk_create([Store(store_id=f"S{n}", name=f"Store {n}", area_code="7000") for n in range(1, 4)])


def test_job_completes_with_a_result_per_image(client, stores, image_server, start_cluster):
    start_cluster()
    urls = [image_server.url(p) for p in ("/img/640x480.jpg", "/img/100x50.png", "/img/30x20.webp", "/img/7x9.gif")]
    response = submit(client, [visit("S1", *urls[:2]), visit("S2", *urls[2:]), visit("S3", urls[0])])
    job_id = response.json()["job_id"]

    assert wait_for_job(client, job_id) == {"status": "completed", "job_id": job_id}
    results = {
        (r.visit.store_code, r.url): (r.status, r.width, r.height, r.perimeter)
        for r in ImageResult.objects.filter(job_id=job_id).select_related("visit")
    }
    assert results == {
        ("S1", urls[0]): ("done", 640, 480, 2240),
        ("S1", urls[1]): ("done", 100, 50, 300),
        ("S2", urls[2]): ("done", 30, 20, 100),
        ("S2", urls[3]): ("done", 7, 9, 32),
        ("S3", urls[0]): ("done", 640, 480, 2240),  # the same URL in another visit: its own result
    }
    job = Job.objects.get(pk=job_id)
    assert (job.images_total, job.images_done, job.images_failed) == (5, 5, 0)
    assert job.started_at is not None
    assert job.finished_at >= job.started_at


def test_every_kind_of_image_gets_its_exact_result(client, stores, image_server, start_cluster):
    """Phone, camera and scanner formats measured as displayed; other formats and non-images refused
    with an error that says which."""
    start_cluster()
    names = sorted({**MEASURED, **REFUSED})
    response = submit(client, [visit("S1", *(image_server.url(f"/sample/{name}") for name in names))])
    job_id = response.json()["job_id"]

    assert wait_for_job(client, job_id)["status"] == "failed"
    results = {
        r.url.rsplit("/", 1)[1]: (r.status, r.width, r.height, r.perimeter, r.error)
        for r in ImageResult.objects.filter(job_id=job_id)
    }
    measured = {name: ("done", w, h, 2 * (w + h), "") for name, (_data, (w, h)) in MEASURED.items()}
    assert {name: results[name] for name in MEASURED} == measured
    refused = {
        name: (status, w, h, p, error.startswith(REFUSED[name][1]))
        for name, (status, w, h, p, error) in results.items()
        if name in REFUSED
    }
    assert refused == {name: ("failed", None, None, None, True) for name in REFUSED}


def test_failed_images_and_unknown_stores_fail_the_job(client, stores, image_server, start_cluster):
    start_cluster()
    closed_port_url = "http://127.0.0.1:9/a.jpg"  # the discard port: nothing listens there
    response = submit(
        client,
        [
            visit("S1", image_server.url("/img/10x10.jpg"), image_server.url("/status/404")),
            visit("S2", image_server.url("/notimage"), image_server.url("/truncated"), image_server.url("/status/500")),
            visit("S3", closed_port_url),
            visit("NOPE", image_server.url("/img/10x10.jpg")),
        ],
    )
    job_id = response.json()["job_id"]

    body = wait_for_job(client, job_id)
    assert body["status"] == "failed"
    assert body["job_id"] == job_id
    errors = {entry["store_id"]: entry["error"] for entry in body["error"]}
    assert set(errors) == {"S1", "S2", "S3", "NOPE"}
    assert errors["S1"] == f"{image_server.url('/status/404')}: HTTP 404"
    assert f"{image_server.url('/notimage')}: not an image" in errors["S2"]
    assert f"{image_server.url('/truncated')}: truncated download" in errors["S2"]
    assert f"{image_server.url('/status/500')}: HTTP 500" in errors["S2"]
    assert errors["S3"].startswith(f"{closed_port_url}: cannot connect")
    assert errors["NOPE"] == "store not in store master"
    job = Job.objects.get(pk=job_id)
    assert (job.images_total, job.images_done, job.images_failed) == (7, 1, 6)
    assert (
        ImageResult.objects.get(job_id=job_id, url=image_server.url("/img/10x10.jpg"), visit__store_code="S1").perimeter
        == 40
    )


def wait_for_first_image(job_id: int) -> None:
    """Until one image of the job is done: the job is under way in its worker."""
    deadline = time.monotonic() + 30
    while not ImageResult.objects.filter(job_id=job_id, status="done").exists():
        assert time.monotonic() < deadline, "no image finished"
        time.sleep(0.05)


def test_small_job_is_not_queued_behind_a_big_one(client, stores, image_server, start_cluster, settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 20}
    start_cluster(RETAILPULSE_GPU_DELAY="0.1-0.2", RETAILPULSE_HOST_CONNECTIONS="20")
    big = submit(client, [visit("S1", *[image_server.url(f"/img/{n}x5.png") for n in range(1, 401)])]).json()["job_id"]
    time.sleep(0.5)
    small = submit(client, [visit("S2", image_server.url("/img/5x5.jpg"))]).json()["job_id"]

    assert wait_for_job(client, small)["status"] == "completed"
    big_job = Job.objects.get(pk=big)
    assert big_job.status == "ongoing", "the small job waited for the whole big job"
    assert wait_for_job(client, big, timeout=120)["status"] == "completed"


def test_a_running_chunk_makes_way_for_a_new_job_when_every_worker_is_busy(
    client, stores, image_server, start_cluster, settings
):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 1}
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 300}
    start_cluster(RETAILPULSE_WORKERS="1", RETAILPULSE_GPU_DELAY="0.1-0.2", RETAILPULSE_HOST_CONNECTIONS="10")
    urls = [image_server.url(f"/img/{n}x5.png") for n in range(1, 601)]
    big = submit(client, [visit("S1", *urls)]).json()["job_id"]  # two chunks of 300: about 4 s each
    wait_for_first_image(big)
    small = submit(client, [visit("S2", image_server.url("/img/5x5.jpg"))]).json()["job_id"]

    assert wait_for_job(client, small)["status"] == "completed"
    assert wait_for_job(client, big, timeout=120)["status"] == "completed"
    first = Chunk.objects.get(job_id=big, number=0)
    small_done_at = ImageResult.objects.get(job_id=small).processed_at
    after_small = ImageResult.objects.filter(
        id__range=(first.first_image_id, first.last_image_id), processed_at__gt=small_done_at
    )
    assert after_small.exists(), "the big job's first chunk ran to its end before the small job started"
    assert (first.expired_leases, first.errors) == (0, 0)  # making way is not counted against anything
    assert sorted(ImageResult.objects.filter(job_id=big).values_list("width", flat=True)) == list(range(1, 601))


# --- The task in this process --------------------------------------------------------------------


@pytest.fixture
def in_process(settings):
    settings.RETAILPULSE = {
        **settings.RETAILPULSE,
        "FETCH_ALLOW_PRIVATE": True,
        "GPU_DELAY": (0.0, 0.0),
        "CHUNK_SIZE": 10,
    }
    return settings.RETAILPULSE


def test_the_chunk_deadline_hands_unfinished_images_back(client, stores, image_server, in_process):
    in_process["CHUNK_DEADLINE"] = 1.0
    fast, slow = image_server.url("/img/4x4.png"), image_server.url("/slow?seconds=4")
    job_id = submit(client, [visit("S1", fast, slow)]).json()["job_id"]

    assert tasks.work_on_next_chunk() == f"job {job_id} chunk 0: handed back"

    statuses = dict(ImageResult.objects.filter(job_id=job_id).values_list("url", "status"))
    assert statuses == {fast: "done", slow: "pending"}
    chunk = Chunk.objects.get(job_id=job_id)
    assert (chunk.state, chunk.claim, chunk.expired_leases, chunk.errors) == ("pending", "", 0, 0)
    assert tasks.work_on_next_chunk().startswith(f"job {job_id} chunk 0: ")  # free again at once


def test_a_task_with_nothing_to_claim_wakes_nobody(client, stores, image_server, in_process):
    job_id = submit(client, [visit("S1", image_server.url("/img/4x4.png"))]).json()["job_id"]
    OrmQ.objects.all().delete()

    assert tasks.work_on_next_chunk() == f"job {job_id} chunk 0: done"
    assert tasks.work_on_next_chunk() == "nothing to claim"
    assert OrmQ.objects.count() == 0


def test_two_clusters_share_a_job_and_process_each_image_once(client, stores, image_server, start_cluster, settings):
    """The scale-out topology: several qclusters (on several machines) on one database."""
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 10}
    clusters = [start_cluster(RETAILPULSE_WORKERS="2", RETAILPULSE_GPU_DELAY="0.05-0.1") for _ in range(2)]
    urls = [image_server.url(f"/img/{n}x3.png") for n in range(1, 201)]
    job_id = submit(client, [visit("S1", *urls)]).json()["job_id"]

    assert wait_for_job(client, job_id, timeout=120) == {"status": "completed", "job_id": job_id}
    ran_on = {int(worker.split()[1]) for worker in Chunk.objects.filter(job_id=job_id).values_list("worker", flat=True)}
    for cluster in clusters:
        assert ran_on & set(cluster.worker_pids()), "a cluster processed none of the chunks"
    assert sorted(ImageResult.objects.filter(job_id=job_id).values_list("width", flat=True)) == list(range(1, 201))
    job = Job.objects.get(pk=job_id)
    assert (job.images_done, job.images_failed) == (200, 0)


def test_sigterm_to_the_cluster_loses_no_image(client, stores, image_server, start_cluster, settings):
    """A SIGTERM (deploys, scale-down) lets the chunks in hand finish; a new cluster does the rest."""
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 10}
    # One fetch at a time, so chunks still wait when the SIGTERM comes: a worker takes the next
    # chunk as soon as it has fetched one, its last images finishing their GPU stage meanwhile.
    first = start_cluster(RETAILPULSE_WORKERS="2", RETAILPULSE_GPU_DELAY="0.2-0.4", RETAILPULSE_HOST_CONNECTIONS="1")
    urls = [image_server.url(f"/img/{n}x2.png") for n in range(1, 401)]
    job_id = submit(client, [visit("S1", *urls)]).json()["job_id"]
    wait_for_first_image(job_id)

    first.stop()  # SIGTERM to the main process, waits for it to exit
    assert first.process.returncode == 0
    assert Job.objects.get(pk=job_id).status == "ongoing"
    start_cluster(RETAILPULSE_WORKERS="2")

    assert wait_for_job(client, job_id, timeout=60) == {"status": "completed", "job_id": job_id}
    assert sorted(ImageResult.objects.filter(job_id=job_id).values_list("width", flat=True)) == list(range(1, 401))
    assert max(Chunk.objects.filter(job_id=job_id).values_list("expired_leases", flat=True)) == 0  # none ran out


def test_the_tasks_load_no_api_code():
    """A qcluster process imports the tasks, not the API: DRF (and with it psycopg, even on SQLite)
    would cost each of its processes about 15 MiB."""
    script = (
        "import sys, django; django.setup(); import jobs.tasks;"
        "print([name for name in ('rest_framework.serializers', 'drf_spectacular.openapi', 'jobs.api.views')"
        " if name in sys.modules])"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "retailpulse.settings_test"}
    result = subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_a_worker_takes_the_next_chunk_while_the_last_images_finish_their_gpu_work(
    client, stores, image_server, in_process
):
    in_process["GPU_DELAY"] = (2.0, 2.0)
    first = submit(client, [visit("S1", image_server.url("/img/4x4.png"))]).json()["job_id"]
    second = submit(client, [visit("S2", image_server.url("/img/6x4.png"))]).json()["job_id"]

    started = time.monotonic()
    assert tasks.work_on_next_chunk() == f"job {first} chunk 0: {ClaimEnd.IN_BACKGROUND}"
    # Fetched, not yet through its GPU stage: still pending, and the chunk still held.
    assert ImageResult.objects.get(job_id=first).status == "pending"
    assert Chunk.objects.get(job_id=first).claim != ""
    assert tasks.work_on_next_chunk() == f"job {second} chunk 0: {ClaimEnd.IN_BACKGROUND}"
    assert time.monotonic() - started < 2.0  # the second fetched within the first one's GPU stage

    for job_id, size in ((first, (4, 4)), (second, (6, 4))):
        assert wait_for_job(client, job_id)["status"] == "completed"
        image = ImageResult.objects.get(job_id=job_id)
        assert (image.status, image.width, image.height) == ("done", *size)
        assert Chunk.objects.filter(job_id=job_id, state="done", claim="").count() == 1
