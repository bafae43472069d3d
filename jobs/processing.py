"""Runs the images of one chunk concurrently and hands their outcomes back in batches.

The fetches run on an asyncio loop in a helper thread; the calling (worker) thread only writes to
the database. That keeps the ORM out of async code, and lets the caller stop at its deadline even
while fetches hang: django-q2's timeout cannot interrupt a thread that waits on sockets.
"""

import asyncio
import logging
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from jobs import imaging

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.5  # seconds: the longest a finished image waits before it is written
FLUSH_SIZE = 250  # images: the most written in one transaction
STOP_GRACE = 5.0  # seconds the fetcher gets past its deadline to wind down


@dataclass(frozen=True)
class Outcome:
    image_id: int
    width: int | None = None
    height: int | None = None
    error: str = ""


_FINISHED = object()


async def _measure_all(
    images: list[tuple[int, str]],
    report: "queue.SimpleQueue[Outcome | object]",
    *,
    limits: imaging.FetchLimits,
    in_flight: int,
    gpu_delay: tuple[float, float],
    deadline: float,
) -> None:
    slots = asyncio.Semaphore(in_flight)

    async def measure(image_id: int, url: str) -> None:
        async with slots:
            try:
                width, height = await imaging.fetch_image_size(session, url, limits)
            except imaging.ImageError as exc:
                report.put(Outcome(image_id, error=str(exc)))
                return
            except Exception as exc:  # a bug must fail one image, not leave it pending forever
                log.exception("unexpected error measuring %s", url)
                report.put(Outcome(image_id, error=f"internal error: {exc!r}"))
                return
            await asyncio.sleep(random.uniform(*gpu_delay))  # the simulated GPU work
            report.put(Outcome(image_id, width, height))

    try:
        async with imaging.open_session(limits, connections=in_flight) as session:
            async with asyncio.timeout_at(deadline):  # loop.time() is time.monotonic()
                await asyncio.gather(*(measure(image_id, url) for image_id, url in images))
    except TimeoutError:
        pass  # what did not finish stays pending and goes back to the queue
    finally:
        report.put(_FINISHED)


def measure_images(
    images: list[tuple[int, str]],
    *,
    limits: imaging.FetchLimits,
    in_flight: int,
    gpu_delay: tuple[float, float],
    deadline: float,
) -> Iterator[list[Outcome]]:
    """Yield outcomes in batches as images finish, until all are done or `deadline` (monotonic)."""
    report: queue.SimpleQueue[Outcome | object] = queue.SimpleQueue()
    fetcher = threading.Thread(
        target=asyncio.run,
        args=(
            _measure_all(images, report, limits=limits, in_flight=in_flight, gpu_delay=gpu_delay, deadline=deadline),
        ),
        name="image-fetcher",
        daemon=True,
    )
    fetcher.start()
    batch: list[Outcome] = []
    flush_at = time.monotonic() + FLUSH_EVERY
    while True:
        try:
            item = report.get(timeout=max(0.0, flush_at - time.monotonic()))
        except queue.Empty:
            item = None
        if item is _FINISHED:
            break
        if item is not None:
            batch.append(item)
        now = time.monotonic()
        if len(batch) >= FLUSH_SIZE or now >= flush_at:
            if batch:
                yield batch
                batch = []
            flush_at = now + FLUSH_EVERY
        if now > deadline + STOP_GRACE:
            log.error("image fetcher did not stop at its deadline; leaving it behind")
            break
    if batch:
        yield batch
