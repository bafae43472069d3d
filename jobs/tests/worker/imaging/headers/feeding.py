"""Feeding the header reader as a download does, for the tests of its formats."""

import pytest

from jobs.worker.imaging.headers import MEASURED_FORMATS, HeaderReader, ImageError


def read_size(data: bytes, piece: int | None = None, formats=MEASURED_FORMATS, max_pixels=10**9) -> tuple[int, int]:
    """Feed `data` in pieces of `piece` bytes (all at once if None), as a download does."""
    reader = HeaderReader(formats, max_pixels)
    step = piece or max(len(data), 1)
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])
    return reader.close()


def read_error(data: bytes, **options) -> str:
    with pytest.raises(ImageError) as excinfo:
        read_size(data, **options)
    return str(excinfo.value)
