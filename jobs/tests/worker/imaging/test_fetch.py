"""jobs.worker.imaging.fetch against the local image server: sizes, failures, caps, redirects and SSRF refusals.

No database, no internet: every URL goes to a local server (127.0.0.1, or 127.0.0.2 standing in
for a public host) or is refused before any connection is made.
"""

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import quote

import pytest
from yarl import URL

from conftest import BASE_DIR, ImageServer
from jobs.worker.imaging import (
    MEASURED_FORMATS,
    FetchLimits,
    HostUnreachable,
    ImageError,
    ImageFetcher,
    PublicAddressResolver,
    TransientError,
    check_url,
    is_public_address,
    open_session,
)
from jobs.worker.imaging import fetch as fetch_module


def limits(**overrides) -> FetchLimits:
    values = {
        "total_timeout": 5,
        "connect_timeout": 2,
        "max_bytes": 5_000_000,
        "max_pixels": 50_000_000,
        "max_redirects": 3,
        "allow_private": True,
        "formats": MEASURED_FORMATS,
        "host_connections": 4,
        "memory_budget": 1 << 20,
    }
    return FetchLimits(**(values | overrides))


def fetch(url: str, **overrides) -> tuple[int, int]:
    """One fetch, as a worker does it: a fresh session with these limits."""
    fetch_limits = limits(**overrides)

    async def run() -> tuple[int, int]:
        async with open_session(fetch_limits) as session:
            return await ImageFetcher(session, fetch_limits).size(url)

    return asyncio.run(run())


def fetch_error(url: str, **overrides) -> str:
    """The ImageError message of a fetch that must fail."""
    with pytest.raises(ImageError) as excinfo:
        fetch(url, **overrides)
    return str(excinfo.value)


def unique(path: str) -> str:
    """The path with a query nobody else uses, so its requests can be counted (the server ignores it)."""
    separator = "&" if "?" in path else "?"
    return f"{path}{separator}t={uuid.uuid4().hex}"


def redirect_chain(image_server, target: str, hops: int) -> str:
    url = target
    for _ in range(hops):
        url = image_server.url("/redirect?to=" + quote(url, safe=""))
    return url


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- successful fetches ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/img/640x480.jpg", (640, 480)),
        ("/img/320x200.png", (320, 200)),
        ("/img/123x45.webp", (123, 45)),
        ("/img/17x33.gif", (17, 33)),
    ],
)
def test_returns_width_and_height(image_server, path, expected):
    assert fetch(image_server.url(path)) == expected


# --- HTTP errors and retries -----------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_is_reported_without_retry(image_server, status):
    path = unique(f"/status/{status}")
    assert fetch_error(image_server.url(path)) == f"HTTP {status}"
    assert image_server.requests.count(path) == 1


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_a_transient_error_is_the_callers_to_retry(image_server, status):
    # One attempt here: the worker retries with the host's state in hand (test_processing).
    path = f"/flaky/{uuid.uuid4().hex}?fail=1&status={status}&retry_after=7"
    with pytest.raises(TransientError) as excinfo:
        fetch(image_server.url(path))
    assert (str(excinfo.value), excinfo.value.retry_after) == (f"HTTP {status}", 7.0)
    assert image_server.requests.count(path) == 1


def test_a_connection_dropped_mid_response_is_transient(image_server):
    # aiohttp resends a GET once by itself when the connection drops: the second drop is the worker's to retry.
    path = f"/dropped/{uuid.uuid4().hex}?fail=2"
    with pytest.raises(TransientError, match=r"^connection lost \(server disconnected\)$"):
        fetch(image_server.url(path))
    assert image_server.requests.count(path) == 2


def test_a_host_that_does_not_answer_is_unreachable(image_server):
    with pytest.raises(HostUnreachable, match=r"^cannot connect"):
        fetch(f"http://127.0.0.1:{closed_port()}/img/10x10.jpg")
    key = uuid.uuid4().hex
    with pytest.raises(HostUnreachable, match=r"^timed out after 0.5 s$"):
        fetch(image_server.url(f"/held/{key}"), total_timeout=0.5)
    image_server.release(key)


# --- bad answers -----------------------------------------------------------------------------


def test_not_an_image(image_server):
    assert fetch_error(image_server.url("/notimage")).startswith("not an image")


def test_truncated_download(image_server):
    assert fetch_error(image_server.url("/truncated")).startswith("truncated")


def test_connection_refused():
    assert fetch_error(f"http://127.0.0.1:{closed_port()}/img/10x10.jpg").startswith("cannot connect")


@pytest.fixture
def unanswered_port():
    """A port on 127.0.0.1 whose listener never accepts and whose backlog is full: a connect there hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    queued = []
    for _ in range(16):
        probe = socket.socket()
        probe.settimeout(0.2)
        try:
            probe.connect(listener.getsockname())
        except TimeoutError:
            probe.close()
            break
        queued.append(probe)
    else:
        raise AssertionError("every connect was accepted: the backlog never filled")
    yield listener.getsockname()[1]
    for sock in [*queued, listener]:
        sock.close()


def test_connect_timeout(unanswered_port):
    message = fetch_error(f"http://127.0.0.1:{unanswered_port}/img/10x10.jpg", connect_timeout=0.5, total_timeout=5)
    assert message == "connect timed out after 0.5 s"


def test_total_timeout(image_server):
    key = uuid.uuid4().hex
    started = time.monotonic()
    message = fetch_error(image_server.url(f"/held/{key}"), total_timeout=0.5)
    image_server.release(key)
    assert message == "timed out after 0.5 s"  # the image is held for 30 s: only the deadline ends the wait
    assert time.monotonic() - started < 0.5 + fetch_module.DEADLINE_SWEEP + 2  # a margin for a busy machine


def test_a_timed_out_fetch_leaves_its_task_free_for_the_next_images(image_server, unanswered_port):
    key, fetch_limits = uuid.uuid4().hex, limits(total_timeout=0.6, connect_timeout=0.2)

    async def run() -> list:
        async with open_session(fetch_limits) as session:
            fetcher = ImageFetcher(session, fetch_limits)
            results = []
            for url in (
                image_server.url(f"/held/{key}"),
                f"http://127.0.0.1:{unanswered_port}/img/10x10.jpg",
                image_server.url("/img/30x20.png"),
            ):
                try:
                    results.append(await fetcher.size(url))
                except ImageError as exc:
                    results.append(str(exc))
            return results

    # A deadline cancels the fetch, not the task: its next fetches run, and their own timeouts
    # (the connect timeout is asyncio's, cancelling the task too) are told apart.
    assert asyncio.run(run()) == ["timed out after 0.6 s", "connect timed out after 0.2 s", (30, 20)]
    image_server.release(key)


def test_fetches_at_once_each_keep_their_own_deadline(image_server):
    key, fetch_limits = uuid.uuid4().hex, limits(total_timeout=0.5)

    async def run() -> list:
        async with open_session(fetch_limits) as session:
            fetcher = ImageFetcher(session, fetch_limits)

            async def later(url: str, after: float):
                await asyncio.sleep(after)
                return await fetcher.size(url)

            return await asyncio.gather(
                fetcher.size(image_server.url(f"/held/{key}")),
                later(image_server.url(f"/held/{key}?wait=0.3"), 0.4),  # done 0.7 s in: 0.3 s into its own
                return_exceptions=True,
            )

    held, later_one = asyncio.run(run())
    image_server.release(key)
    assert str(held) == "timed out after 0.5 s"
    assert later_one == (64, 48)


def test_a_fetch_cancelled_by_its_caller_is_not_a_timeout(image_server):
    key, fetch_limits = uuid.uuid4().hex, limits(total_timeout=5)

    async def run() -> None:
        async with open_session(fetch_limits) as session:
            fetch = asyncio.create_task(ImageFetcher(session, fetch_limits).size(image_server.url(f"/held/{key}")))
            await asyncio.sleep(0.2)
            fetch.cancel()
            await fetch

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run())
    image_server.release(key)


@pytest.mark.parametrize(
    "path",
    [
        "/huge",  # declared Content-Length over the cap
        "/endless",  # no Content-Length: the counted bytes pass the cap
    ],
)
def test_size_cap(image_server, path):
    assert fetch_error(image_server.url(path), max_bytes=1_000_000).startswith("too large")


def test_pixel_cap(image_server):
    message = fetch_error(image_server.url("/img/3000x3000.jpg"), max_pixels=1_000_000)
    assert message == "too many pixels: 3000x3000 (over 1,000,000)"


def test_a_phone_photo_is_measured_as_displayed(image_server):
    # 460 KB of EXIF and ICC blocks before the frame header, EXIF orientation 6.
    assert fetch(image_server.url("/sample/big-metadata.jpg")) == (80, 120)


def test_an_unsupported_format_is_named(image_server):
    assert fetch_error(image_server.url("/sample/icon.ico"), formats=("JPEG",)) == (
        "unsupported image format ICO (accepted: JPEG)"
    )


# --- redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize("hops", [1, 3])
def test_redirects_are_followed_up_to_the_limit(image_server, hops):
    url = redirect_chain(image_server, image_server.url("/img/50x40.png"), hops)
    assert fetch(url, max_redirects=3) == (50, 40)


def test_relative_redirect(image_server):
    assert fetch(image_server.url("/redirect?to=/img/30x20.gif")) == (30, 20)


def test_too_many_redirects(image_server):
    url = redirect_chain(image_server, image_server.url("/img/50x40.png"), 4)
    assert fetch_error(url, max_redirects=3).startswith("too many redirects")


# --- SSRF ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/img/10x10.jpg",
        "http://localhost:{port}/img/10x10.jpg",
        "http://[::1]:{port}/img/10x10.jpg",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://0.0.0.0/",
    ],
)
def test_private_addresses_are_refused(image_server, url):
    before = len(image_server.requests)
    message = fetch_error(url.format(port=image_server.httpd.server_port), allow_private=False)
    assert message.startswith("refused")
    assert len(image_server.requests) == before


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433:{port}/img/10x10.jpg",  # 127.0.0.1 as one decimal number
        "http://0177.0.0.1:{port}/img/10x10.jpg",  # 127.0.0.1 with an octal first byte
    ],
)
def test_numeric_spellings_yarl_refuses_never_connect(image_server, url):
    # Refused as URLs even with private addresses allowed: these never reach the guard or a host.
    before = len(image_server.requests)
    assert fetch_error(url.format(port=image_server.httpd.server_port)).startswith("invalid URL")
    assert len(image_server.requests) == before


@pytest.mark.parametrize("host", ["{loopback_name}", "0x7f.0.0.1"])  # 0x7f.0.0.1 is a name to yarl, 127.0.0.1 to libc
def test_names_resolving_to_loopback_are_refused_by_the_resolver(image_server, loopback_name, host):
    host = host.format(loopback_name=loopback_name)
    path = unique("/img/10x10.jpg")
    url = f"http://{host}:{image_server.httpd.server_port}{path}"

    assert fetch(url) == (10, 10)  # allowed, the name reaches the local server: the refusal below is the guard's
    assert fetch_error(url, allow_private=False) == f"refused: {host} resolves to a non-public address (127.0.0.1)"
    assert image_server.requests.count(path) == 1


def test_resolver_refuses_name_resolving_to_loopback():
    async def resolve():
        resolver = PublicAddressResolver()
        try:
            return await resolver.resolve("localhost", 80)
        finally:
            await resolver.close()

    with pytest.raises(ImageError, match=r"^refused"):
        asyncio.run(resolve())


def test_resolver_keeps_public_address():
    async def resolve():
        resolver = PublicAddressResolver()
        try:
            return await resolver.resolve("8.8.8.8", 80)  # numeric: no DNS query is made
        finally:
            await resolver.close()

    assert [result["host"] for result in asyncio.run(resolve())] == ["8.8.8.8"]


PUBLIC_STAND_IN = "127.0.0.2"  # loopback too; `public_stand_in` makes the guard take it for a host on the internet


@pytest.fixture(scope="module")
def stand_in_server():
    server = ImageServer(host=PUBLIC_STAND_IN)
    yield server
    server.close()


@pytest.fixture
def public_stand_in(monkeypatch, stand_in_server):
    """An image server the guard takes for a public host in this test (every other address as always),
    so that a redirect from it to a private address tries the checks of the later hops."""
    is_public = fetch_module.is_public_address
    monkeypatch.setattr(fetch_module, "is_public_address", lambda a: a == PUBLIC_STAND_IN or is_public(a))
    return stand_in_server


def test_a_redirect_between_public_hosts_is_followed(public_stand_in):
    url = public_stand_in.url("/redirect?to=" + quote(public_stand_in.url("/img/12x8.png"), safe=""))
    assert fetch(url, allow_private=False) == (12, 8)


@pytest.mark.parametrize(
    "target_host",
    [
        "127.0.0.1",  # an IP literal: no lookup, check_url on that hop is the only guard
        "{loopback_name}",  # a name: the resolver refuses it when the hop connects
    ],
)
def test_every_redirect_hop_is_checked(image_server, public_stand_in, loopback_name, target_host):
    path = unique("/img/10x10.jpg")
    target = f"http://{target_host.format(loopback_name=loopback_name)}:{image_server.httpd.server_port}{path}"
    before = len(public_stand_in.requests)

    message = fetch_error(public_stand_in.url("/redirect?to=" + quote(target, safe="")), allow_private=False)

    assert message.startswith("refused: "), message
    assert len(public_stand_in.requests) == before + 1  # the first hop was fetched: the refusal is a later hop's
    assert image_server.requests.count(path) == 0


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/a.jpg", "file:///etc/passwd", "gopher://127.0.0.1/", "http:///a.jpg", "a.jpg"],
)
def test_check_url_refuses_other_schemes(url, allow_private):
    with pytest.raises(ImageError, match=r"^refused: not an http"):
        check_url(url, limits(allow_private=allow_private))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.jpg",
        "http://localhost/a.jpg",
        "http://images.localhost/a.jpg",
        "http://[::1]/a.jpg",
        "http://[::ffff:10.0.0.1]/a.jpg",
        "https://10.0.0.1/a.jpg",
        "http://192.168.1.1/a.jpg",
        "http://169.254.169.254/latest/meta-data",
    ],
)
def test_check_url_private_hosts(url):
    for _ in range(2):  # the host verdicts are cached: a refusal must not become a pass
        with pytest.raises(ImageError, match=r"^refused"):
            check_url(url, limits(allow_private=False))
    assert check_url(url, limits(allow_private=True)) == URL(url)


@pytest.mark.parametrize("url", ["http://images.example.com:99999/a.jpg", "http://[::1/a.jpg"])
def test_check_url_names_a_url_it_cannot_parse(url):
    with pytest.raises(ImageError, match=r"^invalid URL \("):
        check_url(url, limits(allow_private=False))


@pytest.mark.parametrize(
    "url", ["http://8.8.8.8/a.jpg", "https://[2606:4700:4700::1111]/a.jpg", "https://example.com/a.jpg"]
)
def test_check_url_allows_public_hosts(url):
    # A name passes here: the resolver checks the addresses it resolves to.
    assert check_url(url, limits(allow_private=False)) == URL(url)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("fe80::1", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:224.0.0.1", False),  # multicast only once unmapped: IPv6 is_multicast misses it
        ("ff02::1", False),
    ],
)
def test_is_public_address(address, public):
    assert is_public_address(address) is public


# In a thread, as a worker's fetches run: every round takes eight 256 KiB read buffers (asyncio's
# size for one socket read) and frees them; prints the page faults per round after a warm-up.
READ_BUFFER_CHURN = """
import resource, sys, threading
from jobs.worker.imaging import keep_read_buffers
if sys.argv[1] == "kept":
    keep_read_buffers()
def churn():
    for round in range(60):
        if round == 10:
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        buffers = [bytearray(256 * 1024) for _ in range(8)]
        del buffers
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 50)
thread = threading.Thread(target=churn)
thread.start()
thread.join()
"""


def test_read_buffers_are_kept_for_the_next_reads():
    def faults_per_round(mode: str) -> float:
        run = subprocess.run(
            [sys.executable, "-c", READ_BUFFER_CHURN, mode], capture_output=True, text=True, check=True, cwd=BASE_DIR
        )
        return float(run.stdout)

    # 2 MiB freed a round: with glibc's defaults handed back to the kernel and faulted in again.
    assert faults_per_round("default") > 100
    assert faults_per_round("kept") < 5
