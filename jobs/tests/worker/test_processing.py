"""jobs.worker.processing against the local image server: every image comes back once, in batches."""

import dataclasses
import threading
import time
import uuid

import pytest

from conftest import ImageServer
from jobs.services.outcomes import Outcome
from jobs.worker import processing
from jobs.worker.imaging import MEASURED_FORMATS, FetchLimits

LIMITS = FetchLimits(
    total_timeout=5,
    connect_timeout=2,
    max_bytes=5_000_000,
    max_pixels=50_000_000,
    max_redirects=3,
    allow_private=True,
    formats=MEASURED_FORMATS,
    host_connections=20,
    memory_budget=8 << 20,
)


def measure_images_lazily(images, *, host_connections=20, gpu_delay=(0.0, 0.0), deadline_in=30.0, stop=None, **limits):
    """The batches as the worker's task takes them, one at a time."""
    return processing.measure_images(
        images,
        limits=dataclasses.replace(LIMITS, host_connections=host_connections, **limits),
        gpu_delay=gpu_delay,
        deadline=time.monotonic() + deadline_in,
        stop=stop,
    )


def measure(images, **options) -> list[list[Outcome]]:
    return list(measure_images_lazily(images, **options))


def test_every_image_comes_back_exactly_once_across_batches(image_server, monkeypatch):
    monkeypatch.setattr(processing, "FLUSH_SIZE", 7)  # many hand-overs while fetches are still running
    images = [(n, image_server.url(f"/img/{n % 5 + 1}x3.png")) for n in range(300)]
    images += [(1000, image_server.url("/status/404")), (1001, image_server.url("/notimage"))]

    batches = measure(images, host_connections=16, gpu_delay=(0.0, 0.01))

    outcomes = [o for batch in batches for o in batch]
    assert sorted(o.image_id for o in outcomes) == sorted(image_id for image_id, _url in images)
    assert len([batch for batch in batches if batch]) > 1
    assert max(len(batch) for batch in batches) <= 7  # a batch is never added to once handed over
    by_id = {o.image_id: o for o in outcomes}
    assert all(by_id[n] == Outcome(n, n % 5 + 1, 3) for n in range(300))
    assert by_id[1000].error == "HTTP 404"
    assert by_id[1001].error.startswith("not an image")


def test_a_url_that_is_refused_or_does_not_parse_fails_alone(image_server):
    images = [(1, "ftp://img.example.com/a.jpg"), (2, "http://[::1/a.jpg"), (3, image_server.url("/img/4x3.png"))]

    by_id = {o.image_id: o for batch in measure(images) for o in batch}

    assert by_id[1].error == "refused: not an http(s) URL (ftp://img.example.com/a.jpg)"
    assert by_id[2].error.startswith("invalid URL (http://[::1/a.jpg")
    assert by_id[3] == Outcome(3, 4, 3)


def test_the_host_cap_bounds_concurrent_fetches(image_server):
    # Each request is held until a fourth is in at the same time (never, if at most 3 are) or for 1 s.
    key = uuid.uuid4().hex
    images = [(n, image_server.url(f"/held/{key}?peers=4&wait=1&n={n}")) for n in range(4)]

    outcomes = [o for batch in measure(images, host_connections=3) for o in batch]

    assert sorted(o.image_id for o in outcomes) == [0, 1, 2, 3]
    assert image_server.most_at_once(key) == 3


def test_images_unfinished_at_the_deadline_get_no_outcome(image_server):
    key = uuid.uuid4().hex
    images = [(1, image_server.url("/img/2x2.png")), (2, image_server.url(f"/held/{key}"))]

    outcomes = [o for batch in measure(images, deadline_in=1.0) for o in batch]
    image_server.release(key)

    # Held past the 5 s fetch timeout, image 2 would come back failed had the deadline not ended the wait.
    assert outcomes == [Outcome(1, 2, 2)]  # image 2 stays pending, for the chunk's next delivery


def test_a_batch_comes_at_least_every_flush_interval_while_images_hang(image_server, monkeypatch):
    monkeypatch.setattr(processing, "FLUSH_EVERY", 0.1)
    key = uuid.uuid4().hex
    batches = []

    for batch in measure_images_lazily([(1, image_server.url(f"/held/{key}"))]):
        batches.append(batch)
        if batches.count([]) == 5:  # the caller got five turns while the image hung: let it through
            image_server.release(key)

    # Held past the 5 s fetch timeout, the image would come back failed had the caller not had its turns.
    assert [o for batch in batches for o in batch] == [Outcome(1, 64, 48)]


def stopped_at_the_first_outcome(image_server, held: str, count: int, host_connections: int) -> list[Outcome]:
    """The outcomes of image 1 (served at once) and images 2 to `count` (the `held` path), with the
    stop set as soon as the first one comes back, one outcome to a batch."""
    images = [(1, image_server.url("/img/2x2.png"))]
    images += [(n, image_server.url(f"{held}&n={n}")) for n in range(2, count + 1)]
    stop, outcomes = threading.Event(), []
    for batch in measure_images_lazily(images, host_connections=host_connections, stop=stop):
        outcomes += batch
        if outcomes:
            stop.set()
    return outcomes


def test_stop_lets_the_downloads_sent_end_and_starts_no_more(image_server, monkeypatch):
    monkeypatch.setattr(processing, "FLUSH_SIZE", 1)
    monkeypatch.setattr(processing, "STOP_GRACE_FOR_SENT", 5.0)
    key = uuid.uuid4().hex

    outcomes = stopped_at_the_first_outcome(image_server, f"/held/{key}?wait=1.5", 6, host_connections=3)

    sent = {n for n in range(2, 7) if f"/held/{key}?wait=1.5&n={n}" in image_server.requests}
    # Cancelled at the stop, the images sent would be fetched again by the chunk's next holder.
    assert sorted(o.image_id for o in outcomes) == [1, *sorted(sent)]
    assert all(o == Outcome(o.image_id, 64, 48) for o in outcomes if o.image_id != 1)
    assert len(sent) >= 2  # 2 and 3 went out with 1
    assert 6 not in sent  # nothing starts after the stop: three at a time, each held 1.5 s


def test_stop_cancels_the_images_still_in_flight_after_a_grace_and_reports_those_measured(image_server, monkeypatch):
    monkeypatch.setattr(processing, "FLUSH_SIZE", 1)
    monkeypatch.setattr(processing, "STOP_GRACE_FOR_SENT", 0.2)
    key = uuid.uuid4().hex

    outcomes = stopped_at_the_first_outcome(image_server, f"/held/{key}?wait=30", 5, host_connections=5)
    image_server.release(key)

    # Held past the 5 s fetch timeout, images 2-5 would come back failed had stop not cancelled them.
    assert outcomes == [Outcome(1, 2, 2)]  # images 2-5 stay pending, for the chunk's next delivery


def test_stop_lets_downloaded_images_finish_their_gpu_work(image_server, monkeypatch):
    monkeypatch.setattr(processing, "FLUSH_EVERY", 0.05)
    key = uuid.uuid4().hex
    images = [(n, image_server.url(f"/img/3x2.png?n={n}")) for n in (1, 2)]
    images += [(n, image_server.url(f"/held/{key}?n={n}")) for n in (3, 4)]
    images += [(5, image_server.url(f"/img/3x2.png?n=5&{key}"))]
    stop = threading.Event()

    outcomes, started = [], time.monotonic()
    for batch in measure_images_lazily(images, host_connections=2, gpu_delay=(0.5, 0.5), stop=stop):
        outcomes += batch
        if sum(f"/held/{key}" in path for path in image_server.requests) == 2:  # 1 and 2 are past their fetch
            stop.set()
    image_server.release(key)

    # Dropped at the stop, images 1 and 2 would be fetched again by the chunk's next holder.
    assert sorted(outcomes, key=lambda o: o.image_id) == [Outcome(1, 3, 2), Outcome(2, 3, 2)]
    assert time.monotonic() - started >= 0.5  # their simulated GPU work ran its course
    assert not [path for path in image_server.requests if f"n=5&{key}" in path]  # no fetch after the stop


def test_closing_drops_what_is_unfinished_at_once(image_server):
    images = [(n, image_server.url(f"/img/3x2.png?n={n}")) for n in (1, 2)]

    batches = measure_images_lazily(images, host_connections=2, gpu_delay=(5.0, 5.0))
    started = time.monotonic()
    first = next(batches)  # at FLUSH_EVERY: both images are in their GPU work
    batches.close()

    assert first == []
    assert time.monotonic() - started < 2  # not the 5 s of GPU work


def test_the_simulated_gpu_work_holds_no_place_in_flight(image_server):
    key = uuid.uuid4().hex
    images = [(n, image_server.url(f"/img/3x2.png?gpu={key}&n={n}")) for n in range(5)]
    fetched_before_first_outcome = None

    outcomes = []
    for batch in measure_images_lazily(images, host_connections=1, gpu_delay=(1.0, 1.0)):
        if batch and fetched_before_first_outcome is None:
            fetched_before_first_outcome = sum(key in path for path in image_server.requests)
        outcomes += batch

    # With the delay inside the one connection's fetch, the second image would be fetched after the first's 1 s.
    assert fetched_before_first_outcome == 5
    assert sorted(outcomes, key=lambda o: o.image_id) == [Outcome(n, 3, 2) for n in range(5)]


# --- hosts: retries, backoff, hosts that do not answer ---------------------------------------------
# Each test has a server of its own: a worker remembers a host's distress from one chunk to the next.


@pytest.fixture
def own_server():
    server = ImageServer()
    yield server
    server.close()


def errors_by_id(outcomes: list[Outcome]) -> dict[int, str]:
    return {o.image_id: o.error for o in outcomes}


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_a_transient_error_is_retried(own_server, status):
    path = f"/flaky/{uuid.uuid4().hex}?fail=1&status={status}"
    assert [o for batch in measure([(1, own_server.url(path))]) for o in batch] == [Outcome(1, 64, 48)]
    assert own_server.requests.count(path) == 2


def test_retry_after_is_honoured(own_server):
    path = f"/flaky/{uuid.uuid4().hex}?fail=1&retry_after=1"
    started = time.monotonic()
    assert [o for batch in measure([(1, own_server.url(path))]) for o in batch] == [Outcome(1, 64, 48)]
    # Without Retry-After the host's first backoff is 0.25 s.
    assert time.monotonic() - started >= 0.9
    assert own_server.requests.count(path) == 2


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/flaky/{key}?fail=99", "HTTP 503"),
        ("/dropped/{key}?fail=99", "connection lost (server disconnected)"),
    ],
)
def test_a_host_in_distress_fails_the_image_after_three_attempts_naming_itself(own_server, path, error):
    path = path.format(key=uuid.uuid4().hex)
    [outcome] = [o for batch in measure([(1, own_server.url(path))]) for o in batch]
    host = own_server.base_url.removeprefix("http://")
    assert outcome.error == f"{error} (after 3 attempts, host {host})"
    # aiohttp resends a GET once by itself when a kept-alive connection drops.
    assert own_server.requests.count(path) in (3, 6)


@pytest.mark.parametrize(
    ("path", "cause"),
    [
        ("/held/{key}?wait=60", "timed out after 2 s"),  # accepts, never answers
        ("/trickle?{key}", "timed out after 2 s"),  # a byte a second
        ("/reset?{key}", "connection lost"),  # resets every connection
        ("/status/429?{key}", "HTTP 429"),  # asks to slow down, forever
    ],
)
def test_a_bad_host_fails_its_images_naming_itself_within_the_fetch_timeout_while_others_go_on(
    own_server, image_server, path, cause
):
    key = uuid.uuid4().hex
    bad = [(n, own_server.url(path.format(key=f"{key}&n={n}"))) for n in range(40)]
    good = [(n, image_server.url(f"/img/{n}x2.png?{key}")) for n in range(100, 400)]
    started = time.monotonic()

    outcomes = [o for batch in measure(bad + good, host_connections=8, total_timeout=2) for o in batch]

    own_server.release(key)
    assert time.monotonic() - started < 2 * 2 + 1.5  # an image's timeout, then its host's probe's
    errors, host = errors_by_id(outcomes), own_server.base_url.removeprefix("http://")
    assert sorted(errors) == list(range(40)) + list(range(100, 400))
    assert all(errors[n].startswith(cause) and f"host {host}" in errors[n] for n in range(40)), errors
    assert sorted(o for o in outcomes if o.image_id >= 100) == [Outcome(n, n, 2) for n in range(100, 400)]


def test_a_host_answering_429_is_backed_off_alone(own_server, image_server):
    key = uuid.uuid4().hex
    throttled = [(n, own_server.url(f"/flaky/{key}?fail=5&status=429&n={n}")) for n in range(10)]
    other = [(n, image_server.url(f"/img/{n}x2.png?{key}")) for n in range(100, 110)]

    outcomes = [o for batch in measure(throttled + other, host_connections=4) for o in batch]

    # The other host's images were all measured, the throttled host asked again only after a backoff.
    assert sorted(o for o in outcomes if o.image_id >= 100) == [Outcome(n, n, 2) for n in range(100, 110)]
    assert own_server.requests.count(f"/flaky/{key}?fail=5&status=429&n=0") >= 1
    assert {o.image_id for o in outcomes} == set(range(10)) | set(range(100, 110))
