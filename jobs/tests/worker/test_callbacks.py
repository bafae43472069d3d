"""Completion callbacks: queued once per end of a job, signed, retried with backoff, SSRF-guarded."""

import hashlib
import hmac
import json
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.scheduler import scheduler

from jobs import services, tasks
from jobs.models import ImageResult, Job
from jobs.services.outcomes import Outcome
from jobs.tests.helpers import submit, visit, wait_for_job, wait_until
from jobs.worker import callback_post
from stores.models import Store

URL = "https://images.example.com/1.jpg"
SECRET = "receiver-shared-secret"


@pytest.fixture
def stores(db):
    Store.objects.bulk_create([Store(store_id=f"S{n}", name=f"Store {n}", area_code="7000") for n in (1, 2)])


@pytest.fixture
def local_callbacks(settings):
    """Callbacks may reach the local receiver; a known key; quick settings."""
    settings.RETAILPULSE = {**settings.RETAILPULSE, "FETCH_ALLOW_PRIVATE": True}
    settings.RETAILPULSE_CALLBACK_SECRET = SECRET
    settings.RETAILPULSE_CALLBACKS = {"ATTEMPTS": 3, "TIMEOUT": 5.0, "BACKOFF": 30.0}
    return settings


def queued_callbacks() -> list[dict]:
    tasks_ = [row.task for row in OrmQ.objects.order_by("id")]
    return [t for t in tasks_ if t["func"] == "jobs.tasks.deliver_callback"]


def run_queued_callbacks() -> list[str]:
    """What a worker does with the queued callback tasks."""
    results = []
    for row in OrmQ.objects.order_by("id"):
        task = row.task
        if task["func"] == "jobs.tasks.deliver_callback":
            results.append(tasks.deliver_callback(*task["args"]))
            row.delete()
    return results


def finish(job_id: int, error: str = "") -> None:
    pending = ImageResult.objects.filter(job_id=job_id, status="pending").values_list("id", flat=True)
    services.record_outcomes(job_id=job_id, outcomes=[Outcome(i, 4, 3, error) for i in pending])


def expected_signature(body: bytes, key: str = SECRET) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def test_a_job_ending_at_submit_posts_its_status_once_signed(client, stores, callback_receiver, local_callbacks):
    hook = callback_receiver.url("/hook/a")
    job_id = client.post(
        "/api/submit/",
        {"count": 1, "visits": [visit("NOPE", URL)], "callback_url": hook, "extra": "ignored"},
        content_type="application/json",
    ).json()["job_id"]

    assert len(queued_callbacks()) == 1
    assert run_queued_callbacks() == ["delivered"]

    [request] = callback_receiver.requests_to("/hook/a")
    status = client.get(f"/api/status?jobid={job_id}")
    assert request["body"] == status.content  # byte for byte what GET /api/status answers
    assert json.loads(request["body"]) == {
        "status": "failed",
        "job_id": job_id,
        "error": [{"store_id": "NOPE", "error": "store not in store master"}],
    }
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-RetailPulse-Signature"] == expected_signature(request["body"])
    assert headers["X-RetailPulse-Signature"] != expected_signature(request["body"], "another key")
    assert headers["X-RetailPulse-Attempt"] == "1"
    assert len(headers["X-RetailPulse-Delivery"]) == 32
    job = Job.objects.get(pk=job_id)
    assert (job.callback_status, job.callback_attempts, job.callback_error) == ("delivered", 1, "")


def test_no_callback_url_queues_nothing(client, stores):
    job_id = submit(client, [visit("NOPE", URL)]).json()["job_id"]
    assert Job.objects.get(pk=job_id).status == "failed"
    assert queued_callbacks() == []
    assert Job.objects.get(pk=job_id).callback_status == ""


def test_the_callback_is_queued_when_the_last_image_is_recorded_and_only_once(stores, callback_receiver):
    job = services.create_job(
        visits=[services.VisitInput("S1", [URL, URL + "?2"], timezone.now())], callback_url=callback_receiver.url("/h")
    )
    first, second = ImageResult.objects.filter(job=job).order_by("id").values_list("id", flat=True)

    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(first, 1, 1)])
    assert queued_callbacks() == []
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(second, 1, 1)])
    services.record_outcomes(
        job_id=job.pk, outcomes=[Outcome(first, 1, 1), Outcome(second, 1, 1)]
    )  # a redelivered chunk

    [task] = queued_callbacks()
    assert task["args"][0] == job.pk
    assert task["args"][2] == {"status": "completed", "job_id": job.pk}


def test_cancelling_a_job_posts_its_failed_status(client, stores, callback_receiver, local_callbacks):
    job = services.create_job(
        visits=[services.VisitInput("S1", [URL], timezone.now())], callback_url=callback_receiver.url("/c")
    )

    services.cancel_job(job_id=job.pk)
    services.cancel_job(job_id=job.pk)  # a second click changes nothing

    assert run_queued_callbacks() == ["delivered"]
    [request] = callback_receiver.requests_to("/c")
    assert json.loads(request["body"]) == {
        "status": "failed",
        "job_id": job.pk,
        "error": [{"store_id": "S1", "error": f"{URL}: job cancelled by an operator"}],
    }


def test_a_retried_job_posts_again_when_it_ends_again_and_the_stale_delivery_is_dropped(
    client, stores, callback_receiver, local_callbacks
):
    job = services.create_job(
        visits=[services.VisitInput("S1", [URL], timezone.now())], callback_url=callback_receiver.url("/r")
    )
    finish(job.pk, error="HTTP 503")
    [stale] = queued_callbacks()
    assert stale["args"][2]["status"] == "failed"

    assert services.retry_failed_images(job_id=job.pk) == 1
    assert len(queued_callbacks()) == 1  # nothing more until it ends again
    finish(job.pk)

    assert [t["args"][2]["status"] for t in queued_callbacks()] == ["failed", "completed"]
    assert run_queued_callbacks() == ["superseded", "delivered"]
    [request] = callback_receiver.requests_to("/r")  # the stale body was not sent
    assert json.loads(request["body"]) == {"status": "completed", "job_id": job.pk}


def callback_schedules():
    """The retries' schedules (a migration also schedules the stall check)."""
    return Schedule.objects.filter(name__startswith="callback-")


@pytest.mark.django_db(transaction=True)  # django-q2's scheduler closes the connection: no test transaction
def test_a_failed_attempt_is_retried_later_with_backoff(client, stores, callback_receiver, local_callbacks):
    hook = callback_receiver.url("/hook/flaky?fail=2")
    job = services.create_job(visits=[services.VisitInput("NOPE", [URL], timezone.now())], callback_url=hook)

    def scheduled_between(attempt) -> tuple[datetime, datetime, datetime]:
        """Run one attempt: (before it, its retry's next_run, after it)."""
        before = timezone.now()
        assert attempt() == ["pending"]
        after = timezone.now()
        [retry] = callback_schedules()
        assert retry.func == "jobs.tasks.deliver_callback"
        return before, retry.next_run, after

    def run_due_schedule() -> list[str]:
        callback_schedules().update(next_run=timezone.now() - timedelta(seconds=1))
        scheduler()  # django-q2's own scheduler (qcluster runs it every 30 s) queues the task
        return run_queued_callbacks()

    # The retry is due BACKOFF seconds after the moment it is scheduled, some time during the attempt.
    before, next_run, after = scheduled_between(run_queued_callbacks)
    assert before + timedelta(seconds=30) <= next_run <= after + timedelta(seconds=30)
    job.refresh_from_db()
    assert (job.callback_status, job.callback_attempts, job.callback_error) == ("pending", 1, "HTTP 500")
    before, next_run, after = scheduled_between(run_due_schedule)
    assert before + timedelta(seconds=60) <= next_run <= after + timedelta(seconds=60)  # doubled
    assert run_due_schedule() == ["delivered"]

    attempts = callback_receiver.requests_to("/hook/flaky")
    assert [r["headers"]["X-RetailPulse-Attempt"] for r in attempts] == ["1", "2", "3"]
    assert len({r["headers"]["X-RetailPulse-Delivery"] for r in attempts}) == 1
    assert len({r["body"] for r in attempts}) == 1
    job.refresh_from_db()
    assert (job.callback_status, job.callback_attempts) == ("delivered", 3)
    assert not callback_schedules().exists()


def test_the_last_failed_attempt_gives_up(client, stores, callback_receiver, local_callbacks, caplog):
    local_callbacks.RETAILPULSE_CALLBACKS = {**local_callbacks.RETAILPULSE_CALLBACKS, "ATTEMPTS": 1}
    job = services.create_job(
        visits=[services.VisitInput("NOPE", [URL], timezone.now())], callback_url=callback_receiver.url("/down?fail=9")
    )

    assert run_queued_callbacks() == ["failed"]

    assert not callback_schedules().exists()
    job.refresh_from_db()
    assert (job.callback_status, job.callback_error) == ("failed", "HTTP 500")
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "callback.failed"]
    assert record.gave_up is True
    assert record.job_id == job.pk


def test_a_redelivered_attempt_schedules_its_retry_once(stores, callback_receiver, local_callbacks):
    job = services.create_job(
        visits=[services.VisitInput("NOPE", [URL], timezone.now())], callback_url=callback_receiver.url("/x?fail=9")
    )
    [task] = queued_callbacks()

    tasks.deliver_callback(*task["args"])
    tasks.deliver_callback(*task["args"])  # the broker delivered the task twice

    assert Schedule.objects.filter(name__startswith="callback-").count() == 1
    job.refresh_from_db()
    assert job.callback_attempts == 1


def test_callbacks_to_private_addresses_are_refused_unless_allowed(stores, callback_receiver, settings, loopback_name):
    port = callback_receiver.httpd.server_port
    hooks = {
        "literal": callback_receiver.url("/private"),
        "localhost": f"http://localhost:{port}/private",
        "name": f"http://{loopback_name}:{port}/private",  # only the resolver refuses this one
    }

    def deliver(hook: str) -> str:
        job = services.create_job(visits=[services.VisitInput("NOPE", [URL], timezone.now())], callback_url=hook)
        run_queued_callbacks()
        job.refresh_from_db()
        return job.callback_error

    settings.RETAILPULSE = {**settings.RETAILPULSE, "FETCH_ALLOW_PRIVATE": False}
    errors = {k: deliver(hook) for k, hook in hooks.items()}
    assert all(error.startswith("refused: ") for error in errors.values()), errors
    assert callback_receiver.received == []

    settings.RETAILPULSE = {**settings.RETAILPULSE, "FETCH_ALLOW_PRIVATE": True}
    assert {k: deliver(hook) for k, hook in hooks.items()} == dict.fromkeys(hooks, "")
    assert len(callback_receiver.requests_to("/private")) == 3


def test_redirects_are_not_followed(stores, callback_receiver, local_callbacks):
    job = services.create_job(
        visits=[services.VisitInput("NOPE", [URL], timezone.now())], callback_url=callback_receiver.url("/redirect")
    )
    run_queued_callbacks()
    job.refresh_from_db()
    assert job.callback_error == "HTTP 302"
    assert callback_receiver.requests_to("/hook/redirected") == []


def test_an_unreachable_receiver_is_a_failed_attempt(stores, local_callbacks):
    job = services.create_job(
        visits=[services.VisitInput("NOPE", [URL], timezone.now())], callback_url="http://127.0.0.1:9/"
    )
    run_queued_callbacks()
    job.refresh_from_db()
    assert job.callback_status == "pending"
    assert job.callback_error.startswith("cannot connect")


@pytest.mark.parametrize(
    ("callback_url", "message"),
    [
        ("ftp://client.example.com/done", "callback_url: expected an absolute http(s) URL"),
        ("/relative", "callback_url: expected an absolute http(s) URL"),
        (5, "callback_url: expected a string"),
        (None, "callback_url: must not be null"),
        ("https://x.example.com/" + "a" * 3000, "callback_url: URL longer than 2048 characters"),
    ],
)
def test_a_bad_callback_url_is_a_400(client, stores, callback_url, message):
    response = client.post(
        "/api/submit/",
        {"count": 1, "visits": [visit("S1", URL)], "callback_url": callback_url},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert not Job.objects.exists()


def test_the_default_key_is_derived_from_the_secret_key(settings):
    derived = hmac.new(settings.SECRET_KEY.encode(), b"retailpulse completion callbacks", hashlib.sha256).hexdigest()
    assert derived == settings.RETAILPULSE_CALLBACK_SECRET
    assert callback_post.signature(b"{}") == expected_signature(b"{}", derived)


@pytest.mark.django_db(transaction=True)
def test_a_processed_job_calls_back_once_through_the_workers(client, image_server, callback_receiver, start_cluster):
    Store.objects.create(store_id="S1", name="One", area_code="7000")
    start_cluster()
    hook = callback_receiver.url("/done")
    response = client.post(
        "/api/submit/",
        {"count": 1, "visits": [visit("S1", image_server.url("/img/8x6.png"))], "callback_url": hook},
        content_type="application/json",
    )
    job_id = response.json()["job_id"]

    assert wait_for_job(client, job_id) == {"status": "completed", "job_id": job_id}
    [request] = callback_receiver.wait_for("/done")
    assert request["body"] == client.get(f"/api/status?jobid={job_id}").content
    # The worker signs with the key the web process has: both derive it from the same secret key.
    assert request["headers"]["X-RetailPulse-Signature"] == callback_post.signature(request["body"])
    # Delivered, its task acknowledged and no retry scheduled: no other POST can come.
    wait_until(lambda: Job.objects.get(pk=job_id).callback_status == "delivered" and not queued_callbacks())
    assert not callback_schedules().exists()
    assert len(callback_receiver.requests_to("/done")) == 1
