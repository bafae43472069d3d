"""`manage.py submit_job`: the API's validation and service from the command line, with progress."""

import io
import json
import os
import re
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from conftest import BASE_DIR, database_url
from jobs import services
from jobs.models import ImageResult, Job
from jobs.services.outcomes import Outcome
from jobs.tests.helpers import visit, wait_until
from stores.models import Store

URL = "https://images.example.com/1.jpg"


@pytest.fixture
def stores(transactional_db):
    Store.objects.bulk_create([Store(store_id=f"S{n}", name=f"Store {n}", area_code="7000") for n in (1, 2)])


def write(tmp_path, payload, name="payload.json"):
    path = tmp_path / name
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    return path


def run(*args, stdin: str | None = None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        sys.stdin, saved = io.StringIO(stdin), sys.stdin
    try:
        call_command("submit_job", *map(str, args), stdout=out, stderr=err)
    finally:
        if stdin is not None:
            sys.stdin = saved
    return out.getvalue(), err.getvalue()


def manage(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real command line, on the test database."""
    from django.db import connection

    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict)}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_submits_a_job_from_a_file(tmp_path, stores):
    path = write(tmp_path, {"count": 2, "visits": [visit("S1", URL, URL + "?2"), visit("S2", URL)], "note": "x"})

    out, _ = run(path)

    job = Job.objects.get()
    assert out == f"job {job.pk} submitted: 3 images\n"
    assert (job.status, job.images_total) == ("ongoing", 3)
    assert list(job.visits.values_list("store_code", flat=True)) == ["S1", "S2"]


def test_reads_standard_input_and_keeps_the_callback_url(stores):
    payload = {"count": 1, "visits": [visit("S1", URL)], "callback_url": "https://c.example.com/done"}
    out, _ = run("-", stdin=json.dumps(payload))
    assert out.startswith("job ")
    assert Job.objects.get().callback_url == "https://c.example.com/done"


@pytest.mark.parametrize(
    "payload",
    [
        {"count": 2, "visits": [visit("S1", URL)]},
        {"count": 1, "visits": [{**visit("S1", URL), "image_url": []}]},
        {"count": 1, "visits": [visit("S1", "ftp://x")], "callback_url": "nope"},
        [1, 2],
    ],
)
def test_refuses_what_the_api_refuses_with_the_same_message(client, tmp_path, stores, payload):
    api_error = client.post("/api/submit/", payload, content_type="application/json").json()["error"]
    path = write(tmp_path, payload)

    with pytest.raises(CommandError) as refused:
        run(path)

    assert str(refused.value) == f"{path}: refused: {api_error}"
    assert refused.value.returncode == 2
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "refused: JSON parse error - Expecting property name"), (None, "cannot read")],
)
def test_refuses_a_file_that_is_not_json_or_not_there(tmp_path, stores, content, message):
    path = write(tmp_path, content) if content is not None else tmp_path / "absent.json"
    with pytest.raises(CommandError, match=message) as refused:
        run(path)
    assert refused.value.returncode == 2


def test_the_same_idempotency_key_submits_once(tmp_path, stores):
    path = write(tmp_path, {"count": 1, "visits": [visit("S1", URL)]})
    first, _ = run(path, "--idempotency-key", "nightly-2024-01-21")
    again, _ = run(path, "--idempotency-key", "nightly-2024-01-21")

    job = Job.objects.get()
    assert first == f"job {job.pk} submitted: 1 images\n"
    assert again == f"job {job.pk} submitted: 1 images (already submitted with this idempotency key)\n"


def test_waiting_for_a_job_that_fails_prints_its_errors_and_exits_1(tmp_path, stores):
    path = write(tmp_path, {"count": 2, "visits": [visit("NOPE", URL), visit("NADA", URL, URL + "?2")]})

    result = manage("submit_job", str(path), "--wait")

    job = Job.objects.get()
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"job {job.pk} submitted: 3 images",
        f"job {job.pk} failed: 0 of 3 images measured, 3 failed",
        "  NOPE: store not in store master",
        "  NADA: store not in store master",
    ]
    assert f"CommandError: job {job.pk} failed" in result.stderr
    # The service's INFO lines (job created, finished) would repeat stdout's and break the bar's line.
    assert " INFO " not in result.stderr


def test_every_draw_of_the_bar_shows_the_failures_of_its_own_poll(tmp_path, stores):
    path = write(tmp_path, {"count": 2, "visits": [visit("NOPE", URL), visit("S1", URL, URL + "?2")]})
    from django.db import connection

    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict)}
    waiting = subprocess.Popen(
        # Polls further apart than tqdm's shortest redraw interval (0.1 s): each one draws the bar.
        [sys.executable, "manage.py", "submit_job", str(path), "--wait", "--poll", "0.3"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    job = wait_until(Job.objects.first, what="the job")
    time.sleep(1.5)  # a few polls at 1/3, failed=1
    pending = ImageResult.objects.filter(job=job, status="pending").values_list("id", flat=True)
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(i, error="HTTP 404") for i in pending])
    _, stderr = waiting.communicate(timeout=60)

    draws = [draw.strip() for draw in stderr.splitlines() if "img/s" in draw]  # text mode made each \r a \n
    assert any("1/3" in draw and "failed=1" in draw for draw in draws), draws
    assert [draw for draw in draws if "3/3" in draw and "failed=3" not in draw] == []
    assert "3/3" in draws[-1]


def test_waiting_shows_progress_until_the_job_completes_and_exits_0(tmp_path, stores, image_server, start_cluster):
    start_cluster(RETAILPULSE_GPU_DELAY="0.05-0.1")
    urls = [image_server.url(f"/img/{n}x10.png") for n in range(1, 41)]
    path = write(tmp_path, {"count": 2, "visits": [visit("S1", *urls[:30]), visit("S2", *urls[30:])]})

    result = manage("submit_job", str(path), "--wait", "--poll", "0.1")

    job = Job.objects.get()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"job {job.pk} submitted: 40 images",
        f"job {job.pk} completed: 40 of 40 images measured, 0 failed",
    ]
    bar = result.stderr.split("\r")[-1]  # tqdm redraws its line; the last one is the final state
    assert f"job {job.pk}: 100%" in bar
    assert "40/40" in bar
    assert "img/s" in bar
    assert "failed=0" in bar


def test_waiting_stops_at_the_timeout_with_exit_3(tmp_path, stores):
    path = write(tmp_path, {"count": 1, "visits": [visit("S1", URL)]})  # no worker runs: it stays ongoing

    result = manage("submit_job", str(path), "--wait", "--poll", "0.1", "--timeout", "0.5")

    assert result.returncode == 3
    assert "still ongoing after 0.5 s; it goes on" in result.stderr
    assert "0/1" in result.stderr


# --- api_keys ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_keys_issues_lists_and_revokes_a_clients_keys(capsys):
    _client, first = services.create_client(name="chain-k")
    call_command("api_keys", "issue", "chain-k", "--name", "rotation", "--expires-in-days", "30")
    second = capsys.readouterr().out.strip()
    services.check_key(presented=first)

    call_command("api_keys", "list", "chain-k")
    listing = capsys.readouterr().out.splitlines()
    first_prefix, second_prefix = first.partition(".")[0], second.partition(".")[0]
    assert listing[0].split() == ["prefix", "name", "created", "last", "used", "expires", "state"]
    assert listing[1].split()[:3] == [first_prefix, "first", "key"]
    assert listing[1].split()[-1] == "active"
    assert listing[1].split()[-2] == "-"  # created, last used, no expiry
    assert listing[2].split()[:2] == [second_prefix, "rotation"]
    assert listing[2].split()[4] == "-"  # created, not used yet, an expiry
    assert first not in "\n".join(listing)
    assert second not in "\n".join(listing)

    call_command("api_keys", "revoke", first_prefix)
    assert capsys.readouterr().out.strip() == f"revoked {first_prefix} (first key) of chain-k"
    assert services.check_key(presented=first)[0] is services.KeyCheck.REVOKED
    assert services.check_key(presented=second)[0] is services.KeyCheck.VALID
    with pytest.raises(CommandError, match="no API key has the prefix 'nope'"):
        call_command("api_keys", "revoke", "nope")
    with pytest.raises(CommandError, match="no client named 'nobody'"):
        call_command("api_keys", "issue", "nobody")


# --- prune_jobs ----------------------------------------------------------------------------------


def test_prune_jobs_removes_the_jobs_finished_before_the_days_and_says_how_many(settings, db):
    def finished_job(images: int, days_ago: float) -> int:
        urls = [f"{URL}?{n}" for n in range(images)]
        job = services.create_job(visits=[services.VisitInput("NOPE", urls, timezone.now())])  # failed at submit
        Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=days_ago))
        return job.pk

    old, older, recent = finished_job(1200, 10), finished_job(1, 11), finished_job(3, 9)
    out = io.StringIO()

    call_command("prune_jobs", "--days", "9.5", stdout=out)

    assert out.getvalue() == "removed 2 jobs, 1,201 images\n"
    assert list(Job.objects.values_list("pk", flat=True)) == [recent]
    assert not ImageResult.objects.filter(job_id__in=[old, older]).exists()
    settings.RETAILPULSE = {**settings.RETAILPULSE, "RETENTION_DAYS": 8.0}  # the default for --days
    call_command("prune_jobs", stdout=out)
    assert out.getvalue().splitlines()[-1] == "removed 1 job, 3 images"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "RETAILPULSE_RETENTION_DAYS is 0 (retention off): give --days N"),
        (("--days", "0"), "--days 0: expected a number of days above 0, at most 36,500"),
        (("--days", "nan"), "--days nan: expected a number of days above 0, at most 36,500"),
        (("--days", "40000"), "--days 40000: expected a number of days above 0, at most 36,500"),
    ],
)
def test_prune_jobs_refuses_days_it_cannot_use(settings, db, args, error):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "RETENTION_DAYS": 0.0}
    with pytest.raises(CommandError, match=f"^{re.escape(error)}$"):
        call_command("prune_jobs", *args)
