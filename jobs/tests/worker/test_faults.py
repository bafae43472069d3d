"""Fault injection with real processes: web and worker processes killed, frozen (SIGSTOP) and cut
from the database mid-job, a database error injected by a trigger; the job still ends with exactly
one right result per image, within the recovery times the leases promise."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
import requests
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import Task

from conftest import BASE_DIR
from jobs.models import Chunk, ImageResult, Job
from jobs.tests.helpers import visit, wait_until
from stores.models import Store

pytestmark = pytest.mark.django_db(transaction=True)

UNREACHABLE = (requests.RequestException,)  # a web server still starting

# Many small chunks (the web server cuts the job: the setting goes to it), short deadlines.
FAST = {
    "RETAILPULSE_CHUNK_SIZE": "20",
    "RETAILPULSE_CHUNK_DEADLINE": "3",
    "RETAILPULSE_FETCH_TIMEOUT": "5",
    "RETAILPULSE_GPU_DELAY": "0.1-0.3",
    "RETAILPULSE_MAX_IMAGE_BYTES": "1000000",
    "RETAILPULSE_WORKERS": "2",
}


def cut_database_connections() -> int:
    """Terminate every other session on the test database (PostgreSQL): a database restart as the
    service sees it. SQLite has no connections to cut."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_job_survives_killed_processes_and_cut_connections(image_server, start_web, start_cluster):
    Store.objects.create(store_id="S1", name="One", area_code="7")
    key = uuid.uuid4().hex
    expected = {}  # url -> (status, width or error prefix)
    for n in range(1, 121):
        expected[image_server.url(f"/img/{n}x4.png")] = ("done", n)
    for n in range(10):
        expected[image_server.url(f"/slow?seconds=1&n={n}")] = ("done", 64)
        expected[image_server.url(f"/flaky/{key}-{n}?fail=1")] = ("done", 64)
    for n in range(4):
        expected[image_server.url(f"/huge?n={n}")] = ("failed", "too large")
        expected[image_server.url(f"/notimage?n={n}")] = ("failed", "not an image")
        expected[image_server.url(f"/status/404?n={n}")] = ("failed", "HTTP 404")
        expected[image_server.url(f"/truncated?n={n}")] = ("failed", "truncated download")
    web, cluster = start_web(**FAST), start_cluster(**FAST)
    wait_until(lambda: requests.get(f"{web.url}/healthz", timeout=2).ok, 30, "the web server", ignore=UNREACHABLE)

    body = {"count": 1, "visits": [visit("S1", *expected)]}
    job_id = requests.post(f"{web.url}/api/submit/", json=body, timeout=30).json()["job_id"]
    wait_until(lambda: ImageResult.objects.filter(job_id=job_id, status="done").exists(), 30, "a first result")

    web.kill()
    cluster.kill()
    cut_database_connections()
    assert Job.objects.get(pk=job_id).status == "ongoing"
    web, _ = start_web(**FAST), start_cluster(**FAST)
    wait_until(
        lambda: requests.get(f"{web.url}/healthz", timeout=2).ok, 30, "the restarted web server", ignore=UNREACHABLE
    )
    time.sleep(2)
    cut_database_connections()  # again, while the new processes work

    def finished():
        answer = requests.get(f"{web.url}/api/status?jobid={job_id}", timeout=5).json()
        return answer if answer["status"] != "ongoing" else None

    answer = wait_until(finished, 120, "the job to end", ignore=UNREACHABLE)
    assert answer["status"] == "failed"
    assert answer["job_id"] == job_id
    results = list(ImageResult.objects.filter(job_id=job_id).values_list("url", "status", "width", "error"))
    assert len(results) == len(expected)  # exactly one result per image
    for url, status, width, error in results:
        want_status, want = expected[url]
        assert status == want_status, (url, status, error)
        assert (width == want) if status == "done" else error.startswith(want), (url, width, error)
    job = Job.objects.get(pk=job_id)
    assert (job.images_done, job.images_failed) == (140, 16)
    assert Chunk.objects.filter(job_id=job_id).count() == 8  # 156 images in chunks of at most 20


# --- Leases: workers that die, freeze, raise or keep dying --------------------------------------

# The lease settings are the defaults: these tests check the recovery times they give.
DELAY_ON = {"RETAILPULSE_GPU_DELAY": "0.1-0.4", "RETAILPULSE_WORKERS": "2", "RETAILPULSE_HOST_CONNECTIONS": "100"}


@pytest.fixture
def store(transactional_db):
    Store.objects.create(store_id="S1", name="One", area_code="7")


def submit_urls(client, urls: list[str]) -> int:
    visits = [visit("S1", *urls[start : start + 500]) for start in range(0, len(urls), 500)]
    body = {"count": len(visits), "visits": visits}
    return client.post("/api/submit/", body, content_type="application/json").json()["job_id"]


def submit_images(client, count: int, image_server) -> int:
    """A job of `count` images whose widths are 1 to `count`."""
    return submit_urls(client, [image_server.url(f"/img/{n}x7.png") for n in range(1, count + 1)])


def outcome_since(job_id: int, moment) -> bool:
    return ImageResult.objects.filter(job_id=job_id, processed_at__gt=moment).exists()


def assert_each_image_measured_once(job_id: int, count: int) -> None:
    failed = ImageResult.objects.filter(job_id=job_id).exclude(status="done")
    assert not failed.exists(), set(failed.values_list("status", "error")[:10])
    widths = sorted(ImageResult.objects.filter(job_id=job_id).values_list("width", flat=True))
    assert widths == list(range(1, count + 1))
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.images_done, job.images_failed) == ("completed", count, 0)


def holders(job_id: int, **chunk_filters) -> dict[int, int]:
    """chunk id -> the worker pid holding it now."""
    held = Chunk.objects.filter(job_id=job_id, state="pending", **chunk_filters).exclude(claim="")
    return {chunk_id: int(worker.split()[1]) for chunk_id, worker in held.values_list("id", "worker")}


def test_a_killed_cluster_restarted_at_once_makes_progress_within_10_s(client, store, image_server, start_cluster):
    cluster = start_cluster(**DELAY_ON)
    job_id = submit_images(client, 3000, image_server)
    wait_until(lambda: holders(job_id) and outcome_since(job_id, timezone.now() - timedelta(days=1)), 30, "work")
    held = set(holders(job_id))

    cluster.kill()
    start_cluster(**DELAY_ON)
    restarted, started = timezone.now(), time.monotonic()
    wait_until(lambda: outcome_since(job_id, restarted), 30, "progress after the restart")

    assert time.monotonic() - started <= 10.0  # the target: the lease runs out, an idle worker claims
    wait_until(lambda: Job.objects.get(pk=job_id).status != "ongoing", 120, "the job to end")
    assert_each_image_measured_once(job_id, 3000)
    lapsed = dict(Chunk.objects.filter(job_id=job_id, expired_leases__gt=0).values_list("id", "expired_leases"))
    assert lapsed == dict.fromkeys(held, 1)  # the chunks the dead workers held, each counted once


def freeze_outside_a_write(cluster) -> None:
    """SIGSTOP the cluster's process group. On SQLite, not while it holds the database's one write
    lock (a few milliseconds per write): frozen there, it would stop every writer until it woke,
    leases or not (docs/design.md). PostgreSQL ends such a session after 10 s."""
    while True:
        os.killpg(cluster.process.pid, signal.SIGSTOP)
        if connection.vendor != "sqlite" or sqlite_write_lock_free():
            return
        os.killpg(cluster.process.pid, signal.SIGCONT)
        time.sleep(0.05)


def sqlite_write_lock_free() -> bool:
    probe = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.5)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.rollback()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


def test_a_frozen_cluster_is_taken_over_and_wakes_to_find_its_lease_gone(client, store, image_server, start_cluster):
    """One of two clusters freezes (a hung VM, a GC pause, a partition): SIGSTOP of its process group."""
    clusters = [start_cluster(**DELAY_ON) for _ in range(2)]
    job_id = submit_images(client, 6000, image_server)
    frozen = wait_until(
        lambda: next((c for c in clusters if set(c.worker_pids()) & set(holders(job_id).values())), None),
        30,
        "a cluster holding a chunk",
    )
    frozen_pids = set(frozen.worker_pids())

    freeze_outside_a_write(frozen)
    frozen_at = time.monotonic()
    try:
        taken = {chunk for chunk, pid in holders(job_id).items() if pid in frozen_pids}
        assert taken, "the frozen cluster held no chunk"

        def taken_over():
            now_held = holders(job_id)
            return all(now_held.get(chunk) not in frozen_pids for chunk in taken)

        wait_until(taken_over, 30, "the frozen cluster's chunks to be taken over")
        assert time.monotonic() - frozen_at <= 15.0
        wait_until(lambda: Job.objects.get(pk=job_id).status != "ongoing", 60, "the job to end")
        assert time.monotonic() - frozen_at <= 30.0
    finally:
        os.killpg(frozen.process.pid, signal.SIGCONT)

    # Awake, the frozen workers find their claims gone at their next renewal and stop.
    def noticed():  # the task's result is pickled: read in Python
        return any("lost its lease" in str(result) for result in Task.objects.values_list("result", flat=True))

    wait_until(noticed, 30, "a woken worker to notice its lost lease")
    assert_each_image_measured_once(job_id, 6000)
    assert Chunk.objects.filter(job_id=job_id).exclude(state="done").count() == 0


# Run by `manage.py shell` in a process of its own: a write to the job's row, left uncommitted.
HOLD_THE_JOB_ROW = """
import time
from django.db import transaction
from jobs.models import Job
with transaction.atomic():
    Job.objects.filter(pk={job_id}).update(callback_error="written by the frozen process")
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no server to end a frozen writer")
def test_a_process_frozen_inside_a_transaction_holds_its_locks_for_a_lease_at_most(service_env):
    """A worker frozen (SIGSTOP) between two statements of a write holds its job's row: every other
    writer of the job waits. The server ends that transaction once it has waited a lease."""
    job = Job.objects.create(images_total=1)
    holder = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", HOLD_THE_JOB_ROW.format(job_id=job.pk)],
        cwd=BASE_DIR,
        env={**service_env, "RETAILPULSE_LEASE_SECONDS": "2"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        os.kill(holder.pid, signal.SIGSTOP)
        started = time.monotonic()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '10s'")  # a failure, not a hang, if the lock stays
            Job.objects.filter(pk=job.pk).update(images_done=1)  # waits for the frozen process's row lock
        waited = time.monotonic() - started
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.kill()
        holder.wait()
    assert 1.0 <= waited <= 5.0, f"the other writer waited {waited:.1f} s"
    job.refresh_from_db()
    assert (job.images_done, job.callback_error) == (1, "")  # the frozen process's write was rolled back


def test_an_idle_worker_killed_is_replaced_and_the_cluster_goes_on(client, store, image_server, start_cluster):
    cluster = start_cluster(RETAILPULSE_WORKERS="2", RETAILPULSE_GPU_DELAY="0")
    workers = wait_until(lambda: len(cluster.worker_pids()) == 2 and cluster.worker_pids(), 30, "two workers")

    os.kill(workers[0], signal.SIGKILL)  # an OOM kill of an idle worker
    wait_until(lambda: len(cluster.worker_pids()) == 2 and workers[0] not in cluster.worker_pids(), 30, "a new one")
    job_id = submit_images(client, 200, image_server)

    wait_until(lambda: Job.objects.get(pk=job_id).status != "ongoing", 60, "the job to end")
    assert_each_image_measured_once(job_id, 200)


def test_a_chunk_whose_workers_keep_dying_fails_with_a_true_message(client, store, image_server, start_cluster):
    limits = {"RETAILPULSE_MAX_DELIVERIES": "2", "RETAILPULSE_LEASE_SECONDS": "2", "RETAILPULSE_GPU_DELAY": "0"}
    cluster = start_cluster(RETAILPULSE_WORKERS="1", **limits)
    job_id = submit_urls(client, [image_server.url(f"/slow?seconds=60&n={n}") for n in range(3)])
    killed, deadline = [], time.monotonic() + 60
    while Job.objects.get(pk=job_id).status == "ongoing":
        assert time.monotonic() < deadline, f"still ongoing after killing {killed}"
        # A claim that finds more lapsed leases than the limit gives up at once: that one is let be.
        pid = next((pid for pid in holders(job_id, expired_leases__lte=2).values() if pid not in killed), None)
        if pid is None:
            time.sleep(0.05)
            continue
        os.kill(pid, signal.SIGKILL)  # the worker holding the chunk dies, as an OOM kill would
        killed.append(pid)

    assert len(killed) == 3  # claims 1-3 died; claim 4 saw 3 lapsed leases, over the limit of 2
    errors = set(ImageResult.objects.filter(job_id=job_id).values_list("status", "error"))
    assert errors == {("failed", "gave up: its worker died or froze 3 times measuring it")}
    assert cluster.process.poll() is None


@pytest.fixture
def database_error(transactional_db):
    """A trigger that makes recording a measured image whose URL has `dberror` fail in the database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION inject_error() RETURNS trigger AS $$ BEGIN"
                " RAISE EXCEPTION 'injected database error'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER inject_error BEFORE UPDATE ON jobs_imageresult FOR EACH ROW"
                " WHEN (NEW.status = 'done' AND NEW.url LIKE '%dberror%') EXECUTE FUNCTION inject_error()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER inject_error BEFORE UPDATE ON jobs_imageresult"
                " WHEN NEW.status = 'done' AND NEW.url LIKE '%dberror%'"
                " BEGIN SELECT RAISE(ABORT, 'injected database error'); END"
            )
    yield
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP TRIGGER IF EXISTS inject_error ON jobs_imageresult")
            cursor.execute("DROP FUNCTION IF EXISTS inject_error()")
        else:
            cursor.execute("DROP TRIGGER IF EXISTS inject_error")


def test_a_database_error_mid_chunk_backs_off_then_fails_the_images_with_its_text(
    client, store, image_server, start_cluster, database_error
):
    start_cluster(RETAILPULSE_WORKERS="1", RETAILPULSE_CHUNK_ATTEMPTS="2", RETAILPULSE_GPU_DELAY="0")
    urls = [image_server.url("/img/3x3.png?dberror"), image_server.url("/img/4x4.png")]
    job_id = submit_urls(client, urls)
    started = time.monotonic()

    wait_until(lambda: Job.objects.get(pk=job_id).status != "ongoing", 60, "the job to end")

    assert time.monotonic() - started >= 2.0  # the first attempt's backoff
    chunk = Chunk.objects.get(job_id=job_id)
    assert (chunk.errors, chunk.expired_leases) == (2, 0)
    assert "injected database error" in chunk.last_error
    errors = {url: error for url, error in ImageResult.objects.filter(job_id=job_id).values_list("url", "error")}
    for url in urls:  # both were in the batch whose write failed
        assert errors[url].startswith("gave up after 2 attempts: "), errors[url]
        assert "injected database error" in errors[url]


def test_readiness_fails_naming_why_when_every_worker_is_frozen(client, store, image_server, start_cluster, settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "READY_PROGRESS_AFTER": 2}
    cluster = start_cluster(RETAILPULSE_WORKERS="2", RETAILPULSE_GPU_DELAY="0.2-0.4", RETAILPULSE_HOST_CONNECTIONS="5")
    job_id = submit_images(client, 500, image_server)
    wait_until(lambda: outcome_since(job_id, timezone.now() - timedelta(days=1)), 30, "a first outcome")
    workers = cluster.worker_pids()

    for pid in workers:  # the workers freeze; the cluster's main process is left running
        os.kill(pid, signal.SIGSTOP)
    try:
        answer = wait_until(
            lambda: (
                (r := client.get("/readyz")).status_code == 503 and r.json()["checks"]["progress"] != "ok" and r.json()
            ),
            30,
            "readiness to fail for want of progress",
        )
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)

    # The cluster's heartbeat may go on or not (its guard can wait on a frozen worker's lock): progress says why.
    assert answer["checks"]["progress"].startswith("no image outcome for ")
    assert answer["checks"]["progress"].endswith("chunks wait (limit 2 s)")
    wait_until(lambda: client.get("/readyz").status_code == 200, 30, "readiness once the workers go on")
