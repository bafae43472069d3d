"""django-q2 entry points. Each runs in a qcluster worker process."""

import time

from django.conf import settings

from jobs import imaging, processing, selectors, services


def process_chunk(chunk_id: int) -> str:
    """Measure the pending images of one chunk, write their outcomes, then queue the next chunk."""
    config = settings.RETAILPULSE
    chunk = services.start_chunk(chunk_id)
    if chunk is None:
        return "already done"
    if chunk.deliveries > config["MAX_DELIVERIES"]:
        services.fail_pending_images(
            chunk, f"gave up after {chunk.deliveries - 1} deliveries of its task (its worker kept dying)"
        )
        return "gave up"
    images = list(selectors.chunk_pending_images(chunk))
    batches = processing.measure_images(
        images,
        limits=imaging.FetchLimits.from_settings(config),
        in_flight=config["IN_FLIGHT"],
        gpu_delay=config["GPU_DELAY"],
        deadline=time.monotonic() + config["CHUNK_DEADLINE"],
    )
    for outcomes in batches:
        services.record_outcomes(chunk.job_id, outcomes)
    services.finish_chunk(chunk)
    return f"{len(images)} images"
