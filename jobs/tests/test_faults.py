"""Fault injection: real web and worker processes are killed mid-job, and (on PostgreSQL) every
database connection of theirs is cut; the job still ends with exactly one right result per image."""

import time
import uuid

import pytest
import requests
from django.db import connection

from jobs.models import ImageResult, Job
from jobs.tests.helpers import visit
from stores.models import Store

pytestmark = pytest.mark.django_db(transaction=True)

# Short deadlines make the broker redeliver the killed cluster's tasks within seconds.
FAST = {
    "RETAILPULSE_CHUNK_DEADLINE": "3",
    "RETAILPULSE_FETCH_TIMEOUT": "5",
    "RETAILPULSE_GPU_DELAY": "0.1-0.3",
    "RETAILPULSE_MAX_IMAGE_BYTES": "1000000",
    "RETAILPULSE_WORKERS": "2",
}


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


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


def test_a_job_survives_killed_processes_and_cut_connections(image_server, start_web, start_cluster, settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 20}
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
    wait_until(lambda: requests.get(f"{web.url}/healthz", timeout=2).ok, 30, "the web server")

    body = {"count": 1, "visits": [visit("S1", *expected)]}
    job_id = requests.post(f"{web.url}/api/submit/", json=body, timeout=30).json()["job_id"]
    wait_until(lambda: ImageResult.objects.filter(job_id=job_id, status="done").exists(), 30, "a first result")

    web.kill()
    cluster.kill()
    cut_database_connections()
    assert Job.objects.get(pk=job_id).status == "ongoing"
    web, _ = start_web(**FAST), start_cluster(**FAST)
    wait_until(lambda: requests.get(f"{web.url}/healthz", timeout=2).ok, 30, "the restarted web server")
    time.sleep(2)
    cut_database_connections()  # again, while the new processes work

    def finished():
        answer = requests.get(f"{web.url}/api/status?jobid={job_id}", timeout=5).json()
        return answer if answer["status"] != "ongoing" else None

    answer = wait_until(finished, 120, "the job to end")
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
