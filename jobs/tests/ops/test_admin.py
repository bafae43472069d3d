"""The operators' admin through Django's test client; the browser run is in test_admin_browser.py."""

import io
import re
from datetime import UTC, datetime

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs import services
from jobs.models import Chunk, ClientKey, ImageResult, Job
from jobs.ops.admin import CappedCountPaginator
from jobs.services.outcomes import Outcome
from jobs.tests.helpers import create_job
from stores.models import Store

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("stores_s1_s2")]

WHEN = datetime(2024, 1, 21, 16, 23, 40, tzinfo=UTC)
JOBS = reverse("admin:jobs_job_changelist")
IMAGES = reverse("admin:jobs_imageresult_changelist")


def fail_all(job: Job, error: str = "HTTP 404") -> None:
    ids = ImageResult.objects.filter(job=job, status="pending").values_list("id", flat=True)
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(i, error=error) for i in ids])


def test_only_staff_get_in(client):
    User.objects.create_user("agent", password="x-Strong-pass-1")
    client.force_login(User.objects.get(username="agent"))
    response = client.get(JOBS)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_index_links_to_failed_jobs_and_images(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{JOBS}?status__exact=failed"' in html
    assert f'href="{IMAGES}?status__exact=failed"' in html


def test_job_list_shows_badge_progress_and_failures(admin_client):
    failed = create_job(("S1", 2), ("NOPE", 1))
    fail_all(failed)
    ongoing = create_job(("S2", 4))

    html = admin_client.get(JOBS).content.decode()
    assert html.index(f">{ongoing.pk}<") < html.index(f">{failed.pk}<")  # newest first
    assert 'class="rp-badge"' in html
    assert '<progress value="3" max="3"' in html
    assert '<progress value="0" max="4"' in html


def test_job_list_queries_do_not_grow_with_jobs_or_images(admin_client, django_assert_max_num_queries):
    create_job(("S1", 3))
    with django_assert_max_num_queries(12) as few:
        admin_client.get(JOBS)
    for _ in range(20):
        create_job(("S1", 50), ("S2", 50))
    with django_assert_max_num_queries(len(few.captured_queries)):
        admin_client.get(JOBS)


@pytest.mark.parametrize(("term", "expected"), [("S2", {"b"}), ("NOPE", set()), ("S1", {"a", "b"})])
def test_job_search_by_store_id(admin_client, term, expected):
    jobs = {"a": create_job(("S1", 1)), "b": create_job(("S1", 1), ("S2", 1))}
    response = admin_client.get(JOBS, {"q": term})
    shown = {job.pk for job in response.context["cl"].result_list}
    assert shown == {jobs[name].pk for name in expected}


def test_job_search_by_id(admin_client):
    job = create_job(("S1", 1))
    create_job(("S1", 1))
    response = admin_client.get(JOBS, {"q": str(job.pk)})
    assert [j.pk for j in response.context["cl"].result_list] == [job.pk]


def test_job_filter_by_status(admin_client):
    failed = create_job(("NOPE", 1))
    create_job(("S1", 1))
    response = admin_client.get(JOBS, {"status__exact": "failed"})
    assert [j.pk for j in response.context["cl"].result_list] == [failed.pk]


def client_filter_choices(admin_client) -> list[str] | None:
    """The names the job list's client filter offers, or None when it shows no such filter."""
    specs = admin_client.get(JOBS).context["cl"].filter_specs
    [spec] = [spec for spec in specs if spec.title == "client"] or [None]
    return None if spec is None or not spec.has_output() else [name for _, name in spec.lookup_choices]


def test_the_client_filter_offers_only_clients_that_own_jobs(admin_client):
    create_job(("S1", 1))
    User.objects.create_user("zeta")  # a client without jobs
    assert client_filter_choices(admin_client) is None  # no job has a client: the staff user is not one

    job = create_job(("S1", 1))
    Job.objects.filter(pk=job.pk).update(client=User.objects.create_user("acme"))
    assert client_filter_choices(admin_client) == ["acme"]


def test_failed_job_page_shows_visits_errors_and_links(admin_client):
    job = create_job(("S1", 1), ("NOPE", 2))
    fail_all(job)
    job.refresh_from_db()

    html = admin_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    for entry in job.errors:  # exactly what the status API reports
        assert f"<td>{entry['store_id']}</td><td>{entry['error']}</td>" in html
    assert "Name of S1" in html
    assert "not in store master" in html
    assert f"{IMAGES}?job__id__exact={job.pk}&amp;status__exact=failed" in html


def test_job_page_counts_each_shown_visits_images(admin_client):
    job = create_job(("S1", 3), ("S2", 2))
    html = admin_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    table = html.split('class="rp-visits"')[1].split("</table>")[0]
    counts = re.findall(r"</td><td>(\d+)</td><td></td></tr>", table)
    assert counts == ["3", "2"]


def test_job_pages_are_read_only(admin_client):
    job = create_job(("S1", 1))
    assert admin_client.get(reverse("admin:jobs_job_add")).status_code == 403
    html = admin_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert 'name="_save"' not in html


def test_image_list_filters_by_job_store_and_status(admin_client):
    job = create_job(("S1", 2), ("S2", 1))
    other = create_job(("S1", 1))
    first = ImageResult.objects.filter(job=job).order_by("id").first()
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(first.pk, error="HTTP 404")])

    def shown(**query):
        return {i.pk for i in admin_client.get(IMAGES, query).context["cl"].result_list}

    assert shown(job__id__exact=job.pk) == set(ImageResult.objects.filter(job=job).values_list("id", flat=True))
    assert shown(job__id__exact=job.pk, status__exact="failed") == {first.pk}
    assert shown(q="S2") == set(ImageResult.objects.filter(visit__store_code="S2").values_list("id", flat=True))
    assert other.pk not in {i.job_id for i in ImageResult.objects.filter(pk__in=shown(job__id__exact=job.pk))}
    html = admin_client.get(IMAGES, {"status__exact": "failed"}).content.decode()
    assert "HTTP 404" in html
    assert f'<a href="{first.url}" title="{first.url}" rel="noreferrer noopener" target="_blank">' in html
    assert "<img" not in html.split('id="result_list"')[1]


@pytest.mark.parametrize("url", [JOBS, IMAGES, f"{IMAGES}?status__exact=pending"])
def test_lists_count_rows_only_up_to_a_cap(admin_client, monkeypatch, url):
    monkeypatch.setattr(CappedCountPaginator, "COUNT_CAP", 3)
    for _ in range(5):
        create_job(("S1", 1))
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(url).content.decode()
    counts = [query["sql"] for query in queries if "COUNT(" in query["sql"].upper()]
    assert counts
    assert all("LIMIT 4" in sql for sql in counts), counts
    assert re.search(r"more than 3 (jobs|image results)", html)


def test_job_list_leaves_the_jobs_errors_unread(admin_client):
    """A failed job's per-store errors are its page's: on the list, a megabyte of JSON per job."""
    job = create_job(("NOPE", 2))
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(JOBS).content.decode()
    assert f">{job.pk}<" in html
    assert not [query["sql"] for query in queries if '"errors"' in query["sql"]]
    assert "NOPE" in admin_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()


def test_lists_under_the_cap_show_their_exact_count(admin_client):
    create_job(("S1", 2))
    html = admin_client.get(IMAGES).content.decode()
    assert "more than" not in html
    assert "2 image results" in html


def run_action(admin_client, action: str, *jobs: Job):
    return admin_client.post(JOBS, {"action": action, "_selected_action": [j.pk for j in jobs]}, follow=True)


def test_retry_failed_images_requeues_only_the_failed_ones(admin_client, settings):
    job = create_job(("S1", 3), ("NOPE", 1))
    ids = list(ImageResult.objects.filter(job=job, status="pending").order_by("id").values_list("id", flat=True))
    services.record_outcomes(
        job_id=job.pk, outcomes=[Outcome(ids[0], 5, 5), Outcome(ids[1], error="HTTP 404"), Outcome(ids[2], error="x")]
    )
    job.refresh_from_db()
    assert job.status == "failed"

    response = run_action(admin_client, "retry_failed_images", job)

    assert "2 failed images queued again" in response.content.decode()
    job.refresh_from_db()
    assert (job.status, job.images_done, job.images_failed, job.errors, job.finished_at) == ("ongoing", 1, 1, [], None)
    statuses = dict(ImageResult.objects.filter(job=job).values_list("id", "status"))
    assert [statuses[i] for i in ids] == ["done", "pending", "pending"]
    newest = Chunk.objects.filter(job=job).order_by("-number").first()
    assert (newest.number, newest.first_image_id, newest.last_image_id, newest.state) == (1, ids[1], ids[2], "pending")

    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(ids[1], 1, 2), Outcome(ids[2], 3, 4)])
    job.refresh_from_db()
    assert (job.status, job.images_done, job.images_failed) == ("failed", 3, 1)  # the unknown store still fails
    assert job.errors == [{"store_id": "NOPE", "error": "store not in store master"}]


def test_retry_and_cancel_are_in_the_admins_history_with_who_did_them(admin_client):
    failed, ongoing = create_job(("S1", 2)), create_job(("S2", 2))
    fail_all(failed)

    run_action(admin_client, "retry_failed_images", failed)
    run_action(admin_client, "cancel_jobs", ongoing)

    history = [(e.user.username, e.object_id, e.change_message) for e in LogEntry.objects.order_by("id")]
    assert history == [
        ("admin", str(failed.pk), "Retried 2 failed images."),
        ("admin", str(ongoing.pk), "Cancelled: 2 pending images skipped."),
    ]


def test_retry_picks_up_a_store_added_to_the_master_since(admin_client):
    job = create_job(("LATER", 2))
    Store.objects.create(store_id="LATER", name="Added later", area_code="1")

    run_action(admin_client, "retry_failed_images", job)

    job.refresh_from_db()
    assert (job.status, job.images_failed) == ("ongoing", 0)
    assert ImageResult.objects.filter(job=job, status="pending").count() == 2


def test_retry_on_a_job_without_failures_does_nothing(admin_client):
    job = create_job(("S1", 1))
    response = run_action(admin_client, "retry_failed_images", job)
    assert "no failed image to retry" in response.content.decode()
    job.refresh_from_db()
    assert job.status == "ongoing"


def test_cancel_fails_pending_images_with_a_reason(admin_client):
    job = create_job(("S1", 3))
    first = ImageResult.objects.filter(job=job).order_by("id").first()
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(first.pk, 5, 5)])

    response = run_action(admin_client, "cancel_jobs", job)

    assert "cancelled, 2 pending images skipped" in response.content.decode()
    job.refresh_from_db()
    assert (job.status, job.images_done, job.images_failed) == ("failed", 1, 2)
    assert "job cancelled by an operator" in job.errors[0]["error"]
    assert not Chunk.objects.filter(job=job).exclude(state="done").exists()
    services.record_outcomes(
        job_id=job.pk,
        outcomes=[Outcome(i, 1, 1) for i in ImageResult.objects.filter(job=job).values_list("id", flat=True)],
    )
    job.refresh_from_db()
    assert (job.images_done, job.images_failed) == (1, 2)  # a chunk still running changes nothing


@pytest.fixture
def viewer_client(client):
    """A staff user who may view jobs but not change them."""
    viewer = User.objects.create_user("viewer", password="x-Strong-pass-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(User.objects.get(username="viewer"))
    return client


def test_a_viewer_sees_no_action(viewer_client):
    response = viewer_client.get(JOBS)
    assert response.status_code == 200
    assert "retry_failed_images" not in response.content.decode()
    assert "cancel_jobs" not in response.content.decode()


@pytest.mark.parametrize("action", ["retry_failed_images", "cancel_jobs"])
def test_a_viewers_action_post_is_refused_and_changes_nothing(viewer_client, action):
    failed, ongoing = create_job(("S1", 2)), create_job(("S2", 2))
    fail_all(failed)

    def state():
        return list(Job.objects.order_by("id").values()), list(ImageResult.objects.order_by("id").values())

    before = state()
    response = run_action(viewer_client, action, failed, ongoing)

    assert response.status_code == 200
    assert not list(response.context["messages"])  # the action did not run, nor report anything
    assert state() == before


def test_job_page_shows_the_callback_and_the_idempotency_key(admin_client, settings):
    job = services.create_job(
        visits=[services.VisitInput("NOPE", ["https://img.example.com/x.jpg"], WHEN)],
        callback_url="https://client.example.com/hook",
        idempotency_key="nightly-42",
    )
    html = admin_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "https://client.example.com/hook: pending (0 attempts so far)" in html
    assert "nightly-42" in html

    services.record_callback_attempt(
        job_id=job.pk,
        url=job.callback_url,
        body={},
        delivery_id=Job.objects.get(pk=job.pk).callback_delivery,
        attempt=1,
        error="HTTP 500",
    )
    html = admin_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "pending (1 attempt so far) — last error: HTTP 500" in html


# --- API keys ------------------------------------------------------------------------------------

KEYS = reverse("admin:jobs_clientkey_changelist")


def test_adding_a_key_shows_it_once_and_keeps_its_hash(admin_client):
    client = User.objects.create_user("chain-h")

    response = admin_client.post(
        reverse("admin:jobs_clientkey_add"), {"client": client.pk, "name": "from the admin"}, follow=True
    )

    [message] = [str(m) for m in response.context["messages"] if " is: " in str(m)]
    key = message.split(" is: ")[1].split(". ")[0]
    assert services.check_key(presented=key)[0] is services.KeyCheck.VALID
    stored = ClientKey.objects.get(client=client)
    assert key.partition(".")[2] not in stored.hashed_key
    assert LogEntry.objects.filter(action_flag=ADDITION, object_id=stored.pk, user__username="admin").exists()
    assert key not in admin_client.get(KEYS).content.decode()


def test_revoking_keys_from_the_admin_ends_them_and_is_in_the_history(admin_client):
    client, first = services.create_client(name="chain-i")
    second = services.issue_key(client=client, name="second")
    revoked = ClientKey.objects.get(prefix=first.partition(".")[0])

    admin_client.post(KEYS, {"action": "revoke_keys", "_selected_action": [revoked.pk]}, follow=True)

    assert services.check_key(presented=first)[0] is services.KeyCheck.REVOKED
    assert services.check_key(presented=second)[0] is services.KeyCheck.VALID
    [entry] = LogEntry.objects.filter(object_id=revoked.pk)
    assert (entry.user.username, entry.change_message) == ("admin", f"Revoked key {revoked.prefix} of chain-i.")


# --- Logins --------------------------------------------------------------------------------------


def test_admin_logins_lock_after_five_failures_until_another_operator_unlocks(client):
    User.objects.create_superuser("ops", password="x-Strong-pass-1")
    login = reverse("admin:login")

    failures = [client.post(login, {"username": "ops", "password": "wrong"}).status_code for _ in range(5)]
    locked = client.post(login, {"username": "ops", "password": "x-Strong-pass-1"})

    assert failures == [200, 200, 200, 200, 429]
    assert locked.status_code == 429  # even with the right password
    page = locked.content.decode()
    assert "5 failed logins for <strong>ops</strong>" in page
    assert "manage.py axes_reset_username ops" in page
    call_command("axes_reset_username", "ops", stdout=io.StringIO())
    assert client.post(login, {"username": "ops", "password": "x-Strong-pass-1"}).status_code == 302
