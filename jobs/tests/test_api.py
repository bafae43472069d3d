"""The API contract, case by case. Processing itself is in test_tasks.py."""

import json
from datetime import UTC

import pytest

from jobs import services
from jobs.models import ImageResult, Job, Visit
from jobs.processing import Outcome
from jobs.tests.helpers import submit, visit
from stores.models import Store

pytestmark = pytest.mark.django_db

URL = "https://images.example.com/2.jpg"


@pytest.fixture(autouse=True)
def stores(db):
    Store.objects.bulk_create(
        [
            Store(store_id="S00339218", name="BHARAT STORE", area_code="710006"),
            Store(store_id="S01408764", name="Asha Communication", area_code="710006"),
        ]
    )


def post_raw(client, body: str, path: str = "/api/submit/", content_type: str = "application/json"):
    return client.generic("POST", path, body, content_type=content_type)


# --- POST /api/submit -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/submit/", "/api/submit"])
def test_submit_creates_a_job(client, path):
    payload = {"count": 2, "visits": [visit("S00339218", URL, URL), visit("S01408764", URL)]}
    response = client.post(path, payload, content_type="application/json")

    assert response.status_code == 201
    body = response.json()
    assert list(body) == ["job_id"]
    assert isinstance(body["job_id"], int)
    job = Job.objects.get(pk=body["job_id"])
    assert job.status == "ongoing"
    assert job.images_total == 3
    assert list(Visit.objects.filter(job=job).values_list("store_code", flat=True)) == ["S00339218", "S01408764"]
    assert ImageResult.objects.filter(job=job, status="pending").count() == 3


def test_submit_accepts_a_body_sent_as_a_form_type(client):
    """curl -d sends application/x-www-form-urlencoded; the body is still JSON."""
    body = json.dumps({"count": 1, "visits": [visit("S00339218", URL)]})
    response = post_raw(client, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 201


def test_submit_ignores_unknown_fields(client):
    response = client.post(
        "/api/submit/",
        {"count": 1, "visits": [{**visit("S00339218", URL), "note": "x"}], "client": "app"},
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
    response = submit(client, [visit("S00339218", URL, visit_time=visit_time)])
    assert response.status_code == 201
    stored = Visit.objects.get(job_id=response.json()["job_id"]).visit_time
    assert stored.tzinfo is not None
    assert stored.replace(microsecond=0).isoformat().startswith("2024-01-21T")


def test_naive_visit_time_is_utc(client):
    response = submit(client, [visit("S00339218", URL, visit_time="2024-01-21 16:23:40")])
    stored = Visit.objects.get(job_id=response.json()["job_id"]).visit_time
    assert stored.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") == "2024-01-21 16:23:40"


def test_offset_visit_time_keeps_its_instant(client):
    response = submit(client, [visit("S00339218", URL, visit_time="2024-01-21T16:23:40+05:30")])
    stored = Visit.objects.get(job_id=response.json()["job_id"]).visit_time
    assert stored.astimezone(UTC).strftime("%H:%M") == "10:53"


def valid_visit(**changes) -> dict:
    return {**visit("S00339218", URL), **changes}


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
    response = submit(client, [visit("S00339218", URL), visit("NOT-A-STORE", URL, URL)])

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


def test_other_methods_get_a_json_405(client):
    response = client.get("/api/submit/")
    assert response.status_code == 405
    assert "GET" in response.json()["error"]


def test_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"error": "no such endpoint: GET /api/nothing-here"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/1/images/?format=AAA",
        "/api/status?jobid=1&format=xml",
        "/api/schema/?format=x",
        "/api/docs/?format=x",
    ],
)
def test_an_unknown_format_is_a_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "Not found."}


def test_the_schema_and_docs_answer_errors_in_json(client):
    response = client.post("/api/schema/")
    assert (response.status_code, response.json()) == (405, {"error": 'Method "POST" not allowed.'})
    refused = client.get("/api/schema/", HTTP_ACCEPT="image/png")
    assert refused.status_code == 406
    assert list(refused.json()) == ["error"]
    assert client.get("/api/schema/").content.startswith(b"openapi: 3.0.3")  # the schema itself is still YAML


def test_what_django_refuses_before_a_view_is_a_json_400_under_api(client):
    response = client.get("/api/status?jobid=1", HTTP_HOST="evil.example")
    assert (response.status_code, response.json()) == (400, {"error": "bad request (DisallowedHost)"})
    too_many = client.get("/api/visits?" + "&".join(f"p{n}=1" for n in range(1001)))
    assert (too_many.status_code, too_many.json()) == (400, {"error": "bad request (TooManyFieldsSent)"})
    assert client.get("/admin/", HTTP_HOST="evil.example")["Content-Type"].startswith("text/html")


# --- GET /api/status ---------------------------------------------------------------------------


def make_job(client, *visits) -> int:
    return submit(client, list(visits)).json()["job_id"]


def finish_all(job_id: int, error: str = "") -> None:
    images = ImageResult.objects.filter(job_id=job_id, status="pending").values_list("id", flat=True)
    services.record_outcomes(job_id, [Outcome(i, 10, 20, error) for i in images])


@pytest.mark.parametrize("path", ["/api/status", "/api/status/"])
def test_status_ongoing_then_completed(client, path):
    job_id = make_job(client, visit("S00339218", URL))

    assert client.get(f"{path}?jobid={job_id}").json() == {"status": "ongoing", "job_id": job_id}
    finish_all(job_id)
    response = client.get(f"{path}?jobid={job_id}")
    assert response.status_code == 200
    assert response.json() == {"status": "completed", "job_id": job_id}


def test_status_failed_lists_each_failed_store_once(client):
    job_id = make_job(client, visit("S00339218", URL, URL + "?b"), visit("S01408764", URL), visit("S00339218", URL))
    finish_all(job_id, error="HTTP 404")

    body = client.get(f"/api/status?jobid={job_id}").json()
    assert body == {
        "status": "failed",
        "job_id": job_id,
        "error": [
            {"store_id": "S00339218", "error": f"{URL}: HTTP 404; {URL}?b: HTTP 404"},
            {"store_id": "S01408764", "error": f"{URL}: HTTP 404"},
        ],
    }


def test_status_unknown_job_is_400_with_an_empty_body(client):
    response = client.get("/api/status?jobid=999999")
    assert response.status_code == 400
    assert response.content == b"{}"


@pytest.mark.parametrize("jobid", ["0", "-1", "99999999999999999999999"])
def test_status_impossible_job_ids_are_unknown_jobs(client, jobid):
    response = client.get(f"/api/status?jobid={jobid}")
    assert (response.status_code, response.json()) == (400, {})


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "jobid: missing"),
        ("?jobid=", "jobid: missing"),
        ("?jobid=abc", "jobid: expected an integer, got 'abc'"),
        ("?jobid=1.5", "jobid: expected an integer"),
        ("?job_id=1", "jobid: missing"),
    ],
)
def test_status_without_an_integer_jobid_is_400(client, query, message):
    response = client.get(f"/api/status{query}")
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def test_status_is_one_query_whatever_the_job_size(client, django_assert_num_queries):
    job_id = make_job(client, *[visit("S00339218", *[f"{URL}?{i}-{j}" for j in range(50)]) for i in range(40)])
    finish_all(job_id, error="HTTP 500")

    with django_assert_num_queries(1):
        body = client.get(f"/api/status?jobid={job_id}").json()
    assert body["status"] == "failed"
    assert body["error"][0]["error"].endswith("; and 1995 more failed images")


# --- GET /api/jobs/<id>/ and /images/ ----------------------------------------------------------


def test_job_detail_reports_counts_progress_and_times(client):
    job_id = make_job(client, visit("S00339218", URL, URL), visit("NOPE", URL))
    first = ImageResult.objects.filter(job_id=job_id, status="pending").first()
    services.record_outcomes(job_id, [Outcome(first.pk, 3, 4)])

    body = client.get(f"/api/jobs/{job_id}/").json()
    assert body["job_id"] == job_id
    assert body["status"] == "ongoing"
    assert body["images"] == {"total": 3, "done": 1, "failed": 1, "pending": 1}
    assert body["progress"] == pytest.approx(2 / 3, abs=1e-4)
    assert body["created_at"]
    assert body["finished_at"] is None
    assert body["error"] == []


def test_job_detail_of_unknown_job_is_404(client):
    response = client.get("/api/jobs/424242/")
    assert response.status_code == 404
    assert response.json() == {"error": "job 424242 not found"}


def test_job_images_lists_results_with_filters(client):
    job_id = make_job(client, visit("S00339218", URL, URL + "?2"), visit("S01408764", URL + "?3"))
    ids = list(ImageResult.objects.filter(job_id=job_id).order_by("id").values_list("id", flat=True))
    services.record_outcomes(job_id, [Outcome(ids[0], 640, 480), Outcome(ids[2], error="HTTP 404")])

    everything = client.get(f"/api/jobs/{job_id}/images/").json()["results"]
    assert [(r["store_id"], r["url"], r["status"]) for r in everything] == [
        ("S00339218", URL, "done"),
        ("S00339218", URL + "?2", "pending"),
        ("S01408764", URL + "?3", "failed"),
    ]
    assert everything[0]["width"] == 640
    assert everything[0]["perimeter"] == 2240
    assert everything[0]["visit_time"] == "2024-01-21T16:23:40Z"
    assert everything[0]["processed_at"]
    assert everything[2]["error"] == "HTTP 404"

    by_store = client.get(f"/api/jobs/{job_id}/images/?store_id=S01408764").json()["results"]
    assert [r["url"] for r in by_store] == [URL + "?3"]
    failed = client.get(f"/api/jobs/{job_id}/images/?status=failed").json()["results"]
    assert [r["error"] for r in failed] == ["HTTP 404"]


def test_job_images_pages_with_a_cursor(client):
    job_id = make_job(client, visit("S00339218", *[f"{URL}?{i}" for i in range(5)]))

    page = client.get(f"/api/jobs/{job_id}/images/?page_size=2").json()
    seen = [r["url"] for r in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [r["url"] for r in page["results"]]
    assert seen == [f"{URL}?{i}" for i in range(5)]


def test_job_images_pages_hold_at_most_1000_images(client):
    job_id = make_job(client, *[visit("S00339218", *[f"{URL}?{v}-{i}" for i in range(500)]) for v in range(3)])

    page = client.get(f"/api/jobs/{job_id}/images/?page_size=5000").json()
    assert len(page["results"]) == 1000
    assert len(client.get(page["next"]).json()["results"]) == 500


def test_job_images_rejects_an_unknown_status_filter(client):
    job_id = make_job(client, visit("S00339218", URL))
    response = client.get(f"/api/jobs/{job_id}/images/?status=weird")
    assert response.status_code == 400
    assert response.json() == {"error": "status: expected one of pending, done, failed"}


@pytest.mark.parametrize("page_size", ["abc", "0", "-3", "2.5"])
@pytest.mark.parametrize("export", ["", "&format=csv"])
def test_job_images_reject_a_page_size_that_is_not_a_positive_integer(client, page_size, export):
    job_id = make_job(client, visit("S00339218", URL))
    response = client.get(f"/api/jobs/{job_id}/images/?page_size={page_size}{export}")
    assert (response.status_code, response.json()) == (400, {"error": "page_size: expected a positive integer"})


def test_job_images_give_at_most_1000_a_page_and_read_empty_parameters_as_absent(client):
    job_id = make_job(client, *[visit("S00339218", *[f"{URL}?{v}-{i}" for i in range(500)]) for v in range(3)])
    assert len(client.get(f"/api/jobs/{job_id}/images/?page_size=5000").json()["results"]) == 1000
    page = client.get(f"/api/jobs/{job_id}/images/?page_size=&status=&store_id=&cursor=&format=")
    assert page.status_code == 200
    assert len(page.json()["results"]) == 100


def test_submit_body_over_the_limit_is_a_json_413(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = submit(client, [visit("S00339218", *[f"{URL}?{i}" for i in range(50)])])
    assert response.status_code == 413
    assert response.json() == {"error": "the body is larger than 1,000 bytes"}
    assert Job.objects.count() == 0


# --- Idempotency-Key ---------------------------------------------------------------------------


def submit_with_key(client, payload: dict, key: str):
    return client.post("/api/submit/", payload, content_type="application/json", headers={"Idempotency-Key": key})


def test_a_retried_submit_with_the_same_key_gets_the_same_job(client):
    payload = {"count": 1, "visits": [visit("S00339218", URL, URL + "?2")]}

    first = submit_with_key(client, payload, "order-7f3a")
    again = submit_with_key(client, payload, "order-7f3a")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.json() == {"job_id": first.json()["job_id"]}
    assert again["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert Job.objects.count() == 1
    assert ImageResult.objects.count() == 2


def test_the_same_body_with_keys_reordered_is_the_same_request(client):
    submit_with_key(client, {"count": 1, "visits": [visit("S00339218", URL)]}, "k1")
    response = submit_with_key(client, {"visits": [visit("S00339218", URL)], "count": 1}, "k1")
    assert response.status_code == 201
    assert Job.objects.count() == 1


def test_another_key_or_no_key_creates_another_job(client):
    payload = {"count": 1, "visits": [visit("S00339218", URL)]}
    ids = {
        submit_with_key(client, payload, "a").json()["job_id"],
        submit_with_key(client, payload, "b").json()["job_id"],
        submit(client, payload["visits"]).json()["job_id"],
        submit(client, payload["visits"]).json()["job_id"],
    }
    assert len(ids) == 4


def test_a_key_reused_with_another_body_is_a_422(client):
    job_id = submit_with_key(client, {"count": 1, "visits": [visit("S00339218", URL)]}, "k").json()["job_id"]

    response = submit_with_key(client, {"count": 1, "visits": [visit("S01408764", URL)]}, "k")

    assert response.status_code == 422
    assert response.json() == {"error": f"this Idempotency-Key was already used for a different body (job {job_id})"}
    assert Job.objects.count() == 1


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "Idempotency-Key: must not be empty"), ("k" * 256, "Idempotency-Key: longer than 255 characters")],
)
def test_an_empty_or_too_long_key_is_a_400(client, key, message):
    response = submit_with_key(client, {"count": 1, "visits": [visit("S00339218", URL)]}, key)
    assert (response.status_code, response.json()) == (400, {"error": message})
    assert Job.objects.count() == 0


def test_a_key_of_the_longest_length_is_kept(client):
    key = "k" * 255
    job_id = submit_with_key(client, {"count": 1, "visits": [visit("S00339218", URL)]}, key).json()["job_id"]
    assert Job.objects.get(idempotency_key=key).pk == job_id


def test_an_invalid_body_with_a_key_is_still_a_400_and_stores_nothing(client):
    response = submit_with_key(client, {"count": 2, "visits": [visit("S00339218", URL)]}, "k")
    assert response.status_code == 400
    assert submit_with_key(client, {"count": 1, "visits": [visit("S00339218", URL)]}, "k").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_two_submits_racing_with_one_key_create_one_job():
    """The second submit checks the key before the first commits, then its insert hits the unique key
    (it waits for the first transaction) and it returns the first one's job."""
    import threading
    import time as time_

    from django.db import connection, transaction

    from jobs.serializers import SubmitJobSerializer

    serializer = SubmitJobSerializer(data={"count": 1, "visits": [visit("S00339218", URL)]})
    assert serializer.is_valid()
    fingerprint = serializer.fingerprint()
    first_created, release = threading.Event(), threading.Event()
    results = {}

    def first():
        try:
            with transaction.atomic():
                results["first"] = services.create_job(
                    serializer.visit_inputs(), idempotency_key="race", idempotency_fingerprint=fingerprint
                ).pk
                first_created.set()
                release.wait(10)
        finally:
            connection.close()

    def second():
        try:
            results["second"] = services.submit_job(
                serializer.visit_inputs(), idempotency_key="race", fingerprint=fingerprint
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_created.wait(10)
    threads[1].start()
    time_.sleep(0.5)  # the second submit has checked the key and waits on the first transaction
    release.set()
    for thread in threads:
        thread.join(30)

    assert results["second"].replayed
    assert results["second"].job.pk == results["first"]
    assert Job.objects.count() == 1


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


def test_options_on_the_images_with_format_csv_is_json_metadata(client):
    """Found by schemathesis: the streaming-only CSV renderer used to get this request (a 500)."""
    job_id = make_job(client, visit("S00339218", URL))
    response = client.options(f"/api/jobs/{job_id}/images/?format=csv")
    assert response.status_code == 200
    assert response.json()["name"]
