"""Putting tasks on django-q2's queue."""

from django.db import transaction
from django_q.conf import Conf
from django_q.tasks import async_task


def enqueue(func: str, *args, task_name: str) -> None:
    def enqueue() -> None:
        async_task(func, *args, task_name=task_name)

    if Conf.ORM:
        enqueue()  # the queue is a table in this database: queued in the same transaction
    else:
        transaction.on_commit(enqueue)
