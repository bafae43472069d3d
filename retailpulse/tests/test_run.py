"""`make run` (bin/run) as a new user meets it: a start on a fresh database, a restart after the
operator loaded their own store master, and the command its banner prints."""

import os
import queue
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import BASE_DIR

BANNER_END = "Press Ctrl-C to stop."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def environment(tmp_path):
    """The environment `make run` gives bin/run on a fresh SQLite database: local mode, no other setting."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "RETAILPULSE_"))}
    return {
        **inherited,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'run.sqlite3'}",
        "RETAILPULSE_WORKERS": "1",
        "BIND": f"127.0.0.1:{free_port()}",
    }


def start_and_stop(environment: dict[str, str]) -> str:
    """Run bin/run until its banner, stop it with SIGTERM (as Ctrl-C does); its output up to the banner."""
    process = subprocess.Popen(
        ["bin/run"],
        cwd=BASE_DIR,
        env={**environment, "DJANGO_DEBUG": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    output, deadline = [], time.monotonic() + 120
    try:
        while not output or BANNER_END not in output[-1]:
            output.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    return "".join(output)


def stores(environment: dict[str, str]) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(environment["DATABASE_URL"].removeprefix("sqlite:///")) as db:
        return {row[0]: (row[1], row[2]) for row in db.execute("SELECT store_id, name, area_code FROM stores_store")}


def manage(environment: dict[str, str], command: str) -> subprocess.CompletedProcess:
    """A command line as a reader would type it, in a shell that has neither DJANGO_DEBUG nor a secret key."""
    return subprocess.run(["bash", "-c", command], cwd=BASE_DIR, env=environment, capture_output=True, text=True)


def test_a_restart_leaves_the_operators_store_master_as_it_is(environment, tmp_path):
    first = start_and_stop(environment)
    assert "fixtures/stores.csv: 100 created, 0 updated, 0 unchanged" in first
    assert len(stores(environment)) == 100

    # The operator loads their own master, which also corrects a store of the sample.
    master = tmp_path / "master.csv"
    master.write_text("AreaCode,StoreName,StoreID\n7100015,B P STORE,RP00001\n7000129,CORRECTED,SAMPLE-00001\n")
    loaded = manage(environment, f"DJANGO_DEBUG=1 .venv/bin/python manage.py load_stores {master}")
    assert loaded.returncode == 0, loaded.stderr
    before = stores(environment)

    again = start_and_stop(environment)

    assert "fixtures/stores.csv: not loaded, the store master already holds 101 stores" in again
    assert stores(environment) == before
    assert before["RP00001"] == ("B P STORE", "7100015")
    assert before["SAMPLE-00001"] == ("CORRECTED", "7000129")


def test_the_banners_createsuperuser_command_works_as_printed(environment):
    banner = start_and_stop(environment)

    [command] = [line.removeprefix("First admin user: ") for line in banner.splitlines() if "createsuperuser" in line]
    assert command == "DJANGO_DEBUG=1 .venv/bin/python manage.py createsuperuser"
    env = {**environment, "DJANGO_SUPERUSER_PASSWORD": "a-Strong-operator-pass-1"}
    created = subprocess.run(
        ["bash", "-c", f"{command} --noinput --username operator --email operator@example.com"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    assert "Superuser created successfully." in created.stdout
