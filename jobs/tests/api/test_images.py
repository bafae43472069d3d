"""GET /api/jobs/<id>/images/: a job's image results, filtered, in cursor pages or as CSV."""

import pytest

from jobs import services
from jobs.models import ImageResult
from jobs.services.outcomes import Outcome
from jobs.tests.helpers import IMAGE_URL as URL
from jobs.tests.helpers import make_job, visit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("two_stores")]


def test_job_images_lists_results_with_filters(client):
    job_id = make_job(client, visit("SAMPLE-00001", URL, URL + "?2"), visit("SAMPLE-00002", URL + "?3"))
    ids = list(ImageResult.objects.filter(job_id=job_id).order_by("id").values_list("id", flat=True))
    services.record_outcomes(job_id=job_id, outcomes=[Outcome(ids[0], 640, 480), Outcome(ids[2], error="HTTP 404")])

    everything = client.get(f"/api/jobs/{job_id}/images/").json()["results"]
    assert [(r["store_id"], r["url"], r["status"]) for r in everything] == [
        ("SAMPLE-00001", URL, "done"),
        ("SAMPLE-00001", URL + "?2", "pending"),
        ("SAMPLE-00002", URL + "?3", "failed"),
    ]
    assert everything[0]["width"] == 640
    assert everything[0]["perimeter"] == 2240
    assert everything[0]["visit_time"] == "2024-01-21T16:23:40Z"
    assert everything[0]["processed_at"]
    assert everything[2]["error"] == "HTTP 404"

    by_store = client.get(f"/api/jobs/{job_id}/images/?store_id=SAMPLE-00002").json()["results"]
    assert [r["url"] for r in by_store] == [URL + "?3"]
    failed = client.get(f"/api/jobs/{job_id}/images/?status=failed").json()["results"]
    assert [r["error"] for r in failed] == ["HTTP 404"]


def test_job_images_pages_with_a_cursor(client):
    job_id = make_job(client, visit("SAMPLE-00001", *[f"{URL}?{i}" for i in range(5)]))

    page = client.get(f"/api/jobs/{job_id}/images/?page_size=2").json()
    seen = [r["url"] for r in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [r["url"] for r in page["results"]]
    assert seen == [f"{URL}?{i}" for i in range(5)]


def test_job_images_pages_hold_at_most_1000_images(client):
    job_id = make_job(client, *[visit("SAMPLE-00001", *[f"{URL}?{v}-{i}" for i in range(500)]) for v in range(3)])

    page = client.get(f"/api/jobs/{job_id}/images/?page_size=5000").json()
    assert len(page["results"]) == 1000
    assert len(client.get(page["next"]).json()["results"]) == 500


def test_job_images_rejects_an_unknown_status_filter(client):
    job_id = make_job(client, visit("SAMPLE-00001", URL))
    response = client.get(f"/api/jobs/{job_id}/images/?status=weird")
    assert response.status_code == 400
    assert response.json() == {"error": "status: expected one of pending, done, failed"}


@pytest.mark.parametrize("page_size", ["abc", "0", "-3", "2.5"])
@pytest.mark.parametrize("export", ["", "&format=csv"])
def test_job_images_reject_a_page_size_that_is_not_a_positive_integer(client, page_size, export):
    job_id = make_job(client, visit("SAMPLE-00001", URL))
    response = client.get(f"/api/jobs/{job_id}/images/?page_size={page_size}{export}")
    assert (response.status_code, response.json()) == (400, {"error": "page_size: expected a positive integer"})


def test_job_images_give_at_most_1000_a_page_and_read_empty_parameters_as_absent(client):
    job_id = make_job(client, *[visit("SAMPLE-00001", *[f"{URL}?{v}-{i}" for i in range(500)]) for v in range(3)])
    assert len(client.get(f"/api/jobs/{job_id}/images/?page_size=5000").json()["results"]) == 1000
    page = client.get(f"/api/jobs/{job_id}/images/?page_size=&status=&store_id=&cursor=&format=")
    assert page.status_code == 200
    assert len(page.json()["results"]) == 100


def test_options_on_the_images_with_format_csv_is_json_metadata(client):
    """An OPTIONS request is answered with JSON metadata, never by the streaming-only CSV renderer."""
    job_id = make_job(client, visit("SAMPLE-00001", URL))
    response = client.options(f"/api/jobs/{job_id}/images/?format=csv")
    assert response.status_code == 200
    assert response.json()["name"]
