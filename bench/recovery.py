"""Recovery times with real processes, as `make run` starts them (gunicorn + qcluster), delay on.

    .venv/bin/python bench/recovery.py --db sqlite postgres --runs 3

- restart: 3,000 images; once some are measured the whole qcluster is SIGKILLed and a new one
  started at once. Seconds from the restart to the next measured image, and to the job's end.
- freeze: 6,000 images on two qclusters; once some are measured one cluster is frozen (SIGSTOP of
  its process group; on SQLite at a moment it holds no write lock). Seconds from the freeze to the
  job's end; then the cluster is woken (SIGCONT) and the job's counters checked: every image
  counted once.
Prints a Markdown table of medians (and the slowest run).
"""

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service import QCLUSTER, ROOT, Service, image_host

DELAY = "0.1-0.4"


def start_cluster(service: Service) -> subprocess.Popen:
    return subprocess.Popen(QCLUSTER, cwd=ROOT, env=service.env, start_new_session=True, stderr=subprocess.DEVNULL)


def done(service: Service, job_id: int) -> tuple[int, str]:
    body = requests.get(f"{service.base}/api/jobs/{job_id}/", timeout=10).json()
    return body["images"]["done"] + body["images"]["failed"], body["status"]


def wait_until(check, timeout: float = 300) -> float:
    """Seconds until `check()` is true."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError("no recovery")
        time.sleep(0.05)
    return time.monotonic() - started


def restart(service: Service, tag: str) -> dict:
    job_id, _ = service.submit(3000, tag)
    wait_until(lambda: done(service, job_id)[0] > 100)
    os.killpg(service.worker.pid, signal.SIGKILL)
    service.worker.wait()
    before = done(service, job_id)[0]
    service.worker = start_cluster(service)
    progress = wait_until(lambda: done(service, job_id)[0] > before)
    end = progress + wait_until(lambda: done(service, job_id)[1] != "ongoing")
    assert done(service, job_id) == (3000, "completed")
    return {"progress": progress, "end": end}


def freeze_outside_a_write(service: Service) -> None:
    """SIGSTOP the first cluster, but on SQLite not while it holds the database's one write lock: no
    lease helps there, every writer waits until the frozen process wakes (docs/design.md)."""
    database = service.env["DATABASE_URL"].removeprefix("sqlite:///")
    while True:
        os.killpg(service.worker.pid, signal.SIGSTOP)
        if not service.env["DATABASE_URL"].startswith("sqlite"):
            return
        probe = sqlite3.connect(database, timeout=0.5)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return
        except sqlite3.OperationalError:
            os.killpg(service.worker.pid, signal.SIGCONT)
            time.sleep(0.05)
        finally:
            probe.close()


def freeze(service: Service, tag: str) -> dict:
    other = start_cluster(service)
    try:
        job_id, _ = service.submit(6000, tag)
        wait_until(lambda: done(service, job_id)[0] > 300)
        freeze_outside_a_write(service)
        try:
            end = wait_until(lambda: done(service, job_id)[1] != "ongoing")
        finally:
            os.killpg(service.worker.pid, signal.SIGCONT)
        time.sleep(3)  # the woken workers find their leases gone; nothing may change the counts
        assert done(service, job_id) == (6000, "completed")
        return {"end": end}
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait(timeout=60)


SECTION = """## Recovery

With the delay on, as `make run` starts the service. **restart**: a 3,000-image job; once some
images are measured the whole qcluster is SIGKILLed and a new one started at once: seconds from the
restart to the next measured image, and to the job's end. **freeze**: a 6,000-image job on two
qclusters; one is frozen (SIGSTOP of its process group; on SQLite at a moment it holds no write
lock) mid-job: seconds to the job's end; the frozen cluster is then woken and every image must be
counted once. Medians, the slowest run in brackets. `{command}`.
"""


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], nargs="+", default=["sqlite"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(SECTION.format(command=" ".join(["bench/recovery.py", *sys.argv[1:]])))
    print("| db | runs | restart: s to progress | restart: s to the end | freeze: s to the end |")
    print("| --- | --- | --- | --- | --- |")
    with image_host("rp-recovery-") as workdir:
        for db in args.db:
            with Service(db, DELAY, workdir, {}) as service:
                restarts = [restart(service, f"restart-{n}") for n in range(args.runs)]
                freezes = [freeze(service, f"freeze-{n}") for n in range(args.runs)]
            print(
                f"| {db} | {args.runs} | {cell([r['progress'] for r in restarts])} "
                f"| {cell([r['end'] for r in restarts])} | {cell([f['end'] for f in freezes])} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
