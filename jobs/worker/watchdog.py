"""Idle worker processes look for chunks nobody claimed, so no lost task can leave work waiting.

Tasks on the broker only wake workers up. One can be lost (prefetched by a cluster that died), or
never sent (a lease that ran out wakes nobody). So each qcluster worker process, once spawned, runs
a thread that, while the process is idle, checks every WATCH_EVERY seconds for a claimable chunk and
if there is one queues a task to claim it. Busy processes do not check: under load this costs nothing.

If the process stays idle for STUCK_CYCLES checks while chunks wait, the tasks are not reaching it:
django-q2's workers share one local queue, and a worker killed while waiting on it keeps it locked
for every other worker (a known django-q2 bug, its GitHub issue 23). The thread then measures a chunk itself.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError
from django.dispatch import receiver
from django_q.signals import post_spawn

from jobs import selectors, services

log = logging.getLogger(__name__)

STUCK_CYCLES = 3


def _watch() -> None:
    # Imported here, in the worker processes: the fetching code brings aiohttp (about 20 MiB of RSS),
    # which qcluster's other processes, forked from the one that loaded this module, need not hold.
    from jobs.worker import runner

    idle_while_waiting = 0  # checks in a row that found chunks waiting and this process idle
    while True:
        time.sleep(settings.RETAILPULSE["WATCH_EVERY"])
        if runner.measuring.locked():
            idle_while_waiting = 0
            continue
        try:
            if not selectors.any_chunk_claimable():
                idle_while_waiting = 0
            elif idle_while_waiting < STUCK_CYCLES:
                services.wake_workers()
                idle_while_waiting += 1
            else:
                log.warning("tasks do not reach this worker process: it measures a chunk itself")
                log.info("watchdog: %s", runner.work_on_next_chunk())
                idle_while_waiting = 0
        except DatabaseError:
            log.exception("watchdog could not look for unclaimed chunks")


@receiver(post_spawn, dispatch_uid="jobs.worker.watchdog")
def start_watching(sender, proc_name: str, **kwargs) -> None:
    """django-q2 sends post_spawn in each new worker process."""
    threading.Thread(target=_watch, name="chunk-watchdog", daemon=True).start()
