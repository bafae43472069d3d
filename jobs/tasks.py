"""django-q2 entry points, named by the tasks and schedules in the queue (`jobs.tasks.*`). Each runs in
a qcluster worker process and hands over to the code that does the work."""

from jobs import selectors, services
from jobs.worker import callback_post, runner


def work_on_next_chunk() -> str:
    """Queued by every submit and every chunk's end: see jobs.worker.runner."""
    return runner.work_on_next_chunk()


def deliver_callback(job_id: int, url: str, body: dict, delivery_id: str, attempt: int) -> str:
    """POST a finished job's status to its callback URL; a failed attempt schedules the next one.

    A delivery that a later end of the job replaced (a retried job that ended again) is dropped.
    """
    if not selectors.is_current_callback(job_id=job_id, delivery_id=delivery_id):
        return services.CallbackAttempt.SUPERSEDED
    error = callback_post.post(url, body, delivery_id=delivery_id, attempt=attempt)
    return services.record_callback_attempt(
        job_id=job_id, url=url, body=body, delivery_id=delivery_id, attempt=attempt, error=error
    )


def requeue_stalled_jobs() -> str:
    """Every minute (a django-q2 schedule made by a migration): see services.chunks.requeue_stalled_jobs."""
    return f"requeued jobs {services.requeue_stalled_jobs()}"


def prune_outcome_counts() -> str:
    """Every hour (a django-q2 schedule made by a migration): see services.outcomes.prune_outcome_counts."""
    return f"deleted {services.prune_outcome_counts()} outcome counts"


def prune_expired_jobs() -> str:
    """Every minute (a django-q2 schedule made by a migration), for at most
    services.retention.RUN_SECONDS: see services.retention.prune_expired_jobs."""
    pruned = services.prune_expired_jobs()
    if pruned is None:
        return "retention off"
    more = "; more to remove" if pruned.interrupted else ""
    return f"{pruned}{more} (longest slice {pruned.longest_slice * 1000:.0f} ms)"
