"""Readiness checks and Prometheus metrics.

Workers (qcluster) and web servers are separate processes, often on separate machines, so every
metric is read from the database when /metrics is scraped: jobs and images from the jobs' counters
(no scan of the image table), the queue from django-q2's table, chunk fetch times from the chunks.
Any web process answers the same. The qcluster heartbeat is django-q2's cluster Stat, which
qcluster writes every half second to the shared "cluster" cache (a database table).
"""

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone
from django_q.brokers import get_broker
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from jobs import selectors
from jobs.models import CallbackStatus, Chunk, Job
from jobs.ops.heartbeat import HEARTBEAT_MAX_AGE, live_clusters

# Seconds for one chunk of up to CHUNK_SIZE images, fetched IN_FLIGHT at a time.
FETCH_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def readiness() -> dict[str, str]:
    """Each check's name and "ok", or what is wrong."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError as exc:
        checks["database"] = f"unreachable: {_first_line(exc)}"
    try:
        get_broker().queue_size()
        checks["queue"] = "ok"
    except DatabaseError as exc:
        checks["queue"] = f"unreachable: {_first_line(exc)}"
    try:
        clusters = live_clusters()
        checks["cluster"] = "ok" if clusters else f"no qcluster heartbeat in the last {HEARTBEAT_MAX_AGE:g} s"
    except DatabaseError as exc:
        checks["cluster"] = f"cannot read the heartbeat: {_first_line(exc)}"
    try:
        checks["progress"] = _progress()
    except DatabaseError as exc:
        checks["progress"] = f"cannot read the jobs: {_first_line(exc)}"
    return checks


def _progress() -> str:
    """A heartbeat says a cluster lives, not that it works: "ok" unless chunks wait and no image
    outcome was recorded for READY_PROGRESS_AFTER seconds."""
    limit = settings.RETAILPULSE["READY_PROGRESS_AFTER"]
    waiting = Chunk.objects.filter(state=Chunk.State.PENDING).count()
    if not waiting:
        return "ok"
    latest = Job.objects.filter(status=Job.Status.ONGOING).aggregate(latest=Max("progressed_at"))["latest"]
    idle = (timezone.now() - latest).total_seconds() if latest else 0.0
    if idle <= limit:
        return "ok"
    return f"no image outcome for {idle:.0f} s while {waiting} chunks wait (limit {limit} s)"


class RetailPulseCollector(Collector):
    """Every metric, computed from the database at scrape time."""

    def collect(self):
        by_status = dict(Job.objects.order_by().values_list("status").annotate(n=Count("id")))
        jobs = GaugeMetricFamily("retailpulse_jobs", "Jobs by status.", labels=["status"])
        for status in Job.Status.values:
            jobs.add_metric([status], by_status.get(status, 0))
        yield jobs

        totals = Job.objects.aggregate(total=Sum("images_total"), done=Sum("images_done"), failed=Sum("images_failed"))
        total, done, failed = (totals[k] or 0 for k in ("total", "done", "failed"))
        images = GaugeMetricFamily(
            "retailpulse_images",
            "Images of all jobs by outcome: done (measured), failed, pending (not yet processed).",
            labels=["status"],
        )
        images.add_metric(["done"], done)
        images.add_metric(["failed"], failed)
        images.add_metric(["pending"], total - done - failed)
        yield images

        broker = get_broker()
        queue = GaugeMetricFamily(
            "retailpulse_queue_tasks",
            "Tasks in the django-q2 queue: ready (waiting for a worker) and taken (delivered, not yet done).",
            labels=["state"],
        )
        queue.add_metric(["ready"], broker.queue_size())
        queue.add_metric(["taken"], broker.lock_size())
        yield queue

        counts = selectors.chunk_queue(timezone.now())
        chunks = GaugeMetricFamily(
            "retailpulse_chunks_unfinished",
            "Chunks not yet done: held (a worker's lease runs) and free (waiting for a claim, or backing off).",
            labels=["state"],
        )
        for state in ("held", "free"):
            chunks.add_metric([state], counts[state])
        yield chunks

        timed = Chunk.objects.filter(fetch_seconds__isnull=False)
        buckets = timed.aggregate(
            count=Count("id"),
            sum=Sum("fetch_seconds"),
            **{f"le{i}": Count("id", filter=Q(fetch_seconds__lte=le)) for i, le in enumerate(FETCH_BUCKETS)},
        )
        yield HistogramMetricFamily(
            "retailpulse_chunk_fetch_seconds",
            "Seconds the task of one chunk (up to CHUNK_SIZE images, IN_FLIGHT at a time) took to fetch and "
            "measure its images, summed over its claims.",
            buckets=[(f"{le:g}", buckets[f"le{i}"]) for i, le in enumerate(FETCH_BUCKETS)]
            + [("+Inf", buckets["count"])],
            sum_value=buckets["sum"] or 0.0,
        )

        callback_states = dict(
            Job.objects.exclude(callback_status="").order_by().values_list("callback_status").annotate(n=Count("id"))
        )
        callbacks = GaugeMetricFamily(
            "retailpulse_callbacks", "Jobs' latest completion callbacks by status.", labels=["status"]
        )
        for status in (CallbackStatus.PENDING, CallbackStatus.DELIVERED, CallbackStatus.FAILED):
            callbacks.add_metric([status.value], callback_states.get(status.value, 0))
        yield callbacks

        clusters = live_clusters()
        yield GaugeMetricFamily(
            "retailpulse_qclusters", "qcluster processes with a recent heartbeat.", value=len(clusters)
        )
        yield GaugeMetricFamily(
            "retailpulse_qcluster_workers",
            "Worker processes of the qclusters with a recent heartbeat.",
            value=sum(len(stat.workers) for stat in clusters),
        )


registry = CollectorRegistry()
registry.register(RetailPulseCollector())
