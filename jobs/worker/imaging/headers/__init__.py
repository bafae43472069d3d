"""The header reader: an image's displayed size from the bytes of its header as they arrive
(driver), one module per family of formats, and what they share (parse, exif)."""

from jobs.worker.imaging.headers.driver import MEASURED_FORMATS, HeaderReader
from jobs.worker.imaging.headers.parse import ImageError

__all__ = ["MEASURED_FORMATS", "HeaderReader", "ImageError"]
