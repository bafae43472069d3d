"""Reads of jobs: whose they are, and what a client may see of them."""

from django.contrib.auth.models import User
from django.db.models import F, QuerySet, Sum

from jobs.models import MAX_JOB_ID, Job


def get_job(*, job_id: int) -> Job | None:
    """Any client's job: for workers, operators and the command line, never for an API client."""
    return Job.objects.filter(pk=job_id).first()


def api_client(*, user) -> User | None:
    """The client an API request acts for: the user behind its token, or None, the one anonymous
    client of a service without tokens (DRF's request.user is then None)."""
    return user if user is not None and user.is_authenticated else None


def jobs_visible_to(*, client: User | None) -> QuerySet:
    """The jobs an API client may read: its own. Every API read of a job starts here, so another
    client's job is answered exactly as a missing one, by the same single query. A job that
    retention is removing is missing already (services.retention)."""
    return Job.objects.filter(client=client, pruned_at=None)


def visible_job(*, client: User | None, job_id: int, fields: tuple[str, ...] = ()) -> Job | None:
    """The client's job `job_id`, or None: one that does not exist and another client's alike.

    Only `fields` are read if given: a polling client's status needs two columns, and reading fewer
    is the cheaper request (docs/performance.md). Unordered: one row at most.
    """
    if not 0 < job_id <= MAX_JOB_ID:  # no such row can exist, and a larger id would overflow a query
        return None
    jobs = jobs_visible_to(client=client).filter(pk=job_id).order_by()
    return next(iter(jobs.only(*fields) if fields else jobs), None)


def job_by_idempotency_key(*, client: User | None, key: str) -> Job | None:
    return jobs_visible_to(client=client).filter(idempotency_key=key).first()


def pending_images(*, client: User | None) -> int:
    """Images of the client's ongoing jobs that have no outcome yet (the quota's count)."""
    counters = jobs_visible_to(client=client).filter(status=Job.Status.ONGOING)
    pending = counters.aggregate(pending=Sum(F("images_total") - F("images_done") - F("images_failed"), default=0))[
        "pending"
    ]
    return int(pending)


def is_current_callback(*, job_id: int, delivery_id: str) -> bool:
    return Job.objects.filter(pk=job_id, callback_delivery=delivery_id).exists()


STATUS_FIELDS = ("status", "errors")  # what status_body reads of a job


def status_body(*, job: Job) -> dict:
    """The body of GET /api/status, exactly as the contract has it (and what a callback POSTs)."""
    body = {"status": job.status, "job_id": job.pk}
    if job.status == Job.Status.FAILED:
        body["error"] = job.errors
    return body
