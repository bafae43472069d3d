"""Everything about one image: fetching it (fetch) and reading its size from its header (headers)."""

from jobs.worker.imaging.fetch import (
    FetchLimits,
    HostUnreachable,
    ImageFetcher,
    PublicAddressResolver,
    TransientError,
    check_url,
    is_public_address,
    keep_read_buffers,
    open_session,
)
from jobs.worker.imaging.headers import MEASURED_FORMATS, HeaderReader, ImageError

__all__ = [
    "MEASURED_FORMATS",
    "FetchLimits",
    "HeaderReader",
    "HostUnreachable",
    "ImageError",
    "ImageFetcher",
    "PublicAddressResolver",
    "TransientError",
    "check_url",
    "is_public_address",
    "keep_read_buffers",
    "open_session",
]
