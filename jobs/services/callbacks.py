"""Completion callbacks: queueing the POST of a finished job's status, recording each attempt."""

import logging
import uuid
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs import selectors
from jobs.models import CallbackStatus, Job
from jobs.services.queue import enqueue, schedule_once

events = logging.getLogger("retailpulse.events")


class CallbackAttempt(StrEnum):
    """How an attempt of a delivery ended: the text is the job's callback status after it."""

    DELIVERED = "delivered"
    RETRYING = "pending"  # failed; the next attempt is scheduled
    GAVE_UP = "failed"  # failed; no attempt left
    SUPERSEDED = "superseded"  # a later end of the job replaced the delivery


def _callback_task_name(delivery_id: str, attempt: int) -> str:
    return f"callback-{delivery_id}-{attempt}"


def queue_callback(*, job: Job) -> None:
    """Queue the POST of the job's final status to its callback URL (first attempt right away)."""
    delivery_id = uuid.uuid4().hex
    Job.objects.filter(pk=job.pk).update(
        callback_status=CallbackStatus.PENDING, callback_attempts=0, callback_error="", callback_delivery=delivery_id
    )
    enqueue(
        "jobs.tasks.deliver_callback",
        job.pk,
        job.callback_url,
        selectors.status_body(job=job),
        delivery_id,
        1,
        task_name=_callback_task_name(delivery_id, 1),
    )


def record_callback_attempt(
    *, job_id: int, url: str, body: dict, delivery_id: str, attempt: int, error: str | None
) -> CallbackAttempt:
    """Record how a callback attempt went and schedule the next one, with backoff; return the state.

    An attempt of a delivery that a later end of the job replaced (a retried job ended again) is not
    recorded, nor retried: the newer body is the one that counts.
    """
    config = settings.RETAILPULSE_CALLBACKS
    current = Job.objects.filter(pk=job_id, callback_delivery=delivery_id)
    log_fields = {"job_id": job_id, "url": url, "attempt": attempt, "delivery": delivery_id}
    if error is None:
        if not current.update(callback_status=CallbackStatus.DELIVERED, callback_attempts=attempt, callback_error=""):
            return CallbackAttempt.SUPERSEDED
        events.info(
            "job %s callback delivered to %s (attempt %s)",
            job_id,
            url,
            attempt,
            extra={"event": "callback.delivered", **log_fields},
        )
        return CallbackAttempt.DELIVERED
    last = attempt >= config["ATTEMPTS"]
    with transaction.atomic():
        status = CallbackStatus.FAILED if last else CallbackStatus.PENDING
        if not current.update(callback_status=status, callback_attempts=attempt, callback_error=error):
            return CallbackAttempt.SUPERSEDED
        if not last:
            delay = config["BACKOFF"] * 2 ** (attempt - 1)
            schedule_once(
                "jobs.tasks.deliver_callback",
                job_id,
                url,
                body,
                delivery_id,
                attempt + 1,
                name=_callback_task_name(delivery_id, attempt + 1),
                at=timezone.now() + timedelta(seconds=delay),
            )
    events.warning(
        "job %s callback to %s failed (attempt %s of %s): %s%s",
        job_id,
        url,
        attempt,
        config["ATTEMPTS"],
        error,
        "; giving up" if last else "",
        extra={"event": "callback.failed", "error": error, "gave_up": last, **log_fields},
    )
    return CallbackAttempt.GAVE_UP if last else CallbackAttempt.RETRYING
