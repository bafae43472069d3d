"""Runs the images of one chunk concurrently and hands their outcomes back in batches.

The fetches run on an asyncio loop in a helper thread; the calling (worker) thread only writes to
the database. That keeps the ORM out of async code, and lets the caller stop at its deadline even
while fetches hang: django-q2's timeout cannot interrupt a thread that waits on sockets. The loop
and its aiohttp session live as long as the worker process, so connections to image hosts are
reused from one chunk to the next.
"""

import asyncio
import atexit
import concurrent.futures
import logging
import os
import queue
import random
import resource
import threading
import time
from collections.abc import Generator
from typing import Any

from jobs.services.outcomes import Outcome
from jobs.worker import imaging
from jobs.worker.concurrency import InFlightLimit
from jobs.worker.hosts import Host, HostQueues, HostTable, Waiting

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.5  # seconds: the longest a finished image waits before it is written
FLUSH_SIZE = 1000  # images: the most written in one transaction
STEER_EVERY = 0.05  # seconds between two looks at the in-flight limit and the hosts
STOP_GRACE = 5.0  # seconds the fetcher gets past its deadline to wind down
RETRIES = 2  # after the first attempt, for transient failures only (a host in distress)
# Seconds a stopped chunk gives the downloads it sent to end: those of a host up to a second away
# finish, rather than be fetched again by the chunk's next holder; the rest are cancelled.
STOP_GRACE_FOR_SENT = 1.0


class _FetchLoop:
    """An event loop in a daemon thread, with one aiohttp session, the hosts it has met and its
    in-flight limit: all kept from one chunk to the next."""

    def __init__(self, limits: imaging.FetchLimits):
        imaging.keep_read_buffers()
        self.limit = InFlightLimit(memory_budget=limits.memory_budget)
        _allow_open_files(self.limit.ceiling)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="image-fetcher", daemon=True).start()
        self.session = self.run(self._open_session(limits)).result()
        self.hosts = HostTable(connection_cap=limits.host_connections)
        atexit.register(self.close)

    def close(self) -> None:
        self.run(self.session.close()).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)

    @staticmethod
    async def _open_session(limits: imaging.FetchLimits):
        return imaging.open_session(limits)  # a session belongs to the loop it is made in

    def run(self, coroutine) -> "concurrent.futures.Future":
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)


OTHER_FILES = 256  # the database, the broker, logs and libraries: what a worker opens besides downloads


def _allow_open_files(downloads: int) -> None:
    """Raise the soft limit of open files as far as `downloads` in flight may need (one socket
    each), within the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = downloads + OTHER_FILES
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


_fetch_loops: dict[tuple, _FetchLoop] = {}


def _fetch_loop(limits: imaging.FetchLimits) -> _FetchLoop:
    """This process's loop for these connection settings (the session depends on them)."""
    key = (os.getpid(), limits.allow_private, limits.connect_timeout, limits.host_connections, limits.memory_budget)
    if key not in _fetch_loops:
        _fetch_loops[key] = _FetchLoop(limits)
    return _fetch_loops[key]


def _log_if_failed(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("image fetcher's steering failed", exc_info=task.exception())


async def _measure_all(
    images: list[tuple[int, str]],
    report: "queue.SimpleQueue[list[Outcome] | None]",
    *,
    fetch_loop: _FetchLoop,
    limits: imaging.FetchLimits,
    gpu_delay: tuple[float, float],
    deadline: float,
    stop_fetching: asyncio.Event,
    fetched: threading.Event,
) -> None:
    """Measure the images and put their outcomes on `report` in batches, at least one every
    FLUSH_EVERY (empty if nothing finished: the caller gets its turn even while every image hangs).

    Two stages: fetchers take the next image of the next host that can start one (download, read
    the size), as many as the in-flight limit allows; a measured image then waits out its simulated
    GPU work as a timer, holding no place. Every STEER_EVERY the limit is worked out again and
    fetchers started to meet it (jobs.worker.concurrency). After `stop_fetching` no fetch starts;
    those in flight get STOP_GRACE_FOR_SENT to end, then are cancelled (those images stay pending);
    what is downloaded still finishes its GPU work. `fetched` is set when only the GPU stage is left.
    """
    loop = asyncio.get_running_loop()
    fetcher = imaging.ImageFetcher(fetch_loop.session, limits)
    hosts, limit = fetch_loop.hosts, fetch_loop.limit
    delayed = any(gpu_delay)
    queues = HostQueues()
    batch: list[Outcome] = []
    in_gpu: set[asyncio.TimerHandle] = set()
    gpu_drained = asyncio.Event()
    fetchers: set[asyncio.Task] = set()
    all_fetched = asyncio.Event()
    to_fetch = 0  # images queued whose fetch has not ended
    fetches_ended = 0
    stopping = False  # no fetch starts

    def hand_over() -> None:
        nonlocal batch
        report.put(batch)
        batch = []

    def finish(outcome: Outcome, timer: asyncio.TimerHandle | None = None) -> None:
        if timer is not None:
            in_gpu.discard(timer)
        batch.append(outcome)
        if len(batch) >= FLUSH_SIZE:
            hand_over()
        if not in_gpu:
            gpu_drained.set()

    def simulate_gpu_work(outcome: Outcome) -> None:
        timer: asyncio.TimerHandle = loop.call_later(random.uniform(*gpu_delay), lambda: finish(outcome, timer))
        in_gpu.add(timer)
        gpu_drained.clear()

    def fetch_ended(outcome: Outcome) -> None:
        nonlocal to_fetch, fetches_ended
        to_fetch -= 1
        fetches_ended += 1
        if delayed and outcome.width is not None:
            simulate_gpu_work(outcome)
        else:
            finish(outcome)
        if to_fetch == 0:
            all_fetched.set()

    def refusal(image: Waiting, now: float) -> str | None:
        """Why the image is not sent now: its retries waited out its deadline, or its host is down."""
        host = image.host
        if image.deadline is None:
            image.deadline = now + limits.total_timeout
        elif now >= image.deadline:
            return f"timed out after {limits.total_timeout:g} s (host {host.name})"
        if host.is_down(now=now, timeout=limits.total_timeout):
            return down_error(host)
        return None

    def settle(image: Waiting, sent_at: float, size: tuple[int, int] | None, failure: Exception | None) -> None:
        """What the end of one attempt means for the image (an outcome, or another attempt) and its host."""
        host, now = image.host, loop.time()
        if failure is None and size is not None:
            host.answered(now=now, seconds=now - sent_at)
            fetch_ended(Outcome(image.image_id, *size))
        elif isinstance(failure, imaging.TransientError):
            host.failed(now=now, error=str(failure), distress=True, retry_after=failure.retry_after)
            image.attempts += 1
            if image.attempts <= RETRIES:
                queues.add(image, first=True)
            else:
                error = f"{failure} (after {image.attempts} attempts, host {host.name})"
                fetch_ended(Outcome(image.image_id, error=error))
        elif isinstance(failure, imaging.HostUnreachable):
            host.failed(now=now, error=str(failure), distress=False)
            fetch_ended(Outcome(image.image_id, error=f"{failure} (host {host.name})"))
        elif isinstance(failure, imaging.ImageError):
            host.answered(now=now, seconds=now - sent_at)
            fetch_ended(Outcome(image.image_id, error=str(failure)))
        else:  # a bug must fail one image, not leave it pending forever
            log.error("unexpected error measuring %s", image.url, exc_info=failure)
            fetch_ended(Outcome(image.image_id, error=f"internal error: {failure!r}"))

    async def fetch_in_turn() -> None:
        # The download is awaited here, not in a coroutine of its own: each level of coroutines
        # costs CPU on every piece of an image that arrives.
        try:
            while len(fetchers) <= limit.value and not stopping:
                image = queues.take(loop.time())
                if image is None:
                    return
                sent_at = loop.time()
                refused = refusal(image, sent_at)
                if refused is not None:
                    fetch_ended(Outcome(image.image_id, error=refused))
                    continue
                try:
                    url = imaging.check_url(image.url, limits)
                except imaging.ImageError as exc:
                    fetch_ended(Outcome(image.image_id, error=str(exc)))
                    continue
                image.host.sent(sent_at)
                try:
                    size = await fetcher.size(url, deadline=image.deadline)
                except Exception as exc:  # a cancel (BaseException) leaves the image pending
                    settle(image, sent_at, None, exc)
                else:
                    settle(image, sent_at, size, None)
                finally:
                    image.host.in_flight -= 1
        finally:
            fetchers.discard(asyncio.current_task())  # type: ignore[arg-type]

    def start_fetchers(now: float) -> None:
        if stopping:
            return
        waiting = queues.waiting()
        startable = sum(
            min(count, int(host.allowed) - host.in_flight) for host, count in waiting.items() if host.can_start(now)
        )
        for _ in range(min(startable, limit.value - len(fetchers))):
            fetchers.add(asyncio.create_task(fetch_in_turn()))

    def down_error(host: Host) -> str:
        return f"{host.last_error} (host {host.name} failed every request for {limits.total_timeout:g} s)"

    def fail_the_images_of_hosts_down(now: float) -> None:
        for host in queues.waiting():
            if host.is_down(now=now, timeout=limits.total_timeout):
                for image in queues.take_all_of(host):
                    fetch_ended(Outcome(image.image_id, error=down_error(host)))

    async def steer() -> None:
        cpu_then, ended_then = time.thread_time(), fetches_ended  # this is the loop's thread
        flush_at = loop.time() + FLUSH_EVERY
        while True:
            asleep_at = loop.time()
            await asyncio.sleep(STEER_EVERY)
            now, cpu_now = loop.time(), time.thread_time()
            if fetches_ended > ended_then:
                limit.measured(cpu_seconds=cpu_now - cpu_then, images=fetches_ended - ended_then)
                cpu_then, ended_then = cpu_now, fetches_ended
            fail_the_images_of_hosts_down(now)
            images_left = queues.waiting()
            for host in hosts.hosts.values():
                if host.in_flight:
                    images_left[host] = images_left.get(host, 0) + host.in_flight
            limit.update(images_left=images_left, now=now, lag=now - asleep_at - STEER_EVERY)
            start_fetchers(now)
            if now >= flush_at:
                hand_over()
                flush_at = now + FLUSH_EVERY

    for host in hosts.hosts.values():
        host.failing = False  # a host down for a chunk before is tried again
    for image_id, url in images:
        queues.add(Waiting(image_id, url, hosts.host_of(url)))
        to_fetch += 1
    if not to_fetch:
        all_fetched.set()
    start_fetchers(loop.time())
    steering = asyncio.create_task(steer())
    steering.add_done_callback(_log_if_failed)
    fetching: asyncio.Future[Any] = asyncio.ensure_future(all_fetched.wait())
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop_fetching.wait())
    try:
        async with asyncio.timeout_at(deadline):  # loop.time() is time.monotonic()
            await asyncio.wait([fetching, stopped], return_when=asyncio.FIRST_COMPLETED)
            if fetchers and not fetching.done():
                stopping = True
                await asyncio.wait(list(fetchers), timeout=STOP_GRACE_FOR_SENT)
            steering.cancel()
            for task in list(fetchers):  # none left unless stopped first
                task.cancel()
            if in_gpu:
                fetched.set()
                hand_over()  # the caller learns at once that only the GPU stage is left
                await gpu_drained.wait()
    except TimeoutError:
        pass  # what did not finish stays pending and goes back to the queue
    finally:
        steering.cancel()
        for task in list(fetchers):
            task.cancel()
        fetching.cancel()
        stopped.cancel()
        for timer in in_gpu:  # cancelled: those images stay pending too
            timer.cancel()
        hand_over()
        report.put(None)  # finished


def measure_images(
    images: list[tuple[int, str]],
    *,
    limits: imaging.FetchLimits,
    gpu_delay: tuple[float, float],
    deadline: float,
    stop: threading.Event | None = None,
    fetched: threading.Event | None = None,
) -> Generator[list[Outcome], None, None]:
    """Yield outcomes in batches as images finish (an empty one at least every FLUSH_EVERY), until
    all are done or `deadline` (monotonic).

    Setting `stop` (between two batches) starts no more fetches; those in flight get
    STOP_GRACE_FOR_SENT to end, then are cancelled and stay pending, rather than waited for (a
    hanging host holds one up to its fetch timeout). The images downloaded finish their simulated
    GPU work, as real GPU work would, and come out in the last batches: thrown away, they would be
    fetched again. Closing the generator instead drops everything unfinished at once.

    `fetched` is set, and a batch handed over, once no image is left to fetch and some are in their
    simulated GPU work: the rest can be taken by another thread while this one starts the next
    fetches.
    """
    report: queue.SimpleQueue[list[Outcome] | None] = queue.SimpleQueue()
    fetch = _fetch_loop(limits)
    stop_fetching = asyncio.Event()  # set on the loop's thread: asyncio objects are not thread-safe
    measuring = fetch.run(
        _measure_all(
            images,
            report,
            fetch_loop=fetch,
            limits=limits,
            gpu_delay=gpu_delay,
            deadline=deadline,
            stop_fetching=stop_fetching,
            fetched=fetched or threading.Event(),
        )
    )
    try:
        while True:
            try:
                batch = report.get(timeout=max(0.0, deadline + STOP_GRACE - time.monotonic()))
            except queue.Empty:
                log.error("image fetcher did not stop at its deadline; leaving it behind")
                break
            if batch is None:  # finished
                break
            yield batch
            if stop is not None and stop.is_set():
                fetch.loop.call_soon_threadsafe(stop_fetching.set)
    finally:
        measuring.cancel()  # a no-op unless the fetcher overran its deadline, or the caller closed early
