from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey

IDEMPOTENCY_KEY_MAX_LENGTH = 255
MAX_JOB_ID = 2**63 - 1  # BIGINT: larger ids cannot exist, and would overflow a query


class CallbackStatus(models.TextChoices):
    NONE = "", "no callback"
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Job(models.Model):
    """A client's submission. Counters are kept on the row so that status is one query."""

    class Status(models.TextChoices):
        ONGOING = "ongoing"
        COMPLETED = "completed"
        FAILED = "failed"

    # The API client that submitted the job (the user behind its token); null is the one anonymous
    # client of a service without tokens. Every API read is scoped to it (selectors.jobs_visible_to).
    # No index of its own: the (client, status) index below starts with it.
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
        db_index=False,
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ONGOING)
    images_total = models.PositiveIntegerField(default=0)
    images_done = models.PositiveIntegerField(default=0)
    images_failed = models.PositiveIntegerField(default=0)
    # Per-store errors as the status API reports them, written once when the job finishes.
    errors = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The last time an image of the job got an outcome (or the job was created or re-queued): the
    # stall check (services.requeue_stalled_jobs) looks for ongoing jobs where this is old.
    progressed_at = models.DateTimeField(default=timezone.now)
    # A retried submit with the same Idempotency-Key header gets this job back instead of a new one;
    # the fingerprint (SHA-256 of the body) tells a retry from a different body under the same key.
    # Unique per client (the constraints below); NULL, not "", for no key, as unique indexes never
    # count NULLs equal.
    idempotency_key = models.CharField(max_length=IDEMPOTENCY_KEY_MAX_LENGTH, null=True, blank=True)  # noqa: DJ001
    idempotency_fingerprint = models.CharField(max_length=64, blank=True)
    # Where the final status is POSTed when the job ends (see jobs.worker.callback_post).
    callback_url = models.URLField(max_length=2048, blank=True)
    callback_status = models.CharField(max_length=16, choices=CallbackStatus.choices, blank=True)
    callback_attempts = models.PositiveIntegerField(default=0)
    callback_error = models.TextField(blank=True)
    callback_delivery = models.CharField(max_length=32, blank=True)  # the current delivery's id
    # When retention began removing this finished job (services.retention), which deletes its rows
    # in short slices: from then on the API sees no such job and it cannot be retried.
    pruned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "-id"], name="job_status_id"),
            models.Index(fields=["status", "progressed_at"], name="job_status_progressed"),
            # A client's ongoing jobs: its pending images (the quota), and the admin's filter.
            models.Index(fields=["client", "status"], name="job_client_status"),
            # Retention's every-minute look for jobs to remove: those that ended before its cut-off
            # (ongoing ones have no end), and the few it is removing.
            models.Index(fields=["finished_at"], name="job_finished_at"),
            models.Index(fields=["pruned_at"], condition=Q(pruned_at__isnull=False), name="job_pruned"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(images_done__lte=models.F("images_total") - models.F("images_failed")),
                name="job_counters_within_total",
            ),
            # Idempotency keys per client. Two partial constraints rather than one with
            # nulls_distinct=False, which SQLite lacks: NULL never equals NULL in a unique index, so
            # the anonymous client's keys get one of their own.
            models.UniqueConstraint(
                fields=["client", "idempotency_key"],
                condition=Q(client__isnull=False),
                name="job_client_idempotency_key",
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(client__isnull=True),
                name="job_anonymous_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.status})"

    @property
    def images_pending(self) -> int:
        return self.images_total - self.images_done - self.images_failed


class Visit(models.Model):
    """One store visit of a job. `store` is empty when the id is not in the store master."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="visits")
    store_code = models.CharField("store id", max_length=64, db_index=True)
    # No index of its own: the (store, visit_time, id) index below starts with it.
    store = models.ForeignKey(
        "stores.Store", null=True, blank=True, on_delete=models.PROTECT, related_name="visits", db_index=False
    )
    visit_time = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [
            # GET /api/visits walks visits in (store, time) order; the date filter alone uses visit_time.
            models.Index(fields=["store", "visit_time", "id"], name="visit_store_time"),
            models.Index(fields=["visit_time"], name="visit_time"),
        ]

    def __str__(self) -> str:
        return f"Visit {self.pk} to {self.store_code}"


class Chunk(models.Model):
    """A slice of a job's images, measured by one worker at a time under a lease.

    A worker claims a pending chunk whose lease is free or ran out (services.claim_chunk), renews the
    lease while it works, and releases it when it finishes or hands the chunk back. A worker that
    dies or freezes stops renewing: its lease runs out and any worker, on any machine, takes over.
    """

    class State(models.TextChoices):
        PENDING = "pending"
        DONE = "done"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    first_image_id = models.BigIntegerField()
    last_image_id = models.BigIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    # The current claim's random id, empty when no worker holds the chunk; the claim lasts until
    # leased_until unless renewed.
    claim = models.CharField(max_length=32, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    # Claims that ended with the lease running out (the worker died or froze): MAX_DELIVERIES of
    # them fail the chunk's remaining images. Hand-backs (deadline, making way) do not count.
    expired_leases = models.PositiveIntegerField(default=0)
    # Attempts that raised (a database error mid-write, a bug): each backs off, the last fails the
    # chunk's remaining images with the error's text.
    errors = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    not_before = models.DateTimeField(null=True, blank=True)  # no claim before this (backoff)
    # Set while every worker is busy and a new job waits: the holder hands the chunk back at its
    # next batch, so the new job gets a worker within a second (services.chunks._make_way).
    make_way = models.BooleanField(default=False)
    # "host pid" of the worker process of the latest claim: where a chunk ran, across machines.
    worker = models.CharField(max_length=128, blank=True)
    # Seconds its claims took to fetch and measure its images (outcomes are written meanwhile),
    # summed over its claims: the fetch latency histogram of /metrics.
    fetch_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="chunk_job_number")]
        indexes = [
            models.Index(fields=["job", "state", "number"], name="chunk_job_state"),
            # The few pending chunks of every job, which every claim and submit look at.
            models.Index(fields=["state"], condition=models.Q(state="pending"), name="chunk_pending"),
            # The chunks held now (a few, one per busy worker), which a claim counts for every
            # candidate chunk (services.chunks.claim_chunk): a range of this index, not a scan.
            models.Index(fields=["leased_until"], condition=models.Q(state="pending"), name="chunk_pending_lease"),
        ]

    def __str__(self) -> str:
        return f"Chunk {self.number} of job {self.job_id}"


class ImageResult(models.Model):
    """The outcome for one image URL of one visit."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    # No index of its own: the (job, status, id) and (job, id) indexes below start with it. No
    # constraint of its own either: the visit's chain (image -> visit -> job) already keeps an image
    # from outliving its job, and a second check per row made a big submit's commit twice as long on
    # PostgreSQL.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="images", db_index=False, db_constraint=False)
    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="images")
    url = models.URLField(max_length=2048)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    perimeter = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["job", "status", "id"], name="image_job_status_id"),
            # A job's images in id order, of every status: its image pages, its CSV export and the
            # admin's list of them. The index above gives that order only one status at a time,
            # and the primary key only by walking every older job's images first.
            models.Index(fields=["job", "id"], name="image_job_id"),
            # The admin's failed images of every job, newest first: a few in a hundred images, so a
            # small index, written only when an image fails; without it the list walks the whole
            # table back from its newest row to find them.
            models.Index(fields=["id"], condition=Q(status="failed"), name="image_failed"),
        ]

    def __str__(self) -> str:
        return f"Image {self.pk} of job {self.job_id}"


class OutcomeCount(models.Model):
    """How many images of a job got an outcome in one minute, from one worker, for one cause.

    Kept as outcomes are recorded (one upsert per batch, services.outcomes) so that the dashboard's
    per-minute figures read a few thousand rows an hour instead of the image table.
    """

    minute = models.DateTimeField()  # the start of the minute (UTC)
    # Indexed by outcome_count_job below, for retention, which deletes a job's rows with it.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+", db_index=False)
    # "host pid" of the worker process that recorded the outcomes (as Chunk.worker); empty for images
    # failed without one (an unknown store at submit, a cancel).
    worker = models.CharField(max_length=128, blank=True)
    # Empty for measured images; for failed ones the error's short form (services.failure_cause).
    cause = models.CharField(max_length=64, blank=True)
    images = models.PositiveIntegerField()
    last_at = models.DateTimeField()  # the latest of these outcomes

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["minute", "job", "worker", "cause"], name="outcome_count_key"),
        ]
        # Without it, removing a job (services.retention) would scan a week of every job's counts.
        # An outcome adds to an existing row most of the time, which leaves this index alone.
        indexes = [models.Index(fields=["job"], name="outcome_count_job")]

    def __str__(self) -> str:
        return f"{self.images} images of job {self.job_id} at {self.minute:%H:%M} ({self.cause or 'measured'})"


class ClientKey(AbstractAPIKey):
    """An API key of a client (`Authorization: Token <key>`). Stored as its visible prefix and a
    SHA-512 hash of the whole key (djangorestframework-api-key): the key itself is shown once, when
    issued, and a copy of the database cannot be used to call the API."""

    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
