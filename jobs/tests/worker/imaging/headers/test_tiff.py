"""jobs.worker.imaging.headers.tiff and .exif: a TIFF directory read as Pillow reads it, as it
arrives."""

import struct

import pytest

from jobs.tests.worker.imaging.headers.feeding import most_held, read_error, read_size


@pytest.mark.parametrize("piece", [None, 1, 4096])
def test_a_tiff_directory_is_read_as_it_arrives(piece):
    """A directory of 72 KB, its size in the last entries: read in pieces, never held whole."""
    entries = [struct.pack("<HHI4s", 0x8000 + n, 7, 0, b"") for n in range(6000)]
    entries += [struct.pack("<HHII", 0x0100, 4, 1, 3000), struct.pack("<HHIHH", 0x0101, 3, 1, 2000, 0)]
    data = b"II*\0" + struct.pack("<IH", 8, len(entries)) + b"".join(entries) + b"\0" * 4
    assert read_size(data, piece) == (3000, 2000)


def test_a_long_tiff_directory_is_never_held():
    entries = [struct.pack("<HHI4s", 0x8000 + n, 7, 0, b"") for n in range(20_000)]  # 240 KB
    entries += [struct.pack("<HHII", 0x0100, 4, 1, 3000), struct.pack("<HHIHH", 0x0101, 3, 1, 2000, 0)]
    data = b"II*\0" + struct.pack("<IH", 8, len(entries)) + b"".join(entries) + b"\0" * 4
    size, held = most_held(data)
    assert size == (3000, 2000)
    assert held < 16 * 1024


def test_a_tiff_directory_cut_by_the_end_of_the_file_keeps_its_entries():
    """As in Pillow: the entries before the cut count."""
    entries = struct.pack("<HHII", 0x0100, 4, 1, 30) + struct.pack("<HHII", 0x0101, 4, 1, 20)
    data = b"II*\0" + struct.pack("<IH", 8, 500) + entries
    assert read_size(data) == (30, 20)


def test_a_tiff_tag_s_first_entry_wins():
    entries = [struct.pack("<HHII", 0x0100, 4, 1, width) for width in (30, 70)]
    entries.append(struct.pack("<HHII", 0x0101, 4, 1, 20))
    data = b"II*\0" + struct.pack("<IH", 8, len(entries)) + b"".join(entries) + b"\0" * 4
    assert read_size(data) == (30, 20)


def test_a_tiff_directory_pointing_into_its_header_is_broken():
    data = b"II*\0" + struct.pack("<I", 4) + b"\0" * 64
    assert read_error(data) == "broken TIFF: its first page has no width or height"


def test_a_bigtiff_directory_of_more_entries_than_a_classic_one_can_hold_is_broken():
    data = b"II+\0" + struct.pack("<HHQQ", 8, 0, 16, 70_000) + b"\0" * 4096
    assert read_error(data) == "broken TIFF: a directory of 70,000 entries"


def test_a_bigtiff_is_read():
    entries = struct.pack("<HHQQ", 0x0100, 16, 1, 5000) + struct.pack("<HHQQ", 0x0101, 3, 1, 7)
    data = b"II+\0" + struct.pack("<HHQQ", 8, 0, 16, 2) + entries + b"\0" * 8
    assert read_size(data, 1) == (5000, 7)
