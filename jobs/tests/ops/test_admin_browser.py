"""The operator's paths through the admin in a real browser (Debian's Chromium, driven by Playwright).

Log in, open the failed jobs, read a job's error, retry its failed images once the image host
serves them, and see the job complete; watch the dashboard follow a job as a real qcluster runs it.
The screenshots in docs/ come from these tests: they write them to SCREENSHOTS_DIR, which
`make screenshots` points at docs/; unset, to a temporary folder, so that a test run leaves the tree
as it was.
"""

import os
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from jobs import services
from jobs.models import Job
from jobs.services.outcomes import Outcome, count_outcomes
from jobs.tests.helpers import create_job, submit, visit, wait_for_job
from stores.models import Store

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "a-Strong-operator-pass-1"
VIEWPORT_WIDTH = 1280  # a laptop's screen: the lists' columns must fit it


@pytest.fixture
def page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        context = browser.new_context(viewport={"width": VIEWPORT_WIDTH, "height": 1000})
        context.set_default_timeout(15_000)
        yield context.new_page()
        browser.close()


@pytest.fixture
def screenshot(tmp_path):
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)

    def take(page, name: str) -> None:
        page.screenshot(path=str(folder / name), full_page=True)

    return take


def in_view(page, selector: str) -> dict:
    """Where the first element of `selector` ends, against the viewport and the results table's
    scrolling box, and how many lines its text takes."""
    return page.locator(selector).first.evaluate(
        """(el) => {
            const box = el.getBoundingClientRect();
            const results = el.closest('.results') || document.documentElement;
            const range = document.createRange();
            range.selectNodeContents(el);
            const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
            return {right: box.right, scroller_right: results.getBoundingClientRect().right,
                    lines: tops.size, page_width: document.documentElement.scrollWidth};
        }"""
    )


def assert_readable_in_view(page, selector: str, max_lines: int | None = 2) -> None:
    where = in_view(page, selector)
    assert where["right"] <= min(VIEWPORT_WIDTH, where["scroller_right"]), (selector, where)
    assert where["page_width"] <= VIEWPORT_WIDTH, (selector, where)
    assert max_lines is None or where["lines"] <= max_lines, (selector, where)


def log_in(page, live_server) -> None:
    User.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


@pytest.mark.django_db(transaction=True)
def test_operator_finds_a_failure_retries_it_and_the_job_completes(
    client, live_server, page, screenshot, image_server, start_cluster
):
    Store.objects.bulk_create([Store(store_id=s, name=f"{s} General Store", area_code="7000") for s in ("S1", "S2")])
    start_cluster()
    key = uuid.uuid4().hex
    flaky_url = image_server.url(f"/switch/{key}")
    job_id = submit(
        client,
        [visit("S1", image_server.url("/img/640x480.jpg"), flaky_url), visit("S2", image_server.url("/img/8x8.png"))],
    ).json()["job_id"]
    assert wait_for_job(client, job_id)["status"] == "failed"
    not_found: list[str] = []  # of the pages and what they load (stylesheets, scripts)
    page.on("response", lambda response: response.status == 404 and not_found.append(response.url))

    log_in(page, live_server)
    page.click("text=Failed jobs")
    row = page.locator("#result_list tbody tr", has_text=str(job_id))
    expect(row.locator(".rp-badge")).to_have_text("failed")
    screenshot(page, "admin-job-list.png")

    row.locator("th a").click()
    expect(page.locator(".rp-errors")).to_contain_text(f"{flaky_url}: HTTP 404")
    expect(page.locator(".rp-visits")).to_contain_text("S1 General Store")
    screenshot(page, "admin-failed-job.png")

    image_server.switch_on(key)
    page.goto(f"{live_server.url}/admin/jobs/job/?status__exact=failed")
    page.locator("#result_list tbody tr", has_text=str(job_id)).locator("input[type=checkbox]").check()
    page.select_option("select[name=action]", "retry_failed_images")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text(f"Job {job_id}: 1 failed images queued again.")

    assert wait_for_job(client, job_id) == {"status": "completed", "job_id": job_id}
    page.goto(f"{live_server.url}/admin/jobs/job/{job_id}/change/")
    expect(page.locator(".field-status_badge .rp-badge")).to_have_text("completed")
    expect(page.locator(".field-store_errors")).to_contain_text("none")
    page.click("text=View site")
    expect(page.locator("h1")).to_have_text("Retail Pulse")
    page.wait_for_load_state("networkidle")
    assert not_found == []


@pytest.mark.django_db(transaction=True)
def test_why_images_failed_and_how_long_jobs_took_are_in_view_at_1280_px(live_server, page, screenshot):
    Store.objects.create(store_id="SAMPLE-00001", name="BHARAT STORE", area_code="710006")
    host = "https://images.field-agents.example-cdn.com/2024/01/21/SAMPLE-00001"
    urls = [f"{host}/shelf-{n:04d}-front-left.jpg" for n in range(6)]
    job = services.create_job(visits=[services.VisitInput("SAMPLE-00001", urls, timezone.now())])
    images = list(job.images.order_by("id").values_list("id", flat=True))
    services.record_outcomes(
        job_id=job.pk,
        outcomes=[
            Outcome(images[0], 4032, 3024),
            Outcome(images[1], 640, 480),
            *(Outcome(i, error="host name not found") for i in images[2:4]),
            Outcome(images[4], error="timed out after 30 s (the whole download)"),
            Outcome(images[5], error="unsupported image format ICO"),
        ],
    )
    log_in(page, live_server)

    page.goto(f"{live_server.url}/admin/jobs/imageresult/?job__id__exact={job.pk}")
    expect(page.locator("#result_list tbody tr")).to_have_count(6)
    assert_readable_in_view(page, "#result_list th.column-error", max_lines=None)
    assert_readable_in_view(page, "#result_list td.field-error:text('host name not found')", max_lines=1)
    assert_readable_in_view(page, "#result_list td.field-error:text('timed out after 30 s')")
    screenshot(page, "admin-image-results.png")

    page.goto(f"{live_server.url}/admin/jobs/job/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    assert_readable_in_view(page, "#result_list th.column-duration", max_lines=None)
    assert_readable_in_view(page, "#result_list td.field-duration", max_lines=1)


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_follows_a_running_job_without_a_reload(
    client, live_server, page, screenshot, image_server, start_cluster
):
    Store.objects.create(store_id="S1", name="S1 General Store", area_code="7000")
    start_cluster()
    log_in(page, live_server)
    page.click("text=Dashboard")
    measured, failed = page.locator("[data-figure=measured]"), page.locator("[data-figure=failed]")
    ongoing = page.locator("[data-figure='jobs.ongoing']")
    expect(measured).to_have_text("0")
    expect(page.locator("#rp-workers")).to_contain_text("none in the last hour")  # the cluster's workers, idle
    page.evaluate("window.notReloaded = true")

    # 20 images measured at once, one 404, and one the image host holds back until released.
    key = uuid.uuid4().hex
    missing_url = image_server.url("/status/404")
    job_id = submit(
        client,
        [
            visit(
                "S1",
                *(image_server.url(f"/img/{width}x480.jpg") for width in range(600, 620)),
                missing_url,
                image_server.url(f"/held/{key}?peers=1000&wait=120"),
            )
        ],
    ).json()["job_id"]

    # The page's refresh (every 3 s) brings the numbers in: the default wait of 15 s is its margin.
    expect(measured).to_have_text("20")
    expect(failed).to_have_text("1")
    expect(ongoing).to_have_text("1")
    expect(page.locator("#rp-jobs")).to_contain_text("21 / 22")
    expect(page.locator("#rp-causes")).to_contain_text("HTTP 404")
    expect(page.locator("#rp-workers")).to_contain_text(" s ago)")  # a worker's last outcome
    expect(page.locator("#rp-chart canvas").first).to_be_visible()
    screenshot(page, "admin-dashboard.png")

    image_server.release(key)
    assert wait_for_job(client, job_id)["status"] == "failed"
    expect(measured).to_have_text("21")
    expect(ongoing).to_have_text("0")
    expect(page.locator("#rp-jobs")).to_contain_text("none")
    assert page.evaluate("window.notReloaded") is True

    page.click("#rp-causes a:text-is('HTTP 404')")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text(missing_url)


@pytest.mark.django_db(transaction=True)
def test_the_dashboards_client_shares_follow_new_outcomes_without_a_reload(live_server, page, settings):
    settings.RETAILPULSE = {**settings.RETAILPULSE, "API_TOKENS": True}
    Store.objects.create(store_id="S1", name="S1 General Store", area_code="7000")
    acme, zeta = User.objects.create_user("acme"), User.objects.create_user("zeta")
    acme_job = create_job(("S1", 1))
    Job.objects.filter(pk=acme_job.pk).update(client=acme)
    count_outcomes(job_id=acme_job.pk, worker="elsewhere 7", at=timezone.now(), images_by_cause={"": 3})
    log_in(page, live_server)
    page.click("text=Dashboard")
    clients = page.locator("#rp-clients")
    expect(clients).to_contain_text("acme")
    expect(clients).to_contain_text("100.0 %")
    page.evaluate("window.notReloaded = true")

    zeta_job = create_job(("S1", 1))
    Job.objects.filter(pk=zeta_job.pk).update(client=zeta)
    count_outcomes(job_id=zeta_job.pk, worker="elsewhere 7", at=timezone.now(), images_by_cause={"": 1})

    # The page's refresh (every 3 s) brings the new client in: the default wait of 15 s is its margin.
    expect(clients).to_contain_text("zeta")
    expect(clients).to_contain_text("75.0 %")
    expect(clients).to_contain_text("25.0 %")
    assert page.evaluate("window.notReloaded") is True
