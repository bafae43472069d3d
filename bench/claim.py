"""What one claim costs with a backlog: CPU and wall time of services.claim_chunk, in one process.

    .venv/bin/python bench/claim.py --db sqlite postgres --pending 200 2000 --held 12

On a fresh database, submits `pending` 5-image jobs (a chunk each), claims `held` of them for good
(busy workers), then times claims that are rolled back, so every one sees the same queue. On
PostgreSQL the wall time includes the server's work.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

CLAIMS = 50


class RolledBack(Exception):
    pass


def measure(db: str, pending: int, held: int) -> None:
    """In this process: Django on a fresh database, then the claims."""
    from service import setup_django_here

    setup_django_here(db, Path(tempfile.mkdtemp(prefix="rp-claim-")))
    from django.db import transaction

    from jobs import services

    for n in range(pending):
        services.submit_job(
            visits=[
                services.VisitInput("B00001", [f"http://img.test/{n}-{i}.jpg" for i in range(5)], datetime.now(UTC))
            ]
        )
    for _ in range(held):
        services.claim_chunk()

    def claim() -> None:
        try:
            with transaction.atomic():
                assert services.claim_chunk() is not None
                raise RolledBack
        except RolledBack:
            pass

    for _ in range(5):  # warm up
        claim()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(CLAIMS):
        claim()
    cpu, wall = (time.process_time() - cpu) / CLAIMS * 1e3, (time.perf_counter() - wall) / CLAIMS * 1e3
    print(f"{db}, {pending:,} pending chunks, {held} held: a claim takes {cpu:.1f} ms of CPU, {wall:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], nargs="+", default=["sqlite"])
    parser.add_argument("--pending", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--held", type=int, default=12)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # db pending held: one case, in this process
    args = parser.parse_args()
    if args.one:
        measure(args.one[0], int(args.one[1]), int(args.one[2]))
        return
    for db in args.db:
        for pending in args.pending:  # each case in a process of its own: Django is set up once per process
            one = [sys.executable, __file__, "--one", db, str(pending), str(args.held)]
            subprocess.run(one, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


if __name__ == "__main__":
    main()
