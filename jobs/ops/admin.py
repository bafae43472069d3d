"""The operators' admin: watch jobs, see why one failed, retry or cancel it; issue and revoke the
clients' API keys. Every such action is in the admin's history, with who did it."""

from typing import cast

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from jobs import services
from jobs.models import CallbackStatus, ClientKey, ImageResult, Job, Visit

VISITS_SHOWN = 200  # on a job's page; the image list has them all

STATUS_COLOURS = {
    "ongoing": "#2f6fb0",
    "completed": "#2e7d32",
    "failed": "#c62828",
    "pending": "#8a8a8a",
    "done": "#2e7d32",
}

admin.site.site_header = "Retail Pulse operations"
admin.site.site_title = "Retail Pulse"
admin.site.index_template = "admin/retailpulse_index.html"
# The app list beside every page takes a quarter of a laptop's width from the lists; the index and
# the breadcrumbs lead to every page as well.
admin.site.enable_nav_sidebar = False


class ListLayout:
    """The stylesheet that keeps the lists' failure and duration columns in view (jobs/static/jobs/admin.css)."""

    css = {"all": ["jobs/admin.css"]}


class CappedCountPaginator(Paginator):
    """Counts a list's rows only up to COUNT_CAP: an exact count of ten million image results (or of
    the half million failed ones) reads every one of them, on every page. The pages past the cap are
    not linked; the list says "more than" it (templates/admin/jobs/pagination.html)."""

    COUNT_CAP = 10_000

    @cached_property
    def _rows_counted(self) -> int:
        return cast(QuerySet, self.object_list)[: self.COUNT_CAP + 1].count()  # the admin's lists are querysets

    @cached_property
    def count(self) -> int:
        return min(self._rows_counted, self.COUNT_CAP)

    @property
    def count_is_capped(self) -> bool:
        return self._rows_counted > self.COUNT_CAP


def badge(status: str):
    return format_html(
        '<span class="rp-badge" style="background:{};color:#fff;padding:2px 8px;border-radius:9px">{}</span>',
        STATUS_COLOURS.get(status, "#555"),
        status,
    )


def image_list_url() -> str:
    return reverse("admin:jobs_imageresult_changelist")


def images_link(list_url: str, job_id: int, label: str, **filters: str):
    """A link to the image list (`list_url`, reversed once per page: a job's page has hundreds)."""
    query = "&".join([f"job__id__exact={job_id}", *(f"{k}={v}" for k, v in filters.items())])
    return format_html('<a href="{}?{}">{}</a>', list_url, query, label)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Results are produced by the service, not typed in."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


JOB_FIELDS = (
    "client",
    "status_badge",
    "progress",
    "images_total",
    "images_done",
    "images_failed",
    "created_at",
    "started_at",
    "finished_at",
    "duration",
    "image_links",
    "store_errors",
    "callback",
    "idempotency_key",
    "visit_table",
)


class JobChangeList(ChangeList):
    def get_queryset(self, request, exclude_parameters=None):
        # The per-store errors are for a job's page, not the list: a failed job's can be a megabyte of JSON.
        return super().get_queryset(request, exclude_parameters).defer("errors")


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    # Staff see every client's jobs: the API's scoping (selectors.jobs_visible_to) is for clients.
    list_display = ["id", "client", "status_badge", "progress", "images_failed", "created_at", "duration"]
    # Only the clients that own jobs: every staff user is a user too.
    list_filter = ["status", ("client", admin.RelatedOnlyFieldListFilter), ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["client"]
    search_fields = ["id"]
    search_help_text = "A job id, or a store id to find the jobs that visited it."
    ordering = ["-id"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    actions = ["retry_failed_images", "cancel_jobs"]
    fields = readonly_fields = JOB_FIELDS
    Media = ListLayout

    def get_changelist(self, request, **kwargs):
        return JobChangeList

    @admin.display(description="status", ordering="status")
    def status_badge(self, job: Job):
        return badge(job.status)

    @admin.display(description="progress")
    def progress(self, job: Job):
        finished = job.images_done + job.images_failed
        return format_html(
            '<progress value="{}" max="{}" style="width:8em"></progress> {} / {}',
            finished,
            max(job.images_total, 1),
            finished,
            job.images_total,
        )

    @admin.display(description="duration")
    def duration(self, job: Job) -> str:
        end = job.finished_at or timezone.now()
        seconds = (end - (job.started_at or job.created_at)).total_seconds()
        return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"

    @admin.display(description="image results")
    def image_links(self, job: Job):
        list_url = image_list_url()
        return format_html(
            "{} · {} · {}",
            images_link(list_url, job.pk, f"all {job.images_total}"),
            images_link(list_url, job.pk, f"failed {job.images_failed}", status__exact="failed"),
            images_link(list_url, job.pk, f"pending {job.images_pending}", status__exact="pending"),
        )

    @admin.display(description="errors (as GET /api/status reports them)")
    def store_errors(self, job: Job):
        if not job.errors:
            return "none"
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td></tr>", ((e["store_id"], e["error"]) for e in job.errors)
        )
        return format_html('<table class="rp-errors"><tr><th>store</th><th>error</th></tr>{}</table>', rows)

    @admin.display(description="completion callback")
    def callback(self, job: Job):
        if not job.callback_url:
            return "none"
        attempts = f"{job.callback_attempts} attempt{'s' if job.callback_attempts != 1 else ''}"
        state = {
            CallbackStatus.PENDING: f"pending ({attempts} so far)",
            CallbackStatus.DELIVERED: f"delivered ({attempts})",
            CallbackStatus.FAILED: f"failed, gave up after {attempts}",
        }.get(CallbackStatus(job.callback_status), "not sent yet (the job has not ended)")
        error = f" — last error: {job.callback_error}" if job.callback_error else ""
        return format_html("{}: {}{}", job.callback_url, state, error)

    @admin.display(description="visits")
    def visit_table(self, job: Job):
        # Counted for the visits shown alone: a join and GROUP BY would count every visit's images first.
        image_count = (
            ImageResult.objects.filter(visit=OuterRef("pk")).order_by().values("visit").annotate(n=Count("id"))
        )
        visits = (
            Visit.objects.filter(job=job)
            .select_related("store")
            .annotate(image_count=Coalesce(Subquery(image_count.values("n")), 0))
            .order_by("id")[:VISITS_SHOWN]
        )
        errors = {e["store_id"]: e["error"] for e in job.errors}
        list_url = image_list_url()
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    images_link(list_url, job.pk, v.store_code, visit__store_code=v.store_code),
                    v.store.name if v.store else "not in store master",
                    v.visit_time,
                    v.image_count,
                    errors.get(v.store_code, ""),
                )
                for v in visits
            ),
        )
        return format_html(
            '<table class="rp-visits"><tr><th>store</th><th>name</th><th>visit time</th><th>images</th>'
            "<th>error</th></tr>{}</table>",
            rows,
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        by_store = queryset.filter(pk__in=Visit.objects.filter(store_code=term).values("job_id"))
        if term.isdigit():
            return by_store | queryset.filter(pk=int(term)), False
        return by_store, False

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("jobs.change_job")

    @admin.action(description="Retry failed images", permissions=["retry"])
    def retry_failed_images(self, request, queryset):
        for job in queryset:
            retried = services.retry_failed_images(job_id=job.pk)
            if retried:
                self.log_change(request, job, f"Retried {retried} failed images.")
                self.message_user(request, f"Job {job.pk}: {retried} failed images queued again.", messages.SUCCESS)
            else:
                self.message_user(request, f"Job {job.pk}: no failed image to retry.", messages.WARNING)

    @admin.action(description="Cancel (skip pending images)", permissions=["retry"])
    def cancel_jobs(self, request, queryset):
        for job in queryset:
            cancelled = services.cancel_job(job_id=job.pk)
            if cancelled or job.status == Job.Status.ONGOING:
                self.log_change(request, job, f"Cancelled: {cancelled} pending images skipped.")
                self.message_user(request, f"Job {job.pk}: cancelled, {cancelled} pending images skipped.")
            else:
                self.message_user(request, f"Job {job.pk}: not ongoing, nothing to cancel.", messages.WARNING)


IMAGE_FIELDS = (
    "job_link",
    "store",
    "url_link",
    "status_badge",
    "width",
    "height",
    "perimeter",
    "error",
    "processed_at",
)


@admin.register(ImageResult)
class ImageResultAdmin(ReadOnlyAdmin):
    list_display = ["id", "job_link", "store", "url_link", "status_badge", "size", "perimeter", "error"]
    list_filter = ["status"]
    list_select_related = ["visit"]
    search_fields = ["=visit__store_code"]
    search_help_text = "A store id."
    ordering = ["-id"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    fields = readonly_fields = IMAGE_FIELDS
    Media = ListLayout

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="job", ordering="job")
    def job_link(self, image: ImageResult):
        return format_html('<a href="{}">{}</a>', reverse("admin:jobs_job_change", args=[image.job_id]), image.job_id)

    @admin.display(description="store")
    def store(self, image: ImageResult) -> str:
        return image.visit.store_code

    @admin.display(description="url")
    def url_link(self, image: ImageResult):
        # A link, not a preview: an <img> would make the operator's browser fetch arbitrary hosts.
        return format_html(
            '<a href="{}" title="{}" rel="noreferrer noopener" target="_blank">{}</a>', image.url, image.url, image.url
        )

    @admin.display(description="status", ordering="status")
    def status_badge(self, image: ImageResult):
        return badge(image.status)

    @admin.display(description="size")
    def size(self, image: ImageResult) -> str:
        # One column for both: the list keeps its width for the error.
        return "-" if image.width is None else f"{image.width} \u00d7 {image.height}"


# The library's own key model is unused: a client's keys are ClientKey rows.
admin.site.unregister(APIKey)


@admin.register(ClientKey)
class ClientKeyAdmin(APIKeyModelAdmin):
    """Adding a key issues it: the page shows it once, the database keeps its prefix and hash."""

    # The library's admin declares these as tuples of its own lengths (mypy reads them as fixed).
    list_display = ("prefix", "client", "name", "created", "last_used_at", "expiry_date", "_has_expired", "revoked")  # type: ignore[assignment]
    list_filter = ("revoked", "created")  # type: ignore[assignment]
    search_fields = ("prefix", "name", "client__username")  # type: ignore[assignment]
    list_select_related = ("client",)
    fields = ("client", "name", "expiry_date", "prefix", "last_used_at", "revoked")
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request, obj=None):
        readonly = (*super().get_readonly_fields(request, obj), "last_used_at")
        return readonly if obj is None else (*readonly, "client")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoked, not deleted: a revoked key answers "revoked", and stays in the history

    @admin.action(description="Revoke selected keys (for good)", permissions=["change"])
    def revoke_keys(self, request, queryset):
        for key in queryset.select_related("client"):
            if not key.revoked:
                services.revoke_key(prefix=key.prefix)
                self.log_change(request, key, f"Revoked key {key.prefix} of {key.client.username}.")
                self.message_user(request, f"Key {key.prefix} of {key.client.username}: revoked.")
