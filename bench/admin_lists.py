"""Times the admin pages operators use most on a database with 1,000,000 image results.

    DJANGO_DEBUG=1 DATABASE_URL=sqlite:////tmp/admin-bench.sqlite3 .venv/bin/python bench/admin_lists.py

Seeds 1,000 jobs of 1,000 image results each (10 % failed) once, then prints the median of 5
requests per page through Django's test client (no network, no web server: the page's own cost).
Each run also writes the per-minute outcome counts of those 1,000,000 outcomes as if they had all
been recorded within the last hour by 8 workers, so that the dashboard shows a full hour, and gives
the jobs to 10 clients (every 11th job stays the anonymous client's) for the dashboard's client
shares, timed with API tokens on.
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retailpulse.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Count, Sum  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from jobs.models import ImageResult, Job, OutcomeCount, Visit  # noqa: E402
from stores.models import Store  # noqa: E402

JOBS, IMAGES_PER_JOB, VISITS_PER_JOB = 1000, 1000, 10
WORKERS, WORKERS_PER_JOB = 8, 4
CLIENTS = 10
FAILURE_CAUSES = ["HTTP 404", "timed out after 30 s", "unsupported image format ICO", "refused", "host name not found"]


def seed() -> None:
    if Job.objects.count() >= JOBS:
        return
    print(f"seeding {JOBS:,} jobs x {IMAGES_PER_JOB:,} images ...", flush=True)
    Store.objects.bulk_create(
        [Store(store_id=f"RP{n:05d}", name=f"Store {n}", area_code=str(7000 + n % 5)) for n in range(5000)],
        ignore_conflicts=True,
    )
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    table = connection.ops.quote_name(ImageResult._meta.db_table)
    for j in range(JOBS):
        with transaction.atomic():
            failed = IMAGES_PER_JOB // 10
            job = Job.objects.create(
                status="failed",
                images_total=IMAGES_PER_JOB,
                images_done=IMAGES_PER_JOB - failed,
                images_failed=failed,
                errors=[{"store_id": f"RP{j % 5000:05d}", "error": "https://img.example.com/x.jpg: HTTP 404"}],
                finished_at=timezone.now(),
            )
            visits = Visit.objects.bulk_create(
                [
                    Visit(
                        job=job,
                        store_code=f"RP{(j + v) % 5000:05d}",
                        store_id=f"RP{(j + v) % 5000:05d}",
                        visit_time=timezone.now(),
                    )
                    for v in range(VISITS_PER_JOB)
                ]
            )
            rows = []
            for i in range(IMAGES_PER_JOB):
                visit = visits[i % VISITS_PER_JOB]
                if i % 10 == 0:
                    rows.append(
                        (
                            job.pk,
                            visit.pk,
                            f"https://img.example.com/{j}/{i}.jpg",
                            "failed",
                            None,
                            None,
                            None,
                            "HTTP 404",
                            now,
                        )
                    )
                else:
                    rows.append(
                        (job.pk, visit.pk, f"https://img.example.com/{j}/{i}.jpg", "done", 640, 480, 2240, "", now)
                    )
            with connection.cursor() as cursor:
                columns = "job_id, visit_id, url, status, width, height, perimeter, error, processed_at"
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * 9)})", rows)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def seed_outcome_counts() -> None:
    """Job j ran in minute j * 59 / JOBS of the last hour and the next one, on WORKERS_PER_JOB of
    WORKERS workers: per (minute, worker), a row of measured images and one of a failure cause."""
    start = timezone.now().replace(second=0, microsecond=0) - timezone.timedelta(minutes=59)
    failed_per_job = IMAGES_PER_JOB // 10
    cells = [(minute, worker) for minute in range(2) for worker in range(WORKERS_PER_JOB)]
    rows = []
    for j, job_id in enumerate(Job.objects.order_by("id").values_list("id", flat=True)[:JOBS]):
        for i, (minute_offset, worker_offset) in enumerate(cells):
            minute = start + timezone.timedelta(minutes=j * 59 // JOBS + minute_offset)
            worker = f"bench-host {1000 + (j + worker_offset) % WORKERS}"
            measured = (IMAGES_PER_JOB - failed_per_job) // len(cells) + (
                i < (IMAGES_PER_JOB - failed_per_job) % len(cells)
            )
            failed = failed_per_job // len(cells) + (i < failed_per_job % len(cells))
            for cause, images in (("", measured), (FAILURE_CAUSES[j % len(FAILURE_CAUSES)], failed)):
                rows.append(
                    OutcomeCount(
                        minute=minute, job_id=job_id, worker=worker, cause=cause, images=images, last_at=minute
                    )
                )
    with transaction.atomic():
        OutcomeCount.objects.all().delete()
        OutcomeCount.objects.bulk_create(rows, batch_size=2000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {OutcomeCount._meta.db_table}")


def give_jobs_to_clients() -> None:
    """Job n belongs to client n % (CLIENTS + 1); the last of those is the anonymous client."""
    job_ids = list(Job.objects.order_by("id").values_list("id", flat=True))
    for n in range(CLIENTS):
        user, _ = User.objects.get_or_create(username=f"bench-client-{n}")
        Job.objects.filter(pk__in=job_ids[n :: CLIENTS + 1]).update(client=user)


def print_timing(client: Client, name: str, url: str) -> None:
    """Prints the median time of 5 requests of `url` and the last one's status."""
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        response = client.get(url, SERVER_NAME=settings.ALLOWED_HOSTS[0])
        timings.append((time.perf_counter() - started) * 1000)
    print(f"{name:36} {statistics.median(timings):10.1f} {response.status_code:>7}")


def main() -> None:
    call_command("migrate", verbosity=0)
    seed()
    seed_outcome_counts()
    give_jobs_to_clients()
    User.objects.filter(username="bench").delete()
    User.objects.create_superuser("bench", "bench@example.com", "bench-Pass-123")
    client = Client()
    client.force_login(User.objects.get(username="bench"))
    anonymous_jobs = Job.objects.filter(client=None).order_by("-id")  # the status API's caller, tokens off
    job = anonymous_jobs[anonymous_jobs.count() // 2]
    pages = {
        "job list": "/admin/jobs/job/",
        "failed jobs": "/admin/jobs/job/?status__exact=failed",
        "job search by store id": "/admin/jobs/job/?q=RP00042",
        "job page": f"/admin/jobs/job/{job.pk}/change/",
        "image results, one job": f"/admin/jobs/imageresult/?job__id__exact={job.pk}",
        "image results, all": "/admin/jobs/imageresult/",
        "failed images, all": "/admin/jobs/imageresult/?status__exact=failed",
        "status API": f"/api/status?jobid={job.pk}",
        "dashboard": "/admin/dashboard/",
        "dashboard refresh (JSON)": "/admin/dashboard/data/",
    }
    counted = OutcomeCount.objects.aggregate(images=Sum("images"), rows=Count("id"))
    print(f"{connection.vendor}, {ImageResult.objects.count():,} image results, {Job.objects.count():,} jobs")
    print(f"{counted['images']:,} outcomes counted in the last hour, in {counted['rows']:,} per-minute rows")
    print(f"{'page':36} {'median ms':>10} {'status':>7}")
    for name, url in pages.items():
        print_timing(client, name, url)
    with override_settings(RETAILPULSE={**settings.RETAILPULSE, "API_TOKENS": True}):  # the client shares
        for name in ("dashboard", "dashboard refresh (JSON)"):
            print_timing(client, f"{name}, tokens on", pages[name])


if __name__ == "__main__":
    main()
