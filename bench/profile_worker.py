"""Where a worker's CPU goes, in one process on a fresh database, for N images.

    .venv/bin/python bench/profile_worker.py --images 20000 [--db postgres] [--in-flight 32] [--delay 0] [--profile]

Prints CPU milliseconds per image of: the pipelined bare client reading sizes with the header reader
(bench/floor.py) in this process; the service's fetching alone (jobs.worker.processing.measure_images, no
database); the whole task (jobs.tasks.work_on_next_chunk until the job ends: fetching, claims,
writes), split into the fetch thread and the main thread; with --profile, the main thread's
costliest calls (cProfile, which makes the main thread's own figure larger). The images come from
nginx, as in bench/service.py; the database is SQLite (by default) or PostgreSQL.
"""

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import floor
from service import STORES, ImageHost, parse_delay, setup_django_here


def per_image(seconds: float, images: int) -> str:
    return f"{seconds / images * 1e3:.3f} ms"


def fetch_alone(urls: list[str], delay: tuple[float, float]) -> None:
    """The service's fetching of `urls` (jobs.worker.processing) with no database, in this process, where
    Django is set up."""
    from django.conf import settings

    from jobs.worker import imaging, processing

    limits = imaging.FetchLimits.from_settings(settings.RETAILPULSE)
    images = list(enumerate(urls))
    batches = processing.measure_images(images, limits=limits, gpu_delay=delay, deadline=time.monotonic() + 600)
    assert sum(len(batch) for batch in batches) == len(urls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--in-flight", type=int, default=32, help="of the bare client (the service finds its own)")
    parser.add_argument("--delay", default="0")
    parser.add_argument(
        "--profile", action="store_true", help="also list the main thread's costliest calls (cProfile, which slows it)"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rp-profile-"))
    setup_django_here(args.db, workdir, RETAILPULSE_GPU_DELAY=args.delay)

    from jobs import services, tasks
    from jobs.models import Job
    from jobs.worker import imaging

    host, n, delay = ImageHost(workdir), args.images, parse_delay(args.delay)
    imaging.keep_read_buffers()  # as the worker's fetch loop does, for the bare client too
    try:
        urls = [ImageHost.url(f"bare-{i}") for i in range(n)]
        started = time.process_time()
        asyncio.run(floor.pipelined_as_it_arrives(urls, args.in_flight, delay))
        bare = per_image(time.process_time() - started, n)
        print(f"bare client (pipelined, header reader, {args.in_flight} in flight): {bare}")

        urls = [ImageHost.url(f"fetch-{i}") for i in range(n)]
        started = time.process_time()
        fetch_alone(urls, delay)
        print(f"service fetching alone: {per_image(time.process_time() - started, n)}")

        visits = [
            services.VisitInput(
                f"B{v % STORES:05d}", [ImageHost.url(f"task-{v}-{i}") for i in range(100)], datetime.now(UTC)
            )
            for v in range(n // 100)
        ]
        job = services.submit_job(visits=visits).job
        profile = cProfile.Profile(time.thread_time)
        started, main_started = time.process_time(), time.thread_time()
        with profile if args.profile else contextlib.nullcontext():
            while Job.objects.get(pk=job.pk).status == Job.Status.ONGOING:
                tasks.work_on_next_chunk()
        whole, main_thread = time.process_time() - started, time.thread_time() - main_started
        print(
            f"the task, chunk after chunk: {per_image(whole, n)}: fetch thread {per_image(whole - main_thread, n)}, "
            f"main thread (claims, writes) {per_image(main_thread, n)}"
        )
        if args.profile:
            print("\nThe main thread's costliest calls, cumulative (under cProfile):")
            pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(r"jobs/", 12)
    finally:
        host.stop()


if __name__ == "__main__":
    main()
