import contextlib
import time
from datetime import UTC, datetime

from jobs import services
from jobs.models import Job


def submit(client, visits: list[dict]):
    return client.post("/api/submit/", {"count": len(visits), "visits": visits}, content_type="application/json")


def visit(store_id: str, *urls: str, visit_time: str = "2024-01-21T16:23:40Z") -> dict:
    return {"store_id": store_id, "image_url": list(urls), "visit_time": visit_time}


def wait_for_job(client, job_id: int, timeout: float = 60) -> dict:
    """Poll the status API, as a client does, until the job ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/status?jobid={job_id}").json()
        if body["status"] != "ongoing":
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still ongoing after {timeout} s: {client.get(f'/api/jobs/{job_id}/').json()}")


def wait_until(check, timeout: float = 20, what: str = "the condition", ignore: tuple = ()):
    """Poll `check` until it returns something true, and return that; exceptions of the `ignore`
    types count as not yet (a server still starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(*ignore):
            if result := check():
                return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# An image URL the API takes; tests that use it run no worker, so it is never fetched.
IMAGE_URL = "https://images.example.com/2.jpg"


def make_job(client, *visits) -> int:
    return submit(client, list(visits)).json()["job_id"]


def create_job(*visits: tuple[str, int]) -> Job:
    """A job made by the service directly, one visit per (store id, image count); its image URLs
    are never fetched (no worker runs in these tests)."""
    when = datetime(2024, 1, 21, 16, 23, 40, tzinfo=UTC)
    return services.create_job(
        visits=[
            services.VisitInput(s, [f"https://img.example.com/{s}/{n}.jpg" for n in range(k)], when) for s, k in visits
        ]
    )


def migration_schedule(migration_name: str = "0005_stall_check_schedule"):
    """A schedule made again by the function of the migration that makes it (by default the stall
    check's): a transactional test's flush empties django-q2's tables, the migration's row with them."""
    from importlib import import_module

    from django.apps import apps
    from django_q.models import Schedule

    migration = import_module(f"jobs.migrations.{migration_name}")
    Schedule.objects.filter(name=migration.NAME).delete()
    migration.create_schedule(apps, None)
    return Schedule.objects.get(name=migration.NAME)
