"""Fetching an image over HTTP and reading its size on the way: the only code that talks to image hosts.

aiohttp rather than requests: it fetches several times more images per second per core
(docs/design.md, "Fetching"). Every guarantee below holds whatever the client:

- Only http and https. Loopback, private, link-local, multicast, reserved and unspecified
  addresses are refused unless RETAILPULSE_FETCH_ALLOW_PRIVATE is set. The check runs on the
  addresses the resolver returns, which are the ones the connection uses (no DNS-rebinding gap),
  and again on every redirect hop.
- A size cap (Content-Length first, then counted bytes), a connect timeout and a total deadline
  per image; the pixel cap and the accepted formats are the header reader's (jobs.worker.imaging.headers).
"""

import asyncio
import ctypes
import functools
import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from jobs.worker.imaging.headers import HeaderReader, ImageError

REDIRECT_STATUSES = {301, 302, 303, 307, 308}
TRANSIENT_STATUSES = {429, 502, 503, 504}
MAX_RETRY_AFTER = 30.0  # seconds; a longer Retry-After is capped, the per-image deadline still rules
DEADLINE_SWEEP = 0.1  # seconds: the most a fetch runs past its deadline before it is cancelled
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt(3) parameters


class HostUnreachable(ImageError):
    """The host did not answer: no address, no connection, or no whole answer before the deadline."""


class TransientError(ImageError):
    """A failure worth another attempt (connection reset, 429, 502, 503, 504): the host is in distress."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class FetchLimits:
    total_timeout: float
    connect_timeout: float
    max_bytes: int
    max_pixels: int
    max_redirects: int
    allow_private: bool
    formats: tuple[str, ...]
    host_connections: int  # the most connections to one host, per worker process
    memory_budget: int  # bytes: what the downloads in flight of one worker process may hold

    @classmethod
    def from_settings(cls, config: dict) -> "FetchLimits":
        return cls(
            total_timeout=config["FETCH_TIMEOUT"],
            connect_timeout=config["FETCH_CONNECT_TIMEOUT"],
            max_bytes=config["MAX_IMAGE_BYTES"],
            max_pixels=config["MAX_IMAGE_PIXELS"],
            max_redirects=config["MAX_REDIRECTS"],
            allow_private=config["FETCH_ALLOW_PRIVATE"],
            formats=config["IMAGE_FORMATS"],
            host_connections=config["HOST_CONNECTIONS"],
            memory_budget=config["FETCH_MEMORY_MB"] << 20,
        )


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class PublicAddressResolver(AbstractResolver):
    """Resolves like the default resolver, then drops every non-public address."""

    def __init__(self) -> None:
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        public = [r for r in results if is_public_address(r["host"])]
        if not public:
            raise ImageError(f"refused: {host} resolves to a non-public address ({results[0]['host']})")
        return public

    async def close(self) -> None:
        await self._resolver.close()


@functools.cache
def keep_read_buffers() -> None:
    """Have glibc keep freed memory for the next socket reads rather than hand it back to the kernel.

    asyncio allocates 256 KiB for each read of a socket, which glibc would otherwise map and unmap
    for every read, faulting its pages in again each time (docs/performance.md). Here blocks under
    1 MiB come from the heap, which keeps up to 16 MiB free. Elsewhere than glibc, nothing.
    """
    try:
        os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return  # not glibc
    libc = ctypes.CDLL(None)
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    libc.mallopt(M_TRIM_THRESHOLD, 16 << 20)


def open_session(limits: FetchLimits) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=0,  # the worker's in-flight limit and each host's cap rule (jobs.worker.hosts)
        limit_per_host=limits.host_connections,
        ttl_dns_cache=60,
        resolver=None if limits.allow_private else PublicAddressResolver(),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=limits.connect_timeout),
        headers={"User-Agent": "RetailPulse/1.0 (image dimensions)"},
        auto_decompress=False,
        # aiohttp's read buffer (256 KB) is left as it is: a smaller one pauses the socket reader
        # within an image, which costs CPU.
    )


def check_url(url: str | URL, limits: FetchLimits) -> URL:
    """Refuse what the resolver never sees: other schemes, and hosts written as IP literals.

    Returns the URL parsed, as aiohttp would parse it: given it, aiohttp does not parse it again.
    """
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except ValueError:  # a bad port or an unclosed IPv6 bracket
        raise ImageError(f"invalid URL ({url})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ImageError(f"refused: not an http(s) URL ({url})")
    if not limits.allow_private:
        _check_host(parsed.host)
    return parsed


@functools.lru_cache(maxsize=1024)
def _check_host(host: str) -> None:
    """Cached (a refusal raises, so it is not): a job's images come from a few hosts, and trying a
    name as an address costs two exceptions per image."""
    if host == "localhost" or host.endswith(".localhost"):
        raise ImageError(f"refused: {host} is a loopback name")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    if not is_public_address(str(literal)):
        raise ImageError(f"refused: {host} is not a public address")


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After", "")
    return min(float(value), MAX_RETRY_AFTER) if value.isdigit() else None


async def _get_once(session: aiohttp.ClientSession, url: str | URL, limits: FetchLimits) -> tuple[int, int]:
    for _hop in range(limits.max_redirects + 1):
        try:
            async with session.get(check_url(url, limits), allow_redirects=False) as response:
                if response.status in REDIRECT_STATUSES and "Location" in response.headers:
                    url = URL(urljoin(str(url), response.headers["Location"]))
                    continue
                if response.status in TRANSIENT_STATUSES:
                    raise TransientError(f"HTTP {response.status}", _retry_after(response))
                if response.status >= 400:
                    raise ImageError(f"HTTP {response.status}")
                # The body, counted against the size cap, read here rather than in a coroutine of
                # its own: each level of coroutines costs CPU on every piece that arrives. The
                # header reader keeps only the few bytes the size needs, not the image.
                declared = response.content_length
                if declared is not None and declared > limits.max_bytes:
                    raise ImageError(f"too large: {declared:,} bytes (limit {limits.max_bytes:,})")
                reader, received = HeaderReader(limits.formats, limits.max_pixels), 0
                try:
                    async for piece in response.content.iter_any():
                        received += len(piece)
                        if received > limits.max_bytes:
                            raise ImageError(
                                f"too large: more than {limits.max_bytes:,} bytes (limit {limits.max_bytes:,})"
                            )
                        reader.feed(piece)
                except aiohttp.ClientPayloadError as exc:
                    raise ImageError(f"truncated download ({received:,} of {declared or '?'} bytes)") from exc
                return reader.close()
        except aiohttp.ConnectionTimeoutError:
            raise HostUnreachable(f"connect timed out after {limits.connect_timeout:g} s") from None
        except aiohttp.ClientConnectorDNSError:
            raise HostUnreachable("host name not found") from None
        except aiohttp.ClientConnectorError as exc:
            raise HostUnreachable(f"cannot connect ({exc.os_error.strerror or exc.os_error})") from None
        except aiohttp.ServerDisconnectedError:
            # Not str(exc): after a partial answer it is the repr of the headers aiohttp had parsed.
            raise TransientError("connection lost (server disconnected)") from None
        except aiohttp.ClientOSError as exc:
            raise TransientError(f"connection lost ({exc})") from None
        except aiohttp.InvalidURL as exc:
            raise ImageError(f"invalid URL ({exc})") from None
    raise ImageError(f"too many redirects (more than {limits.max_redirects})")


class ImageFetcher:
    """Measures images over one session, many at once, each attempt within its deadline.

    The deadlines share one timer: a sweep every DEADLINE_SWEEP seconds, while fetches run, cancels
    those past theirs, which costs less CPU than a timer per image (docs/performance.md).
    """

    def __init__(self, session: aiohttp.ClientSession, limits: FetchLimits):
        self.session, self.limits = session, limits
        self._deadlines: dict[asyncio.Task, float] = {}  # the task of each fetch, at most one each
        self._overdue: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None

    async def size(self, url: str | URL, *, deadline: float | None = None) -> tuple[int, int]:
        """Download one image once and return its (width, height); give up at `deadline` (loop time;
        by default `limits.total_timeout` from now). Retrying is the caller's: it knows the host's
        state (jobs.worker.hosts)."""
        task = asyncio.current_task()
        assert task is not None, "called from a task"
        loop = asyncio.get_running_loop()
        self._deadlines[task] = loop.time() + self.limits.total_timeout if deadline is None else deadline
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._cancel_overdue())
        try:
            return await _get_once(self.session, url, self.limits)
        except asyncio.CancelledError:
            # A cancel from elsewhere too (its caller stopping) stays a cancel.
            if task not in self._overdue or task.uncancel() > 0:
                raise
            raise HostUnreachable(f"timed out after {self.limits.total_timeout:g} s") from None
        finally:
            del self._deadlines[task]
            self._overdue.discard(task)

    async def _cancel_overdue(self) -> None:
        loop = asyncio.get_running_loop()
        while self._deadlines:
            await asyncio.sleep(DEADLINE_SWEEP)
            now = loop.time()
            for task, deadline in self._deadlines.items():
                if deadline <= now and task not in self._overdue:
                    self._overdue.add(task)
                    task.cancel()
