"""What a download in flight holds, by the size of each read of its socket: memory against CPU.

    .venv/bin/python bench/download_memory.py --latency 300 --in-flight 1024 --images 8000

One fresh process per row fetches the bench's 200 KB photo from nginx waiting `--latency` ms before
each answer, with the floor's pipelined client and the service's header reader (bench/floor.py),
and prints images/s, CPU per image and the RSS it grew by, per download in flight. asyncio reads up
to 256 KiB of a socket at a time; smaller reads (set on each transport) leave the rest of an answer
in the kernel's socket buffer. The pyreqwest row is the Rust engine, which reads in its own sizes.
"""

import argparse
import asyncio
import asyncio.selector_events
import subprocess
import threading
import time

import floor
import psutil
import service

ASYNCIO_READ = asyncio.selector_events._SelectorSocketTransport.max_size


def measure(read_size: int, latency: int, in_flight: int, images: int, port: int) -> str:
    """In this process: fetch `images` with `read_size` bytes per read (0: the pyreqwest engine)."""
    floor.keep_read_buffers()  # as the service's workers and the floor's processes do
    if read_size:
        asyncio.selector_events._SelectorSocketTransport.max_size = read_size
    urls = [f"http://127.0.0.1:{port}/wait/{latency}/img/m{read_size}-{n}.jpg" for n in range(images)]
    me, peak, done = psutil.Process(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.05)

    client = floor.pipelined_as_it_arrives if read_size else floor.pyreqwest_as_it_arrives
    before, started, cpu = me.memory_info().rss, time.perf_counter(), time.process_time()
    threading.Thread(target=sample, daemon=True).start()
    asyncio.run(client(urls, in_flight, (0.0, 0.0)))
    done.set()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    engine = f"{read_size >> 10} KiB" if read_size else "pyreqwest"
    per_download = (peak[0] - before) / in_flight / 1024
    return f"| {engine} | {images / seconds:,.0f} | {cpu / images * 1e3:.3f} | {per_download:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=300, help="ms nginx waits before each answer")
    parser.add_argument("--in-flight", type=int, default=1024)
    parser.add_argument("--images", type=int, default=8000)
    parser.add_argument("--read-sizes", type=int, nargs="+", default=[16384, 32768, 65536, ASYNCIO_READ, 0])
    parser.add_argument("--measure", type=int, nargs=2, help=argparse.SUPPRESS)  # read size, port: one row
    args = parser.parse_args()
    if args.measure:
        print(measure(args.measure[0], args.latency, args.in_flight, args.images, args.measure[1]))
        return
    with service.image_host("rp-download-memory-"):
        print(f"{args.in_flight:,} downloads in flight, host {args.latency} ms away, {args.images:,} images\n")
        print("| read size | images/s | CPU ms/image | RSS KiB per download |\n| --- | --- | --- | --- |")
        for read_size in args.read_sizes:
            one = [service.PY, __file__, "--measure", str(read_size), str(service.NGINX_PORT)]  # its own ports
            one += ["--latency", str(args.latency), "--in-flight", str(args.in_flight), "--images", str(args.images)]
            print(subprocess.run(one, check=True, capture_output=True, text=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
