"""Completion callbacks: queueing the POST of a finished job's status, recording each attempt."""

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import schedule

from jobs import selectors
from jobs.models import CallbackStatus, Job
from jobs.services.queue import enqueue

events = logging.getLogger("retailpulse.events")


def _callback_task_name(delivery_id: str, attempt: int) -> str:
    return f"callback-{delivery_id}-{attempt}"


def queue_callback(job: Job) -> None:
    """Queue the POST of the job's final status to its callback URL (first attempt right away)."""
    delivery_id = uuid.uuid4().hex
    Job.objects.filter(pk=job.pk).update(
        callback_status=CallbackStatus.PENDING, callback_attempts=0, callback_error="", callback_delivery=delivery_id
    )
    enqueue(
        "jobs.tasks.deliver_callback",
        job.pk,
        job.callback_url,
        selectors.status_body(job),
        delivery_id,
        1,
        task_name=_callback_task_name(delivery_id, 1),
    )


def record_callback_attempt(job_id: int, url: str, body: dict, delivery_id: str, attempt: int, error: str) -> str:
    """Record how a callback attempt went and schedule the next one, with backoff; return the state.

    An attempt of a delivery that a later end of the job replaced (a retried job ended again) is not
    recorded, nor retried: the newer body is the one that counts.
    """
    config = settings.RETAILPULSE_CALLBACKS
    current = Job.objects.filter(pk=job_id, callback_delivery=delivery_id)
    log_fields = {"job_id": job_id, "url": url, "attempt": attempt, "delivery": delivery_id}
    if not error:
        if not current.update(callback_status=CallbackStatus.DELIVERED, callback_attempts=attempt, callback_error=""):
            return "superseded"
        events.info(
            "job %s callback delivered to %s (attempt %s)",
            job_id,
            url,
            attempt,
            extra={"event": "callback.delivered", **log_fields},
        )
        return "delivered"
    last = attempt >= config["ATTEMPTS"]
    with transaction.atomic():
        status = CallbackStatus.FAILED if last else CallbackStatus.PENDING
        if not current.update(callback_status=status, callback_attempts=attempt, callback_error=error):
            return "superseded"
        if not last:
            delay = config["BACKOFF"] * 2 ** (attempt - 1)
            name = _callback_task_name(delivery_id, attempt + 1)
            if not Schedule.objects.filter(name=name).exists():  # a redelivered task schedules it once
                schedule(
                    "jobs.tasks.deliver_callback",
                    job_id,
                    url,
                    body,
                    delivery_id,
                    attempt + 1,
                    name=name,
                    schedule_type=Schedule.ONCE,
                    next_run=timezone.now() + timedelta(seconds=delay),
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
    return str(status)
