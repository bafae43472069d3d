"""Fixtures shared by every test: a local image server, a callback receiver and a real qcluster worker."""

import contextlib
import io
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

BASE_DIR = Path(__file__).resolve().parent
SHARED_DATA = BASE_DIR.parent / "shared" / "data"


def make_image(width: int, height: int, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, format=image_format)
    return buffer.getvalue()


class BackloggedServer(ThreadingHTTPServer):
    # Workers open hundreds of connections at once; the default backlog of 5 drops their SYNs.
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # A client that went away (a killed worker, a fetch given up) is no error of the server. Its
        # traceback would also run ast.parse in this thread (Python 3.11's traceback does), which can
        # make pytest's parse in the main thread fail with "AST constructor recursion depth
        # mismatch" (CPython's GitHub issue 106905, pytest's 10874): a full run failed so.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalServer:
    """A threaded HTTP server on a free loopback port; `handle(handler)` answers each request."""

    methods = ("GET",)

    def __init__(self, host: str = "127.0.0.1"):
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self):
                server.handle(self)

        for method in self.methods:
            setattr(Handler, f"do_{method}", Handler.answer)
        self.httpd = BackloggedServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://{host}:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return self.base_url + path

    def _count(self, key: str) -> int:
        """How many requests for `key` so far, this one included."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]

    def handle(self, handler) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ImageServer(LocalServer):
    """A local HTTP server with every kind of answer an image host gives.

    /img/W x H.EXT         an image of that size (jpg, png, webp, gif)
    /sample/NAME           a file of jobs/tests/image_samples.py (every kind a phone or camera makes)
    /status/CODE           an empty answer with that status
    /notimage              an HTML page
    /truncated             a JPEG whose connection closes halfway through its Content-Length
    /slow?seconds=S        waits S seconds, then answers with an image
    /flaky/KEY?fail=N&status=S&retry_after=R
                           S (503) with Retry-After: R (0) for the first N requests of KEY, then an image
    /dropped/KEY?fail=N    the first N requests of KEY get a status line, then the connection closes
    /redirect?to=URL       302 to URL
    /switch/KEY            404 until `server.switch_on(KEY)`, then an image
    /held/KEY?peers=N&wait=S
                           an image once `server.release(KEY)` is called or N requests of KEY are in at
                           once (then the later ones too), or after S seconds (30); `server.most_at_once(KEY)`
                           is the most that were in at once
    /huge                  Content-Length of 1 GB (nothing sent)
    /endless               an image header followed by bytes without end, no Content-Length
    /trickle               an image's status line, headers and body, a byte a second
    /reset                 the connection reset (RST) without an answer
    """

    def __init__(self, host: str = "127.0.0.1"):
        self.requests: list[str] = []
        self.request_times: list[float] = []  # time.monotonic() of each of `requests`
        self._switched_on: set[str] = set()
        self._held_now: dict[str, int] = {}
        self._held_most: dict[str, int] = {}
        self._released: set[str] = set()
        self._held_changed = threading.Condition()
        super().__init__(host)

    def switch_on(self, key: str) -> None:
        self._switched_on.add(key)

    def release(self, key: str) -> None:
        with self._held_changed:
            self._released.add(key)
            self._held_changed.notify_all()

    def most_at_once(self, key: str) -> int:
        with self._held_changed:
            return self._held_most.get(key, 0)

    def _hold(self, key: str, peers: int, wait: float) -> None:
        with self._held_changed:
            self._held_now[key] = self._held_now.get(key, 0) + 1
            self._held_most[key] = max(self._held_most.get(key, 0), self._held_now[key])
            if self._held_now[key] >= peers:
                self._released.add(key)
                self._held_changed.notify_all()
            self._held_changed.wait_for(lambda: key in self._released, wait)
            self._held_now[key] -= 1

    @staticmethod
    def send(handler, status: int, body: bytes = b"", content_type: str = "application/octet-stream", **headers):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", headers.pop("content_length", str(len(body))))
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(body)

    def handle(self, handler) -> None:
        self.requests.append(handler.path)
        self.request_times.append(time.monotonic())
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        segments = parts.path.strip("/").split("/")
        kind = segments[0]
        jpeg = make_image(64, 48, "JPEG")
        if kind == "img":
            size, _, ext = segments[1].partition(".")
            width, height = (int(n) for n in size.split("x"))
            image_format = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}[ext]
            self.send(handler, 200, make_image(width, height, image_format), f"image/{ext}")
        elif kind == "sample":
            from jobs.tests.image_samples import ALL

            self.send(handler, 200, ALL[segments[1]])
        elif kind == "status":
            self.send(handler, int(segments[1]), b"")
        elif kind == "notimage":
            self.send(handler, 200, b"<html><body>hello</body></html>", "text/html")
        elif kind == "truncated":
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(jpeg)))
            handler.end_headers()
            handler.wfile.write(jpeg[: len(jpeg) // 2])
            handler.close_connection = True
        elif kind == "slow":
            time.sleep(float(query.get("seconds", "5")))
            self.send(handler, 200, jpeg, "image/jpeg")
        elif kind == "flaky":
            if self._count(segments[1]) <= int(query.get("fail", "1")):
                self.send(handler, int(query.get("status", "503")), b"", Retry_After=query.get("retry_after", "0"))
            else:
                self.send(handler, 200, jpeg, "image/jpeg")
        elif kind == "dropped":
            if self._count(segments[1]) <= int(query.get("fail", "1")):
                handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n")  # no end of headers
                handler.close_connection = True
            else:
                self.send(handler, 200, jpeg, "image/jpeg")
        elif kind == "redirect":
            self.send(handler, 302, b"", Location=query["to"])
        elif kind == "switch":
            if segments[1] in self._switched_on:
                self.send(handler, 200, jpeg, "image/jpeg")
            else:
                self.send(handler, 404, b"")
        elif kind == "held":
            self._hold(segments[1], int(query.get("peers", "0")) or sys.maxsize, float(query.get("wait", "30")))
            self.send(handler, 200, jpeg, "image/jpeg")
        elif kind == "huge":
            handler.send_response(200)
            handler.send_header("Content-Length", str(10**9))
            handler.end_headers()
            handler.close_connection = True
        elif kind == "endless":
            handler.send_response(200)
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.close_connection = True
            try:
                handler.wfile.write(jpeg[:200])
                for _ in range(10_000):
                    handler.wfile.write(b"\0" * 65536)
            except OSError:
                pass
        elif kind == "trickle":
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(jpeg), jpeg)
            handler.close_connection = True
            with contextlib.suppress(OSError):
                for byte in answer:
                    handler.wfile.write(bytes([byte]))
                    handler.wfile.flush()
                    time.sleep(1)
        elif kind == "reset":
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()  # with a zero linger: a reset, not a FIN
            handler.close_connection = True
        else:
            self.send(handler, 404, b"")


@pytest.fixture(scope="session")
def image_server():
    server = ImageServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def loopback_name() -> str:
    """This machine's host name, checked to resolve to loopback only: a name that is neither an IP
    literal nor `localhost`, so check_url lets it through and only the resolver keeps it off the
    local servers."""
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    assert all(ipaddress.ip_address(a).is_loopback for a in addresses), f"{name}: {addresses}"
    return name


class CallbackReceiver(LocalServer):
    """A local HTTP server that records every POST: the client end of completion callbacks.

    POST /hook/KEY?fail=N answers 500 to the first N requests of KEY, then 204;
    POST /redirect answers 302 to /hook/redirected.
    """

    methods = ("POST",)

    def __init__(self):
        self.received: list[dict] = []
        super().__init__()

    def handle(self, handler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.received.append({"path": parts.path, "headers": dict(handler.headers), "body": body})
        count = self._count(parts.path)
        if parts.path == "/redirect":
            status, extra = 302, {"Location": "/hook/redirected"}
        elif count <= int(query.get("fail", "0")):
            status, extra = 500, {}
        else:
            status, extra = 204, {}
        handler.send_response(status)
        for name, value in {**extra, "Content-Length": "0"}.items():
            handler.send_header(name, value)
        handler.end_headers()

    def requests_to(self, path: str) -> list[dict]:
        with self._lock:
            return [r for r in self.received if r["path"] == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.requests_to(path)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests_to(path))} POSTs to {path} after {timeout} s, not {count}")
            time.sleep(0.05)
        return self.requests_to(path)


@pytest.fixture
def callback_receiver():
    receiver = CallbackReceiver()
    yield receiver
    receiver.close()


def database_url(settings_dict: dict) -> str:
    """The URL of the database the tests run on, for processes the tests start."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user, host, port = settings_dict["USER"] or "postgres", settings_dict["HOST"] or "127.0.0.1", settings_dict["PORT"]
    return f"postgres://{user}@{host}:{port or 5432}/{settings_dict['NAME']}"


class ServiceProcess:
    """A real service process (qcluster or gunicorn) in its own process group, on the test database."""

    def __init__(self, command: list[str], env: dict[str, str]):
        self.process = subprocess.Popen(
            command, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    def kill(self) -> None:
        """SIGKILL to the whole process group: a crash, or a machine going away."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        # SIGTERM to the main process only: signalling the whole group hangs django-q2.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Cluster(ServiceProcess):
    def __init__(self, env: dict[str, str]):
        super().__init__([sys.executable, "manage.py", "qcluster", "--skip-checks"], env)  # as bin/run

    def worker_pids(self) -> list[int]:
        import psutil

        # django-q2 titles its processes (setproctitle): workers read "... idle" or "... processing <task>".
        titles = {}
        for child in psutil.Process(self.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a worker just killed: gone, or a zombie until reaped
                titles[child.pid] = " ".join(child.cmdline()).rstrip()  # a title shorter than argv is padded
        return [pid for pid, title in titles.items() if title.endswith(" idle") or " processing " in title]


class Web(ServiceProcess):
    """gunicorn as bin/run starts it, on a free port."""

    def __init__(self, env: dict[str, str]):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        super().__init__([gunicorn, "retailpulse.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", "2"], env)
        self.url = f"http://127.0.0.1:{self.port}"


@pytest.fixture
def service_env(transactional_db):
    """The environment of processes the tests start: the test database, local images allowed."""
    from django.db import connection

    return {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "RETAILPULSE_FETCH_ALLOW_PRIVATE": "1",
        "RETAILPULSE_GPU_DELAY": "0",
    }


@contextlib.contextmanager
def started(kind: type[ServiceProcess], env: dict[str, str]):
    """A function that starts `kind` processes with extra environment; all are stopped at the end."""
    processes: list[ServiceProcess] = []

    def start(**extra_env: str):
        processes.append(kind({**env, **extra_env}))
        return processes[-1]

    try:
        yield start
    finally:
        for process in processes:
            process.stop()


@pytest.fixture
def start_cluster(service_env):
    from django.core.cache import caches

    with started(Cluster, service_env) as start:
        yield start
    caches["cluster"].clear()  # a killed cluster's last heartbeat would count for 10 s in the next test


@pytest.fixture
def start_web(service_env):
    with started(Web, service_env) as start:
        yield start
