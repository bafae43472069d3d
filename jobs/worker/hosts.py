"""What a worker process knows of each image host, and the images waiting for each.

A host's state lives as long as its worker process, across chunks: its latency (the shortest answer
of a recent window: queueing in the worker does not count), how many connections it may have now,
and its distress. A host that answers 429 or 503, or drops connections, has its connections halved
and is left alone for a while; every answer gives one back, up to the cap (additive increase,
multiplicative decrease, as TCP does). A host that has failed every request for a whole fetch
timeout is down: the chunk's images still waiting for it fail at once.
"""

import collections
from dataclasses import dataclass, field

LATENCY_WINDOW = 2.0  # seconds: a host's latency is its shortest answer over about this long
BACKOFF_FIRST, BACKOFF_MOST = 0.25, 30.0  # seconds: a host's backoff without Retry-After doubles


@dataclass(eq=False, slots=True)  # a key of HostQueues: each host is itself
class Host:
    name: str
    connection_cap: int
    allowed: float = 0.0  # connections it may have now: halved on distress, one more per answer
    in_flight: int = 0
    latency: float | None = None  # seconds; None until it answered once
    backoff_until: float = 0.0
    distress_streak: int = 0
    failing: bool = False  # every request since `quiet_since` failed
    quiet_since: float = 0.0  # its last answer, or when it was sent its first request after none
    last_error: str = ""
    _window_shortest: float = float("inf")
    _window_ends: float = 0.0

    def __post_init__(self) -> None:
        self.allowed = float(self.connection_cap)

    def can_start(self, now: float) -> bool:
        return now >= self.backoff_until and self.in_flight < self.allowed

    def is_down(self, *, now: float, timeout: float) -> bool:
        return self.failing and now - self.quiet_since >= timeout

    def sent(self, now: float) -> None:
        """A request went out; the caller takes `in_flight` back down however it ends."""
        if self.in_flight == 0 and not self.failing:
            self.quiet_since = now
        self.in_flight += 1

    def answered(self, *, now: float, seconds: float) -> None:
        """A whole answer (an image, or an error the host meant, such as a 404)."""
        self.failing, self.distress_streak, self.quiet_since = False, 0, now
        self.allowed = min(self.allowed + 1, self.connection_cap)
        self._window_shortest = min(self._window_shortest, seconds)
        if now >= self._window_ends:
            self.latency, self._window_shortest = self._window_shortest, float("inf")
            self._window_ends = now + LATENCY_WINDOW

    def failed(self, *, now: float, error: str, distress: bool, retry_after: float | None = None) -> None:
        """No answer (a timeout, a refused connection), or one that asks to slow down (`distress`)."""
        self.failing, self.last_error = True, error
        if distress and now >= self.backoff_until:  # the answers to requests sent before it are no news
            self.allowed = max(self.allowed / 2, 1.0)
            backoff = retry_after if retry_after is not None else BACKOFF_FIRST * 2**self.distress_streak
            self.backoff_until = max(self.backoff_until, now + min(backoff, BACKOFF_MOST))
            self.distress_streak += 1

    def expected_latency(self, now: float) -> float:
        """Its latency, or longer while it keeps the worker waiting longer than that."""
        waited = now - self.quiet_since if self.in_flight else 0.0
        return max(self.latency or 0.0, waited)


@dataclass(slots=True)
class Waiting:
    """An image waiting for a fetch: `deadline` (loop time) is set by its first attempt.

    Its URL is parsed (and checked) when it is sent: a chunk holds thousands of images waiting, and
    a parsed URL costs ten times the text's memory.
    """

    image_id: int
    url: str
    host: Host
    attempts: int = 0
    deadline: float | None = None


@dataclass
class HostTable:
    """This process's hosts, by host and port as the URLs write them."""

    connection_cap: int
    hosts: dict[str, Host] = field(default_factory=dict)

    def host_of(self, url: str) -> Host:
        """The host of a URL, told without parsing it (a URL that does not parse fails when sent)."""
        authority = url.partition("//")[2]
        for end in "/?#":
            authority = authority.partition(end)[0]
        name = authority.rpartition("@")[2].lower()  # never a password in an error message
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = Host(name, self.connection_cap)
        return host


class HostQueues:
    """A chunk's images waiting, one queue per host, taken from the hosts in turn."""

    def __init__(self) -> None:
        self._queues: dict[Host, collections.deque[Waiting]] = {}

    def add(self, image: Waiting, *, first: bool = False) -> None:
        queue = self._queues.setdefault(image.host, collections.deque())
        if first:  # a retry goes before the host's images not yet tried
            queue.appendleft(image)
        else:
            queue.append(image)

    def take(self, now: float) -> Waiting | None:
        """The next image of the next host that can start one, or None."""
        if len(self._queues) == 1:  # the usual chunk: no turn to take
            [(host, queue)] = self._queues.items()
            if not host.can_start(now):
                return None
            image = queue.popleft()
            if not queue:
                del self._queues[host]
            return image
        for host in list(self._queues):
            queue = self._queues.pop(host)  # to the back of the turn, whether it gives one or not
            if host.can_start(now):
                image = queue.popleft()
                if queue:
                    self._queues[host] = queue
                return image
            self._queues[host] = queue
        return None

    def waiting(self) -> dict[Host, int]:
        """How many images each host has waiting."""
        return {host: len(queue) for host, queue in self._queues.items()}

    def take_all_of(self, host: Host) -> list[Waiting]:
        return list(self._queues.pop(host, ()))
