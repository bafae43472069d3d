"""Optional API tokens and per-client throttling (both off by default)."""

import pytest
from django.core.cache import cache

from jobs import services
from jobs.models import Job
from jobs.tests.helpers import submit, visit

pytestmark = pytest.mark.django_db
VISIT = visit("S1", "https://img.example.com/a.jpg")


@pytest.fixture
def retailpulse(settings):
    cache.clear()  # throttle counts
    settings.RETAILPULSE = {**settings.RETAILPULSE, "THROTTLE_RATES": {}}
    yield settings.RETAILPULSE
    cache.clear()


@pytest.fixture
def tokens_on(retailpulse):
    retailpulse["API_TOKENS"] = True
    _client, key = services.create_client(name="client-app")
    return key


def test_without_tokens_a_stray_authorization_header_is_ignored(client, retailpulse):
    response = client.post(
        "/api/submit/", {"count": 1, "visits": [VISIT]}, content_type="application/json", HTTP_AUTHORIZATION="Token x"
    )
    assert response.status_code == 201


@pytest.mark.parametrize("header", [None, "Token not-a-real-key", "Bearer abc"])
def test_with_tokens_on_a_call_without_a_valid_token_is_a_json_401(client, tokens_on, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/api/status?jobid=1", **extra)
    assert response.status_code == 401
    assert list(response.json()) == ["error"]
    assert response["WWW-Authenticate"] == "Token"


def test_with_tokens_on_a_valid_token_gets_in(client, tokens_on):
    auth = {"HTTP_AUTHORIZATION": f"Token {tokens_on}"}
    created = client.post("/api/submit/", {"count": 1, "visits": [VISIT]}, content_type="application/json", **auth)
    assert created.status_code == 201
    job_id = created.json()["job_id"]
    assert client.get(f"/api/status?jobid={job_id}", **auth).json()["job_id"] == job_id


@pytest.mark.parametrize("path", ["/healthz", "/api/schema/"])
def test_probes_and_docs_stay_open_with_tokens_on(client, tokens_on, path):
    assert client.get(path).status_code == 200


def read(client):
    return client.get("/api/status?jobid=1")


def submit_one(client):
    return submit(client, [VISIT])


@pytest.mark.parametrize(
    ("scope", "call", "answer", "other_scope_call"),
    [
        ("read", read, 400, submit_one),  # job 1 does not exist yet: 400 {}
        ("submit", submit_one, 201, read),
    ],
)
def test_calls_over_their_rate_get_a_json_429(client, retailpulse, scope, call, answer, other_scope_call):
    retailpulse["THROTTLE_RATES"] = {scope: "2/min"}
    answers = [call(client) for _ in range(3)]

    assert [a.status_code for a in answers] == [answer, answer, 429]
    assert answers[2].json()["error"].startswith("Request was throttled")
    assert int(answers[2]["Retry-After"]) > 0
    assert other_scope_call(client).status_code != 429  # each scope has its own rate (none here)
    assert Job.objects.count() == (2 if scope == "submit" else 1)  # the throttled submit created nothing
