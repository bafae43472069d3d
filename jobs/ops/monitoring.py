"""Readiness checks and Prometheus metrics.

Workers (qcluster) and web servers are separate processes, often on separate machines, so every
metric is read from the database when /metrics is scraped: jobs and images from the jobs' counters
(no scan of the image table), the queue from django-q2's table, chunk fetch times from the chunks.
Any web process answers the same. The qcluster heartbeat is django-q2's cluster Stat, which
qcluster writes every half second to the shared "cluster" cache (a database table).
"""

from typing import NamedTuple

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from django_q.brokers import get_broker
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from jobs import selectors
from jobs.ops.heartbeat import HEARTBEAT_MAX_AGE, cluster_name, live_clusters

# Seconds for one chunk of up to CHUNK_SIZE images, as many in flight as the worker finds keep it busy.
FETCH_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Check(NamedTuple):
    """One readiness check: passed, or what is wrong."""

    ok: bool
    detail: str = "ok"

    @classmethod
    def failed(cls, detail: str) -> "Check":
        return cls(False, detail)


PASSED = Check(True)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def readiness() -> dict[str, Check]:
    """Each check by name."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = PASSED
    except DatabaseError as exc:
        checks["database"] = Check.failed(f"unreachable: {_first_line(exc)}")
    try:
        get_broker().queue_size()
        checks["queue"] = PASSED
    except DatabaseError as exc:
        checks["queue"] = Check.failed(f"unreachable: {_first_line(exc)}")
    try:
        clusters = live_clusters()
        checks["cluster"] = (
            PASSED if clusters else Check.failed(f"no qcluster heartbeat in the last {HEARTBEAT_MAX_AGE:g} s")
        )
    except DatabaseError as exc:
        checks["cluster"] = Check.failed(f"cannot read the heartbeat: {_first_line(exc)}")
    try:
        checks["progress"] = _progress()
    except DatabaseError as exc:
        checks["progress"] = Check.failed(f"cannot read the jobs: {_first_line(exc)}")
    return checks


def _progress() -> Check:
    """A heartbeat says a cluster lives, not that it works: passed unless chunks wait and no image
    outcome was recorded for READY_PROGRESS_AFTER seconds."""
    limit = settings.RETAILPULSE["READY_PROGRESS_AFTER"]
    waiting = selectors.pending_chunk_count()
    if not waiting:
        return PASSED
    latest = selectors.latest_progress()
    idle = (timezone.now() - latest).total_seconds() if latest else 0.0
    if idle <= limit:
        return PASSED
    return Check.failed(f"no image outcome for {idle:.0f} s while {waiting} chunks wait (limit {limit} s)")


class RetailPulseCollector(Collector):
    """Every metric, computed from the database at scrape time."""

    def collect(self):
        jobs = GaugeMetricFamily("retailpulse_jobs", "Jobs by status.", labels=["status"])
        for status, count in selectors.jobs_by_status().items():
            jobs.add_metric([status], count)
        yield jobs

        total, done, failed = selectors.image_totals()
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

        counts = selectors.chunk_queue(now=timezone.now())
        chunks = GaugeMetricFamily(
            "retailpulse_chunks_unfinished",
            "Chunks not yet done: held (a worker's lease runs) and free (waiting for a claim, or backing off).",
            labels=["state"],
        )
        for state in ("held", "free"):
            chunks.add_metric([state], counts[state])
        yield chunks

        histogram = selectors.chunk_fetch_histogram(buckets=FETCH_BUCKETS)
        yield HistogramMetricFamily(
            "retailpulse_chunk_fetch_seconds",
            "Seconds the task of one chunk (up to CHUNK_SIZE images) took to fetch and "
            "measure its images, summed over its claims.",
            buckets=[(f"{le:g}", count) for le, count in histogram.buckets] + [("+Inf", histogram.chunks)],
            sum_value=histogram.seconds,
        )

        callbacks = GaugeMetricFamily(
            "retailpulse_callbacks", "Jobs' latest completion callbacks by status.", labels=["status"]
        )
        for status, count in selectors.callbacks_by_status().items():
            callbacks.add_metric([status], count)
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
        each_cluster = GaugeMetricFamily(
            "retailpulse_qcluster_info",
            "1 for each qcluster with a recent heartbeat, by the name its log lines and the dashboard give it.",
            labels=["cluster", "host"],
        )
        for stat in clusters:
            each_cluster.add_metric([cluster_name(stat), stat.host], 1)
        yield each_cluster


registry = CollectorRegistry()
registry.register(RetailPulseCollector())
