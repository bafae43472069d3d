"""A year of jobs: the service's reads on ten million image results, with a job running.

    make bench-year      (or .venv/bin/python bench/year.py --db postgres sqlite)

Seeds once, in the shape a year of use leaves: 5,000 stores in 100 areas, 100 jobs of 100,000
images (1,000 visits of 100 images, each store visited 20 times over the year), every tenth job
failed with 5 % of its images failed, the rest completed. The images are written by the
database itself (INSERT ... SELECT), a job at a time. On PostgreSQL (the default) the database is
year_bench, made if missing; on SQLite (`--db sqlite`), var/year-bench.sqlite3.

Then starts the service as `make run` does (gunicorn + one qcluster) on that database with nginx
serving the images, submits a 100,000-image job (another as soon as one ends, so that one always
runs) and times each read over HTTP, one request at a time: the p50 and p99 of up to
REQUESTS_PER_READ requests. The CSV export of a 100,000-image job is timed as a whole (rows per
second), with the web process's RSS sampled while it streams. Prints a Markdown section.
"""

import argparse
import base64
import collections
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import psutil
import requests
import service

SEEDED_JOBS, VISITS_PER_JOB, IMAGES_PER_VISIT = 100, 1000, 100
IMAGES_PER_JOB = VISITS_PER_JOB * IMAGES_PER_VISIT
STORES, AREAS = 5000, 100
FAILED_EVERY_NTH_JOB, FAILED_EVERY_NTH_IMAGE = 10, 20
YEAR_START = datetime(2024, 1, 1, tzinfo=UTC)
REQUESTS_PER_READ, SECONDS_PER_READ = 200, 40
DEFAULT_DATABASE = "year_bench"


def store_id(n: int) -> str:
    """The seeded stores are the service bench's store master (B00000 and on) and more of them."""
    return f"B{n:05d}"


def ensure_database(name: str) -> str:
    exists = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not exists:
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def setup_django(database_url: str) -> None:
    os.environ.update(
        DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="retailpulse.settings", **service.BENCH_SETTINGS
    )
    sys.path.insert(0, str(service.ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def renice_backend() -> None:
    """The seeding's heavy work is this process's PostgreSQL backend: it yields to everything else."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    subprocess.run(["renice", "-n", "19", "-p", str(pid)], check=True, stdout=subprocess.DEVNULL)


def seeded_jobs() -> list[int]:
    from jobs.models import Job

    return list(
        Job.objects.filter(images_total=IMAGES_PER_JOB, idempotency_key__startswith="year-")
        .values_list("pk", flat=True)
        .order_by("pk")
    )


def seed() -> float:
    """Seeds what is missing; the seconds it took (0 when it was there)."""
    from django.db import connection, transaction

    from jobs import selectors
    from jobs.models import Chunk, ImageResult, Job, Visit
    from stores.models import Store

    if len(seeded_jobs()) >= SEEDED_JOBS:
        return 0.0
    started = time.perf_counter()
    if connection.vendor == "postgresql":
        renice_backend()
    Store.objects.bulk_create(
        [Store(store_id=store_id(n), name=f"Store {n}", area_code=f"A{n % AREAS:03d}") for n in range(STORES)],
        ignore_conflicts=True,
    )
    image_table = connection.ops.quote_name(ImageResult._meta.db_table)
    visit_table = connection.ops.quote_name(Visit._meta.db_table)
    for j in range(len(seeded_jobs()), SEEDED_JOBS):
        created = YEAR_START + timedelta(days=j * 366 / SEEDED_JOBS)
        finished = created + timedelta(hours=1)
        failed = IMAGES_PER_JOB // FAILED_EVERY_NTH_IMAGE if j % FAILED_EVERY_NTH_JOB == 0 else 0
        with transaction.atomic():
            job = Job.objects.create(
                status=Job.Status.FAILED if failed else Job.Status.COMPLETED,
                images_total=IMAGES_PER_JOB,
                images_done=IMAGES_PER_JOB - failed,
                images_failed=failed,
                idempotency_key=f"year-{j}",
            )
            Job.objects.filter(pk=job.pk).update(
                created_at=created, started_at=created, finished_at=finished, progressed_at=finished
            )
            visits = Visit.objects.bulk_create(
                [
                    Visit(
                        job=job,
                        store_code=store_id((j * VISITS_PER_JOB + v) % STORES),
                        store_id=store_id((j * VISITS_PER_JOB + v) % STORES),
                        # the visits of the days before the submit, one every ~86 s
                        visit_time=created - timedelta(seconds=(VISITS_PER_JOB - v) * 86),
                    )
                    for v in range(VISITS_PER_JOB)
                ],
                batch_size=1000,
            )
            with connection.cursor() as cursor:
                cursor.execute(
                    # Both databases' SQL: 100 numbers from a recursive CTE, crossed with the job's visits.
                    "WITH RECURSIVE numbers(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM numbers WHERE n < %s)"
                    f" INSERT INTO {image_table}"
                    " (job_id, visit_id, url, status, width, height, perimeter, error, processed_at)"
                    " SELECT job_id, visit_id, 'https://img.example.com/' || visit_id || '/' || n || '.jpg',"
                    " CASE WHEN failed THEN 'failed' ELSE 'done' END, CASE WHEN failed THEN NULL ELSE w END,"
                    " CASE WHEN failed THEN NULL ELSE h END, CASE WHEN failed THEN NULL ELSE 2 * (w + h) END,"
                    " CASE WHEN failed THEN 'HTTP 404' ELSE '' END, %s"
                    " FROM (SELECT v.job_id, v.id AS visit_id, numbers.n,"
                    " %s AND (v.id + numbers.n) %% %s = 0 AS failed,"
                    " 100 + (v.id * 7 + numbers.n * 13) %% 3900 AS w, 100 + (v.id * 11 + numbers.n * 17) %% 2900 AS h"
                    f" FROM {visit_table} v CROSS JOIN numbers WHERE v.job_id = %s) images"
                    " ORDER BY visit_id, n",
                    [
                        IMAGES_PER_VISIT - 1,
                        connection.ops.adapt_datetimefield_value(finished),
                        bool(failed),
                        FAILED_EVERY_NTH_IMAGE,
                        job.pk,
                    ],
                )
            first_id = visits[0].images.order_by("id").values_list("id", flat=True).first()
            chunk_size = IMAGES_PER_JOB // 4
            Chunk.objects.bulk_create(
                [
                    Chunk(
                        job=job,
                        number=n,
                        first_image_id=first_id + n * chunk_size,
                        last_image_id=first_id + (n + 1) * chunk_size - 1,
                        state=Chunk.State.DONE,
                    )
                    for n in range(4)
                ]
            )
            if failed:
                Job.objects.filter(pk=job.pk).update(errors=selectors.store_errors(job_id=job.pk))
        print(
            f"seeded job {j + 1} of {SEEDED_JOBS} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    return time.perf_counter() - started


def admin_session_cookie() -> str:
    """A logged-in superuser's session key (made here, in the same database the web process reads)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", "", "bench-Pass-123")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def deep_cursor(image_id: int) -> str:
    """The `cursor` of an image page that starts after `image_id` (as DRF's CursorPagination writes it)."""
    return base64.b64encode(urlencode({"p": image_id}).encode()).decode()


class RunningJob:
    """Keeps a 100,000-image job running: submits one, and another as soon as it ends."""

    def __init__(self, web: service.Service):
        self.web, self.submits, self.finished = web, [], 0
        self._stop = threading.Event()
        self.job_id = self._submit()
        self._thread = threading.Thread(target=self._keep_running, daemon=True)
        self._thread.start()

    def _submit(self) -> int:
        job_id, seconds = self.web.submit(IMAGES_PER_JOB, f"year-{len(self.submits)}-{time.time_ns()}")
        self.submits.append(seconds)
        return job_id

    def _keep_running(self) -> None:
        while not self._stop.wait(0.5):
            status = requests.get(f"{self.web.base}/api/status?jobid={self.job_id}", timeout=30).json()["status"]
            if status != "ongoing":
                self.finished += 1
                self.job_id = self._submit()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def export_figures(web: service.Service, session: requests.Session, job_id: int) -> tuple[float, float, float]:
    """The CSV export of `job_id`: rows per second, and the web processes' RSS (MiB) before and at its peak."""
    web_processes = service.process_tree(web.web.pid)
    before = sum(process.memory_info().rss for process in web_processes)
    peak, streaming = before, True

    def sample() -> None:
        nonlocal peak
        while streaming:
            peak = max(peak, sum(process.memory_info().rss for process in web_processes))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    with session.get(f"{web.base}/api/jobs/{job_id}/images/?format=csv", stream=True, timeout=600) as response:
        assert response.status_code == 200, response.text[:200]
        lines = sum(chunk.count(b"\n") for chunk in response.iter_content(64 * 1024))
    seconds = time.perf_counter() - started
    streaming = False
    sampler.join()
    return (lines - 1) / seconds, before / 2**20, peak / 2**20


def reads(seeded: list[int]) -> dict[str, str]:
    """Each read's URL, named as the results table names it."""
    from jobs.models import ImageResult, Job

    failed_job = Job.objects.filter(pk__in=seeded, status=Job.Status.FAILED).order_by("pk")[1]
    completed_job = Job.objects.filter(pk__in=seeded, status=Job.Status.COMPLETED).order_by("pk")[40]
    deep = ImageResult.objects.filter(job=completed_job).order_by("id").values_list("id", flat=True)[90_000]
    month = "startdate=2024-06-01T00:00:00Z&enddate=2024-06-30T23:59:59Z"
    return {
        "job detail (failed job)": f"/api/jobs/{failed_job.pk}/",
        "image page, first": f"/api/jobs/{completed_job.pk}/images/",
        "image page, deep cursor (image 90,001)": f"/api/jobs/{completed_job.pk}/images/?cursor={deep_cursor(deep)}",
        "failed images of a job, first page": f"/api/jobs/{failed_job.pk}/images/?status=failed",
        "/api/visits, one store": f"/api/visits?storeid={store_id(4242)}",
        "/api/visits, one area (50 stores)": "/api/visits?area=A042",
        "/api/visits, one month, all stores": f"/api/visits?{month}",
        "/api/visits, one area, one month": f"/api/visits?area=A042&{month}",
        "admin: job list": "/admin/jobs/job/",
        "admin: failed jobs": "/admin/jobs/job/?status__exact=failed",
        "admin: image list": "/admin/jobs/imageresult/",
        "admin: failed images": "/admin/jobs/imageresult/?status__exact=failed",
        "admin: a job's failed images": f"/admin/jobs/imageresult/?job__id__exact={failed_job.pk}&status__exact=failed",
        "admin: a job's page": f"/admin/jobs/job/{failed_job.pk}/change/",
        "admin: dashboard": "/admin/dashboard/",
        "admin: dashboard refresh (JSON)": "/admin/dashboard/data/",
    }


def timed_reads(session: requests.Session, url: str, web: service.Service) -> dict:
    """Up to REQUESTS_PER_READ requests of `url` (fewer once SECONDS_PER_READ pass): the p50 and p99
    in ms, and the web process's CPU ms per request (its time, whatever else the machine runs)."""
    timings: list[float] = []
    failures: collections.Counter[int] = collections.Counter()
    cpu_before = web_cpu_seconds(web)
    deadline = time.monotonic() + SECONDS_PER_READ
    while len(timings) < REQUESTS_PER_READ and (len(timings) < 10 or time.monotonic() < deadline):
        started = time.perf_counter()
        response = session.get(url, timeout=120)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            failures[response.status_code] += 1
    return {
        "requests": len(timings),
        "failed": dict(failures),
        "p50": statistics.median(timings),
        "p99": service.percentile(timings, 0.99),
        "cpu": (web_cpu_seconds(web) - cpu_before) * 1000 / len(timings),
    }


def web_cpu_seconds(web: service.Service) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in service.process_tree(web.web.pid))


def measure(db: str) -> dict:
    """Seeds `db` (once), then times every read with a job running: the figures, JSON-ready."""
    from django.conf import settings

    database_url = (
        ensure_database(DEFAULT_DATABASE) if db == "postgres" else f"sqlite:///{service.ROOT}/var/year-bench.sqlite3"
    )
    setup_django(database_url)
    # How long seeding took, kept beside the database: later runs report it too.
    seeded_in = service.ROOT / "var" / f"year-bench-{db}.seed-seconds"
    seed_seconds = seed()
    if seed_seconds:
        seeded_in.write_text(f"{seed_seconds:.0f}\n")
    elif seeded_in.exists():
        seed_seconds = float(seeded_in.read_text())
    from django.core.management import call_command

    from jobs.models import ImageResult

    seeded = seeded_jobs()
    urls = reads(seeded)
    # The admin's pages need the static files' manifest, which bin/run makes before it starts the web.
    call_command("collectstatic", "--noinput", verbosity=0)
    results = {}
    with service.image_host("rp-year-") as workdir, service.Service(db, "0", workdir, {}, database_url) as web:
        running = RunningJob(web)
        with requests.Session() as session:
            session.cookies.set(settings.SESSION_COOKIE_NAME, admin_session_cookie())
            status_url = f"{web.base}/api/status?jobid={running.job_id}"
            results["GET /api/status (the running job)"] = timed_reads(session, status_url, web)
            for name, url in urls.items():
                results[name] = timed_reads(session, web.base + url, web)
                print(f"{db} {name}: {results[name]}", file=sys.stderr, flush=True)
            rows_per_second, rss_before, rss_peak = export_figures(web, session, seeded[40])
        running.stop()
    return {
        "images": ImageResult.objects.count(),
        "seed_seconds": seed_seconds,
        "reads": results,
        "submits": running.submits,
        "jobs_ended": running.finished,
        "export": {"rows_per_second": rows_per_second, "rss_before": rss_before, "rss_peak": rss_peak},
    }


DB_NAMES = {"postgres": "PostgreSQL", "sqlite": "SQLite"}


def print_section(figures: dict[str, dict]) -> None:
    memory = psutil.virtual_memory().total / 2**30
    machine = f"{platform.machine()} ({service.cpu_model()}), {service.CORES} cores, {memory:.0f} GiB"
    dbs = list(figures)
    print("## A year of jobs\n")
    print(
        "Written by `make bench-year` (`bench/year.py`, about 7 minutes a database once seeded): "
        f"{SEEDED_JOBS} jobs of {IMAGES_PER_JOB:,} images ({VISITS_PER_JOB:,} visits of {IMAGES_PER_VISIT}) over "
        f"{STORES:,} stores in {AREAS} areas and a year of visit times, every {FAILED_EVERY_NTH_JOB}th job failed "
        f"with 1 image in {FAILED_EVERY_NTH_IMAGE} failed, seeded once into a database of its own. The service "
        f"runs as `make run` starts it (gunicorn + one qcluster), with a {IMAGES_PER_JOB:,}-image job always "
        "running (another is submitted as one ends). Each read is timed over HTTP, one request at a time, up to "
        f"{REQUESTS_PER_READ} times; **web CPU** is the web process's CPU time per request. Machine: {machine}; "
        "shared with other work: read the CPU column and the p50s first.\n"
    )
    for db in dbs:
        f = figures[db]
        seeded = f" (seeded in {f['seed_seconds'] / 60:.1f} minutes)" if f["seed_seconds"] else ""
        print(f"- {DB_NAMES[db]}: {f['images']:,} image results{seeded}; {f['jobs_ended']} running jobs ended.")
    print()
    print("| read | " + " | ".join(f"{DB_NAMES[db]} p50 ms | p99 ms | web CPU ms" for db in dbs) + " |")
    print("| --- |" + " --- | --- | --- |" * len(dbs))
    for name in figures[dbs[0]]["reads"]:
        cells = [figures[db]["reads"][name] for db in dbs]
        print(f"| {name} | " + " | ".join(read_cells(c) for c in cells) + " |")
    print()
    for db in dbs:
        f, export = figures[db], figures[db]["export"]
        print(
            f"- {DB_NAMES[db]}: **submit** of {IMAGES_PER_JOB:,} images {statistics.median(f['submits']):.2f} s "
            f"(median of {len(f['submits'])}, the slowest {max(f['submits']):.2f} s); **CSV export** of a "
            f"{IMAGES_PER_JOB:,}-image job {export['rows_per_second']:,.0f} rows/s, the web process's RSS "
            f"{export['rss_before']:.0f} MiB before and at most {export['rss_peak']:.0f} MiB while it streams."
        )


def read_cells(read: dict) -> str:
    """p50, p99 and CPU; the responses that were not 200, if any, by status (their times included)."""
    failed = ", ".join(f"{n} x {status}" for status, n in sorted(read["failed"].items()))
    return f"{read['p50']:.1f} | {read['p99']:.1f}{f' ({failed})' if failed else ''} | {read['cpu']:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=list(DB_NAMES), nargs="+", default=["postgres"])
    parser.add_argument("--one", choices=list(DB_NAMES), help=argparse.SUPPRESS)  # a child's database
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    # A process per database: Django's settings read DATABASE_URL once.
    figures = {
        db: json.loads(
            subprocess.run(
                [sys.executable, __file__, "--one", db], check=True, stdout=subprocess.PIPE, text=True
            ).stdout
        )
        for db in args.db
    }
    print_section(figures)


if __name__ == "__main__":
    main()
