"""Instructions per image (valgrind's callgrind) of the bare client and of the service's fetching.

    .venv/bin/python bench/instructions.py [--images 1000] [--runs 2]

CPU seconds on a shared machine vary by a fifth from one run to the next; the instructions a process
executes vary by less than a percent, so a change to the fetching can be weighed against the bare
client here when timing it cannot tell. Each count is one process (Django set up, as in a worker)
running the pipelined bare client with the header reader (bench/floor.py) or jobs.worker.processing's
fetching alone (no database), 32 in flight, delay off, after 200 images that open its connections;
user space only (the kernel's share, the sockets, is the same for both). An image's count is the
difference between runs of 3N and N images, over 2N: what a session and its connections cost to
open (the bare client opens them in every run) drops out. About two minutes per run.
"""

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from callgrind import per_unit, set_counting
from profile_worker import fetch_alone
from service import ImageHost, image_host, setup_django_here

IN_FLIGHT, WARM_UP = 32, 200  # the bare client's; the service's fetching finds its own
MEASURED = ("bare client", "service's fetching")


def measure(measured: str, images: int) -> None:
    """Runs under valgrind: warms up, then counts `images` images of `measured`."""
    database_folder = tempfile.TemporaryDirectory(prefix="rp-callgrind-db-")  # removed at exit
    setup_django_here("sqlite", Path(database_folder.name))
    import floor

    from jobs.worker import imaging

    imaging.keep_read_buffers()

    def run(prefix: str, n: int) -> None:
        urls = [ImageHost.url(f"{prefix}-{i}") for i in range(n)]
        if measured == "bare client":
            asyncio.run(floor.pipelined_as_it_arrives(urls, IN_FLIGHT, (0, 0)))
        else:
            fetch_alone(urls, (0, 0))

    run(f"warm-{os.getpid()}", WARM_UP)
    set_counting(True)
    run(f"counted-{os.getpid()}", images)
    set_counting(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--measure", choices=MEASURED, help=argparse.SUPPRESS)  # the process under valgrind
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.images)
        return
    with image_host("rp-instructions-"):
        for _ in range(args.runs):
            for measured in MEASURED:
                per_image = per_unit(__file__, ["--measure", measured], "--images", args.images)
                print(f"{measured}: {per_image / 1e3:,.1f} thousand instructions per image", flush=True)


if __name__ == "__main__":
    main()
