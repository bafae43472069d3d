"""The qclusters' heartbeats: django-q2's cluster Stat, which every qcluster writes each half second to
the "cluster" cache (a table of the database), so that any web process can tell which clusters live.
"""

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.humanhash import humanize
from django_q.signing import BadSignature, SignedPackage
from django_q.status import Stat

HEARTBEAT_MAX_AGE = 10.0  # seconds: an older heartbeat does not count


class HeartbeatCache(DatabaseCache):
    """The "cluster" cache. django-q2 gives each heartbeat 3 s to live: one write held up that long
    (behind SQLite's write lock, on a starved CPU) made a live cluster vanish. Here a heartbeat lives
    a second longer than HEARTBEAT_MAX_AGE (the database cache cuts expiry times to the second), and
    live_clusters judges it by its own timestamp."""

    _reading = False  # per instance, and Django's caches are per thread

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        if isinstance(timeout, int | float) and 0 < timeout <= HEARTBEAT_MAX_AGE:
            timeout = HEARTBEAT_MAX_AGE + 1
        super().set(key, value, timeout, version)

    def get_many(self, keys, version=None):
        """Read only. Django's deletes the expired heartbeats it reads (a stopped cluster's): a write,
        which on SQLite waits behind a worker's write lock and, past the busy timeout, failed the
        dashboard with a 500. They are overwritten or culled by later writes instead."""
        self._reading = True
        try:
            return super().get_many(keys, version)
        finally:
            self._reading = False

    def _base_delete_many(self, keys):
        # Django's own (get_many and delete_many call it), not in the type stubs.
        return False if self._reading else super()._base_delete_many(keys)  # type: ignore[misc]


def cluster_name(stat: Stat) -> str:
    """A cluster's name as django-q2 itself gives it in its log lines and process titles ("Q Cluster
    aspen-august-kitten-alanine starting"): its id, humanized. The dashboard and /metrics say it too."""
    return humanize(stat.cluster_id.hex)


def live_clusters() -> list[Stat]:
    """Clusters whose heartbeat is recent and that are running (not starting or stopping).

    Read only: django-q2's Stat.get_all also writes the list of clusters back, which would make a
    readiness probe wait for SQLite's write lock.
    """
    cache, now, live = get_broker().cache, timezone.now(), []
    for pack in cache.get_many(cache.get(Conf.Q_STAT) or []).values():
        try:
            stat = SignedPackage.loads(pack)
        except BadSignature:  # a cluster of another secret key
            continue
        recent = (now - stat.timestamp).total_seconds() <= HEARTBEAT_MAX_AGE
        if recent and stat.status not in (Conf.STARTING, Conf.STOPPING, Conf.STOPPED):
            live.append(stat)
    return live
