"""The operations dashboard and the per-minute outcome counts behind it (Django's test client; the
browser run against a real qcluster is in test_admin_browser.py)."""

from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django_q.models import Schedule

from jobs import services, tasks
from jobs.checks import check_outcome_counts_days
from jobs.models import ImageResult, Job, OutcomeCount
from jobs.services.outcomes import Outcome, count_outcomes, failure_cause, worker_name
from jobs.tests.helpers import create_job

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("stores_s1_s2")]

DASHBOARD = reverse("operations-dashboard")
DATA = reverse("operations-dashboard-data")


def pending_ids(job: Job) -> list[int]:
    return list(ImageResult.objects.filter(job=job, status="pending").order_by("id").values_list("id", flat=True))


def record(job: Job, errors: list[str]) -> None:
    """Outcomes for the job's next pending images: measured for "", failed with the error otherwise."""
    ids = pending_ids(job)
    services.record_outcomes(
        job_id=job.pk,
        outcomes=[Outcome(i, error=e) if e else Outcome(i, 640, 480) for i, e in zip(ids, errors, strict=False)],
    )


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("HTTP 404", "HTTP 404"),
        ("HTTP 503 (after 3 attempts)", "HTTP 503"),
        ("timed out after 30 s", "timed out after 30 s"),
        ("refused: 10.0.0.1 is not a public address", "refused"),
        ("unsupported image format ICO (accepted: JPEG, PNG)", "unsupported image format ICO"),
        ("gave up after 3 attempts: database is locked", "gave up after 3 attempts"),
        ("store not in store master", "store not in store master"),
        ("x" * 100, "x" * 64),
        (": nothing before the detail", "other"),
    ],
)
def test_a_failure_cause_is_the_error_up_to_its_details(error, cause):
    assert failure_cause(error) == cause
    assert cause == "other" or error.startswith(cause)


def test_recorded_outcomes_are_counted_once_by_minute_worker_and_cause():
    job = create_job(("S1", 8))
    ids = pending_ids(job)
    batch = [Outcome(i, 640, 480) for i in ids[:5]] + [
        Outcome(ids[5], error="HTTP 404"),
        Outcome(ids[6], error="HTTP 404"),
    ]
    services.record_outcomes(job_id=job.pk, outcomes=batch)
    services.record_outcomes(job_id=job.pk, outcomes=batch)  # a chunk measured twice changes nothing the second time
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(ids[7], error="timed out after 30 s")])

    rows = OutcomeCount.objects.filter(job=job).values_list("worker", "cause").annotate(images=Sum("images"))
    # Summed over minutes: the batches may straddle a minute boundary.
    assert sorted(rows) == [
        (worker_name(), "", 5),
        (worker_name(), "HTTP 404", 2),
        (worker_name(), "timed out after 30 s", 1),
    ]


def test_unknown_stores_at_submit_and_a_cancel_are_counted_without_a_worker():
    job = create_job(("S1", 3), ("NOPE", 2))
    services.cancel_job(job_id=job.pk)
    rows = {(r.worker, r.cause): r.images for r in OutcomeCount.objects.filter(job=job)}
    assert rows == {("", "store not in store master"): 2, ("", "job cancelled by an operator"): 3}


def test_only_staff_see_the_dashboard_and_its_data(client):
    for url in (DASHBOARD, DATA):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    User.objects.create_user("agent", password="x-Strong-pass-1")
    client.force_login(User.objects.get(username="agent"))
    for url in (DASHBOARD, DATA):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_the_index_links_to_the_dashboard(admin_client):
    assert f'href="{DASHBOARD}"' in admin_client.get(reverse("admin:index")).content.decode()


def test_the_data_counts_the_last_hours_outcomes_by_minute_and_cause(admin_client):
    job = create_job(("S1", 10), ("NOPE", 1))
    record(job, ["", "", "", "HTTP 404", "HTTP 404", "timed out after 30 s"])
    other = create_job(("S2", 1))
    now = timezone.now()
    count_outcomes(
        job_id=other.pk, worker="elsewhere 7", at=now - timedelta(minutes=5), images_by_cause={"": 4, "HTTP 404": 1}
    )
    count_outcomes(
        job_id=other.pk,
        worker="elsewhere 7",
        at=now - timedelta(minutes=61),
        images_by_cause={"": 100, "HTTP 500": 100},
    )  # too old

    data = admin_client.get(DATA).json()

    assert len(data["minutes"]) == 60
    assert data["minutes"][-1]["measured"] + data["minutes"][-2]["measured"] == 3  # this minute or the last
    assert data["minutes"][-6]["measured"] == 4 or data["minutes"][-7]["measured"] == 4
    assert (data["measured"], data["failed"]) == (7, 5)
    assert [(c["cause"], c["images"]) for c in data["failure_causes"]] == [
        ("HTTP 404", 3),
        ("store not in store master", 1),
        ("timed out after 30 s", 1),
    ]
    assert data["jobs"]["ongoing"] == 2
    assert [(j["id"], j["finished"], j["failed"], j["total"]) for j in data["jobs"]["oldest"]] == [
        (job.pk, 7, 4, 11),
        (other.pk, 0, 0, 1),
    ]
    assert data["queue"] == {"held": 0, "free": job.chunks.count() + other.chunks.count()}
    assert data["clusters"] == []
    assert data["workers"] == 0


def test_a_cause_links_to_its_failed_images(admin_client):
    job = create_job(("S1", 4))
    record(job, ["HTTP 404", "HTTP 404", "timed out after 30 s", ""])
    causes = {c["cause"]: c["url"] for c in admin_client.get(DATA).json()["failure_causes"]}

    listed = admin_client.get(causes["HTTP 404"]).context["cl"].result_list
    assert sorted(image.pk for image in listed) == sorted(
        ImageResult.objects.filter(job=job, error="HTTP 404").values_list("id", flat=True)
    )


def test_the_page_shows_the_figures_without_javascript(admin_client):
    job = create_job(("S1", 3))
    record(job, ["", "HTTP 404"])
    page = admin_client.get(DASHBOARD).content.decode()
    assert '<td class="rp-measured" data-figure="measured">1</td>' in page
    assert '<td class="rp-failed" data-figure="failed">1</td>' in page
    assert ">HTTP 404</a></td><td>1</td>" in page
    assert f'<a href="{reverse("admin:jobs_job_change", args=[job.pk])}">{job.pk}</a>' in page
    assert "2 / 3" in page
    assert "no qcluster heartbeat" in page
    assert "jobs/uplot-1.6.32/uPlot.iife.min.js" in page  # served from this service, no CDN


def test_the_data_reads_the_same_number_of_queries_whatever_the_history(admin_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as context:
            admin_client.get(DATA)
        return len(context.captured_queries)

    first = queries()
    for n in range(5):
        job = create_job(("S1", 4), ("S2", 2))
        record(job, ["", "", f"HTTP 40{n}", "timed out after 30 s"])
    assert queries() == first


def test_with_tokens_on_each_clients_share_of_the_hour_is_shown(admin_client, settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "API_TOKENS": True}
    acme, zeta = User.objects.create_user("acme"), User.objects.create_user("zeta")
    acme_job = create_job(("S1", 6))
    Job.objects.filter(pk=acme_job.pk).update(client=acme)
    record(acme_job, ["", "", "", "HTTP 404"])
    other_acme_job, zeta_job = create_job(("S1", 2)), create_job(("S2", 2))
    Job.objects.filter(pk=other_acme_job.pk).update(client=acme)
    Job.objects.filter(pk=zeta_job.pk).update(client=zeta)
    now = timezone.now()
    count_outcomes(
        job_id=other_acme_job.pk, worker="elsewhere 7", at=now - timedelta(minutes=5), images_by_cause={"": 2}
    )
    count_outcomes(
        job_id=zeta_job.pk, worker="elsewhere 7", at=now - timedelta(minutes=5), images_by_cause={"": 1, "HTTP 404": 1}
    )
    count_outcomes(
        job_id=zeta_job.pk, worker="elsewhere 7", at=now - timedelta(minutes=61), images_by_cause={"": 100}
    )  # too old
    anonymous_job = create_job(("NOPE", 2))  # both images fail at submit

    clients = admin_client.get(DATA).json()["clients"]

    # 10 images in the hour: acme 6, and 2 each for the anonymous client (before "zeta") and zeta.
    assert [(c["client"], c["measured"], c["failed"], c["share"]) for c in clients] == [
        ("acme", 5, 1, 60.0),
        (None, 0, 2, 20.0),
        ("zeta", 1, 1, 20.0),
    ]
    for row, jobs in zip(clients, [[acme_job, other_acme_job], [anonymous_job], [zeta_job]], strict=True):
        listed = admin_client.get(row["url"]).context["cl"].result_list
        assert sorted(job.pk for job in listed) == sorted(job.pk for job in jobs)
    page = admin_client.get(DASHBOARD).content.decode()
    assert f'<a href="{escape(clients[0]["url"])}">acme</a></td>' in page
    assert "<td>5</td><td>1</td><td>60.0 %</td>" in page
    assert ">(anonymous)</a></td>" in page


def test_with_tokens_off_no_client_share_is_shown(admin_client, settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "API_TOKENS": False}
    record(create_job(("S1", 2)), ["", "HTTP 404"])

    assert admin_client.get(DATA).json()["clients"] is None
    page = admin_client.get(DASHBOARD).content.decode()
    assert "rp-measured" in page
    assert "rp-clients" not in page


def test_counts_older_than_the_kept_days_are_pruned_in_slices(settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "OUTCOME_COUNTS_DAYS": 2}
    job = create_job(("S1", 1))
    now = timezone.now()
    kept = [timedelta(minutes=1), timedelta(days=1), timedelta(days=2) - timedelta(minutes=1)]
    pruned = [timedelta(days=2) + timedelta(minutes=1), timedelta(days=3), timedelta(days=30)]
    for age in kept + pruned:
        count_outcomes(
            job_id=job.pk, worker="elsewhere 7", at=now - age, images_by_cause={"": 1, "HTTP 404": 1}
        )  # 2 rows each

    with CaptureQueriesContext(connection) as context:
        assert services.prune_outcome_counts(now=now, slice_rows=4) == 6
    deletes = [query["sql"] for query in context.captured_queries if query["sql"].startswith("DELETE")]
    assert len(deletes) == 2  # 4 rows, then 2: no statement deletes more than a slice

    remaining = set(OutcomeCount.objects.filter(job=job).values_list("minute", flat=True))
    assert remaining == {(now - age).replace(second=0, microsecond=0) for age in kept}
    assert services.prune_outcome_counts(now=now) == 0


def test_the_kept_days_must_be_at_least_one(settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "OUTCOME_COUNTS_DAYS": 0}
    assert [error.id for error in check_outcome_counts_days(None)] == ["retailpulse.E002"]
    settings.RETAILPULSE = {**settings.RETAILPULSE, "OUTCOME_COUNTS_DAYS": 1}
    assert check_outcome_counts_days(None) == []


def test_a_migration_schedules_the_pruning_every_hour():
    migration = import_module("jobs.migrations.0010_prune_outcome_counts_schedule")
    Schedule.objects.filter(name=migration.NAME).delete()  # a transactional test may have flushed it anyway
    migration.create_schedule(apps, None)

    schedule = Schedule.objects.get(name=migration.NAME)
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == ("jobs.tasks.prune_outcome_counts", "H", -1)
    assert tasks.prune_outcome_counts() == "deleted 0 outcome counts"
