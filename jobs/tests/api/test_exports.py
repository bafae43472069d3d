"""Exports of per-image results: the API's streamed CSV and `manage.py job_results`, one code path."""

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from jobs import services
from jobs.api import exports
from jobs.models import ImageResult
from jobs.services.outcomes import Outcome
from stores.models import Store

pytestmark = pytest.mark.django_db

WHEN = datetime(2024, 1, 21, 16, 23, 40, tzinfo=UTC)


@pytest.fixture
def job(db):
    Store.objects.bulk_create(
        [Store(store_id="S1", name="One", area_code="1"), Store(store_id="S2", name="Two", area_code="1")]
    )
    job = services.create_job(
        visits=[
            services.VisitInput("S1", ["https://i.example.com/a.jpg", 'https://i.example.com/b,"q".jpg'], WHEN),
            services.VisitInput("S2", ["https://i.example.com/c.jpg"], WHEN),
        ]
    )
    a, b, _c = ImageResult.objects.filter(job=job).order_by("id").values_list("id", flat=True)
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(a, 640, 480), Outcome(b, error='HTTP 404, "gone"')])
    return job


def all_api_rows(client, job_id: int, query: str = "") -> list[dict]:
    rows, url = [], f"/api/jobs/{job_id}/images/?page_size=2{query}"
    while url:
        page = client.get(url).json()
        rows += page["results"]
        url = page["next"]
    return rows


def csv_of(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def as_csv_cells(row: dict) -> dict:
    return {k: "" if v is None else str(v) for k, v in row.items()}


def test_csv_export_has_every_image_as_the_json_pages_show_it(client, job):
    response = client.get(f"/api/jobs/{job.pk}/images/?format=csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="job-{job.pk}-images.csv"'
    text = csv_of(response)
    assert text.startswith("id,store_id,visit_time,url,width,height,perimeter,status,error,processed_at\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows == [as_csv_cells(row) for row in all_api_rows(client, job.pk)]
    assert [(r["store_id"], r["status"], r["perimeter"], r["error"]) for r in rows] == [
        ("S1", "done", "2240", ""),
        ("S1", "failed", "", 'HTTP 404, "gone"'),
        ("S2", "pending", "", ""),
    ]
    assert rows[0]["visit_time"] == "2024-01-21T16:23:40Z"


def test_csv_export_keeps_the_filters(client, job):
    by_store = list(
        csv.DictReader(io.StringIO(csv_of(client.get(f"/api/jobs/{job.pk}/images/?format=csv&store_id=S2"))))
    )
    assert [r["url"] for r in by_store] == ["https://i.example.com/c.jpg"]
    failed = list(
        csv.DictReader(io.StringIO(csv_of(client.get(f"/api/jobs/{job.pk}/images/?format=csv&status=failed"))))
    )
    assert [r["error"] for r in failed] == ['HTTP 404, "gone"']


def test_csv_is_also_chosen_by_the_accept_header(client, job):
    response = client.get(f"/api/jobs/{job.pk}/images/", headers={"Accept": "text/csv"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert len(csv_of(response).splitlines()) == 4


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/api/jobs/424242/images/?format=csv", 404, "job 424242 not found"),
        ("/api/jobs/{job}/images/?format=csv&status=weird", 400, "status: expected one of pending, done, failed"),
    ],
)
def test_csv_export_errors_are_json(client, job, path, status, error):
    response = client.get(path.format(job=job.pk))
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": error}


def test_csv_export_of_100000_images_streams_in_constant_memory(client):
    Store.objects.create(store_id="S1", name="One", area_code="1")
    urls = [f"https://images.example.com/store-1/visit/{n:06d}.jpg" for n in range(100_000)]
    job = services.create_job(visits=[services.VisitInput("S1", urls, WHEN)])
    ImageResult.objects.filter(job=job).update(
        status="done", width=640, height=480, perimeter=2240, processed_at=timezone.now()
    )

    tracemalloc.start()
    try:
        response = client.get(f"/api/jobs/{job.pk}/images/?format=csv")
        size = lines = 0
        for piece in response.streaming_content:
            size += len(piece)
            lines += piece.count(b"\r\n")
        response.close()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert lines == 100_001
    assert size > 10_000_000
    assert peak < 5_000_000, f"peak {peak:,} bytes for a {size:,}-byte export"


# --- manage.py job_results ----------------------------------------------------------------------


def run(*args) -> str:
    out = io.StringIO()
    call_command("job_results", *map(str, args), stdout=out)
    return out.getvalue()


def test_job_results_csv_is_the_api_export(client, job):
    assert run(job.pk) == csv_of(client.get(f"/api/jobs/{job.pk}/images/?format=csv"))
    assert run(job.pk, "--format", "csv", "--status", "failed") == csv_of(
        client.get(f"/api/jobs/{job.pk}/images/?format=csv&status=failed")
    )


def test_job_results_json_is_the_api_rows(client, job):
    assert json.loads(run(job.pk, "--format", "json")) == all_api_rows(client, job.pk)
    assert json.loads(run(job.pk, "--format", "json", "--store-id", "S2")) == all_api_rows(
        client, job.pk, "&store_id=S2"
    )


def test_job_results_json_of_no_rows_is_an_empty_list(job):
    assert json.loads(run(job.pk, "--format", "json", "--store-id", "NOBODY")) == []


def test_job_results_of_an_unknown_job_fails(db):
    with pytest.raises(CommandError, match="job 999 not found"):
        run(999)


def test_json_text_pieces_join_to_valid_json():
    rows = [{"id": n, "url": f"u{n}"} for n in range(1201)]
    text = "".join(exports.json_text(iter(rows)))
    assert json.loads(text) == rows
    assert text.count("\n") == 1203  # "[", one line per object, "]"
