"""The floor of bench/service.py: bare clients doing the service's work with nothing else.

Each design downloads every image (with aiohttp, or with pyreqwest, a client in Rust), reads its
size and waits the simulated GPU delay, in one process per core, with no database, queue or web
server. The size is read with Pillow from
the whole body, or from the bytes as they arrive with the service's own header reader
(jobs.worker.imaging.headers), whichever is cheaper. Like the service's workers, each process keeps its
socket read buffers allocated (jobs.worker.imaging.keep_read_buffers), and no design sets a timeout.
`fastest` runs every design once, then the fastest three more times, and keeps the median of those
three: the floor is the best bare client for the load, measured in the same run as the service.
"""

import asyncio
import io
import itertools
import multiprocessing
import os
import random
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from PIL import Image
from pyreqwest.client import ClientBuilder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project, for its header reader
from jobs.worker.imaging.fetch import keep_read_buffers
from jobs.worker.imaging.headers import MEASURED_FORMATS, HeaderReader

CORES = os.cpu_count() or 2


def _session(in_flight: int) -> aiohttp.ClientSession:
    """No timeouts: a timer per request costs CPU, and the floor does only the load's work."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight), timeout=aiohttp.ClientTimeout())


async def _size(session: aiohttp.ClientSession, url: str) -> None:
    """The size with Pillow, from the whole body."""
    async with session.get(url) as response:
        data = await response.read()
    width, height = Image.open(io.BytesIO(data)).size
    assert width * height


async def _size_as_it_arrives(session: aiohttp.ClientSession, url: str) -> None:
    """The size with the service's header reader, from the bytes as they arrive."""
    reader = HeaderReader(MEASURED_FORMATS, 10**9)
    async with session.get(url) as response:
        async for piece in response.content.iter_any():
            reader.feed(piece)
    width, height = reader.close()
    assert width * height


async def task_per_image(urls: list[str], in_flight: int, delay: tuple[float, float]) -> None:
    """One coroutine per image behind a semaphore; the delay holds its fetch slot."""
    slots = asyncio.Semaphore(in_flight)
    async with _session(in_flight) as session:

        async def one(url: str) -> None:
            async with slots:
                await _size(session, url)
                await asyncio.sleep(random.uniform(*delay))

        await asyncio.gather(*(one(url) for url in urls))


async def pipelined(urls: list[str], in_flight: int, delay: tuple[float, float], size=_size, client=_session) -> None:
    """`in_flight` fetching coroutines take the next image in turn; the delay is a timer after the
    fetch, holding no fetch slot."""
    loop, waiting, timers = asyncio.get_running_loop(), iter(urls), set()
    async with client(in_flight) as session:

        async def fetch_in_turn() -> None:
            for url in waiting:
                await size(session, url)
                if any(delay):
                    timer = loop.create_future()
                    loop.call_later(random.uniform(*delay), timer.set_result, None)
                    timers.add(timer)

        await asyncio.gather(*(fetch_in_turn() for _ in range(in_flight)))
        await asyncio.gather(*timers)


async def pipelined_as_it_arrives(urls: list[str], in_flight: int, delay: tuple[float, float]) -> None:
    """The pipelined client, reading each size from the bytes as they arrive."""
    await pipelined(urls, in_flight, delay, size=_size_as_it_arrives)


def _pyreqwest_client(in_flight: int):
    return ClientBuilder().max_connections(in_flight).build()


async def _pyreqwest_size_as_it_arrives(client, url: str) -> None:
    reader = HeaderReader(MEASURED_FORMATS, 10**9)
    async with client.get(url).build_streamed() as response:
        while (piece := await response.body_reader.read_chunk()) is not None:
            reader.feed(bytes(piece))
    width, height = reader.close()
    assert width * height


async def pyreqwest_as_it_arrives(urls: list[str], in_flight: int, delay: tuple[float, float]) -> None:
    """The pipelined client on pyreqwest (hyper and tokio underneath), with the header reader."""
    await pipelined(urls, in_flight, delay, size=_pyreqwest_size_as_it_arrives, client=_pyreqwest_client)


DESIGNS = {
    "task per image": task_per_image,
    "pipelined": pipelined,
    "pipelined, header reader": pipelined_as_it_arrives,
    "pyreqwest, header reader": pyreqwest_as_it_arrives,
}
# The likely fastest first: a later candidate gets at most three times the best time so far.
NEAR_CANDIDATES = (
    [("pipelined, header reader", n) for n in (16, 32, 64)]
    + [("pyreqwest, header reader", n) for n in (16, 32, 64)]
    + [("pipelined", n) for n in (16, 32, 64)]
    + [("task per image", n) for n in (16, 32, 64, 1024)]
)
# For hosts far away: the most in flight first, down to 16, until two levels in a row (both engines)
# are slower than the best (the rate rises with the level up to the knee, then falls).
FAR_LEVELS = (2048, 1024, 512, 256, 128, 64, 32, 16)
FAR_ENGINES = ("pipelined, header reader", "pyreqwest, header reader")
FAR_CANDIDATES = [(design, n) for n in FAR_LEVELS for design in FAR_ENGINES]
FAR_GIVE_UP_AFTER = 2 * len(FAR_ENGINES)


def _run(design: str, urls: list[str], in_flight: int, delay: tuple[float, float], cpu_seconds) -> None:
    keep_read_buffers()  # the service's own allocator setting: without it every image faults its pages in
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a socket per image in flight
    asyncio.run(DESIGNS[design](urls, in_flight, delay))
    cpu_seconds.send(time.process_time())


@dataclass
class Result:
    design: str
    in_flight: int
    rate: float  # images per second; for a run stopped at its time limit, the most it could have reached
    cpu_per_image: float  # CPU seconds of all its processes per image
    stopped: bool = False


def run(design: str, in_flight: int, urls: list[str], delay: tuple[float, float], limit: float | None = None) -> Result:
    """One run of a design over `urls`, split across one process per core; stopped after `limit`
    seconds (a design that slow cannot be the floor)."""
    pipes = [multiprocessing.Pipe(duplex=False) for _ in range(CORES)]
    processes = [
        multiprocessing.Process(target=_run, args=(design, urls[i::CORES], in_flight, delay, sender))
        for i, (_receiver, sender) in enumerate(pipes)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    end = None if limit is None else started + limit
    if not all(receiver.poll(None if end is None else max(0.0, end - time.perf_counter())) for receiver, _ in pipes):
        for process in processes:
            process.kill()
            process.join()
        return Result(design, in_flight, len(urls) / limit, float("nan"), stopped=True)
    cpu = sum(receiver.recv() for receiver, _sender in pipes)
    for process in processes:
        process.join()
        assert process.exitcode == 0, f"a {design} process failed"
    return Result(design, in_flight, len(urls) / (time.perf_counter() - started), cpu / len(urls))


def fastest(
    url_for, images: int, delay: tuple[float, float], log, candidates=NEAR_CANDIDATES, give_up_after: int | None = None
) -> Result:
    """Every candidate once (or until `give_up_after` in a row did not beat the best), the fastest
    three more times; its median run. `url_for(name)` gives a distinct image URL; `log` gets a line
    per run."""
    runs = itertools.count()

    def once(design: str, in_flight: int, limit: float | None = None) -> Result:
        run_number = next(runs)  # every run its own distinct URLs, as a job has
        urls = [url_for(f"floor-{run_number}-{n}") for n in range(images)]
        result = run(design, in_flight, urls, delay, limit)
        heading = f"floor {images:,} images, delay {delay}: {design} at {in_flight} in flight per process:"
        if result.stopped:
            log(f"{heading} stopped after {limit:.1f} s, under {result.rate:,.0f} images/s")
        else:
            log(f"{heading} {result.rate:,.0f} images/s, {result.cpu_per_image * 1e3:.3f} ms CPU per image")
        return result

    best, not_better = None, 0
    for candidate in candidates:
        result = once(*candidate, limit=None if best is None else 3 * images / best.rate)
        if best is None or result.rate > best.rate:
            best, not_better = result, 0
        else:
            not_better += 1
            if not_better == give_up_after:
                log(f"floor: {not_better} candidates in a row slower than {best.design} at {best.in_flight}, no more")
                break
    repeats = sorted((once(best.design, best.in_flight) for _ in range(3)), key=lambda r: r.rate)
    return Result(
        best.design,
        best.in_flight,
        statistics.median(r.rate for r in repeats),
        statistics.median(r.cpu_per_image for r in repeats),
    )
