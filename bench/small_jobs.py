"""A backlog of small jobs: N jobs of 5 images submitted back to back, then awaited, delay off.

    .venv/bin/python bench/small_jobs.py --jobs 300 1000 [--db sqlite]

Starts nginx and the service as bench/service.py does (after a 2,000-image job to warm it up), then
for each N: seconds to submit the N jobs one after another, seconds until the last one is done,
jobs and images per second, and the CPU of all the service's processes per job. Each job is a chunk
of its own: this is the per-job cost (submit, claim, task, end) that a big job spreads over
thousands of images.
"""

import argparse
import time

from service import Service, image_host, run_once

IMAGES_PER_JOB = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with image_host("rp-small-jobs-") as workdir, Service(args.db, "0", workdir, {}) as service:
        run_once(service, 2000, "warm-up")
        for count in args.jobs:
            cpu = sum(service.cpu_seconds().values())
            started = time.perf_counter()
            ids = [service.submit(IMAGES_PER_JOB, f"small-{count}-{n}")[0] for n in range(count)]
            submitted = time.perf_counter() - started
            for job_id in ids:
                assert service.wait(job_id) == "completed", job_id
            elapsed = time.perf_counter() - started
            cpu = sum(service.cpu_seconds().values()) - cpu
            print(
                f"{args.db}, {count} jobs of {IMAGES_PER_JOB} images: submitted in {submitted:.1f} s, all done in "
                f"{elapsed:.1f} s: {count / elapsed:.1f} jobs/s, {count * IMAGES_PER_JOB / elapsed:.0f} images/s, "
                f"{cpu / count * 1e3:.1f} ms of the service's CPU per job"
            )


if __name__ == "__main__":
    main()
