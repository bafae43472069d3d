"""Putting tasks on django-q2's queue: at once, or once at a given time."""

from datetime import datetime

from django.db import transaction
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.tasks import async_task, schedule


def enqueue(func: str, *args, task_name: str) -> None:
    def enqueue() -> None:
        async_task(func, *args, task_name=task_name)

    if Conf.ORM:
        enqueue()  # the queue is a table in this database: queued in the same transaction
    else:
        transaction.on_commit(enqueue)


def schedule_once(func: str, *args, name: str, at: datetime) -> None:
    """Run `func(*args)` once at `at` (django-q2's scheduler starts due schedules on its tick). A
    schedule of that name already made is left as it is: a redelivered task schedules it once."""
    if not Schedule.objects.filter(name=name).exists():
        schedule(func, *args, name=name, schedule_type=Schedule.ONCE, next_run=at)
