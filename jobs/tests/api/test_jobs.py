"""GET /api/jobs/<id>/: a job's counters, progress and times."""

import pytest

from jobs import services
from jobs.models import ImageResult
from jobs.services.outcomes import Outcome
from jobs.tests.helpers import IMAGE_URL as URL
from jobs.tests.helpers import make_job, visit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("two_stores")]


def test_job_detail_reports_counts_progress_and_times(client):
    job_id = make_job(client, visit("SAMPLE-00001", URL, URL), visit("NOPE", URL))
    first = ImageResult.objects.filter(job_id=job_id, status="pending").first()
    services.record_outcomes(job_id=job_id, outcomes=[Outcome(first.pk, 3, 4)])

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
