"""TIFF and BigTIFF: the first page's size, turned by its orientation."""

from jobs.worker.imaging.headers.exif import IMAGE_LENGTH, IMAGE_WIDTH, ORIENTATION, ifd0_values
from jobs.worker.imaging.headers.parse import ImageError, Reader, displayed


def read() -> Reader:
    values = yield from ifd0_values(0, None, (IMAGE_WIDTH, IMAGE_LENGTH, ORIENTATION))
    width, height = values.get(IMAGE_WIDTH), values.get(IMAGE_LENGTH)
    if width is None or height is None:
        raise ImageError("broken TIFF: its first page has no width or height")
    return displayed("TIFF", width, height, values.get(ORIENTATION) or 1)
