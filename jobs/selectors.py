"""Reads: what the API, the admin and the workers ask of jobs and their images."""

from django.db.models import QuerySet

from jobs.models import Chunk, ImageResult, Job

ERRORS_LISTED_PER_STORE = 5  # failed images named in one store's error; the rest are counted


def get_job(job_id: int) -> Job | None:
    return Job.objects.filter(pk=job_id).first()


def chunk_pending_images(chunk: Chunk) -> QuerySet:
    """(id, url) of the chunk's images that have no outcome yet."""
    return ImageResult.objects.filter(
        job_id=chunk.job_id,
        id__gte=chunk.first_image_id,
        id__lte=chunk.last_image_id,
        status=ImageResult.Status.PENDING,
    ).values_list("id", "url")


def store_errors(job_id: int) -> list[dict]:
    """One entry per store with a failed image, in the order of the job's visits.

    Computed once, when the job finishes, and kept on the job: status stays one query.
    """
    failures: dict[str, dict[str, None]] = {}  # store -> its distinct messages, in order
    rows = (
        ImageResult.objects.filter(job_id=job_id, status=ImageResult.Status.FAILED)
        .order_by("id")
        .values_list("visit__store_code", "visit__store_id", "url", "error")
    )
    for store_code, known_store, url, error in rows.iterator(chunk_size=2000):
        # An unknown store fails as a whole; for a known one, name each failed image and its cause.
        message = f"{url}: {error}" if known_store else error
        failures.setdefault(store_code, {})[message] = None
    entries = []
    for store_code, distinct in failures.items():
        messages = list(distinct)
        text = "; ".join(messages[:ERRORS_LISTED_PER_STORE])
        if len(messages) > ERRORS_LISTED_PER_STORE:
            text += f"; and {len(messages) - ERRORS_LISTED_PER_STORE} more failed images"
        entries.append({"store_id": store_code, "error": text})
    return entries


def job_images(job_id: int, *, store_id: str | None = None, status: str | None = None) -> QuerySet:
    images = ImageResult.objects.filter(job_id=job_id).select_related("visit").order_by("id")
    if store_id:
        images = images.filter(visit__store_code=store_id)
    if status:
        images = images.filter(status=status)
    return images
