"""jobs.worker.imaging.headers.gif: the logical screen, widened to a first frame that reaches past it."""

import struct

import pytest

from jobs.tests.worker.imaging.headers.feeding import read_error, read_size


def gif(screen: tuple[int, int], frame: tuple[int, int, int, int], before_frame: bytes = b"") -> bytes:
    header = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0" * 6  # a 2-colour table
    descriptor = b"," + struct.pack("<HHHHB", *frame, 0)
    return header + before_frame + descriptor + b"\x02\x02\x44\x01\x00;"


@pytest.mark.parametrize("piece", [None, 1])
def test_a_first_frame_past_the_screen_widens_it(piece):
    comment = b"!\xfe" + b"\x05hello\x03abc\x00"  # an extension of two sub-blocks before the frame
    assert read_size(gif((10, 10), (4, 6, 20, 5), comment), piece) == (24, 11)


def test_a_frame_inside_the_screen_leaves_it():
    assert read_size(gif((30, 20), (1, 1, 5, 5))) == (30, 20)


def test_a_gif_without_a_frame_is_broken():
    data = gif((10, 10), (0, 0, 1, 1))
    assert read_error(data[:19] + b";") == "broken GIF: it ends before its first frame"
