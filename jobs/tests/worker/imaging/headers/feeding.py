"""Feeding the header reader as a download does, for the tests of its formats."""

import tracemalloc

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


def most_held(data: bytes) -> tuple[tuple[int, int], int]:
    """Feed `data` in 4 KB pieces, as a download arrives: the size, and the most memory the reader
    held from one piece to the next (tracemalloc)."""
    pieces = [data[start : start + 4096] for start in range(0, len(data), 4096)]
    reader = HeaderReader(MEASURED_FORMATS, 10**9)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = []
        for piece in pieces:
            reader.feed(piece)
            held.append(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()
    return reader.close(), max(held)
