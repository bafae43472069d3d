import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from conftest import BASE_DIR
from retailpulse.settings import parse_delay_range


@pytest.mark.parametrize(("text", "expected"), [("0.1-0.4", (0.1, 0.4)), ("0", (0.0, 0.0)), ("0.25", (0.25, 0.25))])
def test_gpu_delay_is_a_range_or_a_number(text, expected):
    assert parse_delay_range(text) == expected


@pytest.mark.parametrize("text", ["0.4-0.1", "-1", "fast"])
def test_bad_gpu_delay_is_refused(text):
    with pytest.raises((ImproperlyConfigured, ValueError)):
        parse_delay_range(text)


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
