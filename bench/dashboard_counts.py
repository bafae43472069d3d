"""The two ways to get the dashboard's images per minute, timed on the admin bench's 1,000,000 results.

    DJANGO_DEBUG=1 DATABASE_URL=sqlite:///$PWD/var/admin-bench.sqlite3 .venv/bin/python bench/dashboard_counts.py

Run `make bench-admin` on the same DATABASE_URL first (it seeds the database). In one transaction
that is rolled back (the database is left as it was): every result gets a finish time within the
last hour, then
- the index way: an index on the image table's (processed_at, status), the per-minute query over
  it and, as its lower bound, the hour's totals alone, median of 5 each;
- the counts way: what recording a batch adds (one upsert of its per-minute counts, as
  services.count_outcomes writes it), mean of 1,000.
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

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from jobs.models import ImageResult, Job  # noqa: E402
from jobs.services.outcomes import count_outcomes  # noqa: E402


class Rollback(Exception):
    pass


def timed(run, times: int) -> list[float]:
    timings = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    table = connection.ops.quote_name(ImageResult._meta.db_table)
    now = timezone.now()
    since = connection.ops.adapt_datetimefield_value(now - timezone.timedelta(hours=1))
    if connection.vendor == "postgresql":
        spread = f"UPDATE {table} SET processed_at = %s::timestamptz - (id %% 3600) * interval '1 second'"
        minute = "date_trunc('minute', processed_at)"
    else:
        spread = f"UPDATE {table} SET processed_at = datetime(%s, '-' || (id %% 3600) || ' seconds')"
        minute = "strftime('%%Y-%%m-%%d %%H:%%M', processed_at)"
    per_minute = (
        f"SELECT {minute} AS m, status, COUNT(*) FROM {table} WHERE processed_at >= %s"
        f" AND status IN ('done', 'failed') GROUP BY m, status"
    )
    job_id = Job.objects.order_by("id").values_list("id", flat=True).first()
    print(f"{connection.vendor}, {ImageResult.objects.count():,} image results")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(spread, [connection.ops.adapt_datetimefield_value(now)])
            cursor.execute(f"CREATE INDEX bench_image_processed ON {table} (processed_at, status)")
            if connection.vendor == "postgresql":
                cursor.execute(f"ANALYZE {table}")

            def query():
                cursor.execute(per_minute, [since])
                return cursor.fetchall()

            def totals():
                cursor.execute(
                    f"SELECT status, COUNT(*) FROM {table} WHERE processed_at >= %s GROUP BY status", [since]
                )
                return cursor.fetchall()

            minutes = query()
            print(
                f"index way: per-minute query over {sum(row[2] for row in minutes):,} results, median of 5: "
                f"{statistics.median(timed(query, 5)):.1f} ms"
            )
            print(f"index way: the hour's totals alone, median of 5: {statistics.median(timed(totals, 5)):.1f} ms")
            upsert = timed(
                lambda: count_outcomes(
                    job_id=job_id, worker="bench 1", at=timezone.now(), images_by_cause={"": 225, "HTTP 404": 25}
                ),
                1000,
            )
            print(f"counts way: one batch's upsert, mean of 1,000: {statistics.mean(upsert):.3f} ms")
            raise Rollback
    except Rollback:
        pass


if __name__ == "__main__":
    main()
