"""Fair share between API clients with real processes, as `make run` starts them, delay on.

    .venv/bin/python bench/fairness.py --db sqlite postgres --runs 3

Tokens on, two clients made with `manage.py create_client`. Client A submits four 50,000-image
jobs; once all four are under way:
- latency: client B submits a 5-image job, `runs` times; seconds from each submit until
  the status API says completed (polled ten times a second, as a client does), 2 s apart;
- share: B submits one 50,000-image job; after a 3 s ramp, the images each client measured in the
  next 10 s, as a share of all measured then.
Prints a Markdown table.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service as bench_service
from service import Service, image_host

# A database of its own (ports are free ones, as in every benchmark), so that it runs beside `make bench`.
bench_service.PG_DATABASE = "retailpulse_fairness"

DELAY = "0.1-0.4"
BIG, SMALL = 50_000, 5
RAMP, WINDOW = 3.0, 10.0


def measured(service: Service, job_ids: list[int], headers: dict) -> int:
    """Images with an outcome in these jobs, read through the API as their client."""
    total = 0
    for job_id in job_ids:
        images = requests.get(f"{service.base}/api/jobs/{job_id}/", headers=headers, timeout=10).json()["images"]
        total += images["done"] + images["failed"]
    return total


def run(service: Service, runs: int) -> dict:
    a, b = service.create_client("chain-a"), service.create_client("chain-b")
    big = [service.submit(BIG, f"a{n}", headers=a)[0] for n in range(4)]
    deadline = time.monotonic() + 120
    while not all(measured(service, [job_id], a) for job_id in big):
        assert time.monotonic() < deadline, "A's jobs never got under way"
        time.sleep(0.1)
    latencies = []
    for n in range(runs):
        started = time.perf_counter()
        job_id, _ = service.submit(SMALL, f"b-small-{n}", headers=b)
        assert service.wait(job_id, headers=b) == "completed"
        latencies.append(time.perf_counter() - started)
        time.sleep(2)
    b_big, _ = service.submit(BIG, "b-big", headers=b)
    time.sleep(RAMP)
    a_before, b_before = measured(service, big, a), measured(service, [b_big], b)
    time.sleep(WINDOW)
    a_images, b_images = measured(service, big, a) - a_before, measured(service, [b_big], b) - b_before
    a_left = 4 * BIG - measured(service, big, a)
    assert a_left > 0, "A's jobs ended within the window: make them bigger"
    return {
        "latencies": latencies,
        "a_rate": a_images / WINDOW,
        "b_rate": b_images / WINDOW,
        "b_share": b_images / (a_images + b_images),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], nargs="+", default=["sqlite"])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"`.venv/bin/python bench/fairness.py {' '.join(sys.argv[1:])}`\n")
    print("| db | B's 5-image job, s: median (slowest) | A images/s (4 jobs) | B images/s (1 job) | B's share |")
    print("| --- | --- | --- | --- | --- |")
    with image_host("rp-fairness-") as workdir:
        for db in args.db:
            with Service(db, DELAY, workdir, {"RETAILPULSE_API_TOKENS": "1"}) as service:
                result = run(service, args.runs)
            latencies = result["latencies"]
            print(
                f"| {db} | {statistics.median(latencies):.2f} ({max(latencies):.2f}) | {result['a_rate']:.0f} "
                f"| {result['b_rate']:.0f} | {result['b_share']:.0%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
