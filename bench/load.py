"""Load: 50 concurrent clients submitting small jobs and polling their status, for a bounded time.

    .venv/bin/python bench/load.py --clients 50 --seconds 30 --db sqlite

Starts nginx (a real JPEG) and the service (gunicorn + qcluster, as `make run` does) like
bench/service.py, then each client loops: submit a 5-image job, poll its status every 0.5 s until it
ends. Reports requests/s, p50/p99 latency of submit and status, errors (any answer but the
expected 201/200, or an exception), and whether every job finished. Exits 1 on an error or an
unfinished job.
"""

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service import STORES, ImageHost, Service, image_host, percentile


class Client(threading.Thread):
    def __init__(self, number: int, base: str, stop_at: float):
        super().__init__(daemon=True)
        self.number, self.base, self.stop_at = number, base, stop_at
        self.submits: list[float] = []
        self.polls: list[float] = []
        self.errors: list[str] = []
        self.jobs: list[int] = []
        self.unfinished: list[int] = []

    def timed(self, session: requests.Session, method: str, url: str, expected: int, timings: list[float], **kw):
        started = time.perf_counter()
        try:
            response = session.request(method, url, timeout=30, **kw)
        except requests.RequestException as exc:
            self.errors.append(f"{method} {url}: {exc}")
            return None
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != expected:
            self.errors.append(f"{method} {url}: HTTP {response.status_code} {response.text[:200]}")
            return None
        return response.json()

    def run(self) -> None:
        with requests.Session() as session:
            n = 0
            while time.monotonic() < self.stop_at:
                n += 1
                visit = {
                    "store_id": f"B{(self.number + n) % STORES:05d}",
                    "image_url": [ImageHost.url(f"load-{self.number}-{n}-{i}") for i in range(5)],
                    "visit_time": "2024-01-21T16:23:40Z",
                }
                body = self.timed(
                    session, "POST", f"{self.base}/api/submit/", 201, self.submits, json={"count": 1, "visits": [visit]}
                )
                if body is None:
                    continue
                job_id = body["job_id"]
                self.jobs.append(job_id)
                give_up = time.monotonic() + 60
                status = "ongoing"
                while status == "ongoing" and time.monotonic() < give_up:
                    time.sleep(0.5)
                    answer = self.timed(session, "GET", f"{self.base}/api/status?jobid={job_id}", 200, self.polls)
                    status = answer["status"] if answer else status
                if status != "completed":
                    self.unfinished.append(job_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--delay", default="0.1-0.4")
    args = parser.parse_args()

    with image_host("rp-load-") as workdir, Service(args.db, args.delay, workdir, {}) as service:
        started = time.monotonic()
        clients = [Client(n, service.base, started + args.seconds) for n in range(args.clients)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        elapsed = time.monotonic() - started

    submits = [t for c in clients for t in c.submits]
    polls = [t for c in clients for t in c.polls]
    errors = [e for c in clients for e in c.errors]
    jobs = sum(len(c.jobs) for c in clients)
    unfinished = [j for c in clients for j in c.unfinished]
    print(f"{args.clients} clients for {args.seconds:g} s ({elapsed:.1f} s with the last jobs), {args.db}")
    print(f"requests: {len(submits) + len(polls)} ({(len(submits) + len(polls)) / elapsed:.0f}/s)")
    print(f"submit: {len(submits)}, p50 {statistics.median(submits):.1f} ms, p99 {percentile(submits, 0.99):.1f} ms")
    print(f"status: {len(polls)}, p50 {statistics.median(polls):.1f} ms, p99 {percentile(polls, 0.99):.1f} ms")
    print(f"jobs: {jobs} submitted, {jobs - len(unfinished)} completed, {len(unfinished)} not")
    print(f"errors: {len(errors)}")
    for error in errors[:10]:
        print(f"  {error}")
    return 1 if errors or unfinished else 0


if __name__ == "__main__":
    sys.exit(main())
