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
import threading
import time
from collections.abc import Generator
from typing import Any

import aiohttp

from jobs.services.outcomes import Outcome
from jobs.worker import imaging

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.5  # seconds: the longest a finished image waits before it is written
FLUSH_SIZE = 1000  # images: the most written in one transaction
STOP_GRACE = 5.0  # seconds the fetcher gets past its deadline to wind down


class _FetchLoop:
    """An event loop in a daemon thread, with one aiohttp session."""

    def __init__(self, limits: imaging.FetchLimits, connections: int):
        imaging.keep_read_buffers()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="image-fetcher", daemon=True).start()
        self.session = self.run(self._open_session(limits, connections)).result()
        atexit.register(self.close)

    def close(self) -> None:
        self.run(self.session.close()).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)

    @staticmethod
    async def _open_session(limits: imaging.FetchLimits, connections: int):
        return imaging.open_session(limits, connections)  # a session belongs to the loop it is made in

    def run(self, coroutine) -> "concurrent.futures.Future":
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)


_fetch_loops: dict[tuple, _FetchLoop] = {}


def _fetch_loop(limits: imaging.FetchLimits, connections: int) -> _FetchLoop:
    """This process's loop for these connection settings (the session depends on them)."""
    key = (os.getpid(), limits.allow_private, limits.connect_timeout, connections)
    if key not in _fetch_loops:
        _fetch_loops[key] = _FetchLoop(limits, connections)
    return _fetch_loops[key]


async def _measure_all(
    images: list[tuple[int, str]],
    report: "queue.SimpleQueue[list[Outcome] | None]",
    *,
    session: aiohttp.ClientSession,
    limits: imaging.FetchLimits,
    in_flight: int,
    gpu_delay: tuple[float, float],
    deadline: float,
    stop_fetching: asyncio.Event,
    fetched: threading.Event,
) -> None:
    """Measure the images and put their outcomes on `report` in batches, at least one every
    FLUSH_EVERY (empty if nothing finished: the caller gets its turn even while every image hangs).

    Two stages: `in_flight` fetching coroutines take the next image in turn (download, read the
    size); a measured image then waits out its simulated GPU work as a timer, holding no fetch slot.
    `stop_fetching` cancels the fetches in flight (those images stay pending); what is downloaded
    still finishes its GPU work. `fetched` is set when only the GPU stage is left.
    """
    loop = asyncio.get_running_loop()
    fetcher = imaging.ImageFetcher(session, limits)
    delayed = any(gpu_delay)
    waiting = iter(images)
    batch: list[Outcome] = []
    in_gpu: set[asyncio.TimerHandle] = set()
    gpu_drained = asyncio.Event()

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

    async def fetch_in_turn() -> None:
        for image_id, url in waiting:
            try:
                width, height = await fetcher.size(url)
            except imaging.ImageError as exc:
                finish(Outcome(image_id, error=str(exc)))
                continue
            except Exception as exc:  # a bug must fail one image, not leave it pending forever
                log.exception("unexpected error measuring %s", url)
                finish(Outcome(image_id, error=f"internal error: {exc!r}"))
                continue
            if delayed:
                simulate_gpu_work(Outcome(image_id, width, height))
            else:
                finish(Outcome(image_id, width, height))

    async def hand_over_regularly() -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            hand_over()

    flusher = asyncio.create_task(hand_over_regularly())
    fetching: asyncio.Future[Any] = asyncio.gather(*(fetch_in_turn() for _ in range(min(in_flight, len(images)))))
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop_fetching.wait())
    try:
        async with asyncio.timeout_at(deadline):  # loop.time() is time.monotonic()
            await asyncio.wait([fetching, stopped], return_when=asyncio.FIRST_COMPLETED)
            fetching.cancel()  # a no-op unless stopped first
            if in_gpu:
                fetched.set()
                hand_over()  # the caller learns at once that only the GPU stage is left
                await gpu_drained.wait()
    except TimeoutError:
        pass  # what did not finish stays pending and goes back to the queue
    finally:
        fetching.cancel()
        stopped.cancel()
        for timer in in_gpu:  # cancelled: those images stay pending too
            timer.cancel()
        flusher.cancel()
        hand_over()
        report.put(None)  # finished


def measure_images(
    images: list[tuple[int, str]],
    *,
    limits: imaging.FetchLimits,
    in_flight: int,
    gpu_delay: tuple[float, float],
    deadline: float,
    stop: threading.Event | None = None,
    fetched: threading.Event | None = None,
) -> Generator[list[Outcome], None, None]:
    """Yield outcomes in batches as images finish (an empty one at least every FLUSH_EVERY), until
    all are done or `deadline` (monotonic).

    Setting `stop` (between two batches) cancels the fetches in flight, which stay pending, rather
    than waiting for them (a hanging host holds one up to its fetch timeout). The images already
    downloaded finish their simulated GPU work, as real GPU work would, and come out in the last
    batches: thrown away, they would be fetched again. Closing the generator instead drops
    everything unfinished at once.

    `fetched` is set, and a batch handed over, once no image is left to fetch and some are in their
    simulated GPU work: the rest can be taken by another thread while this one starts the next
    fetches.
    """
    report: queue.SimpleQueue[list[Outcome] | None] = queue.SimpleQueue()
    fetch = _fetch_loop(limits, in_flight)
    stop_fetching = asyncio.Event()  # set on the loop's thread: asyncio objects are not thread-safe
    measuring = fetch.run(
        _measure_all(
            images,
            report,
            session=fetch.session,
            limits=limits,
            in_flight=in_flight,
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
