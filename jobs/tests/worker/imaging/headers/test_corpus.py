"""The header reader against Pillow and pillow-heif on the public image suites in corpus/ (its
README.md and MANIFEST.csv say where each file comes from): every file fed whole, byte by byte and
in 4 KB pieces, the answer compared with what Pillow says of the same bytes at open."""

import csv
import io
import warnings
from pathlib import Path
from typing import NamedTuple

import pillow_heif
import pytest
from PIL import Image

from jobs.worker.imaging.headers import MEASURED_FORMATS, HeaderReader, ImageError

pillow_heif.register_heif_opener()

CORPUS = Path(__file__).parent / "corpus"
MANIFEST = CORPUS / "MANIFEST.csv"
ORIENTATION = 0x0112
PIECES = (None, 1, 4096)  # whole, byte by byte, 4 KB


class Expectation(NamedTuple):
    kind: str  # "agrees", "measured" (Pillow refuses, the reader measures), "other image", "not named"
    reason: str


def manifest() -> dict[str, Expectation]:
    with MANIFEST.open(newline="") as lines:
        return {row["file"]: Expectation(row["expectation"], row["reason"]) for row in csv.DictReader(lines)}


EXPECTATIONS = manifest()


class Pillow(NamedTuple):
    """What Pillow (and pillow-heif) say of the bytes at open: the format and the size as shown, or
    why they refuse them."""

    format: str | None
    size: tuple[int, int] | None
    refusal: BaseException | None


def pillow_opens(data: bytes) -> Pillow:
    """Pillow's TIFF reader turns the size by the orientation itself, and pillow-heif by the HEIF
    container's rotation; for the other formats the EXIF orientation tells (as exif_transpose)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                turned = image.format != "TIFF" and _orientation(image) in (5, 6, 7, 8)
                return Pillow(image.format, (height, width) if turned else (width, height), None)
    except Exception as refusal:  # any refusal at open counts; its type is kept
        return Pillow(None, None, refusal)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation known at open. (For a PNG without an eXIf chunk before its image data,
    Pillow's getexif() decodes the whole image to look for one after it.)"""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    return image.getexif().get(ORIENTATION, 1)


def reader_says(data: bytes, piece: int | None) -> tuple[int, int] | str:
    """The size, or the error's message; the pixel cap is Pillow's own decompression-bomb limit."""
    reader = HeaderReader(MEASURED_FORMATS, 2 * Image.MAX_IMAGE_PIXELS)
    step = piece or max(len(data), 1)
    try:
        for start in range(0, len(data), step):
            reader.feed(data[start : start + step])
        return reader.close()
    except ImageError as error:
        return str(error)


def test_the_manifest_lists_every_file_of_the_corpus():
    files = {str(path.relative_to(CORPUS)) for path in CORPUS.rglob("*") if path.is_file()}
    assert files - {"MANIFEST.csv", "README.md"} == set(EXPECTATIONS)


def test_the_corpus_stays_small():
    assert sum(path.stat().st_size for path in CORPUS.rglob("*") if path.is_file()) < 20 * 1024 * 1024


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_the_reader_says_what_pillow_says(name):
    data = (CORPUS / name).read_bytes()
    pillow = pillow_opens(data)
    answers = [reader_says(data, piece) for piece in PIECES]
    assert answers[1:] == answers[:1] * (len(PIECES) - 1), "the same answer however the bytes arrive"
    answer = answers[0]
    expectation = EXPECTATIONS[name]
    if expectation.kind == "measured":  # a deliberate difference: Pillow's refusal is about pixel data
        assert pillow.refusal is not None, expectation.reason
        assert isinstance(answer, tuple), expectation.reason
    elif expectation.kind == "other image":
        assert isinstance(answer, tuple), expectation.reason
        assert pillow.size not in (None, answer), expectation.reason
    elif expectation.kind == "not named":  # a format Pillow tells from its header alone
        assert pillow.format not in (None, *MEASURED_FORMATS), expectation.reason
        assert str(answer).startswith("not an image ("), expectation.reason
    elif pillow.refusal is not None:
        assert isinstance(answer, str), f"Pillow refuses it: {pillow.refusal!r}"
    elif pillow.format in MEASURED_FORMATS:
        assert answer == pillow.size
    else:
        assert str(answer).startswith(f"unsupported image format {pillow.format} (")


@pytest.mark.parametrize("name", sorted(name for name in EXPECTATIONS if name.endswith(".svg")))
def test_an_svg_is_named(name):
    """Pillow does not read SVG; the reader names it from its start (an XML declaration, comments
    and a doctype may come before the root element)."""
    answer = reader_says((CORPUS / name).read_bytes(), None)
    assert str(answer).startswith("unsupported image format SVG (")
