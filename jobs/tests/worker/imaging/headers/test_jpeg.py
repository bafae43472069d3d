"""jobs.worker.imaging.headers.jpeg: resynchronising on stray bytes, as libjpeg and Pillow do."""

import struct

import pytest

from jobs.tests.image_samples import MEASURED
from jobs.tests.worker.imaging.headers.feeding import most_held, read_error, read_size


@pytest.mark.parametrize("piece", [None, 1, 4096])
def test_stray_bytes_between_jpeg_segments_are_skipped(piece):
    baseline = MEASURED["orientation-6.jpg"][0]
    first_segment_end = 4 + struct.unpack(">H", baseline[4:6])[0]
    stray = baseline[:first_segment_end] + b"stray bytes" * 1000 + baseline[first_segment_end:]
    assert read_size(stray, piece) == MEASURED["orientation-6.jpg"][1]


def test_a_jpeg_of_stray_bytes_to_its_end_is_truncated():
    assert read_error(b"\xff\xd8\xff\xe0\x00\x02" + b"x" * 10_000) == "truncated JPEG: the file ends before its size"


def test_a_reserved_marker_is_no_marker():
    """Pillow refuses the codes below 0xC0 (but 0x00, an escaped 0xFF) at open."""
    assert read_error(b"\xff\xd8\xff\x02\x00\x10" + b"\0" * 64) == "broken JPEG: no marker where one was expected"


def test_stray_bytes_are_never_held():
    """200 KB of stray bytes before the next marker: skipped as they arrive, never kept."""
    baseline, expected = MEASURED["orientation-6.jpg"]
    first_segment_end = 4 + struct.unpack(">H", baseline[4:6])[0]
    stray = baseline[:first_segment_end] + b"stray bytes " * 17_000 + baseline[first_segment_end:]
    size, held = most_held(stray)
    assert size == expected
    assert held < 16 * 1024
