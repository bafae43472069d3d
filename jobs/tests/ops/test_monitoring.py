"""/healthz, /readyz and /metrics: what load balancers, orchestrators and Prometheus read."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ
from prometheus_client.parser import text_string_to_metric_families

from conftest import BASE_DIR
from jobs import services, tasks
from jobs.models import Chunk, ImageResult, Job
from jobs.ops import dashboard, heartbeat, monitoring
from jobs.services.outcomes import Outcome
from jobs.tests.helpers import wait_until
from stores.models import Store

URL = "https://images.example.com/1.jpg"


def metrics(client) -> dict[tuple, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


@pytest.mark.django_db
def test_healthz_answers_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_readyz_names_the_missing_qcluster(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {
            "database": "ok",
            "queue": "ok",
            "cluster": "no qcluster heartbeat in the last 10 s",
            "progress": "ok",
        },
    }


@pytest.mark.django_db(transaction=True)
def test_readyz_and_metrics_see_a_running_qcluster_come_and_go(client, start_cluster, settings):
    cluster = start_cluster()

    ready = wait_until(lambda: (r := client.get("/readyz")).status_code == 200 and r)
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": "ok", "queue": "ok", "cluster": "ok", "progress": "ok"},
    }
    # The heartbeat may name its workers a moment after the cluster reports itself running.
    values = wait_until(
        lambda: (v := metrics(client))[("retailpulse_qcluster_workers", ())] == settings.Q_CLUSTER["workers"] and v
    )
    assert values[("retailpulse_qclusters", ())] == 1

    cluster.stop()
    assert wait_until(lambda: client.get("/readyz").status_code == 503)
    assert metrics(client)[("retailpulse_qclusters", ())] == 0


@pytest.mark.django_db(transaction=True)
def test_a_cluster_has_one_name_in_its_log_the_dashboard_and_metrics(admin_client, service_env, tmp_path):
    from django.core.cache import caches

    log = tmp_path / "qcluster.log"
    with log.open("w") as log_file:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster", "--skip-checks"],
            cwd=BASE_DIR,
            env={**service_env, "RETAILPULSE_WORKERS": "1"},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        started = wait_until(lambda: re.search(r"Q Cluster (\S+) starting", log.read_text()), what="the log line")
        name = started.group(1)
        clusters = wait_until(lambda: dashboard.snapshot()["clusters"], what="the heartbeat")

        assert [cluster["name"] for cluster in clusters] == [name]
        assert f"<td>{name} on {clusters[0]['host']}</td>" in admin_client.get("/admin/dashboard/").content.decode()
        assert (
            metrics(admin_client)[("retailpulse_qcluster_info", (("cluster", name), ("host", clusters[0]["host"])))]
            == 1
        )
    finally:
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=30)
        caches["cluster"].clear()


def test_readyz_names_an_unreachable_database(tmp_path):
    """A real process whose database cannot be opened (production settings, plain HTTP probe)."""
    script = (
        "from django.test import Client; r = Client().get('/readyz', SERVER_NAME='localhost');"
        "print(r.status_code); print(r.content.decode())"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "DJANGO_SETTINGS_MODULE": "retailpulse.settings",
        "DJANGO_SECRET_KEY": "a-long-random-production-key-" + "x7Q" * 20,
        "DATABASE_URL": f"sqlite:///{tmp_path}/missing-dir/db.sqlite3",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", script],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    status, body = result.stdout.split("\n", 1)
    assert status == "503", result.stdout + result.stderr  # not a 301 to HTTPS: probes are exempt
    checks = json.loads(body)["checks"]
    assert checks["database"] == "unreachable: unable to open database file"
    assert checks["queue"] == "unreachable: unable to open database file"
    assert checks["cluster"].startswith("cannot read the heartbeat: ")


@pytest.mark.django_db
def test_metrics_count_jobs_images_queue_chunks_and_callbacks(client, settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CHUNK_SIZE": 2}
    Store.objects.create(store_id="S1", name="One", area_code="1")
    when = timezone.now()
    ongoing = services.create_job(visits=[services.VisitInput("S1", [URL + f"?{n}" for n in range(5)], when)])
    services.create_job(visits=[services.VisitInput("NOPE", [URL, URL], when)], callback_url="https://c.example.com/")
    done = services.create_job(visits=[services.VisitInput("S1", [URL], when)])
    services.record_outcomes(job_id=done.pk, outcomes=[Outcome(ImageResult.objects.get(job=done).pk, 3, 4)])
    first = ImageResult.objects.filter(job=ongoing).order_by("id").first()
    services.record_outcomes(job_id=ongoing.pk, outcomes=[Outcome(first.pk, error="HTTP 404")])
    OrmQ.objects.filter(pk=OrmQ.objects.order_by("id").first().pk).update(lock=timezone.now() + timedelta(minutes=1))
    times = [0.3, 0.7, 4.0]
    for chunk, seconds in zip(Chunk.objects.order_by("id"), times, strict=False):
        Chunk.objects.filter(pk=chunk.pk).update(fetch_seconds=seconds)
    services.claim_chunk()  # a worker holds the ongoing job's first chunk

    values = metrics(client)

    assert {status: values[("retailpulse_jobs", (("status", status),))] for status in Job.Status.values} == {
        "ongoing": 1,
        "completed": 1,
        "failed": 1,
    }
    assert {s: values[("retailpulse_images", (("status", s),))] for s in ("done", "failed", "pending")} == {
        "done": 1,
        "failed": 3,
        "pending": 4,
    }
    queued = OrmQ.objects.count()  # wake-ups for the two jobs with chunks, and the callback
    assert values[("retailpulse_queue_tasks", (("state", "ready"),))] == queued - 1
    assert values[("retailpulse_queue_tasks", (("state", "taken"),))] == 1
    # The ongoing job's three chunks, one held; the completed job's chunk is still pending (its
    # outcome came from this test, not from a worker).
    assert values[("retailpulse_chunks_unfinished", (("state", "held"),))] == 1
    assert values[("retailpulse_chunks_unfinished", (("state", "free"),))] == 3
    assert values[("retailpulse_callbacks", (("status", "pending"),))] == 1
    histogram = {
        dict(labels)["le"]: value for (name, labels), value in values.items() if name.endswith("_seconds_bucket")
    }
    assert histogram == {
        "0.25": 0,
        "0.5": 1,
        "1": 2,
        "2.5": 2,
        "5": 3,
        "10": 3,
        "30": 3,
        "60": 3,
        "120": 3,
        "300": 3,
        "+Inf": 3,
    }
    assert values[("retailpulse_chunk_fetch_seconds_count", ())] == 3
    assert values[("retailpulse_chunk_fetch_seconds_sum", ())] == pytest.approx(5.0)


@pytest.mark.django_db(transaction=True)  # the chunk is ended by the task's GPU-stage thread
def test_a_chunk_records_the_time_it_took_to_fetch(client, settings, image_server):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "FETCH_ALLOW_PRIVATE": True, "GPU_DELAY": (0.2, 0.2)}
    Store.objects.create(store_id="S1", name="One", area_code="1")
    job = services.create_job(visits=[services.VisitInput("S1", [image_server.url("/img/4x4.png")], timezone.now())])

    tasks.work_on_next_chunk()

    chunk = wait_until(lambda: Chunk.objects.filter(job=job, state=Chunk.State.DONE).first(), what="the chunk's end")
    assert 0.2 <= chunk.fetch_seconds < 5
    values = metrics(client)
    assert values[("retailpulse_chunk_fetch_seconds_count", ())] == 1
    assert values[("retailpulse_chunk_fetch_seconds_bucket", (("le", "0.25"),))] == (chunk.fetch_seconds <= 0.25)


@pytest.mark.django_db(transaction=True)
def test_readyz_holds_through_a_late_heartbeat_and_fails_after_ten_seconds_without_one(start_cluster):
    """The heartbeat's writer (django-q2's sentinel) frozen: a write held up by a busy database or
    CPU must not make a live cluster look gone, and a cluster silent for longer than the documented
    10 s must."""
    cluster = start_cluster()

    def ours():
        return [stat for stat in heartbeat.live_clusters() if stat.pid == cluster.process.pid]

    sentinel = wait_until(ours)[0].sentinel
    os.kill(sentinel, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        (last,) = ours()  # the last heartbeat written before the freeze
        while time.monotonic() - frozen_at < 5:
            assert monitoring.readiness()["cluster"].ok
            time.sleep(0.25)
        gone = wait_until(lambda: (check := monitoring.readiness()["cluster"]).ok is False and check.detail, timeout=30)
        assert (timezone.now() - last.timestamp).total_seconds() >= heartbeat.HEARTBEAT_MAX_AGE, gone
    finally:
        os.kill(sentinel, signal.SIGCONT)
    wait_until(lambda: monitoring.readiness()["cluster"].ok)


def test_the_front_page_links_the_api_docs_the_admin_and_the_probes(client):
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    for url in ("/api/docs/", "/api/schema/", "/admin/", "/admin/dashboard/", "/healthz", "/readyz", "/metrics"):
        assert f'href="{url}"' in html


def test_the_admins_view_site_link_leads_to_the_front_page(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert '<a href="/">View site</a>' in html
    assert admin_client.get("/").status_code == 200


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert response.content.startswith(b"\0\0\1\0")  # an ICO file's header
