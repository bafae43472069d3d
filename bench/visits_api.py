"""Times GET /api/visits on a database with 1,000,000 image results.

    DJANGO_DEBUG=1 DATABASE_URL=sqlite:////tmp/visits-bench.sqlite3 .venv/bin/python bench/visits_api.py

Seeds once: 5,000 stores in 100 areas, 1,000 jobs of 100 visits (one visit per store every ~18
days of 2024) with 10 images each, 90 % measured and 10 % failed. Then prints the median of 5
requests per query through Django's test client (no network, no web server: the view's own cost),
with the number of data points and stores on the page.
"""

import os
import random
import statistics
import sys
import time
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
YEAR_START = datetime(2024, 1, 1, tzinfo=UTC)


def store_id(n: int) -> str:
    return f"VB{n:05d}"


def seed() -> None:
    if ImageResult.objects.count() >= JOBS * VISITS_PER_JOB * IMAGES_PER_VISIT:
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
    print(f"{connection.vendor}, {ImageResult.objects.count():,} image results, {Visit.objects.count():,} visits")
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


if __name__ == "__main__":
    main()
