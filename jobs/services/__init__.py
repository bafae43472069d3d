"""Writes, by concern, in the order a job flows through them: submission (a job and its rows),
chunks (cutting a job up, claiming under a lease), outcomes (image results, ending a job),
callbacks (the completion POST), operations (what operators do from the admin), retention
(removing old finished jobs)."""

from jobs.services.callbacks import CallbackAttempt, record_callback_attempt
from jobs.services.chunks import (
    Claim,
    ClaimEnd,
    add_chunks,
    chunk_sizes,
    claim_chunk,
    end_claim,
    fail_chunk,
    record_chunk_error,
    renew_lease,
    requeue_stalled_jobs,
    wake_workers,
)
from jobs.services.clients import ClientExists, KeyCheck, check_key, create_client, issue_key, revoke_key
from jobs.services.operations import cancel_job, retry_failed_images
from jobs.services.outcomes import Outcome, prune_outcome_counts, record_outcomes
from jobs.services.retention import Pruned, prune_expired_jobs, prune_jobs
from jobs.services.submission import (
    UNKNOWN_STORE,
    IdempotencyKeyReused,
    QuotaExceeded,
    Submission,
    VisitInput,
    body_fingerprint,
    create_job,
    submit_job,
)

__all__ = [
    "UNKNOWN_STORE",
    "CallbackAttempt",
    "Claim",
    "ClaimEnd",
    "ClientExists",
    "IdempotencyKeyReused",
    "KeyCheck",
    "Outcome",
    "Pruned",
    "QuotaExceeded",
    "Submission",
    "VisitInput",
    "add_chunks",
    "body_fingerprint",
    "cancel_job",
    "check_key",
    "chunk_sizes",
    "claim_chunk",
    "create_client",
    "create_job",
    "end_claim",
    "fail_chunk",
    "issue_key",
    "prune_expired_jobs",
    "prune_jobs",
    "prune_outcome_counts",
    "record_callback_attempt",
    "record_chunk_error",
    "record_outcomes",
    "renew_lease",
    "requeue_stalled_jobs",
    "retry_failed_images",
    "revoke_key",
    "submit_job",
    "wake_workers",
]
