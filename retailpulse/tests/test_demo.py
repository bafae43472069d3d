"""`make demo` (bin/demo) works as the README says, and leaves nothing running."""

import os
import re
import subprocess

import psutil

from conftest import BASE_DIR


def test_the_demo_processes_a_job_shows_it_and_stops_everything(tmp_path):
    before = {p.pid for p in psutil.process_iter()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "RETAILPULSE_"))}
    result = subprocess.run(
        ["bin/demo"],
        cwd=BASE_DIR,
        env={**env, "DEMO_DB": str(tmp_path / "demo.sqlite3")},
        capture_output=True,
        text=True,
        timeout=180,
    )

    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert '"cluster": "ok"' in out  # /readyz before submitting
    assert "job 1 submitted: 200 images" in out
    assert "job 1 completed: 200 of 200 images measured, 0 failed" in out
    assert "200/200" in result.stderr.split("\r")[-1]  # the progress bar's last state
    assert '{"status":"completed","job_id":1}' in out
    assert "id,store_id,visit_time,url,width,height,perimeter,status,error,processed_at" in out
    assert 'retailpulse_images{status="done"} 200.0' in out
    assert "stopped web, worker and image server" in out
    # The demo's own service is gone by the end: its last line points at the one `make run` starts.
    assert out.splitlines()[-1] == "For a service that stays up: make run (API docs on http://127.0.0.1:8000/api/docs/)"
    assert re.findall(r"http://127\.0\.0\.1:(\d+)/api/docs/", out) == ["8000"]
    assert " INFO " not in result.stderr  # submit_job --wait logs only warnings beside its bar
    leftovers = [
        p.info["cmdline"]
        for p in psutil.process_iter(["pid", "ppid", "cmdline"])
        if p.info["pid"] not in before and str(tmp_path) in " ".join(_environ(p))
    ]
    assert leftovers == []


def _environ(process: psutil.Process) -> list[str]:
    try:
        return [f"{k}={v}" for k, v in process.environ().items()]
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
        return []
