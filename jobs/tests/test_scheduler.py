"""What django-q2's scheduler does, run by a real qcluster: the stall check, callback retries and
retention.

A qcluster runs its scheduler every 30 s, the first time 30 s after it starts; the clusters that
must run it here are started with TESTS_Q_GUARD_CYCLE=30 (retailpulse/settings_test.py), so it runs
right after they start and the tests take seconds.
"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Success

from jobs import services
from jobs.models import Chunk, ImageResult, Job, Visit
from jobs.tests.helpers import migration_schedule, submit, visit, wait_for_job, wait_until
from stores.models import Store

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stores(transactional_db):
    Store.objects.bulk_create([Store(store_id=f"S{n}", name=f"Store {n}", area_code="7000") for n in (1, 2)])


def test_the_scheduled_stall_check_gives_a_stalled_job_new_chunks(client, stores, image_server, start_cluster):
    urls = [image_server.url(f"/img/{n}x10.png") for n in range(10, 16)]
    job_id = submit(client, [visit("S1", *urls[:3]), visit("S2", *urls[3:])]).json()["job_id"]
    # Stalled: its chunks left done with their images pending (no worker will claim them, and
    # the watchdogs look for pending chunks only), no wake-up queued, no progress for an hour.
    assert Chunk.objects.filter(job_id=job_id).update(state=Chunk.State.DONE) > 0
    chunks_before = Chunk.objects.filter(job_id=job_id).count()
    OrmQ.objects.all().delete()
    Job.objects.filter(pk=job_id).update(progressed_at=timezone.now() - timedelta(hours=1))
    migration_schedule()

    start_cluster(TESTS_Q_GUARD_CYCLE="30")

    assert wait_for_job(client, job_id) == {"status": "completed", "job_id": job_id}
    perimeters = ImageResult.objects.filter(job_id=job_id).order_by("url").values_list("url", "perimeter")
    assert list(perimeters) == [(url, 2 * (n + 10)) for n, url in zip(range(10, 16), urls, strict=True)]
    assert Chunk.objects.filter(job_id=job_id).count() > chunks_before  # new chunks, not the old ones
    # The cluster's monitor process records a task's result after the task ends: waited for.
    runs = wait_until(lambda: list(Success.objects.filter(func="jobs.tasks.requeue_stalled_jobs")), what="its result")
    assert [run.result for run in runs] == [f"requeued jobs [{job_id}]"]


def test_a_failed_callback_is_retried_by_the_scheduler_of_another_cluster(
    client, stores, image_server, callback_receiver, start_cluster
):
    # Scaled out as docs/operations.md says: workers without the scheduler, the scheduler in one
    # cluster. The first attempt runs on a worker; its retry is due at once (no backoff).
    start_cluster(RETAILPULSE_SCHEDULER="0", RETAILPULSE_CALLBACK_BACKOFF="0")
    hook = callback_receiver.url("/hook/once?fail=1")  # 500 to the first POST, then 204
    payload = {"count": 1, "visits": [visit("S1", image_server.url("/img/3x4.png"))], "callback_url": hook}
    job_id = client.post("/api/submit/", payload, content_type="application/json").json()["job_id"]

    callback_receiver.wait_for("/hook/once", 1)
    wait_until(lambda: Schedule.objects.filter(name__startswith="callback-").exists(), what="the retry's schedule")
    job = Job.objects.get(pk=job_id)
    assert (job.callback_status, job.callback_attempts, job.callback_error) == ("pending", 1, "HTTP 500")

    start_cluster(TESTS_Q_GUARD_CYCLE="30")

    # Seconds here (the scheduler runs once the cluster is up); 60 s leaves a loaded machine time
    # to start a cluster.
    attempts = callback_receiver.wait_for("/hook/once", 2, timeout=60)
    wait_until(lambda: Job.objects.get(pk=job_id).callback_status == "delivered", what="the delivered status")
    assert [r["headers"]["X-RetailPulse-Attempt"] for r in attempts] == ["1", "2"]
    assert len({r["headers"]["X-RetailPulse-Delivery"] for r in attempts}) == 1
    assert [json.loads(r["body"]) for r in attempts] == [{"status": "completed", "job_id": job_id}] * 2
    assert Job.objects.get(pk=job_id).callback_attempts == 2
    assert not Schedule.objects.filter(name__startswith="callback-").exists()  # a one-off, gone once run


def test_the_scheduler_removes_jobs_older_than_the_retention(stores, start_cluster):
    # Jobs of a store not in the master: failed at submit, so the cluster has no image to fetch.
    def failed_job(finished_days_ago: float) -> int:
        urls = [f"https://img.example.com/{n}.jpg" for n in range(3)]
        job = services.create_job(visits=[services.VisitInput("NOPE", urls, timezone.now())])
        Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=finished_days_ago))
        return job.pk

    old, recent = failed_job(2.5), failed_job(1.5)
    migration_schedule("0013_retention")

    start_cluster(TESTS_Q_GUARD_CYCLE="30", RETAILPULSE_RETENTION_DAYS="2")

    runs = wait_until(lambda: list(Success.objects.filter(func="jobs.tasks.prune_expired_jobs")), what="its result")
    assert runs[0].result.startswith("removed 1 job, 3 images (longest slice ")
    assert list(Job.objects.values_list("pk", flat=True)) == [recent]
    assert not Visit.objects.filter(job_id=old).exists()
    assert ImageResult.objects.filter(job_id=recent).count() == 3
