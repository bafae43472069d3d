"""Idle worker processes look for chunks nobody claimed, so no lost task can leave work waiting.

Tasks on the broker only wake workers up. One can be lost (prefetched by a cluster that died), or
never sent (a lease that ran out wakes nobody). So each qcluster worker process, once spawned, runs
a thread that, while the process is idle, checks every WATCH_EVERY seconds for a claimable chunk and
if there is one queues a task to claim it. Busy processes do not check: under load this costs nothing.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from django.dispatch import receiver
from django.utils import timezone
from django_q.signals import post_spawn

from jobs import selectors, services

log = logging.getLogger(__name__)

_working = threading.Event()  # set while this process measures a chunk


@contextlib.contextmanager
def working() -> Iterator[None]:
    _working.set()
    try:
        yield
    finally:
        _working.clear()


def _watch() -> None:
    while True:
        time.sleep(settings.RETAILPULSE["WATCH_EVERY"])
        if _working.is_set():
            continue
        try:
            if selectors.claimable_chunks(timezone.now()).exists():
                services.wake_workers()
        except DatabaseError:
            log.exception("watchdog could not look for unclaimed chunks")


@receiver(post_spawn, dispatch_uid="jobs.watchdog")
def start_watching(sender, proc_name: str, **kwargs) -> None:
    """django-q2 sends post_spawn in each new worker process."""
    threading.Thread(target=_watch, name="chunk-watchdog", daemon=True).start()
