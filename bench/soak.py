"""The soak: an hour of mixed load on web + worker, started as `make run` starts them.

    make soak                          (SOAK_SECONDS=300 make soak: five minutes of it)
    .venv/bin/python -u bench/soak.py --seconds 3600 --db sqlite

nginx serves the images (bench/service.py); API tokens are on, each client made with
`manage.py create_client`, the GPU delay off (the database and the processes work hardest):
- `bulk` submits 100,000-image jobs back to back; each, once completed, is exported as CSV and
  checked: every submitted URL exactly once, every image measured, the counters the same;
- `chain-1` to `chain-4` each submit a 5-image job, poll its status every 0.5 s until it ends,
  read its images (and every tenth job its CSV) and check them the same way, then wait a second;
- the status of the current 100,000-image job is polled five times a second;
- a staff user has the operations dashboard open: its data every 3 s, as the page refreshes it,
  and the page itself every minute;
- retention is 90 s (`RETAILPULSE_RETENTION_DAYS` takes fractions of a day), so the scheduler
  removes jobs all along: a checked job that ended more than retention + 2 minutes ago must answer
  `400 {}`.

Every minute it prints the peak RSS of each service process (sampled every 5 s; of several alike,
the largest: the web workers, the cluster's workers), the database's size and the counts so far.
Exits 1 when a process's peak in any minute after the warm-up is more than 10 % above its peak
in the warm-up (the first ten minutes; the first half of a run shorter than twenty, so that a few
100,000-image jobs have set each process's high-water mark before it counts), on any unexpected
answer or exception, a job that did not complete, a django-q2 task that failed, a service process
gone, or an image lost or counted twice. Jobs still running at the end are waited for and checked.
"""

import argparse
import collections
import csv
import http.cookies
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service as bench_service
from service import PY, ROOT, Service, image_host, submit_body

# A database of its own (ports are free ones, as in every benchmark), so that it runs beside `make bench`.
bench_service.PG_DATABASE = "retailpulse_soak"

BIG, SMALL, SMALL_CLIENTS = 100_000, 5, 4
RETENTION_SECONDS = 90  # longer than a 100,000-image job's check takes, short enough for a short run
PRUNED_WITHIN = RETENTION_SECONDS + 120  # the schedule's minute, the scheduler's 30 s tick, slack
GROWTH_LIMIT = 0.10
REPORT_EVERY, SAMPLE_EVERY = 60.0, 5.0
STAFF, STAFF_PASSWORD = "soak", "soak-staff-password"


class Soak:
    """The load's shared state: what went wrong, the jobs checked, the counts."""

    def __init__(self, service: Service, seconds: float):
        self.service, self.base = service, service.base
        self.started = time.monotonic()
        self.stop_at = self.started + seconds
        self.errors: list[str] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.ended: list[tuple[float, int, dict]] = []  # (when it ended, job id, its client's headers)
        self.current_big: tuple[int, dict] | None = None
        self.lock = threading.Lock()

    def running(self) -> bool:
        return time.monotonic() < self.stop_at

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(f"{time.monotonic() - self.started:6.0f} s: {text}")
        print(f"ERROR {text}", file=sys.stderr, flush=True)

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def get(self, session: requests.Session, path: str, expected: int = 200, **kw) -> requests.Response | None:
        """GET `path`; None (and an error noted) for an exception or another status."""
        try:
            response = session.get(f"{self.base}{path}", timeout=60, **kw)
        except requests.RequestException as exc:
            self.error(f"GET {path}: {exc}")
            return None
        if response.status_code != expected:
            self.error(f"GET {path}: HTTP {response.status_code} {response.text[:200]}")
            return None
        return response

    def submit(self, session: requests.Session, body: dict) -> int | None:
        try:
            response = session.post(f"{self.base}/api/submit/", json=body, timeout=120)
        except requests.RequestException as exc:
            self.error(f"POST /api/submit/: {exc}")
            return None
        if response.status_code != 201:
            self.error(f"POST /api/submit/: HTTP {response.status_code} {response.text[:200]}")
            return None
        return response.json()["job_id"]

    def wait(self, session: requests.Session, job_id: int, every: float, timeout: float) -> bool:
        """Poll the job's status until it ends; True when it completed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.get(session, f"/api/status?jobid={job_id}")
            if answer is None:
                return False
            self.count("status polls")
            status = answer.json()["status"]
            if status != "ongoing":
                if status != "completed":
                    self.error(f"job {job_id} ended {status}: {answer.text[:300]}")
                return status == "completed"
            time.sleep(every)
        self.error(f"job {job_id} still ongoing after {timeout:.0f} s")
        return False

    def check_images(self, session: requests.Session, job_id: int, urls: list[str], *, as_csv: bool) -> None:
        """The job's counters and its image rows (CSV export or JSON pages) against what was submitted:
        each URL exactly once, every image measured."""
        detail = self.get(session, f"/api/jobs/{job_id}/")
        if detail is None:
            return
        images = detail.json()["images"]
        if (images["total"], images["done"], images["failed"], images["pending"]) != (len(urls), len(urls), 0, 0):
            self.error(f"job {job_id}: counters {images} for {len(urls)} images submitted")
        rows = self._csv_rows(session, job_id) if as_csv else self._json_rows(session, job_id)
        if rows is None:
            return
        ids = [row[0] for row in rows]
        if collections.Counter(row[1] for row in rows) != collections.Counter(urls) or len(set(ids)) != len(ids):
            seen = collections.Counter(row[1] for row in rows)
            lost, twice = len(set(urls) - set(seen)), sum(1 for n in seen.values() if n > 1)
            self.error(f"job {job_id}: {len(rows)} image rows for {len(urls)} URLs, {lost} lost, {twice} twice")
        unmeasured = [row for row in rows if row[2] != "done"]
        if unmeasured:
            self.error(f"job {job_id}: {len(unmeasured)} images not measured, e.g. {unmeasured[0]}")
        self.count("images checked", len(rows))
        self.count("exports" if as_csv else "image pages read")

    def _csv_rows(self, session: requests.Session, job_id: int) -> list[tuple[str, str, str]] | None:
        response = self.get(session, f"/api/jobs/{job_id}/images/?format=csv", stream=True)
        if response is None:
            return None
        lines = csv.DictReader(line.decode() for line in response.iter_lines())
        return [(row["id"], row["url"], row["status"]) for row in lines]

    def _json_rows(self, session: requests.Session, job_id: int) -> list[tuple[str, str, str]] | None:
        rows, path = [], f"/api/jobs/{job_id}/images/?page_size=1000"
        while path:
            page = self.get(session, path)
            if page is None:
                return None
            body = page.json()
            rows += [(str(image["id"]), image["url"], image["status"]) for image in body["results"]]
            path = body["next"] and body["next"].removeprefix(self.base)
        return rows

    def ended_job(self, job_id: int, headers: dict) -> None:
        with self.lock:
            self.ended.append((time.monotonic(), job_id, headers))

    # --- The load ---------------------------------------------------------------------------

    def big_jobs(self, headers: dict) -> None:
        """100,000-image jobs back to back, each checked through its CSV export."""
        with requests.Session() as session:
            session.headers.update(headers)
            while self.running():
                body = submit_body(BIG, f"big-{time.monotonic_ns()}")
                job_id = self.submit(session, body)
                if job_id is None:
                    time.sleep(5)
                    continue
                self.current_big = (job_id, headers)
                completed = self.wait(session, job_id, every=1.0, timeout=1800)
                self.current_big = None
                if completed:
                    urls = [url for visit in body["visits"] for url in visit["image_url"]]
                    self.check_images(session, job_id, urls, as_csv=True)
                    self.ended_job(job_id, headers)
                    self.count("100,000-image jobs checked")

    def small_jobs(self, number: int, headers: dict) -> None:
        """A 5-image job, polled until it ends and checked, then a second's pause; again."""
        with requests.Session() as session:
            session.headers.update(headers)
            n = 0
            while self.running():
                n += 1
                body = submit_body(SMALL, f"small-{number}-{n}-{time.monotonic_ns()}", per_visit=SMALL)
                job_id = self.submit(session, body)
                if job_id is not None and self.wait(session, job_id, every=0.5, timeout=600):
                    urls = [url for visit in body["visits"] for url in visit["image_url"]]
                    self.check_images(session, job_id, urls, as_csv=n % 10 == 0)
                    self.ended_job(job_id, headers)
                    self.count("small jobs checked")
                time.sleep(1)

    def status_polls(self) -> None:
        """The current 100,000-image job's status, five times a second."""
        with requests.Session() as session:
            while self.running():
                current = self.current_big
                if current is not None:
                    job_id, headers = current
                    if self.get(session, f"/api/status?jobid={job_id}", headers=headers) is not None:
                        self.count("status polls")
                time.sleep(0.2)

    def dashboard(self, cookie: str) -> None:
        """The dashboard open: its data every 3 s, the page every minute."""
        with requests.Session() as session:
            session.headers["Cookie"] = cookie
            last_page = 0.0
            while self.running():
                # No redirects followed: one to the login page is a session lost, an error.
                page = time.monotonic() - last_page >= 60
                if page and self.get(session, "/admin/dashboard/", allow_redirects=False) is not None:
                    last_page = time.monotonic()
                    self.count("dashboard pages")
                if self.get(session, "/admin/dashboard/data/", allow_redirects=False) is not None:
                    self.count("dashboard refreshes")
                time.sleep(3)

    def check_pruned(self) -> None:
        """Every checked job that ended more than PRUNED_WITHIN ago must be gone."""
        now = time.monotonic()
        with self.lock:
            due = [entry for entry in self.ended if entry[0] < now - PRUNED_WITHIN]
            self.ended = [entry for entry in self.ended if entry[0] >= now - PRUNED_WITHIN]
        with requests.Session() as session:
            for ended_at, job_id, headers in due:
                answer = self.get(session, f"/api/status?jobid={job_id}", expected=400, headers=headers)
                if answer is not None and answer.json() == {}:
                    self.count("jobs seen removed")
                elif answer is not None:
                    self.error(f"job {job_id} still answers {answer.text[:100]} {now - ended_at:.0f} s after it ended")


def staff_cookie(service: Service) -> str:
    """A staff user, logged in to the admin: the Cookie header of its session. By hand, as the
    service's cookies are `Secure` and requests would not send them back over plain HTTP."""
    # The admin's pages need the static files' manifest, which bin/run collects at start.
    subprocess.run([PY, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=service.env, check=True)
    env = {**service.env, "DJANGO_SUPERUSER_PASSWORD": STAFF_PASSWORD}
    command = [PY, "manage.py", "createsuperuser", "--noinput", "--username", STAFF, "--email", "soak@example.com"]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    login = requests.get(f"{service.base}/admin/login/", timeout=30)
    token = set_cookies(login)["csrftoken"]
    answer = requests.post(
        f"{service.base}/admin/login/",
        data={"username": STAFF, "password": STAFF_PASSWORD, "csrfmiddlewaretoken": token, "next": "/admin/"},
        cookies={"csrftoken": token},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302, f"admin login: HTTP {answer.status_code}"
    return f"csrftoken={token}; sessionid={set_cookies(answer)['sessionid']}"


def set_cookies(response: requests.Response) -> dict[str, str]:
    """The cookies a response sets, Secure ones included (requests' own jar drops them over HTTP)."""
    cookies = http.cookies.SimpleCookie()
    for header in response.raw.headers.getlist("Set-Cookie"):
        cookies.load(header)
    return {name: morsel.value for name, morsel in cookies.items()}


class Memory:
    """The service's RSS by process role, sampled every few seconds: each minute's peak, and the
    peak of the warm-up against the peak of any later minute. A role of several processes counts
    its largest: django-q2 replaces a worker after 500 tasks, so a worker's pid lives minutes, while
    "the largest worker" lives as long as the cluster."""

    def __init__(self, service: Service, warm_up: float):
        self.web_pid, self.cluster_pid, self.warm_up = service.web.pid, service.worker.pid, warm_up
        self.minute_peak: dict[str, int] = {}
        self.warm_up_peak: dict[str, int] = {}
        self.later_peak: dict[str, int] = {}
        self.worker_pids: set[int] = set()

    def role(self, process: psutil.Process) -> str:
        title = " ".join(process.cmdline())  # django-q2 and gunicorn title their processes
        if process.pid in (self.web_pid, self.cluster_pid):
            return "web master" if process.pid == self.web_pid else "cluster"
        if title.startswith("gunicorn"):
            return "web worker"
        for role in ("monitor", "pusher", "MainProcess"):
            if f" {role}" in title:
                return "sentinel" if role == "MainProcess" else role
        self.worker_pids.add(process.pid)
        return "worker"

    def sample(self, processes: list[psutil.Process]) -> None:
        for process in processes:
            try:
                role, rss = self.role(process), process.memory_info().rss
            except psutil.Error:
                continue
            self.minute_peak[role] = max(self.minute_peak.get(role, 0), rss)

    def end_minute(self, at: float) -> dict[str, int]:
        """The minute's peaks (into the warm-up's, or the later ones'), and start the next minute. A
        role's first minute is always its warm-up's."""
        peaks, self.minute_peak = self.minute_peak, {}
        for role, rss in peaks.items():
            into = self.warm_up_peak if at <= self.warm_up or role not in self.warm_up_peak else self.later_peak
            into[role] = max(into.get(role, 0), rss)
        return peaks

    def growth(self, role: str) -> float | None:
        if role not in self.later_peak or role not in self.warm_up_peak:
            return None
        return self.later_peak[role] / self.warm_up_peak[role] - 1


def database_size(service: Service, workdir: Path) -> int:
    url = service.env["DATABASE_URL"]
    if url.startswith("sqlite"):
        return sum(path.stat().st_size for path in workdir.glob("bench.sqlite3*"))
    query = f"SELECT pg_database_size('{bench_service.PG_DATABASE}')"
    return int(subprocess.run(["psql", url, "-Atc", query], capture_output=True, text=True, check=True).stdout)


def task_failures(service: Service) -> list[str]:
    """django-q2's failed tasks, and the results of the retention runs it kept."""
    script = (
        "from django_q.models import Failure, Success\n"
        "for task in Failure.objects.all()[:20]: print('FAILED', task.func, task.result)\n"
        "for task in Success.objects.filter(func='jobs.tasks.prune_expired_jobs')[:5]: print('PRUNED', task.result)\n"
    )
    output = subprocess.run(
        [PY, "manage.py", "shell", "-v", "0", "-c", script], cwd=ROOT, env=service.env, capture_output=True, text=True
    )
    return output.stdout.splitlines() + [line for line in output.stderr.splitlines() if "Error" in line]


def minute(soak: Soak, memory: Memory, workdir: Path) -> None:
    """The minute's line: each role's peak RSS, the database's size, the counts so far."""
    at = time.monotonic() - soak.started
    peaks = memory.end_minute(at)
    soak.check_pruned()
    for process, name in ((soak.service.web, "gunicorn"), (soak.service.worker, "qcluster")):
        if process.poll() is not None:
            soak.error(f"{name} exited with {process.returncode}")
    counts = ", ".join(f"{what} {n:,}" for what, n in sorted(soak.counts.items()))
    rss = ", ".join(f"{role} {value / 2**20:.0f}" for role, value in peaks.items())
    size = database_size(soak.service, workdir) / 2**20
    print(
        f"{at:5.0f} s  peak RSS MiB: {rss} | database {size:.0f} MiB | {counts} | errors {len(soak.errors)}", flush=True
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    warm_up = min(600.0, args.seconds / 2)
    settings = {
        "RETAILPULSE_API_TOKENS": "1",
        "RETAILPULSE_RETENTION_DAYS": f"{RETENTION_SECONDS / 86400:.8f}",
        "LOG_LEVEL": "WARNING",
    }
    with image_host("rp-soak-") as workdir, Service(args.db, "0", workdir, settings) as service:
        soak = Soak(service, args.seconds)
        print(f"soak: {args.seconds:.0f} s on {args.db}, warm-up {warm_up:.0f} s, retention {RETENTION_SECONDS} s")
        threads = [
            threading.Thread(target=soak.big_jobs, args=(service.create_client("bulk"),)),
            *(
                threading.Thread(target=soak.small_jobs, args=(n, service.create_client(f"chain-{n}")))
                for n in range(1, SMALL_CLIENTS + 1)
            ),
            threading.Thread(target=soak.status_polls),
            threading.Thread(target=soak.dashboard, args=(staff_cookie(service),)),
        ]
        for thread in threads:
            thread.start()
        memory = Memory(service, warm_up)
        next_report = soak.started + REPORT_EVERY
        while any(thread.is_alive() for thread in threads):
            memory.sample(service.processes())
            if time.monotonic() >= next_report:
                minute(soak, memory, workdir)
                next_report += REPORT_EVERY
            time.sleep(SAMPLE_EVERY)
        minute(soak, memory, workdir)
        for line in task_failures(service):
            print(line)
            if line.startswith("FAILED") or "Error" in line:
                soak.error(f"a django-q2 task failed: {line}")

    print("\n| process | peak RSS MiB in the warm-up | after | growth |\n|" + " --- |" * 4)
    for role, baseline in memory.warm_up_peak.items():
        growth = memory.growth(role)
        later = f"{memory.later_peak[role] / 2**20:.0f}" if role in memory.later_peak else "-"
        print(f"| {role} | {baseline / 2**20:.0f} | {later} | {'-' if growth is None else f'{growth:+.1%}'} |")
        if growth is not None and growth > GROWTH_LIMIT:
            soak.error(f"{role} RSS grew {growth:+.1%} after the warm-up")
    print(f"\nworker processes: {len(memory.worker_pids)} (django-q2 replaces one after 500 tasks)")
    print(f"\n{', '.join(f'{what} {n:,}' for what, n in sorted(soak.counts.items()))}")
    print(f"errors: {len(soak.errors)}")
    for line in soak.errors[:20]:
        print(f"  {line}")
    return 1 if soak.errors else 0


if __name__ == "__main__":
    sys.exit(main())
