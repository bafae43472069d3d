"""The operations dashboard's figures, as one dict: the admin page renders it, its refresh endpoint
returns it as JSON.

Every figure is an indexed read: outcomes per minute, their causes and each client's share from
the per-minute counts (OutcomeCount), jobs from their counters, the queue from the pending chunks,
clusters and workers from django-q2's heartbeats (heartbeat.live_clusters).
"""

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from jobs import selectors
from jobs.models import ImageResult
from jobs.ops import heartbeat
from jobs.services.outcomes import worker_name

WINDOW_MINUTES = 60
CAUSES_SHOWN = 10
ONGOING_SHOWN = 5


def _failed_images_url(cause: str, since: datetime) -> str:
    """The admin's image list of the failed images of `cause` since `since` (an error starts with its cause)."""
    query = {
        "status__exact": ImageResult.Status.FAILED,
        "error__startswith": cause,
        "processed_at__gte": str(since),
    }
    return f"{reverse('admin:jobs_imageresult_changelist')}?{urlencode(query)}"


def _client_jobs_url(client_id: int | None) -> str:
    """The admin's job list filtered to one client's jobs (the anonymous client's: those without one)."""
    query = {"client__isnull": "True"} if client_id is None else {"client__id__exact": str(client_id)}
    return f"{reverse('admin:jobs_job_changelist')}?{urlencode(query)}"


def _client_shares(since: datetime) -> list[dict] | None:
    """Each client's images since `since` and its share of all of them in %, largest first; None
    when API tokens are off (then there is one client, the anonymous one)."""
    if not settings.RETAILPULSE["API_TOKENS"]:
        return None
    rows = selectors.outcomes_by_client(since=since)
    total = sum(measured + failed for _, _, measured, failed in rows)
    shares = [
        {
            "client": username,  # None: the anonymous client
            "measured": measured,
            "failed": failed,
            "share": round(100 * (measured + failed) / total, 1),
            "url": _client_jobs_url(client_id),
        }
        for client_id, username, measured, failed in rows
    ]
    return sorted(shares, key=lambda row: (-(row["measured"] + row["failed"]), row["client"] or ""))


def _age(now: datetime, then: datetime | None) -> int | None:
    return None if then is None else max(0, round((now - then).total_seconds()))


def snapshot(now: datetime | None = None) -> dict:
    """Everything the dashboard shows, as of `now`: JSON-ready but for datetimes (Django's encoder
    writes them in ISO 8601)."""
    now = now or timezone.now()
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=WINDOW_MINUTES - 1)

    counts = selectors.outcomes_per_minute(since=since)
    minutes = []
    for offset in range(WINDOW_MINUTES):
        minute = since + timedelta(minutes=offset)
        measured, failed = counts.get(minute, (0, 0))
        minutes.append({"minute": minute, "measured": measured, "failed": failed})

    ongoing, oldest = selectors.ongoing_jobs(limit=ONGOING_SHOWN)
    last_outcomes = selectors.last_outcome_by_worker(since=since)
    clusters = []
    for stat in sorted(heartbeat.live_clusters(), key=lambda stat: (stat.host, str(stat.cluster_id))):
        workers = []
        for pid in sorted(stat.workers):
            name = worker_name(host=stat.host, pid=pid)
            last = last_outcomes.get(name)
            workers.append({"name": name, "last_outcome": last, "last_outcome_age": _age(now, last)})
        clusters.append(
            {
                "name": heartbeat.cluster_name(stat),
                "cluster_id": str(stat.cluster_id),
                "host": stat.host,
                "status": stat.status,
                "uptime_seconds": _age(now, stat.tob),
                "workers": workers,
            }
        )

    return {
        "now": now,
        "since": since,
        "minutes": minutes,
        "measured": sum(m["measured"] for m in minutes),
        "failed": sum(m["failed"] for m in minutes),
        "jobs": {
            "ongoing": ongoing,
            "oldest": [
                {
                    "id": job.pk,
                    "age_seconds": _age(now, job.created_at),
                    "finished": job.images_done + job.images_failed,
                    "failed": job.images_failed,
                    "total": job.images_total,
                    "url": reverse("admin:jobs_job_change", args=[job.pk]),
                }
                for job in oldest
            ],
        },
        "queue": selectors.chunk_queue(now=now),
        "clusters": clusters,
        "workers": sum(len(cluster["workers"]) for cluster in clusters),
        "failure_causes": [
            {"cause": cause, "images": images, "url": _failed_images_url(cause, since)}
            for cause, images in selectors.failure_causes(since=since, limit=CAUSES_SHOWN)
        ],
        "clients": _client_shares(since),
    }
