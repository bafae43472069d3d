"""jobs.worker.concurrency: the in-flight limit, worked out alone and seen from the image hosts while
a real qcluster measures a job."""

import uuid

import pytest

from conftest import ImageServer
from jobs.models import ImageResult
from jobs.tests.helpers import submit, visit, wait_for_job
from jobs.worker import concurrency, hosts
from stores.models import Store


def far_host(latency: float | None) -> hosts.Host:
    host = hosts.Host("img.example.com", connection_cap=512)
    host.latency = latency
    return host


def test_the_limit_is_a_downloads_time_over_the_cpu_per_image_within_its_floor_and_ceiling():
    limit = concurrency.InFlightLimit(memory_budget=64 << 20)
    limit.measured(cpu_seconds=0.05, images=100)
    assert limit.cpu_per_image == 0.0005  # as the first guess: this measure changes nothing
    assert limit.update(images_left={far_host(0.3): 1000}, now=0.0) == int(concurrency.GAIN * 0.3 / 0.0005)
    assert limit.update(images_left={far_host(0.001): 1000}, now=0.0) == concurrency.MIN_IN_FLIGHT
    assert limit.update(images_left={far_host(5.0): 1000}, now=0.0) == limit.ceiling == 1024
    # One image in twenty from a host 5 s away weighs as much as the other nineteen at 5 ms.
    mixed = {far_host(5.0): 50, far_host(0.005): 950}
    assert limit.update(images_left=mixed, now=0.0) == int(concurrency.GAIN * 0.25475 / 0.0005)


def test_a_fetching_thread_that_lags_cuts_the_limit_and_gets_it_back_slowly_once_it_keeps_up():
    limit = concurrency.InFlightLimit(memory_budget=64 << 20)
    far = {far_host(0.3): 10_000}
    estimate = int(concurrency.GAIN * 0.3 / concurrency.FIRST_CPU_PER_IMAGE)
    assert limit.update(images_left=far, now=0.0) == estimate
    bursts = [limit.update(images_left=far, now=0.0, lag=0.2 if n % 5 else 0.0) for n in range(40)]
    assert set(bursts) == {estimate}  # late timers between quiet ones: bursts of answers, not a lack of CPU
    busy = [limit.update(images_left=far, now=0.0, lag=0.05) for _ in range(20)]
    assert busy[0] == estimate
    assert busy == sorted(busy, reverse=True)
    assert busy[-1] == concurrency.MIN_IN_FLIGHT
    calm = [limit.update(images_left=far, now=0.0, lag=0.0) for _ in range(40)]  # two seconds
    assert calm == sorted(calm)
    assert calm[0] < 2 * concurrency.MIN_IN_FLIGHT
    assert calm[-1] == estimate


def test_the_limit_rises_with_the_wait_for_a_host_not_heard_from():
    limit = concurrency.InFlightLimit(memory_budget=64 << 20)
    unknown = far_host(None)
    assert limit.update(images_left={unknown: 1000}, now=0.0) == concurrency.MIN_IN_FLIGHT
    unknown.sent(0.0)
    first_guess = concurrency.FIRST_CPU_PER_IMAGE
    assert limit.update(images_left={unknown: 1000}, now=0.1) == int(concurrency.GAIN * 0.1 / first_guess)
    heard, not_yet = far_host(0.3), far_host(None)
    assert limit.update(images_left={heard: 10, not_yet: 10}, now=0.1) == int(concurrency.GAIN * 0.3 / first_guess)


@pytest.fixture
def stores(transactional_db):
    Store.objects.bulk_create([Store(store_id=f"S{n}", name=f"Store {n}", area_code="7000") for n in (1, 2)])


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_many_more_downloads_in_flight_for_a_far_host_than_for_a_near_one(
    client, stores, image_server, start_cluster
):
    start_cluster(RETAILPULSE_WORKERS="1")
    far, near = uuid.uuid4().hex, uuid.uuid4().hex
    for key, wait in ((far, 0.3), (near, 0)):
        visits = [
            visit("S1", *[image_server.url(f"/held/{key}?wait={wait}&n={v}-{n}") for n in range(1000)]) for v in (1, 2)
        ]
        job_id = submit(client, visits).json()["job_id"]
        assert wait_for_job(client, job_id, timeout=120)["status"] == "completed"

    # A fixed pool of 32 would keep 32 of each in flight.
    assert image_server.most_at_once(far) > 150
    assert image_server.most_at_once(near) <= 100
    assert image_server.most_at_once(far) > 3 * image_server.most_at_once(near)


@pytest.mark.django_db(transaction=True)
def test_a_host_answering_429_is_backed_off_while_another_hosts_images_go_on(
    client, stores, image_server, start_cluster
):
    start_cluster(RETAILPULSE_WORKERS="1")
    throttled, key = ImageServer(), uuid.uuid4().hex
    try:
        # Each of these images is answered 429 with Retry-After: 2 once, then served.
        # One chunk (a job of 100 images): the two hosts' images are fetched side by side.
        slow_urls = [throttled.url(f"/flaky/{key}-{n}?fail=1&status=429&retry_after=2") for n in range(20)]
        fast_urls = [image_server.url(f"/img/{n}x3.png?{key}") for n in range(1, 81)]
        job_id = submit(client, [visit("S1", *slow_urls), visit("S2", *fast_urls)]).json()["job_id"]
        assert wait_for_job(client, job_id, timeout=60)["status"] == "completed"
    finally:
        throttled.close()

    done_at = dict(ImageResult.objects.filter(job_id=job_id).values_list("url", "processed_at"))
    slowest_fast = max(done_at[url] for url in fast_urls)
    first_throttled = min(done_at[url] for url in slow_urls)
    assert slowest_fast < first_throttled  # no other image waited for the throttled host's backoff
    # Asked once, backed off for the Retry-After, asked again: no image was asked a third time.
    assert len(throttled.requests) == 40
    asked = dict(zip(throttled.requests, throttled.request_times, strict=True))  # the second time of each
    first_asked = min(throttled.request_times)
    assert min(asked.values()) - first_asked >= 1.9
