"""jobs.processing against the local image server: every image comes back once, in batches."""

import threading
import time

from jobs import processing
from jobs.imaging import MEASURED_FORMATS, FetchLimits
from jobs.processing import Outcome

LIMITS = FetchLimits(
    total_timeout=5,
    connect_timeout=2,
    max_bytes=5_000_000,
    max_pixels=50_000_000,
    max_redirects=3,
    allow_private=True,
    formats=MEASURED_FORMATS,
)


def measure(images, *, in_flight=20, gpu_delay=(0.0, 0.0), deadline_in=30.0) -> list[list[Outcome]]:
    batches = processing.measure_images(
        images, limits=LIMITS, in_flight=in_flight, gpu_delay=gpu_delay, deadline=time.monotonic() + deadline_in
    )
    return list(batches)


def test_every_image_comes_back_exactly_once_across_batches(image_server, monkeypatch):
    monkeypatch.setattr(processing, "FLUSH_SIZE", 7)  # many hand-overs while fetches are still running
    images = [(n, image_server.url(f"/img/{n % 5 + 1}x3.png")) for n in range(300)]
    images += [(1000, image_server.url("/status/404")), (1001, image_server.url("/notimage"))]

    batches = measure(images, in_flight=16, gpu_delay=(0.0, 0.01))

    outcomes = [o for batch in batches for o in batch]
    assert sorted(o.image_id for o in outcomes) == sorted(image_id for image_id, _url in images)
    assert len([batch for batch in batches if batch]) > 1
    assert max(len(batch) for batch in batches) <= 7  # a batch is never added to once handed over
    by_id = {o.image_id: o for o in outcomes}
    assert all(by_id[n] == Outcome(n, n % 5 + 1, 3) for n in range(300))
    assert by_id[1000].error == "HTTP 404"
    assert by_id[1001].error.startswith("not an image")


def test_in_flight_bounds_concurrent_fetches(image_server):
    images = [(n, image_server.url(f"/slow?seconds=0.3&n={n}")) for n in range(4)]

    started = time.monotonic()
    one_at_a_time = measure(images, in_flight=1)
    serial = time.monotonic() - started
    started = time.monotonic()
    all_at_once = measure(images, in_flight=4)
    parallel = time.monotonic() - started

    assert sum(map(len, one_at_a_time)) == sum(map(len, all_at_once)) == 4
    assert serial >= 1.2  # four 0.3 s answers, one after the other
    assert parallel < serial


def test_images_unfinished_at_the_deadline_get_no_outcome(image_server):
    images = [(1, image_server.url("/img/2x2.png")), (2, image_server.url("/slow?seconds=3"))]

    started = time.monotonic()
    outcomes = [o for batch in measure(images, deadline_in=1.0) for o in batch]

    assert time.monotonic() - started < 2.5
    assert outcomes == [Outcome(1, 2, 2)]  # image 2 stays pending, for the chunk's next delivery


def test_a_batch_comes_at_least_every_flush_interval_while_images_hang(image_server, monkeypatch):
    monkeypatch.setattr(processing, "FLUSH_EVERY", 0.1)
    images = [(1, image_server.url("/slow?seconds=1"))]

    batches = measure(images)

    assert [o for batch in batches for o in batch] == [Outcome(1, 64, 48)]
    assert batches.count([]) >= 5  # the caller got a turn about every 0.1 s while it waited


def test_stop_cancels_the_images_in_flight_and_reports_those_measured(image_server, monkeypatch):
    monkeypatch.setattr(processing, "FLUSH_SIZE", 1)
    images = [(1, image_server.url("/img/2x2.png"))]
    images += [(n, image_server.url(f"/slow?seconds=10&n={n}")) for n in range(2, 6)]
    stop = threading.Event()
    batches = processing.measure_images(
        images, limits=LIMITS, in_flight=5, gpu_delay=(0.0, 0.0), deadline=time.monotonic() + 30, stop=stop
    )

    started = time.monotonic()
    outcomes = []
    for batch in batches:
        outcomes += batch
        if outcomes:
            stop.set()

    assert time.monotonic() - started < 3  # not the 10 s of the hanging images
    assert outcomes == [Outcome(1, 2, 2)]  # images 2-5 stay pending, for the chunk's next delivery
