"""Where a big submit's time goes: parsing, validation, the inserts and the commit, in one process.

    .venv/bin/python bench/submit.py --db postgres --images 100000 --runs 3

On a fresh database (SQLite in a temporary folder, or PostgreSQL's `retailpulse_bench`), each run
submits one job of N images (100 per visit) through the API's own parser, serializer and service,
and prints the seconds of each phase and of the slowest statements. The commit runs the deferred
foreign-key checks, one per constrained column per row.
"""

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

from service import setup_django_here, submit_body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    setup_django_here(args.db, Path(tempfile.mkdtemp(prefix="rp-submit-")))
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.parsers import JSONParser

    from jobs import services
    from jobs.api.serializers import SubmitJobSerializer

    for run in range(args.runs):
        raw = json.dumps(submit_body(args.images, f"run{run}")).encode()
        started = time.perf_counter()
        data = JSONParser().parse(io.BytesIO(raw))
        parsed = time.perf_counter()
        serializer = SubmitJobSerializer(data=data)
        assert serializer.is_valid(), serializer.errors
        validated = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            services.submit_job(visits=serializer.visit_inputs())
        done = time.perf_counter()
        print(
            f"{args.db}, {args.images:,} images: parse {parsed - started:.2f} s, validate {validated - parsed:.2f} s, "
            f"store {done - validated:.2f} s, in all {done - started:.2f} s; slowest statements:"
        )
        for query in sorted(queries.captured_queries, key=lambda q: -float(q["time"]))[:3]:
            print(f"    {float(query['time']):.2f} s  {query['sql'][:90]}")


if __name__ == "__main__":
    main()
