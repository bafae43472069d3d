"""GET /api/status: the original contract's status answers."""

import pytest

from jobs import services
from jobs.models import ImageResult, Job
from jobs.services.outcomes import Outcome
from jobs.tests.helpers import IMAGE_URL as URL
from jobs.tests.helpers import make_job, visit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("two_stores")]


def finish_all(job_id: int, error: str = "") -> None:
    images = ImageResult.objects.filter(job_id=job_id, status="pending").values_list("id", flat=True)
    services.record_outcomes(job_id=job_id, outcomes=[Outcome(i, 10, 20, error) for i in images])


@pytest.mark.parametrize("path", ["/api/status", "/api/status/"])
def test_status_ongoing_then_completed(client, path):
    job_id = make_job(client, visit("SAMPLE-00001", URL))

    assert client.get(f"{path}?jobid={job_id}").json() == {"status": "ongoing", "job_id": job_id}
    finish_all(job_id)
    response = client.get(f"{path}?jobid={job_id}")
    assert response.status_code == 200
    assert response.json() == {"status": "completed", "job_id": job_id}


def test_status_failed_lists_each_failed_store_once(client):
    job_id = make_job(
        client, visit("SAMPLE-00001", URL, URL + "?b"), visit("SAMPLE-00002", URL), visit("SAMPLE-00001", URL)
    )
    finish_all(job_id, error="HTTP 404")

    body = client.get(f"/api/status?jobid={job_id}").json()
    assert body == {
        "status": "failed",
        "job_id": job_id,
        "error": [
            {"store_id": "SAMPLE-00001", "error": f"{URL}: HTTP 404; {URL}?b: HTTP 404"},
            {"store_id": "SAMPLE-00002", "error": f"{URL}: HTTP 404"},
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


def test_status_is_one_query_of_the_columns_it_answers_whatever_the_job_size(client, django_assert_num_queries):
    job_id = make_job(client, *[visit("SAMPLE-00001", *[f"{URL}?{i}-{j}" for j in range(50)]) for i in range(40)])
    finish_all(job_id, error="HTTP 500")

    with django_assert_num_queries(1) as queries:
        body = client.get(f"/api/status?jobid={job_id}").json()
    assert body["status"] == "failed"
    assert body["error"][0]["error"].endswith("; and 1995 more failed images")
    selected = queries.captured_queries[0]["sql"].split(" FROM ")[0]
    read = {field.column for field in Job._meta.concrete_fields if f'"{field.column}"' in selected}
    assert read == {"id", "status", "errors"}  # a poll, repeated by every waiting client, reads no more
