"""Jobs belong to the API client that submitted them: every read scoped to the caller, idempotency
keys per client, the pending-images quota, create_client, the admin's view of clients."""

import threading
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs import services
from jobs.models import ClientKey, ImageResult, Job
from jobs.services.outcomes import Outcome
from jobs.tests.helpers import visit
from stores.models import Store

WHEN = datetime(2024, 1, 21, 16, 23, 40, tzinfo=UTC)
METHODS = ["get", "head", "options", "post", "put", "patch", "delete"]


@pytest.fixture
def tokens_on(settings):
    cache.clear()  # throttle counts
    settings.RETAILPULSE = {**settings.RETAILPULSE, "API_TOKENS": True, "THROTTLE_RATES": {}}
    yield settings.RETAILPULSE
    cache.clear()


def client_with_token(name: str) -> tuple[User, Client]:
    user, key = services.create_client(name=name)
    services.check_key(presented=key)  # its use noted now: the next minute's requests write nothing for it
    return user, Client(HTTP_AUTHORIZATION=f"Token {key}")


@pytest.fixture
def clients(db, tokens_on):
    """Clients A and B, each with its API client; A has a job with one measured image of store S1."""
    Store.objects.create(store_id="S1", name="One", area_code="700")
    a, api_a = client_with_token("chain-a")
    b, api_b = client_with_token("chain-b")
    job = services.create_job(visits=[services.VisitInput("S1", ["https://img.example.com/1.jpg"], WHEN)], client=a)
    image = ImageResult.objects.get(job=job)
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(image.pk, width=10, height=20)])
    return {"a": a, "b": b, "api_a": api_a, "api_b": api_b, "job": job}


def job_paths(job_id: int) -> list[str]:
    return [
        f"/api/status?jobid={job_id}",
        f"/api/jobs/{job_id}/",
        f"/api/jobs/{job_id}/images/",
        f"/api/jobs/{job_id}/images/?format=csv",
        f"/api/jobs/{job_id}/images/?store_id=S1&status=done",
    ]


def answer(api: Client, method: str, path: str) -> tuple[int, bytes, str | None, int]:
    """Status, body, content type and the number of queries of one call."""
    with CaptureQueriesContext(connection) as queries:
        response = getattr(api, method)(path)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body, response.get("Content-Type"), len(queries)


@pytest.mark.django_db
def test_the_owner_reads_its_job(clients):
    job_id = clients["job"].pk
    for path in job_paths(job_id):
        assert clients["api_a"].get(path).status_code == 200, path
    assert clients["api_a"].get(f"/api/status?jobid={job_id}").json() == {"status": "completed", "job_id": job_id}


@pytest.mark.django_db
@pytest.mark.parametrize("method", METHODS)
def test_another_clients_job_answers_exactly_as_a_missing_one(clients, method):
    """Every job endpoint and method, as B: the same status, body, content type and number of
    queries for A's job as once that job no longer exists."""
    job_id = clients["job"].pk
    as_b = {path: answer(clients["api_b"], method, path) for path in job_paths(job_id)}
    Job.objects.filter(pk=job_id).delete()
    missing = {path: answer(clients["api_b"], method, path) for path in job_paths(job_id)}

    assert as_b == missing
    if method == "get":
        assert {path: status for path, (status, *_rest) in as_b.items()} == {
            path: 400 if path.startswith("/api/status") else 404 for path in job_paths(job_id)
        }


@pytest.mark.django_db
@pytest.mark.parametrize("method", METHODS)
def test_without_a_token_every_endpoint_is_a_401(clients, method):
    paths = [*job_paths(clients["job"].pk), "/api/visits?storeid=S1", "/api/submit/"]
    for path in paths:
        response = getattr(Client(), method)(path)
        assert response.status_code == 401, (method, path)


@pytest.mark.django_db
def test_visits_show_the_callers_measurements_only(clients):
    path = "/api/visits?storeid=S1"
    assert clients["api_a"].get(path).json()["results"][0]["data"] == [
        {"date": "2024-01-21T16:23:40Z", "perimeter": 60}
    ]
    assert clients["api_b"].get(path).json() == {"results": [], "next": None}


def submit_as(api: Client, visits: list[dict], key: str | None = None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    body = {"count": len(visits), "visits": visits}
    return api.post("/api/submit/", body, content_type="application/json", **headers)


@pytest.mark.django_db
def test_idempotency_keys_are_per_client(clients):
    first = submit_as(clients["api_a"], [visit("S1", "https://img.example.com/2.jpg")], key="nightly")
    same_body = submit_as(clients["api_b"], [visit("S1", "https://img.example.com/2.jpg")], key="nightly")
    other_body = submit_as(clients["api_b"], [visit("S1", "https://img.example.com/3.jpg")], key="nightly-2")
    replay = submit_as(clients["api_a"], [visit("S1", "https://img.example.com/2.jpg")], key="nightly")
    b_reuses_a_key_with_another_body = submit_as(clients["api_b"], [visit("S1", "https://x.example/4.jpg")], "nightly")

    a_job, b_job = first.json()["job_id"], same_body.json()["job_id"]
    assert (same_body.status_code, "Idempotent-Replayed" in same_body) == (201, False)
    assert b_job != a_job
    assert Job.objects.get(pk=b_job).client == clients["b"]
    assert other_body.status_code == 201
    assert (replay.status_code, replay.json(), replay["Idempotent-Replayed"]) == (201, {"job_id": a_job}, "true")
    # B's own earlier job under that key, never A's
    assert b_reuses_a_key_with_another_body.json() == {
        "error": f"this Idempotency-Key was already used for a different body (job {b_job})"
    }


@pytest.mark.django_db
def test_the_anonymous_client_has_its_own_idempotency_keys(clients):
    anonymous = services.submit_job(
        visits=[services.VisitInput("S1", ["https://img.example.com/9.jpg"], WHEN)],
        idempotency_key="k",
        body="f",
    )
    again = services.submit_job(
        visits=[services.VisitInput("S1", ["https://img.example.com/9.jpg"], WHEN)],
        idempotency_key="k",
        body="f",
    )
    of_a = services.submit_job(
        visits=[services.VisitInput("S1", ["https://img.example.com/9.jpg"], WHEN)],
        client=clients["a"],
        idempotency_key="k",
        body="f",
    )

    assert (again.job.pk, again.replayed) == (anonymous.job.pk, True)
    assert (of_a.replayed, of_a.job.client) == (False, clients["a"])
    assert anonymous.job.client is None


@pytest.mark.django_db
def test_with_tokens_off_the_anonymous_client_reads_its_jobs_only(clients, settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "API_TOKENS": False}
    created = submit_as(Client(), [visit("S1", "https://img.example.com/5.jpg")])
    job_id = created.json()["job_id"]

    assert Job.objects.get(pk=job_id).client is None
    assert Client().get(f"/api/jobs/{job_id}/").status_code == 200
    assert Client().get(f"/api/jobs/{clients['job'].pk}/").status_code == 404  # made with a token


# --- The pending-images quota ------------------------------------------------------------------


@pytest.fixture
def quota(clients, settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "CLIENT_MAX_PENDING_IMAGES": 10}
    return clients


def images(count: int, tag: str = "") -> list[dict]:
    return [visit("S1", *[f"https://img.example.com/{tag}{n}.jpg" for n in range(count)])]


@pytest.mark.django_db
def test_a_submit_over_the_quota_is_a_429_naming_the_limit_and_the_pending_count(quota):
    assert submit_as(quota["api_a"], images(6)).status_code == 201
    over = submit_as(quota["api_a"], images(5))

    assert over.status_code == 429
    assert over.json() == {
        "error": "this client has 6 images pending, and 5 more would pass its limit of 10 pending images "
        "(RETAILPULSE_CLIENT_MAX_PENDING_IMAGES); retry once some have finished"
    }
    assert over["Retry-After"] == "30"
    assert Job.objects.filter(client=quota["a"]).count() == 2  # the fixture's job and the first submit
    assert submit_as(quota["api_b"], images(10)).status_code == 201  # another client's count is its own
    assert submit_as(quota["api_a"], images(4)).status_code == 201  # up to the limit exactly


@pytest.mark.django_db
def test_finished_images_free_the_quota(quota):
    job_id = submit_as(quota["api_a"], images(10)).json()["job_id"]
    assert submit_as(quota["api_a"], images(1)).status_code == 429
    services.cancel_job(job_id=job_id)

    assert submit_as(quota["api_a"], images(10)).status_code == 201


@pytest.mark.django_db
def test_a_job_larger_than_the_quota_is_a_400(quota):
    response = submit_as(quota["api_a"], images(11))

    assert response.status_code == 400
    assert response.json() == {
        "error": "visits: 11 images in the job, more than the limit of 10 (RETAILPULSE_CLIENT_MAX_PENDING_IMAGES)"
    }


@pytest.mark.django_db
def test_a_replayed_submit_is_not_counted_against_the_quota(quota):
    first = submit_as(quota["api_a"], images(8), key="retry-me")
    replay = submit_as(quota["api_a"], images(8), key="retry-me")

    assert (replay.status_code, replay.json()) == (201, first.json())


@pytest.mark.django_db(transaction=True)
def test_submits_racing_under_the_quota_never_pass_it(settings):
    """Eight submits of 3 images at once under a limit of 10: exactly three get in."""
    cache.clear()
    settings.RETAILPULSE = {
        **settings.RETAILPULSE,
        "API_TOKENS": True,
        "THROTTLE_RATES": {},
        "CLIENT_MAX_PENDING_IMAGES": 10,
    }
    Store.objects.create(store_id="S1", name="One", area_code="700")
    _user, api = client_with_token("racer")
    start, statuses = threading.Barrier(8), []

    def one(n: int) -> None:
        try:
            start.wait()
            statuses.append(submit_as(api, images(3, tag=f"{n}-")).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201] * 3 + [429] * 5
    assert Job.objects.filter(client__username="racer").count() == 3


# --- Command and admin ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_client_prints_a_key_that_gets_in(tokens_on, capsys):
    call_command("create_client", "chain-c")
    key = capsys.readouterr().out.strip()

    assert ClientKey.objects.get(prefix=key.partition(".")[0]).client.username == "chain-c"
    assert not User.objects.get(username="chain-c").has_usable_password()
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/status?jobid=1").status_code == 400
    with pytest.raises(CommandError, match="a user named 'chain-c' exists already"):
        call_command("create_client", "chain-c")


@pytest.mark.django_db
def test_the_admin_shows_and_filters_jobs_by_client(clients, admin_client):
    b_job = services.create_job(
        visits=[services.VisitInput("S1", ["https://img.example.com/7.jpg"], WHEN)], client=clients["b"]
    )
    jobs = reverse("admin:jobs_job_changelist")

    every = admin_client.get(jobs).content.decode()
    only_b = admin_client.get(f"{jobs}?client__id__exact={clients['b'].pk}").content.decode()

    shown = {job_id: f">{job_id}<" in every for job_id in (clients["job"].pk, b_job.pk)}
    assert shown == {clients["job"].pk: True, b_job.pk: True}  # staff see every client
    assert ("chain-a" in every, "chain-b" in every) == (True, True)
    assert (f">{b_job.pk}<" in only_b, f">{clients['job'].pk}<" in only_b) == (True, False)
