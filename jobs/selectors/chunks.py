"""Reads of chunks: what a worker may claim, what is held, what waits."""

from datetime import datetime
from typing import NamedTuple

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs.models import Chunk, ImageResult


def chunk_pending_images(*, chunk: Chunk) -> QuerySet:
    """(id, url) of the chunk's images that have no outcome yet."""
    return ImageResult.objects.filter(
        job_id=chunk.job_id,
        id__gte=chunk.first_image_id,
        id__lte=chunk.last_image_id,
        status=ImageResult.Status.PENDING,
    ).values_list("id", "url")


def claimable_chunks(*, now: datetime) -> QuerySet:
    """Chunks a worker may claim: pending, not held (or held under a lease that ran out), and not
    backing off after an error."""
    return (
        Chunk.objects.filter(state=Chunk.State.PENDING)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now))
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
    )


class HeldChunk(NamedTuple):
    id: int
    job_id: int
    client_id: int  # the anonymous client's NULL is 0, one client like any other
    images: int  # the width of its id range
    make_way: bool


def held_chunks(*, now: datetime) -> list[HeldChunk]:
    """Each chunk held now (its lease runs): a few, one per busy worker."""
    held = Chunk.objects.filter(state=Chunk.State.PENDING, leased_until__gt=now).order_by()
    rows = held.values_list(
        "pk", "job_id", Coalesce("job__client_id", 0), "first_image_id", "last_image_id", "make_way"
    )
    return [
        HeldChunk(pk, job_id, client, last - first + 1, make_way) for pk, job_id, client, first, last, make_way in rows
    ]


def chunk_queue(*, now: datetime) -> dict[str, int]:
    """Pending chunks: `held` (a worker's lease runs) and `free` (waiting for a claim, or backing off)."""
    return Chunk.objects.filter(state=Chunk.State.PENDING).aggregate(
        held=Count("id", filter=Q(leased_until__gt=now)),
        free=Count("id", filter=Q(leased_until__isnull=True) | Q(leased_until__lte=now)),
    )


def any_chunk_claimable() -> bool:
    """Whether a chunk waits for a worker to claim it now."""
    return claimable_chunks(now=timezone.now()).exists()


def pending_chunk_count() -> int:
    """Chunks not yet done, held or not."""
    return Chunk.objects.filter(state=Chunk.State.PENDING).count()


def chunk_must_make_way(*, chunk_id: int) -> bool:
    """Whether a submit asked the chunk's holder to hand it back (services.chunks._make_way)."""
    return Chunk.objects.filter(pk=chunk_id, make_way=True).exists()
