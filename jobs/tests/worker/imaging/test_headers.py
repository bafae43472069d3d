"""jobs.worker.imaging.headers: the displayed size of every kind of image, read piece by piece as a download
arrives, in a few kilobytes; the errors that tell an unsupported format from bytes that are no image."""

import io
import struct
import tracemalloc

import pytest
from PIL import Image

from jobs.tests.image_samples import MEASURED, ORIENTATION, REFUSED
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


@pytest.mark.parametrize("piece", [None, 1, 7, 4096])
@pytest.mark.parametrize("name", sorted(MEASURED))
def test_displayed_size(name, piece):
    data, expected = MEASURED[name]
    assert read_size(data, piece) == expected


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_samples_agree_with_pillow_and_pillow_heif(name):
    """The expected sizes are the ones Pillow and pillow-heif report, once the EXIF orientation is
    applied: what a viewer shows. (Pillow's TIFF reader and pillow-heif turn the size themselves.)"""
    data, expected = MEASURED[name]
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        turned = image.format != "TIFF" and image.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
    assert ((height, width) if turned else (width, height)) == expected


@pytest.mark.parametrize("piece", [None, 1, 4096])
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused(name, piece):
    data, expected = REFUSED[name]
    assert read_error(data, piece=piece).startswith(expected)


def test_errors_list_the_accepted_formats():
    assert read_error(REFUSED["icon.ico"][0], formats=("JPEG", "PNG")) == (
        "unsupported image format ICO (accepted: JPEG, PNG)"
    )
    assert read_error(REFUSED["page.html"][0], formats=("JPEG", "PNG")) == "not an image (accepted: JPEG, PNG)"


@pytest.mark.parametrize(
    ("name", "image_format"),
    [("pages.tiff", "TIFF"), ("photo.heic", "HEIF"), ("photo.avif", "AVIF"), ("two-pictures.mpo", "MPO")],
)
def test_a_measured_format_left_out_of_the_setting_is_unsupported(name, image_format):
    message = read_error(MEASURED[name][0], formats=("JPEG", "PNG"))
    assert message == f"unsupported image format {image_format} (accepted: JPEG, PNG)"


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_pixel_cap_applies_to_every_format(name):
    data, (width, height) = MEASURED[name]
    assert read_size(data, max_pixels=width * height) == (width, height)
    message = read_error(data, max_pixels=width * height - 1)
    assert message == f"too many pixels: {width}x{height} (over {width * height - 1:,})"


def test_a_block_before_the_size_is_never_held():
    """460 KB of EXIF and ICC blocks before a JPEG's frame header: fed in 4 KB pieces, as a download
    arrives, the reader holds a few kilobytes at any time, not the blocks."""
    data, expected = MEASURED["big-metadata.jpg"]
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
    assert reader.close() == expected
    assert max(held) < 16 * 1024


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def test_a_header_block_over_64_kb_is_refused():
    associations = box(b"ipma", b"\0" * 70_000)  # a HEIF's item properties, read whole
    data = box(b"ftyp", b"heic\0\0\0\0mif1heic") + box(b"meta", b"\0" * 4 + box(b"iprp", associations))
    assert read_error(data) == "broken HEIF or AVIF: a header block of 70,000 bytes"


@pytest.mark.parametrize("piece", [None, 1, 4096])
def test_a_tiff_directory_is_read_as_it_arrives(piece):
    """A directory of 72 KB, its size in the last entries: read in pieces, never held whole."""
    entries = [struct.pack("<HHI4s", 0x8000 + n, 7, 0, b"") for n in range(6000)]
    entries += [struct.pack("<HHII", 0x0100, 4, 1, 3000), struct.pack("<HHIHH", 0x0101, 3, 1, 2000, 0)]
    data = b"II*\0" + struct.pack("<IH", 8, len(entries)) + b"".join(entries) + b"\0" * 4
    assert read_size(data, piece) == (3000, 2000)


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


@pytest.mark.parametrize("piece", [None, 1, 4096])
def test_stray_bytes_between_jpeg_segments_are_skipped(piece):
    baseline = MEASURED["orientation-6.jpg"][0]
    first_segment_end = 4 + struct.unpack(">H", baseline[4:6])[0]
    stray = baseline[:first_segment_end] + b"stray bytes" * 1000 + baseline[first_segment_end:]
    assert read_size(stray, piece) == MEASURED["orientation-6.jpg"][1]


def test_a_jpeg_of_stray_bytes_to_its_end_is_truncated():
    assert read_error(b"\xff\xd8\xff\xe0\x00\x02" + b"x" * 10_000) == "truncated JPEG: the file ends before its size"


def test_a_tiff_directory_pointing_into_its_header_is_broken():
    data = b"II*\0" + struct.pack("<I", 4) + b"\0" * 64
    assert read_error(data) == "broken TIFF: its first page has no width or height"
