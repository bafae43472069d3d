"""POST /api/submit: what it takes, what it refuses and how it says so. Idempotency keys are in
test_api_idempotency.py; processing is in test_tasks.py."""

import json
from datetime import UTC

import pytest

from jobs.models import ImageResult, Job, Visit
from jobs.tests.helpers import IMAGE_URL as URL
from jobs.tests.helpers import submit, visit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("two_stores")]


def post_raw(client, body: str, path: str = "/api/submit/", content_type: str = "application/json"):
    return client.generic("POST", path, body, content_type=content_type)


@pytest.mark.parametrize("path", ["/api/submit/", "/api/submit"])
def test_submit_creates_a_job(client, path):
    payload = {"count": 2, "visits": [visit("SAMPLE-00001", URL, URL), visit("SAMPLE-00002", URL)]}
    response = client.post(path, payload, content_type="application/json")

    assert response.status_code == 201
    body = response.json()
    assert list(body) == ["job_id"]
    assert isinstance(body["job_id"], int)
    job = Job.objects.get(pk=body["job_id"])
    assert job.status == "ongoing"
    assert job.images_total == 3
    assert list(Visit.objects.filter(job=job).values_list("store_code", flat=True)) == ["SAMPLE-00001", "SAMPLE-00002"]
    assert ImageResult.objects.filter(job=job, status="pending").count() == 3


def test_submit_accepts_a_body_sent_as_a_form_type(client):
    """curl -d sends application/x-www-form-urlencoded; the body is still JSON."""
    body = json.dumps({"count": 1, "visits": [visit("SAMPLE-00001", URL)]})
    response = post_raw(client, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 201


def test_submit_ignores_unknown_fields(client):
    response = client.post(
        "/api/submit/",
        {"count": 1, "visits": [{**visit("SAMPLE-00001", URL), "note": "x"}], "client": "app"},
        content_type="application/json",
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "visit_time",
    [
        "2024-01-21T16:23:40Z",
        "2024-01-21T16:23:40+05:30",
        "2024-01-21T16:23:40.123Z",
        "2024-01-21T16:23:40",
        "2024-01-21 16:23:40",
    ],
)
def test_submit_accepts_documented_time_formats(client, visit_time):
    response = submit(client, [visit("SAMPLE-00001", URL, visit_time=visit_time)])
    assert response.status_code == 201
    stored = Visit.objects.get(job_id=response.json()["job_id"]).visit_time
    assert stored.tzinfo is not None
    assert stored.replace(microsecond=0).isoformat().startswith("2024-01-21T")


def test_naive_visit_time_is_utc(client):
    response = submit(client, [visit("SAMPLE-00001", URL, visit_time="2024-01-21 16:23:40")])
    stored = Visit.objects.get(job_id=response.json()["job_id"]).visit_time
    assert stored.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") == "2024-01-21 16:23:40"


def test_offset_visit_time_keeps_its_instant(client):
    response = submit(client, [visit("SAMPLE-00001", URL, visit_time="2024-01-21T16:23:40+05:30")])
    stored = Visit.objects.get(job_id=response.json()["job_id"]).visit_time
    assert stored.astimezone(UTC).strftime("%H:%M") == "10:53"


def valid_visit(**changes) -> dict:
    return {**visit("SAMPLE-00001", URL), **changes}


def without(key: str) -> dict:
    v = valid_visit()
    del v[key]
    return v


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"visits": [valid_visit()]}, "count: missing"),
        ({"count": 1}, "visits: missing"),
        ({"count": 2, "visits": [valid_visit()]}, "count: is 2 but there are 1 visits"),
        ({"count": 0, "visits": []}, "count: must be at least 1"),
        ({"count": 1, "visits": []}, "visits: expected a non-empty list of visits"),
        ({"count": "1", "visits": [valid_visit()]}, "count: expected an integer"),
        ({"count": True, "visits": [valid_visit()]}, "count: expected an integer"),
        ({"count": 1.5, "visits": [valid_visit()]}, "count: expected an integer"),
        ({"count": 1, "visits": {"a": 1}}, "visits: expected a non-empty list of visits"),
        ({"count": 1, "visits": ["S1"]}, "visits[0]: expected an object with store_id, image_url and visit_time"),
        ({"count": 1, "visits": [without("store_id")]}, "visits[0].store_id: missing"),
        ({"count": 1, "visits": [without("image_url")]}, "visits[0].image_url: missing"),
        ({"count": 1, "visits": [without("visit_time")]}, "visits[0].visit_time: missing"),
        ({"count": 1, "visits": [valid_visit(store_id=339218)]}, "visits[0].store_id: expected a string"),
        ({"count": 1, "visits": [valid_visit(store_id="")]}, "visits[0].store_id: must not be empty"),
        ({"count": 1, "visits": [valid_visit(store_id=None)]}, "visits[0].store_id: must not be null"),
        ({"count": 1, "visits": [valid_visit(image_url=[])]}, "visits[0].image_url: expected a non-empty list of URLs"),
        (
            {"count": 1, "visits": [valid_visit(image_url=URL)]},
            "visits[0].image_url: expected a non-empty list of URLs",
        ),
        ({"count": 1, "visits": [valid_visit(image_url=[5])]}, "visits[0].image_url[0]: expected a string"),
        (
            {"count": 1, "visits": [valid_visit(image_url=[URL, "ftp://x/y.jpg"])]},
            "visits[0].image_url[1]: expected an absolute http(s) URL, got 'ftp://x/y.jpg'",
        ),
        (
            {"count": 1, "visits": [valid_visit(image_url=["/relative.jpg"])]},
            "visits[0].image_url[0]: expected an absolute http(s) URL",
        ),
        (
            {"count": 1, "visits": [valid_visit(image_url=["http://"])]},
            "visits[0].image_url[0]: expected an absolute http(s) URL",
        ),
        (
            {"count": 1, "visits": [valid_visit(image_url=["http://a b.com/x.jpg"])]},
            "visits[0].image_url[0]: expected an absolute http(s) URL",
        ),
        (
            {"count": 1, "visits": [valid_visit(image_url=["http://[::1/x.jpg"])]},
            "visits[0].image_url[0]: expected an absolute http(s) URL",
        ),
        (
            {"count": 1, "visits": [valid_visit(image_url=["http://h.com:99999/x.jpg"])]},
            "visits[0].image_url[0]: expected an absolute http(s) URL",
        ),
        (
            {"count": 1, "visits": [valid_visit(image_url=["http://h.com/" + "a" * 3000])]},
            "visits[0].image_url[0]: URL longer than 2048 characters",
        ),
        ({"count": 1, "visits": [valid_visit(visit_time="yesterday")]}, "visits[0].visit_time: expected a date-time"),
        ({"count": 1, "visits": [valid_visit(visit_time="2024-13-45T00:00:00Z")]}, "visits[0].visit_time: expected"),
        ({"count": 1, "visits": [valid_visit(visit_time=1705854220)]}, "visits[0].visit_time: expected a date-time"),
    ],
)
def test_submit_rejects_bad_input_naming_the_problem(client, payload, message):
    response = client.post("/api/submit/", payload, content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert list(response.json()) == ["error"]
    assert response.json()["error"].startswith(message), response.json()
    assert Job.objects.count() == 0


def test_submit_names_the_visit_that_is_wrong(client):
    visits = [valid_visit(), valid_visit(), valid_visit(), valid_visit(image_url=[])]
    response = submit(client, visits)
    assert response.json() == {"error": "visits[3].image_url: expected a non-empty list of URLs"}


def test_submit_lists_a_few_problems_and_counts_the_rest(client):
    response = submit(client, [valid_visit(image_url=["x"] * 8)])
    error = response.json()["error"]
    assert error.count("expected an absolute http(s) URL") == 5
    assert error.endswith("; and 3 more problems")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "JSON parse error"),
        ("", "count: missing"),
        ("[1, 2]", "the body must be a JSON object, got list"),
        ('"text"', "the body must be a JSON object, got str"),
        ("null", "the body must be a JSON object, got null"),
        ('{"count": NaN, "visits": []}', "JSON parse error"),
    ],
)
def test_submit_rejects_a_body_that_is_not_a_json_object(client, body, message):
    response = post_raw(client, body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_unknown_store_does_not_fail_the_submit(client):
    response = submit(client, [visit("SAMPLE-00001", URL), visit("NOT-A-STORE", URL, URL)])

    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["job_id"])
    assert (job.status, job.images_total, job.images_failed) == ("ongoing", 3, 2)
    assert ImageResult.objects.filter(job=job, status="pending").count() == 1


def test_job_with_only_unknown_stores_fails_at_once(client):
    job_id = submit(client, [visit("NOPE", URL), visit("NADA", URL)]).json()["job_id"]

    assert client.get(f"/api/status?jobid={job_id}").json() == {
        "status": "failed",
        "job_id": job_id,
        "error": [
            {"store_id": "NOPE", "error": "store not in store master"},
            {"store_id": "NADA", "error": "store not in store master"},
        ],
    }


def test_submit_body_over_the_limit_is_a_json_413(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = submit(client, [visit("SAMPLE-00001", *[f"{URL}?{i}" for i in range(50)])])
    assert response.status_code == 413
    assert response.json() == {"error": "the body is larger than 1,000 bytes"}
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("limit", "visits", "message"),
    [
        ("MAX_VISITS", [valid_visit()] * 3, "visits: 3 visits, more than the limit of 2 (RETAILPULSE_MAX_VISITS)"),
        (
            "MAX_IMAGES_PER_VISIT",
            [valid_visit(image_url=[URL] * 3)],
            "visits[0].image_url: 3 images in one visit, more than the limit of 2 (RETAILPULSE_MAX_IMAGES_PER_VISIT)",
        ),
        (
            "MAX_IMAGES_PER_JOB",
            [valid_visit(image_url=[URL] * 2), valid_visit()],
            "visits: 3 images in the job, more than the limit of 2 (RETAILPULSE_MAX_IMAGES_PER_JOB)",
        ),
    ],
)
def test_submit_over_a_size_limit_is_a_400_naming_it(client, settings, limit, visits, message):
    settings.RETAILPULSE = {**settings.RETAILPULSE, limit: 2}
    response = submit(client, visits)
    assert (response.status_code, response.json()) == (400, {"error": message})
