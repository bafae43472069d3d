"""The service benchmark: submit -> completed, as a client sees it, against the floor.

    .venv/bin/python bench/service.py --db sqlite postgres --sizes 1000 10000 100000 --delays 0 0.1-0.4 --runs 5

- Images: one real 1024x768 JPEG of about 200 KB, served by nginx at distinct URLs.
- The floor: the fastest of several bare clients doing the same fetch + Pillow dimensions (+ the
  same delay) with no database, queue or web server, measured in the same run (bench/floor.py).
- The service: gunicorn + one qcluster, started as `make run` does, on a fresh database.
Prints a Markdown table; `make bench` runs it on SQLite and PostgreSQL into docs/performance.md.
"""

import argparse
import collections
import io
import itertools
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import floor
import psutil
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
CORES = os.cpu_count() or 2


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now: two benchmarks on one machine must not answer each other's requests."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


WEB_PORT, NGINX_PORT, SLOW_PORT = free_ports(3)
# qcluster as bin/run starts it: the checks ran with migrate.
QCLUSTER = [PY, "manage.py", "qcluster", "--skip-checks"]
PG_DATABASE = "retailpulse_bench"  # dropped and made again by each run on PostgreSQL
STORES = 100


def make_photo(path: Path) -> int:
    """A noisy 1024x768 JPEG, about 200 KB: real decoding work, nothing compresses it away."""
    rng = random.Random(7)
    img = Image.effect_noise((1024, 768), 40).convert("RGB")
    img = Image.blend(img, Image.linear_gradient("L").resize((1024, 768)).convert("RGB"), 0.5)
    for quality in range(95, 20, -5):
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= 210_000 + rng.randint(0, 1):
            break
    path.write_bytes(buffer.getvalue())
    return buffer.tell()


class ImageHost:
    """nginx serving the photo at every /img/<anything>.jpg, on two ports (two hosts to a worker);
    /wait/<ms>/img/<anything>.jpg answers after <ms> milliseconds, give or take 10 %: a host that
    far away, or that slow (Lua's ngx.sleep: a timer, no CPU while it waits)."""

    def __init__(self, workdir: Path):
        if not Path("/usr/lib/nginx/modules/ngx_http_lua_module.so").exists():
            apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            packages = ["nginx-light", "libnginx-mod-http-lua"]
            subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=apt_env)
        self.photo_bytes = make_photo(workdir / "photo.jpg")
        conf = workdir / "nginx.conf"
        conf.write_text(
            f"""
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
daemon off;
events {{ worker_connections 16384; }}
worker_rlimit_nofile 40000;
http {{
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{NGINX_PORT} backlog=4096;
    listen 127.0.0.1:{SLOW_PORT} backlog=4096;
    root {workdir};
    location /img/ {{ try_files /photo.jpg =404; }}
    location ~ ^/wait/(?<wait_ms>[0-9]+)/img/ {{
      access_by_lua_block {{ ngx.sleep(tonumber(ngx.var.wait_ms) * (0.9 + 0.2 * math.random()) / 1000) }}
      try_files /photo.jpg =404;
    }}
  }}
}}
"""
        )
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (workdir / d).mkdir(exist_ok=True)
        workdir.chmod(0o755)  # nginx's workers run as nobody
        self.process = subprocess.Popen(["/usr/sbin/nginx", "-c", str(conf), "-p", str(workdir)])
        try:
            wait_for(lambda: requests.get(self.url("probe"), timeout=1).status_code == 200)
            wait_for(lambda: requests.get(self.far_url(20)("probe"), timeout=1).status_code == 200)
        except TimeoutError:
            self.stop()
            raise
        if self.process.poll() is not None:  # another benchmark's nginx answered on the port
            raise RuntimeError(f"nginx could not start on port {NGINX_PORT}")

    @staticmethod
    def url(name: str) -> str:
        return f"http://127.0.0.1:{NGINX_PORT}/img/{name}.jpg"

    @staticmethod
    def far_url(latency: str | int):
        """The URL maker for a host `latency` ms away; "mixed": 1 image in 20 from a host that waits
        5 s, the rest from another 5 ms away."""
        if latency == "mixed":
            return lambda name: (
                f"http://127.0.0.1:{SLOW_PORT}/wait/5000/img/{name}.jpg"
                if zlib.crc32(name.encode()) % 20 == 0
                else f"http://127.0.0.1:{NGINX_PORT}/wait/5/img/{name}.jpg"
            )
        if int(latency) == 0:
            return ImageHost.url
        return lambda name: f"http://127.0.0.1:{NGINX_PORT}/wait/{int(latency)}/img/{name}.jpg"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGQUIT)
        self.process.wait(timeout=10)


# The service's settings in every benchmark: images come from nginx on this machine.
BENCH_SETTINGS = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "bench-only-" + "k" * 50,
    "DJANGO_SECURE_SSL_REDIRECT": "0",
    "RETAILPULSE_FETCH_ALLOW_PRIVATE": "1",
    "LOG_LEVEL": "WARNING",
}


def store_master(workdir: Path) -> Path:
    """A store master of STORES stores, B00000 and on, as a CSV file in `workdir`."""
    master = workdir / "stores.csv"
    master.write_text("AreaCode,StoreName,StoreID\n" + "".join(f"7000,Store {n},B{n:05d}\n" for n in range(STORES)))
    return master


def setup_django_here(db: str, workdir: Path, **settings: str) -> None:
    """Django in this process, on a fresh database with the store master loaded, with BENCH_SETTINGS
    and `settings`: for benchmarks that call the service's code directly."""
    os.environ.update(
        DATABASE_URL=fresh_database(db, workdir),
        DJANGO_SETTINGS_MODULE="retailpulse.settings",
        **BENCH_SETTINGS,
        **settings,
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("load_stores", str(store_master(workdir)), stdout=io.StringIO())


def submit_body(images: int, tag: str, per_visit: int = 100, url_for=ImageHost.url) -> dict:
    """A submit of `images` distinct image URLs (of `url_for(name)`), `per_visit` to a visit, the
    visits spread over the stores of store_master."""
    visits = [
        {
            "store_id": f"B{v % STORES:05d}",
            "image_url": [url_for(f"{tag}-{v}-{i}") for i in range(min(per_visit, images - v * per_visit))],
            "visit_time": "2024-01-21T16:23:40Z",
        }
        for v in range((images + per_visit - 1) // per_visit)
    ]
    return {"count": len(visits), "visits": visits}


def fresh_database(db: str, workdir: Path) -> str:
    """The URL of an empty database: SQLite in `workdir`, or PostgreSQL's PG_DATABASE made again."""
    if db == "sqlite":
        for old in workdir.glob("bench.sqlite3*"):
            old.unlink()
        return f"sqlite:///{workdir}/bench.sqlite3"
    for sql in (f"DROP DATABASE IF EXISTS {PG_DATABASE}", f"CREATE DATABASE {PG_DATABASE}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
    return f"postgres://postgres@127.0.0.1:5432/{PG_DATABASE}"


def connections_to_image_hosts() -> int:
    """TCP connections open to nginx's ports now (ss filters in the kernel: cheap with thousands)."""
    ports = f"( dport = :{NGINX_PORT} or dport = :{SLOW_PORT} )"
    listing = subprocess.run(["ss", "-Htn", "state", "established", ports], capture_output=True, text=True)
    return listing.stdout.count("\n")


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (gunicorn's and qcluster's workers)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def wait_for(check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError("service did not come up")


@contextmanager
def image_host(prefix: str) -> Iterator[Path]:
    """A fresh work folder, with nginx serving the bench's photo from it, for the block; then neither."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    host = ImageHost(workdir)
    try:
        yield workdir
    finally:
        host.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- The service ------------------------------------------------------------------------------


class Service:
    """gunicorn + qcluster as bin/run starts them, on a fresh database (or on `database_url`'s, as it is)."""

    def __init__(self, db: str, delay: str, workdir: Path, extra_env: dict[str, str], database_url: str | None = None):
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url or fresh_database(db, workdir),
            **BENCH_SETTINGS,
            "RETAILPULSE_GPU_DELAY": delay,
            **extra_env,
        }
        self.peak_memory = {"rss": 0, "pss": 0}  # of all the service's processes together
        self.most_connections = 0  # open to the image hosts, by all the workers together
        self._sampling = False
        subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True)
        load = [PY, "manage.py", "load_stores", str(store_master(workdir))]
        subprocess.run(load, cwd=ROOT, env=self.env, check=True, stdout=subprocess.DEVNULL)
        gunicorn = [str(ROOT / ".venv/bin/gunicorn"), "retailpulse.wsgi", "--bind", f"127.0.0.1:{WEB_PORT}"]
        self.web = subprocess.Popen(
            [*gunicorn, "--workers", "1", "--threads", "8"],  # as bin/run starts it
            cwd=ROOT, env=self.env, start_new_session=True, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.worker = subprocess.Popen(
            QCLUSTER, cwd=ROOT, env=self.env, start_new_session=True, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{WEB_PORT}"
        try:
            # 400: no such job (none has id 0); 401: API tokens on. And gunicorn is ours, not another benchmark's.
            wait_for(lambda: requests.get(f"{self.base}/api/status?jobid=0", timeout=1).status_code in (400, 401))
            if self.web.poll() is not None:
                raise RuntimeError(f"gunicorn could not start on port {WEB_PORT}")
        except (TimeoutError, RuntimeError):
            self.stop()
            raise
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample_memory, daemon=True)
        self._sampler.start()

    def processes(self) -> list[psutil.Process]:
        return [*process_tree(self.web.pid), *process_tree(self.worker.pid)]

    def _sample_memory(self) -> None:
        """Peak of the sum over every process. RSS counts the pages forked processes share once per
        process; PSS splits them between the sharers, so its sum is the memory really taken."""
        while self._sampling:
            rss = pss = 0
            for process in self.processes():
                try:
                    memory = process.memory_full_info()
                except psutil.Error:
                    continue
                rss, pss = rss + memory.rss, pss + memory.pss
            self.peak_memory = {"rss": max(self.peak_memory["rss"], rss), "pss": max(self.peak_memory["pss"], pss)}
            connections = connections_to_image_hosts()  # before reading the peak, which a new row resets
            self.most_connections = max(self.most_connections, connections)
            time.sleep(0.5)

    def cpu_seconds(self) -> dict[tuple[int, str], float]:
        """CPU time so far of each of the service's processes, by (pid, name). A process with threads
        is split into its main thread (a worker's claims and writes) and the rest (its image fetcher,
        and threads that ended)."""
        seconds = {}
        for process in self.processes():
            try:
                times, name = process.cpu_times(), " ".join(process.cmdline())[:60].rstrip()
                threads = {thread.id: thread.user_time + thread.system_time for thread in process.threads()}
            except psutil.Error:
                continue
            if len(threads) == 1:
                seconds[process.pid, name] = times.user + times.system
            else:
                seconds[process.pid, f"{name}: main thread"] = threads[process.pid]
                seconds[process.pid, f"{name}: other threads"] = times.user + times.system - threads[process.pid]
        return seconds

    def create_client(self, name: str) -> dict:
        """An API client made by `manage.py create_client`: the headers that carry its key."""
        command = [PY, "manage.py", "create_client", name]
        key = subprocess.run(command, cwd=ROOT, env=self.env, check=True, capture_output=True, text=True).stdout
        return {"Authorization": f"Token {key.strip()}"}

    def submit(
        self, images: int, tag: str, per_visit: int = 100, headers: dict | None = None, url_for=ImageHost.url
    ) -> tuple[int, float]:
        body = submit_body(images, tag, per_visit, url_for)
        started = time.perf_counter()
        response = requests.post(f"{self.base}/api/submit/", json=body, headers=headers, timeout=120)
        assert response.status_code == 201, response.text
        return response.json()["job_id"], time.perf_counter() - started

    def wait(self, job_id: int, timeout: float = 1800, headers: dict | None = None) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = requests.get(f"{self.base}/api/status?jobid={job_id}", headers=headers, timeout=10)
            status = answer.json()["status"]
            if status != "ongoing":
                return status
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} did not finish")

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *_) -> None:
        self.stop()

    def stop(self) -> None:
        self._sampling = False
        for proc in (self.web, self.worker):
            proc.send_signal(signal.SIGTERM)  # main processes only: see bin/run
        for proc in (self.web, self.worker):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def status_latencies(base: str, job_id: int, stop: threading.Event, timings: list[float]) -> None:
    """Poll status ten times a second while the job runs; milliseconds per request."""
    with requests.Session() as session:
        while not stop.is_set():
            started = time.perf_counter()
            session.get(f"{base}/api/status?jobid={job_id}", timeout=10)
            timings.append((time.perf_counter() - started) * 1000)
            time.sleep(0.1)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def parse_delay(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def small_job_latencies(service: Service, tag: str, stop: threading.Event, results: list[float]) -> None:
    """While the big job runs, submit a 5-image job 3 s after the previous one finished; seconds
    from each submit until it completes. Many of them: one lands wherever the big job's chunks
    happen to be in their turn."""
    while not stop.wait(3):
        started = time.perf_counter()
        job_id, _ = service.submit(5, f"{tag}-{len(results)}")
        assert service.wait(job_id) == "completed"
        results.append(time.perf_counter() - started)


def run_once(service: Service, size: int, tag: str, url_for=ImageHost.url) -> dict:
    """One job of `size` images (of `url_for(name)`) through the service: its rate, CPU and latencies."""
    stop, latencies, small = threading.Event(), [], []
    cpu_before = service.cpu_seconds()
    started = time.perf_counter()
    job_id, submit_s = service.submit(size, tag, url_for=url_for)
    helpers = [threading.Thread(target=status_latencies, args=(service.base, job_id, stop, latencies), daemon=True)]
    if size >= 100_000:
        helpers.append(
            threading.Thread(target=small_job_latencies, args=(service, f"{tag}-small", stop, small), daemon=True)
        )
    for thread in helpers:
        thread.start()
    status = service.wait(job_id)
    elapsed = time.perf_counter() - started
    cpu_after = service.cpu_seconds()
    stop.set()
    for thread in helpers:
        thread.join()
    assert status == "completed", f"job {job_id} ended {status}"
    cpu_by_name = collections.Counter()
    for (pid, name), seconds in cpu_after.items():
        cpu_by_name[name] += seconds - cpu_before.get((pid, name), 0.0)
    print_to_stderr(f"service {size:,} images: CPU ms per image by process: " + ", ".join(
        f"{name} {seconds / size * 1e3:.3f}" for name, seconds in cpu_by_name.most_common()
    ))  # fmt: skip
    cpu = sum(cpu_by_name.values())
    return {
        "rate": size / elapsed,
        "cpu_per_image": cpu / size,
        "submit": submit_s,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "small": small,
    }


def small_jobs_cell(seconds: list[float]) -> str:
    if not seconds:
        return ""
    return f"{statistics.median(seconds):.1f} ({max(seconds):.1f}) of {len(seconds)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], nargs="+", default=["sqlite"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--delays", nargs="+", default=["0", "0.1-0.4"])
    parser.add_argument("--runs", type=int, default=3, help="runs per size up to 10,000 (one of 100,000)")
    parser.add_argument("--env", nargs="*", default=[], help="extra service settings, NAME=VALUE")
    parser.add_argument(
        "--latencies", nargs="+", default=["0"], help="ms an image host waits before each answer, or mixed"
    )
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)

    with image_host("rp-bench-") as workdir:
        # A service of its own for each host latency: each row's peak memory is that row's.
        for db, delay, latency in itertools.product(args.db, args.delays, args.latencies):
            with Service(db, delay, workdir, extra_env) as service:
                for size in args.sizes:
                    url_for = ImageHost.far_url(latency)
                    near = latency == "0"
                    bare = floor.fastest(
                        url_for,
                        size,
                        parse_delay(delay),
                        log=print_to_stderr,
                        candidates=floor.NEAR_CANDIDATES if near else floor.FAR_CANDIDATES,
                        give_up_after=None if near else floor.FAR_GIVE_UP_AFTER,
                    )
                    service.peak_memory = {"rss": 0, "pss": 0}  # the row of 100,000 follows that of 10,000
                    service.most_connections = 0
                    runs = args.runs if size <= 10_000 else 1
                    tag = f"{delay}-{latency}-{size}"
                    results = [run_once(service, size, f"{tag}-{n}", url_for) for n in range(runs)]
                    median = {key: statistics.median(r[key] for r in results) for key in results[0] if key != "small"}
                    small = results[0]["small"]  # one run of 100,000: its 5-image jobs
                    host = "mixed: 1 in 20 at 5 s, the rest 5" if latency == "mixed" else latency
                    print(
                        f"| {db} | {delay} | {host} | {size:,} | {runs} | {median['rate']:,.0f} | {bare.rate:,.0f} "
                        f"({bare.design}, {bare.in_flight}) | {median['rate'] / bare.rate:.2f} "
                        f"| {median['cpu_per_image'] * 1e3:.2f} | {bare.cpu_per_image * 1e3:.2f} "
                        f"| {median['submit']:.2f} "
                        f"| {median['p50']:.1f} | {median['p99']:.1f} | {service.peak_memory['rss'] / 2**20:.0f} "
                        f"| {service.peak_memory['pss'] / 2**20:.0f} | {service.most_connections:,} "
                        f"| {small_jobs_cell(small)} |",
                        flush=True,
                    )


HEADER = (
    "| db | delay s | host ms | images | runs | service img/s | floor img/s (design, in flight) | ratio "
    "| service CPU ms/image | floor CPU ms/image | submit s | status p50 ms | status p99 ms "
    "| peak RSS MiB | peak PSS MiB | most connections | 5-image jobs s: median (max) of n |\n|" + " --- |" * 17
)


def print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cpu_model() -> str:
    """The CPU's name as Linux reports it (platform.processor() is empty there)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the service and nginx on the way out
    memory = psutil.virtual_memory().total / 2**30
    machine = f"{platform.machine()} ({cpu_model()})"
    command = " ".join(["bench/service.py", *sys.argv[1:]])
    print(f"Machine: {machine}, {CORES} cores, {memory:.0f} GiB, Python {platform.python_version()}, `{command}`.\n")
    print(HEADER)
    main()
