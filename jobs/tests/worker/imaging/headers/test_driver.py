"""jobs.worker.imaging.headers.driver: the displayed size of every kind of image, read piece by piece as a download
arrives, in a few kilobytes; the errors that tell an unsupported format from bytes that are no image."""

import io
import struct

import pytest
from PIL import Image

from jobs.tests.image_samples import MEASURED, ORIENTATION, REFUSED
from jobs.tests.worker.imaging.headers.feeding import most_held, read_error, read_size


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
    size, held = most_held(data)
    assert size == expected
    assert held < 16 * 1024


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def test_a_header_block_over_64_kb_is_refused():
    associations = box(b"ipma", b"\0" * 70_000)  # a HEIF's item properties, read whole
    data = box(b"ftyp", b"heic\0\0\0\0mif1heic") + box(b"meta", b"\0" * 4 + box(b"iprp", associations))
    assert read_error(data) == "broken HEIF or AVIF: a header block of 70,000 bytes"
