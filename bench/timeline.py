"""Where one job's time and CPU go: when each chunk was queued and done, CPU per image, and how
busy the machine was while the job ran.

    .venv/bin/python bench/timeline.py --db sqlite --images 10000 --delay 0.1-0.4 --runs 3 [--env NAME=VALUE ...]

Starts nginx and the service as bench/service.py does, then for each run: the floor (the fastest
bare client, bench/floor.py), one job,
and its chunk tasks with the seconds from the submit at which each was queued and done (django-q2's
task table: its `started` is the enqueue time), and the CPU time per image the worker, web, nginx
and PostgreSQL processes spent on the job, and the machine's CPU use (all cores, %) every quarter
second of the job and of the floor: idle CPU is time the job could have used. CPU per image is steadier
than images/s on a shared machine: compare it before and after a change.
"""

import argparse
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import django
import floor
import psutil
from service import ROOT, ImageHost, Service, image_host, parse_delay, print_to_stderr, process_tree


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass  # gone since it was listed
    return total


def process_groups(service: Service) -> dict[str, list[psutil.Process]]:
    named = {"nginx": [], "postgres": []}
    for process in psutil.process_iter(["name"]):
        for name, members in named.items():
            if (process.info["name"] or "").startswith(name):
                members.append(process)
    return {"worker": process_tree(service.worker.pid), "web": process_tree(service.web.pid), **named}


def chunk_times(job_id: int) -> list[tuple[str, float, float]]:
    """(task result, queued, done) of the tasks that measured the job's chunks, as epoch seconds."""
    from django_q.models import Task

    tasks = Task.objects.filter(func="jobs.tasks.work_on_next_chunk").order_by("started")  # results are pickled
    return [
        (t.result, t.started.timestamp(), t.stopped.timestamp())
        for t in tasks
        if str(t.result).startswith(f"job {job_id} chunk ")
    ]


@contextmanager
def cpu_busy() -> Iterator[list[float]]:
    """The machine's CPU use (% of all cores) every 0.25 s while the block runs."""
    stop, samples = threading.Event(), []

    def sample() -> None:
        psutil.cpu_percent()
        while not stop.wait(0.25):
            samples.append(psutil.cpu_percent())

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join()


def busy_line(samples: list[float]) -> str:
    return " ".join(f"{value:.0f}" for value in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--delay", default="0.1-0.4")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--env", nargs="*", default=[], help="extra service settings, NAME=VALUE")
    args = parser.parse_args()

    extra_env = dict(item.split("=", 1) for item in args.env)
    with image_host("rp-timeline-") as workdir, Service(args.db, args.delay, workdir, extra_env) as service:
        # This process reads the task table through the ORM, with the service's settings.
        sys.path.insert(0, str(ROOT))
        os.environ.update({k: v for k, v in service.env.items() if k.startswith(("DATABASE", "DJANGO"))})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retailpulse.settings")
        django.setup()
        for run in range(args.runs):
            with cpu_busy() as floor_busy:
                floor_rate = floor.fastest(ImageHost.url, args.images, parse_delay(args.delay), print_to_stderr).rate
            groups = process_groups(service)
            before = {name: cpu_seconds(members) for name, members in groups.items()}
            started = time.time()
            with cpu_busy() as busy:
                job_id, submit_s = service.submit(args.images, f"timeline-{run}-{started}")
                service.wait(job_id)
                elapsed = time.time() - started
            cpu = {name: (cpu_seconds(members) - before[name]) / args.images * 1e6 for name, members in groups.items()}
            print(
                f"run {run}: {args.images / elapsed:,.0f} images/s, floor {floor_rate:,.0f}, "
                f"ratio {args.images / elapsed / floor_rate:.2f}, submit {submit_s:.2f} s; CPU us per image: "
                + ", ".join(f"{name} {value:.0f}" for name, value in cpu.items())
            )
            print(f"  CPU busy % every 0.25 s, service: {busy_line(busy)}\n  floor: {busy_line(floor_busy)}")
            time.sleep(1)  # the monitor saves the last task's result
            for name, queued, done in chunk_times(job_id):
                print(f"  {name:40} queued {queued - started:6.2f}  done {done - started:6.2f}")


if __name__ == "__main__":
    main()
