import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BASE_DIR


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**clean, "DJANGO_SETTINGS_MODULE": "retailpulse.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_pass_the_deploy_check():
    result = run_manage(
        *("check", "--deploy", "--fail-level", "WARNING"),
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="a-long-random-production-key-" + "x7Q" * 20,
        DJANGO_ALLOWED_HOSTS="pulse.example.com",
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = run_manage("check", DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "Set DJANGO_SECRET_KEY" in result.stderr


def test_sqlite_test_database_is_named_after_the_main_one(tmp_path):
    result = run_manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings; print(settings.DATABASES['default']['TEST']['NAME'])",
        DJANGO_DEBUG="1",
        DATABASE_URL=f"sqlite:///{tmp_path}/pulse.sqlite3",
    )
    assert result.stdout.strip() == str(tmp_path / "test_pulse.sqlite3"), result.stderr


@pytest.mark.django_db(transaction=True)
def test_log_format_json_writes_one_json_object_per_event(tmp_path):
    from django.db import connection

    from conftest import database_url

    payload = tmp_path / "payload.json"
    payload.write_text(
        '{"count": 1, "visits": [{"store_id": "NOPE", "image_url": ["https://x.example.com/1.jpg"],'
        ' "visit_time": "2024-01-21T16:23:40Z"}]}'
    )
    result = run_manage(
        "submit_job",
        str(payload),
        DJANGO_DEBUG="1",
        LOG_FORMAT="json",
        DATABASE_URL=database_url(connection.settings_dict),
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    events = {line["event"]: line for line in lines if line.get("logger") == "retailpulse.events"}
    created, finished = events["job.created"], events["job.finished"]
    assert created["level"] == "INFO"
    assert created["time"]
    assert (created["job_id"], created["visits"], created["images"], created["unknown_stores"]) == (
        finished["job_id"],
        1,
        1,
        1,
    )
    assert created["message"] == f"job {created['job_id']} created: 1 visits, 1 images, 1 unknown stores"
    assert (finished["status"], finished["images_failed"]) == ("failed", 1)


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("RETAILPULSE_API_TOKENS", "ture", "expected one of 1, true, yes, on, 0, false, no, off"),  # boolean
        ("RETAILPULSE_WORKERS", "two", "expected a whole number of at least 1"),  # integer
        ("RETAILPULSE_FETCH_TIMEOUT", "30s", "expected a number of at least 0"),  # float
        ("RETAILPULSE_IMAGE_FORMATS", "JPEG;PNG", "expected a comma-separated list of names"),  # list
        ("RETAILPULSE_GPU_DELAY", "0.4-0.1", "expected LOW-HIGH seconds"),  # range
        ("RETAILPULSE_THROTTLE_SUBMIT", "10/fortnight", "expected requests per period"),  # rate
        ("LOG_FORMAT", "xml", "expected plain or json"),  # choice
        ("LOG_LEVEL", "loud", "expected one of debug, info, warning, error, critical"),
    ],
)
def test_a_setting_it_does_not_understand_stops_manage_py_naming_the_variable(variable, value, accepted):
    result = run_manage("check", DJANGO_DEBUG="1", **{variable: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {variable}={value!r}: {accepted}" in result.stderr


def test_every_model_change_has_its_migration():
    result = run_manage("makemigrations", "--check", "--dry-run", DJANGO_DEBUG="1")
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_formats_are_a_list_of_names():
    result = run_manage(
        *("shell", "-v", "0", "-c", "from django.conf import settings; print(settings.RETAILPULSE['IMAGE_FORMATS'])"),
        DJANGO_DEBUG="1",
        RETAILPULSE_IMAGE_FORMATS=" jpeg, heif ,png",
    )
    assert result.stdout.strip() == "('JPEG', 'HEIF', 'PNG')", result.stderr


def test_an_image_format_that_is_not_measured_is_refused():
    result = run_manage("check", DJANGO_DEBUG="1", RETAILPULSE_IMAGE_FORMATS="JPEG,ICO")
    assert result.returncode != 0
    assert "RETAILPULSE_IMAGE_FORMATS names ICO" in result.stderr
    assert "Choose among JPEG, MPO, PNG, GIF, WEBP, BMP, TIFF, HEIF, AVIF." in result.stderr


def test_a_worker_and_a_web_server_refuse_to_start_on_a_setting_they_do_not_understand():
    worker = run_manage("qcluster", DJANGO_DEBUG="1", RETAILPULSE_API_TOKENS="ture")
    assert worker.returncode != 0
    assert "RETAILPULSE_API_TOKENS='ture'" in worker.stderr
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    web = subprocess.run(
        [gunicorn, "retailpulse.wsgi", "--bind", "127.0.0.1:0"],
        cwd=BASE_DIR,
        env={**clean, "DJANGO_DEBUG": "1", "RETAILPULSE_WORKERS": "two"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert web.returncode != 0
    assert "RETAILPULSE_WORKERS='two': expected a whole number of at least 1" in web.stderr
