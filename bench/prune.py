"""Times retention's slices: the longest a slice of `prune_jobs` holds the write lock, by slice size,
removing jobs of 100,000 images from a table that keeps 300,000 more.

    make bench-prune      (or DATABASE_URL=postgres://... make bench-prune)

Seeds once (var/prune-bench.sqlite3, or DATABASE_URL): three jobs of 100,000 measured images that
stay. Then, for each slice size, submits a job of 100,000 images through the service's own
create_job, marks them measured, has it finish two days ago and removes it with prune_jobs
(retention one day). Prints a Markdown row per slice size: the slices, the median of their DELETE
statements, the longest slice (begin to commit of its transaction: what holds the lock), and the
images removed per second, the pauses between slices included.
"""

import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retailpulse.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # no line per job created

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from jobs import services  # noqa: E402
from jobs.models import ImageResult, Job  # noqa: E402
from stores.models import Store  # noqa: E402

IMAGES, PER_VISIT, KEPT_JOBS = 100_000, 100, 3
SLICE_SIZES = (1000, 2000, 5000, 10_000)
WHEN = datetime(2024, 1, 21, 16, 23, 40, tzinfo=UTC)


def measured_job(tag: str, finished_at: datetime) -> Job:
    """A job of IMAGES images, every one measured, that finished at `finished_at`."""
    visits = [
        services.VisitInput(
            f"P{v % 100:03d}", [f"https://img.example.com/{tag}/{v}/{i}.jpg" for i in range(PER_VISIT)], WHEN
        )
        for v in range(IMAGES // PER_VISIT)
    ]
    job = services.create_job(visits=visits)
    ImageResult.objects.filter(job=job).update(
        status=ImageResult.Status.DONE, width=1024, height=768, perimeter=3584, processed_at=timezone.now()
    )
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.COMPLETED, images_done=IMAGES, finished_at=finished_at, started_at=finished_at
    )
    return job


def slice_statement_timer(seconds: list[float]):
    """A database execute wrapper adding each slice's DELETE statement's seconds to `seconds`."""

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if sql.startswith("DELETE") and " AND id >= " in sql:
                seconds.append(time.perf_counter() - started)

    return timed


def main() -> None:
    call_command("migrate", verbosity=0)
    Store.objects.bulk_create(
        [Store(store_id=f"P{n:03d}", name=f"Store {n}", area_code="7000") for n in range(100)], ignore_conflicts=True
    )
    for n in range(Job.objects.filter(images_total=IMAGES).count(), KEPT_JOBS):
        print(f"seeding kept job {n + 1} of {KEPT_JOBS} ...", file=sys.stderr, flush=True)
        measured_job(f"kept-{n}", timezone.now())
    print(f"| db | slice rows | slices | median DELETE ms | longest slice ms | images removed/s |\n|{' --- |' * 6}")
    for size in SLICE_SIZES:
        measured_job(f"pruned-{size}-{time.time_ns()}", timezone.now() - timedelta(days=2))
        deletes: list[float] = []
        started = time.perf_counter()
        with connection.execute_wrapper(slice_statement_timer(deletes)):
            pruned = services.prune_jobs(older_than=timedelta(days=1), slice_rows=size)
        seconds = time.perf_counter() - started
        assert (pruned.jobs, pruned.images) == (1, IMAGES), pruned
        slices = -(-IMAGES // size) + -(-IMAGES // PER_VISIT // size) + 1  # images, visits, the job
        print(
            f"| {connection.vendor} | {size:,} | {slices} | {statistics.median(deletes) * 1000:.1f} "
            f"| {pruned.longest_slice * 1000:.0f} "
            f"| {IMAGES / seconds:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
