"""Everything about one image: fetching it (fetch) and reading its size from its header (headers)."""

from jobs.imaging.fetch import (
    FetchLimits,
    PublicAddressResolver,
    TransientError,
    check_url,
    fetch_image_size,
    is_public_address,
    open_session,
)
from jobs.imaging.headers import MEASURED_FORMATS, HeaderReader, ImageError

__all__ = [
    "MEASURED_FORMATS",
    "FetchLimits",
    "HeaderReader",
    "ImageError",
    "PublicAddressResolver",
    "TransientError",
    "check_url",
    "fetch_image_size",
    "is_public_address",
    "open_session",
]
