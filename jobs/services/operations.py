"""What operators do from the admin: retry a failed job's images, cancel an ongoing job."""

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from jobs.models import Chunk, ImageResult, Job, Visit
from jobs.services.chunks import add_chunks
from jobs.services.outcomes import count_outcomes, failure_cause, finish_job_if_complete
from stores.models import Store


def retry_failed_images(*, job_id: int) -> int:
    """Send a finished job's failed images back to work; return how many.

    Images of a store that is still not in the master stay failed. A store added to the master
    since the submit is linked to its visits and their images are retried too.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status != Job.Status.FAILED or job.pruned_at is not None:  # retention is removing it
            return 0
        Visit.objects.filter(job_id=job_id, store=None, store_code__in=Store.objects.values("store_id")).update(
            store=F("store_code")
        )
        retried = ImageResult.objects.filter(job_id=job_id, status=ImageResult.Status.FAILED).exclude(visit__store=None)
        ids = list(retried.order_by("id").values_list("id", flat=True))
        if not ids:
            return 0
        retried.update(status=ImageResult.Status.PENDING, error="", processed_at=None)
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.ONGOING, images_failed=F("images_failed") - len(ids), errors=[], finished_at=None
        )
        add_chunks(job_id=job_id, image_ids=ids)
        finish_job_if_complete(job_id=job_id)
    return len(ids)


def cancel_job(*, job_id: int, reason: str = "job cancelled by an operator") -> int:
    """Fail every pending image of an ongoing job with `reason`; return how many.

    Chunks held now lose their lease (their workers stop at their next renewal), and whatever
    they still write changes nothing: outcomes only ever replace `pending`.
    """
    with transaction.atomic():
        if not Job.objects.filter(pk=job_id, status=Job.Status.ONGOING).exists():
            return 0
        Chunk.objects.filter(job_id=job_id).update(state=Chunk.State.DONE, claim="", leased_until=None)
        pending = ImageResult.objects.filter(job_id=job_id, status=ImageResult.Status.PENDING)
        now = timezone.now()
        cancelled = pending.update(status=ImageResult.Status.FAILED, error=reason, processed_at=now)
        Job.objects.filter(pk=job_id).update(images_failed=F("images_failed") + cancelled)
        count_outcomes(job_id=job_id, worker="", at=now, images_by_cause={failure_cause(reason): cancelled})
        finish_job_if_complete(job_id=job_id)
    return cancelled
