"""Times GET /api/visits, the CSV export and /metrics on a database with 1,000,000 image results.

    make bench-visits      (or DATABASE_URL=postgres://... make bench-visits)

Seeds once: 5,000 stores in 100 areas, 1,000 jobs of 100 visits (one visit per store every ~18
days of 2024) with 10 images each, 90 % measured and 10 % failed; and one more job of 100,000
measured images of a store that is not in the master (so it stays out of /api/visits), for the
export. Then prints the median of 5 requests per query through Django's test client (no network,
no web server: the view's own cost), with the number of data points and stores on the page.
"""

import os
import random
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retailpulse.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from jobs.models import ImageResult, Job, Visit  # noqa: E402
from stores.models import Store  # noqa: E402

STORES, AREAS = 5000, 100
JOBS, VISITS_PER_JOB, IMAGES_PER_VISIT = 1000, 100, 10
EXPORT_IMAGES = 100_000
YEAR_START = datetime(2024, 1, 1, tzinfo=UTC)


def store_id(n: int) -> str:
    return f"VB{n:05d}"


def seed_export_job() -> Job:
    """One job of EXPORT_IMAGES measured images, of a store outside the master."""
    job = Job.objects.filter(images_total=EXPORT_IMAGES).first()
    if job:
        return job
    print(f"seeding a job of {EXPORT_IMAGES:,} images ...", flush=True)
    with transaction.atomic():
        job = Job.objects.create(
            status="completed", images_total=EXPORT_IMAGES, images_done=EXPORT_IMAGES, finished_at=datetime.now(UTC)
        )
        visit = Visit.objects.create(job=job, store_code="EXPORT", visit_time=YEAR_START)
        now = connection.ops.adapt_datetimefield_value(datetime.now(UTC))
        table = connection.ops.quote_name(ImageResult._meta.db_table)
        rows = [
            (job.pk, visit.pk, f"https://img.example.com/export/{n:06d}.jpg", "done", 640, 480, 2240, "", now)
            for n in range(EXPORT_IMAGES)
        ]
        with connection.cursor() as cursor:
            columns = "job_id, visit_id, url, status, width, height, perimeter, error, processed_at"
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * 9)})", rows)
    return job


def seed() -> None:
    if Visit.objects.exclude(store_code="EXPORT").count() >= JOBS * VISITS_PER_JOB:
        return
    print(f"seeding {JOBS * VISITS_PER_JOB * IMAGES_PER_VISIT:,} image results ...", flush=True)
    Store.objects.bulk_create(
        [Store(store_id=store_id(n), name=f"Store {n}", area_code=f"A{n % AREAS:03d}") for n in range(STORES)],
        ignore_conflicts=True,
    )
    rng = random.Random(6)
    table = connection.ops.quote_name(ImageResult._meta.db_table)
    columns = "job_id, visit_id, url, status, width, height, perimeter, error, processed_at"
    now = connection.ops.adapt_datetimefield_value(datetime.now(UTC))
    for j in range(JOBS):
        with transaction.atomic():
            job = Job.objects.create(
                status="failed",
                images_total=VISITS_PER_JOB * IMAGES_PER_VISIT,
                images_done=VISITS_PER_JOB * IMAGES_PER_VISIT * 9 // 10,
                images_failed=VISITS_PER_JOB * IMAGES_PER_VISIT // 10,
                finished_at=datetime.now(UTC),
            )
            visits = Visit.objects.bulk_create(
                [
                    Visit(
                        job=job,
                        store_code=store_id((j * VISITS_PER_JOB + v) % STORES),
                        store_id=store_id((j * VISITS_PER_JOB + v) % STORES),
                        visit_time=YEAR_START + timedelta(seconds=rng.randrange(366 * 86400)),
                    )
                    for v in range(VISITS_PER_JOB)
                ]
            )
            rows = []
            for visit in visits:
                for i in range(IMAGES_PER_VISIT):
                    url = f"https://img.example.com/{visit.pk}/{i}.jpg"
                    if i == 0:
                        rows.append((job.pk, visit.pk, url, "failed", None, None, None, "HTTP 404", now))
                    else:
                        w, h = rng.randrange(100, 4000), rng.randrange(100, 3000)
                        rows.append((job.pk, visit.pk, url, "done", w, h, 2 * (w + h), "", now))
            with connection.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * 9)})", rows)


def main() -> None:
    call_command("migrate", verbosity=0)
    seed()
    export_job = seed_export_job()
    with connection.cursor() as cursor:
        # Fresh statistics (a migration that rebuilds a SQLite table drops that table's).
        cursor.execute("ANALYZE")
    client = Client()
    queries = {
        "one store": f"storeid={store_id(4242)}",
        "one store, one month": f"storeid={store_id(4242)}&startdate=2024-06-01T00:00:00Z&enddate=2024-06-30T23:59:59Z",
        "one area (50 stores), page 1": "area=A042",
        "one area, one month": "area=A042&startdate=2024-06-01T00:00:00Z&enddate=2024-06-30T23:59:59Z",
        "one day, all stores": "startdate=2024-06-01T00:00:00Z&enddate=2024-06-01T23:59:59Z",
        "one month, all stores": "startdate=2024-06-01T00:00:00Z&enddate=2024-06-30T23:59:59Z",
        "since June, all stores": "startdate=2024-06-01T00:00:00Z",
    }
    print(
        f"{connection.vendor}, {ImageResult.objects.count():,} image results "
        f"({EXPORT_IMAGES:,} of them in the export job), {Visit.objects.count():,} visits"
    )
    print(f"{'query':32} {'median ms':>10} {'points':>7} {'stores':>7}")
    for name, query in queries.items():
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            response = client.get(f"/api/visits?{query}", SERVER_NAME=settings.ALLOWED_HOSTS[0])
            timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:200]
        results = response.json()["results"]
        points = sum(len(store["data"]) for store in results)
        print(f"{name:32} {statistics.median(timings):10.1f} {points:>7} {len(results):>7}")
    # The last page of the biggest query costs what the first does (keyset pagination).
    url, pages, started = "/api/visits?area=A042", 0, time.perf_counter()
    while url:
        body = client.get(url, SERVER_NAME=settings.ALLOWED_HOSTS[0]).json()
        url, pages = body["next"], pages + 1
    per_page = (time.perf_counter() - started) * 1000 / pages
    print(f"{'one area, every page':32} {per_page:10.1f} ms per page, {pages} pages")

    timings = []
    for _ in range(5):
        started = time.perf_counter()
        response = client.get("/metrics", SERVER_NAME=settings.ALLOWED_HOSTS[0])
        timings.append((time.perf_counter() - started) * 1000)
    print(f"{'GET /metrics':32} {statistics.median(timings):10.1f}")

    url = f"/api/jobs/{export_job.pk}/images/?format=csv"
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        response = client.get(url, SERVER_NAME=settings.ALLOWED_HOSTS[0])
        size = sum(len(piece) for piece in response.streaming_content)
        response.close()
        timings.append(time.perf_counter() - started)
    tracemalloc.start()
    response = client.get(url, SERVER_NAME=settings.ALLOWED_HOSTS[0])
    for _piece in response.streaming_content:
        pass
    response.close()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"CSV export of {EXPORT_IMAGES:,} images: {statistics.median(timings):.2f} s (median of 3), "
        f"{size / 1e6:.1f} MB, peak Python memory {peak / 1e6:.1f} MB while streaming"
    )


if __name__ == "__main__":
    main()
