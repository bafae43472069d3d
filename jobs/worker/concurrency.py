"""How many downloads one worker process keeps in flight: as many as keep its fetching thread busy.

By Little's law the images per second are the downloads in flight divided by a download's time.
The fetching thread can measure at most one image per `cpu_per_image` seconds, so the downloads
that keep it busy are about a download's time over its CPU per image: a handful for a host on the
same machine, a thousand for one 300 ms away. Both are measured as the chunk runs (each host's
shortest recent answer, weighted by its share of the images left; the thread's CPU time per
image), so the limit follows the hosts of the chunk at hand in one round trip, where a search for
the knee would need many. A waiting download costs no CPU and tens of kilobytes, so the ceiling
is a memory budget, not a count; each host's own cap (jobs.worker.hosts) keeps one slow host from
taking every place.

The thread may get less than a core (a busy machine), and then every answer waits in its queue:
the hosts look farther than they are and the estimate climbs, for no image more. So the thread's
own lag (how late a timer of its fires) caps the limit as TCP's congestion window does: cut by a
fifth at each look while even the shortest lag of the last half second is long (a burst of
answers delays a few timers, a thread that has more than it can do delays them all), grown back
by an eighth otherwise.
"""

import collections
from collections.abc import Mapping

from jobs.worker.hosts import Host

GAIN = 1.5  # in flight beyond the estimate: latency and CPU per image both vary from image to image
MIN_IN_FLIGHT = 32  # enough for a host on the same machine (docs/performance.md)
BYTES_PER_DOWNLOAD = 64 << 10  # what one download in flight holds: buffers, socket, task (docs/performance.md)
CPU_SMOOTHING = 0.2  # weight of the newest measure of CPU per image
# Until the first images end: about what one costs on a server core (docs/performance.md). With it,
# a host not heard from yet raises the limit as the wait for it grows, as TCP's slow start does.
FIRST_CPU_PER_IMAGE = 0.0005
BUSY_LAG = 0.02  # seconds: the fetching thread's timers all firing this late, it has more than it can do
LAG_WINDOW = 10  # looks at the lag (half a second of steering)


class InFlightLimit:
    def __init__(self, *, memory_budget: int):
        self.ceiling = max(MIN_IN_FLIGHT, memory_budget // BYTES_PER_DOWNLOAD)
        self.value = MIN_IN_FLIGHT
        self.cpu_per_image = FIRST_CPU_PER_IMAGE
        self.lags: collections.deque[float] = collections.deque(maxlen=LAG_WINDOW)
        self.busy_cap = self.ceiling  # what the thread's lag allows

    def measured(self, *, cpu_seconds: float, images: int) -> None:
        """The fetching thread spent `cpu_seconds` on `images` finished images."""
        if images <= 0:
            return
        self.cpu_per_image += CPU_SMOOTHING * (cpu_seconds / images - self.cpu_per_image)

    def update(self, *, images_left: Mapping[Host, int], now: float, lag: float = 0.0) -> int:
        """The limit for images left per host (waiting or in flight), the thread's timers firing
        `lag` seconds late; hosts not yet heard from count once they keep the worker waiting."""
        self.lags.append(lag)
        if len(self.lags) == LAG_WINDOW and min(self.lags) > BUSY_LAG:
            self.busy_cap = max(MIN_IN_FLIGHT, min(self.busy_cap, self.value) * 4 // 5)
        else:
            self.busy_cap = min(self.ceiling, self.busy_cap + max(1, self.busy_cap // 8))
        weighted = [(count, host.expected_latency(now)) for host, count in images_left.items() if count > 0]
        total = sum(count for count, latency in weighted if latency > 0)
        if total:
            latency = sum(count * latency for count, latency in weighted) / total
            self.value = int(max(GAIN * latency / self.cpu_per_image, MIN_IN_FLIGHT))
        self.value = min(self.value, self.ceiling, self.busy_cap)
        return self.value
