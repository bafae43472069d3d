"""An image's size as displayed, read from its bytes as they arrive: no pixel is decoded, and only a
few kilobytes are copied whatever metadata comes before the size.

Each format's reader is a generator that asks for byte ranges by absolute offset, always forward
(`data = yield offset, length`); HeaderReader feeds it from the download and drops every byte it
was not asked for. Pillow and pillow-heif read a header only from the whole file, or the whole
prefix up to it: for a HEIF, or a JPEG with 400 KB of ICC and XMP blocks, that is the file in
memory for every image in flight.

Width and height are as displayed: EXIF orientation 5-8 (JPEG, MPO, PNG, WEBP, TIFF) swaps them,
and so does a HEIF or AVIF container's rotation (irot), which those formats use instead of EXIF.
"""

import collections
import contextlib
import itertools
import re
import struct
from collections.abc import Collection, Generator
from dataclasses import dataclass
from io import BytesIO
from typing import Any, NoReturn, TypeVar

from PIL import Image

MEASURED_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF")
MAX_BLOCK = 64 * 1024  # bytes: the largest header structure read whole (a JPEG segment's maximum)
SNIFF_BYTES = 4096  # the first bytes kept to name a format that is not measured here
SIGNATURE_BYTES = 12  # enough to tell the measured formats apart

ORIENTATION, IMAGE_WIDTH, IMAGE_LENGTH = 0x0112, 0x0100, 0x0101  # TIFF/EXIF tags
JPEG_FRAME_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD9)}  # TEM, RST0-7, SOI: no length field
AVIF_BRANDS = {b"avif", b"avis"}
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"mif2"}


class ImageError(Exception):
    """Why one image could not be measured; the message is what the client sees."""


class _NotThisFormat(Exception):
    """The signature matched, the structure behind it did not: name the format another way."""


@dataclass(frozen=True)
class Size:
    format: str
    width: int
    height: int


# A parse step: yields (offset, length), is sent those bytes, returns its T. A format's reader is a
# Parse[Size].
T = TypeVar("T")
Parse = Generator[tuple[int, int], bytes, T]
Reader = Parse[Size]


class HeaderReader:
    """Feed it an image's bytes as they arrive; `size` is (width, height) as soon as it is known.

    An error (no image, a format outside `formats`, a broken or cut header, too many pixels) is
    raised by feed() as soon as it is certain, else by close() at the end of the bytes.
    """

    def __init__(self, formats: Collection[str], max_pixels: int):
        self.formats, self.max_pixels = formats, max_pixels
        self.size: tuple[int, int] | None = None
        self._name = "image"  # the format as far as it is known, for error messages
        self._reader: Reader | None = None
        self._wanted: tuple[int, int] | None = None  # the (offset, length) the reader waits for
        self._head = bytearray()  # the first SNIFF_BYTES, to name a format no reader knows
        # The pieces fed and not yet passed, kept as they came: the first often holds most of the
        # file, and only the few bytes the reader asks for are copied out of it.
        self._pieces: collections.deque[bytes] = collections.deque()
        self._pieces_start = 0  # the offset of _pieces[0][0] in the file
        self._pieces_length = 0

    def feed(self, data: bytes) -> None:
        if self.size is not None:
            return
        if len(self._head) < SNIFF_BYTES:
            self._head += data[: SNIFF_BYTES - len(self._head)]
        self._pieces.append(data)
        self._pieces_length += len(data)
        if self._reader is not None or self._start(at_end=False):
            self._advance()

    def close(self) -> tuple[int, int]:
        """The size, at the end of the bytes."""
        if self.size is None and self._reader is None and self._start(at_end=True):
            self._advance()
        if self.size is None:
            raise ImageError(f"truncated {self._name}: the file ends before its size")
        return self.size

    def _start(self, at_end: bool) -> bool:
        """Pick the reader from the signature; False while more bytes are needed to know."""
        head = bytes(self._head)
        if len(head) < SIGNATURE_BYTES and not at_end:
            return False
        found = _reader_for(head)
        if found is None:
            if len(head) < SNIFF_BYTES and not at_end:
                return False
            self._refuse_unknown()
        self._name, self._reader = found
        self._wanted = next(self._reader)
        return True

    def _advance(self) -> None:
        """Send the reader the bytes it waits for, as long as they are here; drop the ones before."""
        try:
            while self._wanted is not None:
                offset, length = self._wanted
                if length > MAX_BLOCK:
                    raise ImageError(f"broken {self._name}: a header block of {length:,} bytes")
                if offset < self._pieces_start:
                    raise ImageError(f"broken {self._name}: its header points backwards")
                while self._pieces and self._pieces_start + len(self._pieces[0]) <= offset:
                    dropped = self._pieces.popleft()
                    self._pieces_start += len(dropped)
                    self._pieces_length -= len(dropped)
                skip = offset - self._pieces_start
                if self._pieces_length - skip < length:
                    return
                assert self._reader is not None, "the reader of the format found"
                self._wanted = self._reader.send(self._take(skip, length))
        except StopIteration as finished:
            self._finish(finished.value)
        except _NotThisFormat:
            self._refuse_unknown()
        except (struct.error, IndexError):
            raise ImageError(f"broken {self._name}: a header shorter than its fields") from None

    def _take(self, skip: int, length: int) -> bytes:
        """`length` bytes from `skip` bytes into the pieces (which hold them)."""
        first = self._pieces[0]
        if skip + length <= len(first):
            return first[skip : skip + length]
        taken = bytearray(memoryview(first)[skip:])
        for piece in itertools.islice(self._pieces, 1, None):
            if len(taken) >= length:
                break
            taken += memoryview(piece)[: length - len(taken)]
        return bytes(taken)

    def _finish(self, size: Size) -> None:
        self._reader = self._wanted = None
        self._pieces.clear()
        self._head = bytearray()
        self._refuse_unless_accepted(size.format)
        if not size.width or not size.height:
            raise ImageError(f"broken {size.format}: a size of {size.width}x{size.height}")
        if size.width * size.height > self.max_pixels:
            raise ImageError(f"too many pixels: {size.width}x{size.height} (over {self.max_pixels:,})")
        self.size = (size.width, size.height)

    def _accepted(self) -> str:
        return ", ".join(self.formats)

    def _refuse_unless_accepted(self, image_format: str) -> None:
        if image_format not in self.formats:
            raise ImageError(f"unsupported image format {image_format} (accepted: {self._accepted()})")

    def _refuse_unknown(self) -> NoReturn:
        other = _other_format(bytes(self._head))
        if other is not None:
            raise ImageError(f"unsupported image format {other} (accepted: {self._accepted()})")
        raise ImageError(f"not an image (accepted: {self._accepted()})")


def _reader_for(head: bytes) -> tuple[str, Reader] | None:
    """The reader of a measured format whose signature starts `head`, with the format's name."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG", _jpeg()  # or MPO: the reader tells
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", _png()
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF", _gif()
    if head.startswith(b"BM"):
        return "BMP", _bmp()
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP", _webp()
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF", _tiff()
    if head[4:8] == b"ftyp":
        return "HEIF or AVIF", _isobmff()  # the brands tell which
    return None


SVG_START = re.compile(
    rb"\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*(<!doctype svg[^>]*>\s*)?<svg[\s>]", re.IGNORECASE | re.DOTALL
)


def _other_format(head: bytes) -> str | None:
    """The name of a format not measured here (one Pillow knows, or SVG); None for bytes that are no
    image. A format whose header Pillow reads wins over one that only has a matching signature
    (a TGA starts like a CUR)."""
    Image.init()
    signed = []
    for name, (_factory, accept) in Image.OPEN.items():
        with contextlib.suppress(Exception):  # some checks assume 16 bytes
            if accept is not None and name not in MEASURED_FORMATS and accept(head[:16]):
                signed.append(name)
    for name in [*signed, "TGA"]:  # TGA has no signature: Pillow reads its header to tell
        # Pillow raises all kinds of errors for a header it cannot read.
        with contextlib.suppress(Exception), Image.open(BytesIO(head), formats=[name]) as image:
            return image.format
    if signed:
        return signed[0]
    return "SVG" if SVG_START.match(head) else None


def _displayed(image_format: str, width: int, height: int, orientation: int) -> Size:
    """EXIF orientations 5-8 turn the image a quarter: its displayed width is its stored height."""
    return Size(image_format, height, width) if orientation in (5, 6, 7, 8) else Size(image_format, width, height)


def _ifd0_values(base: int, end: int | None, tags: Collection[int]) -> Parse[dict[int, int]]:
    """The integer values of `tags` in the first IFD of the TIFF structure at `base` (a TIFF file, or
    an EXIF block ending at `end`). Tags whose entry lies outside the block are left out."""
    header = yield base, 8
    order = {b"II": "<", b"MM": ">"}.get(header[:2])
    if order is None:
        return {}
    (version,) = struct.unpack(order + "H", header[2:4])
    if version == 42:
        (ifd,) = struct.unpack(order + "I", header[4:8])
        count_format, entry_size, value_at = "H", 12, 8
    elif version == 43:  # BigTIFF: 8-byte offsets and counts
        (ifd,) = struct.unpack(order + "Q", (yield base + 8, 8))
        count_format, entry_size, value_at = "Q", 20, 12
    else:
        return {}
    count_size = struct.calcsize(count_format)
    if ifd < 8 or (end is not None and base + ifd + count_size > end):
        return {}
    (count,) = struct.unpack(order + count_format, (yield base + ifd, count_size))
    if end is not None and base + ifd + count_size + count * entry_size > end:
        return {}
    entries = yield base + ifd + count_size, count * entry_size
    values = {}
    value_formats = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8: inline, after tag, type and count
    for start in range(0, len(entries), entry_size):
        tag, kind = struct.unpack_from(order + "HH", entries, start)
        if tag in tags and kind in value_formats:
            (values[tag],) = struct.unpack_from(order + value_formats[kind], entries, start + value_at)
    return values


def _exif_orientation(start: int, end: int) -> Parse[int]:
    """The orientation in an EXIF block (with or without its `Exif\\0\\0` prefix); 1 if none."""
    if end - start < 14:
        return 1
    prefix = yield start, 6
    base = start + 6 if prefix == b"Exif\0\0" else start
    orientation = (yield from _ifd0_values(base, end, (ORIENTATION,))).get(ORIENTATION, 1)
    return orientation if 1 <= orientation <= 8 else 1


def _jpeg() -> Reader:
    offset, orientation, image_format = 2, 1, "JPEG"
    while True:
        marker = yield offset, 2
        if marker[0] != 0xFF:
            raise ImageError("broken JPEG: no marker where one was expected")
        kind = marker[1]
        if kind == 0xFF:  # a fill byte before the marker
            offset += 1
            continue
        if kind in JPEG_STANDALONE_MARKERS:
            offset += 2
            continue
        if kind in (0xD9, 0xDA):  # end of image, start of scan
            raise ImageError("broken JPEG: no frame header before the image data")
        (length,) = struct.unpack(">H", (yield offset + 2, 2))
        if length < 2:
            raise ImageError("broken JPEG: a segment shorter than its length field")
        data, end = offset + 4, offset + 2 + length
        if kind in JPEG_FRAME_MARKERS:
            _precision, height, width = struct.unpack(">BHH", (yield data, 5))
            if not width or not height:
                raise ImageError(f"broken JPEG: a frame of {width}x{height}")
            return _displayed(image_format, width, height, orientation)
        if kind == 0xE1 and length >= 8 and (yield data, 6) == b"Exif\0\0":
            orientation = yield from _exif_orientation(data, end)
        elif kind == 0xE2 and length >= 6 and (yield data, 4) == b"MPF\0":
            image_format = "MPO"  # a Multi-Picture file: its first picture is the one displayed
        offset = end


def _png() -> Reader:
    header = yield 8, 25  # the IHDR chunk: length, type, 13 bytes of data, CRC
    if header[4:8] != b"IHDR":
        raise ImageError("broken PNG: it does not start with its header chunk")
    width, height = struct.unpack(">II", header[8:16])
    offset, orientation = 33, 1
    while True:  # an eXIf chunk comes before the image data (PNG, third edition)
        length, kind = struct.unpack(">I4s", (yield offset, 8))
        if kind in (b"IDAT", b"IEND"):
            return _displayed("PNG", width, height, orientation)
        if kind == b"eXIf":
            orientation = yield from _exif_orientation(offset + 8, offset + 8 + length)
        offset += 12 + length


def _gif() -> Reader:
    width, height = struct.unpack("<HH", (yield 6, 4))  # the logical screen
    return Size("GIF", width, height)


def _bmp() -> Reader:
    header = yield 14, 12
    (header_size,) = struct.unpack("<I", header[:4])
    if header_size == 12:  # OS/2 1.x
        width, height = struct.unpack("<HH", header[4:8])
    elif header_size in (16, 40, 52, 56, 64, 108, 124):
        width, height = struct.unpack("<ii", header[4:12])
    else:
        raise ImageError(f"broken BMP: an unknown header of {header_size} bytes")
    return Size("BMP", width, abs(height))  # a negative height is a top-down bitmap


def _webp() -> Reader:
    header = yield 12, 18  # the first chunk's header and the start of its data
    kind, data = header[:4], header[8:]
    if kind == b"VP8 ":
        if data[3:6] != b"\x9d\x01\x2a":
            raise ImageError("broken WEBP: no VP8 start code")
        width, height = struct.unpack("<HH", data[6:10])
        return Size("WEBP", width & 0x3FFF, height & 0x3FFF)
    if kind == b"VP8L":
        (bits,) = struct.unpack("<I", data[1:5])
        return Size("WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind != b"VP8X":
        raise ImageError(f"broken WEBP: an unknown first chunk {kind.decode('latin-1')!r}")
    width, height = 1 + int.from_bytes(data[4:7], "little"), 1 + int.from_bytes(data[7:10], "little")
    if not data[0] & 0x08:  # the extended header says there is no EXIF chunk
        return Size("WEBP", width, height)
    offset = 30
    while True:  # the EXIF chunk comes after the image data
        kind, length = struct.unpack("<4sI", (yield offset, 8))
        if kind == b"EXIF":
            orientation = yield from _exif_orientation(offset + 8, offset + 8 + length)
            return _displayed("WEBP", width, height, orientation)
        offset += 8 + length + (length & 1)  # chunks are padded to an even size


def _tiff() -> Reader:
    values = yield from _ifd0_values(0, None, (IMAGE_WIDTH, IMAGE_LENGTH, ORIENTATION))
    if IMAGE_WIDTH not in values or IMAGE_LENGTH not in values:
        raise ImageError("broken TIFF: its first page has no width or height")
    return _displayed("TIFF", values[IMAGE_WIDTH], values[IMAGE_LENGTH], values.get(ORIENTATION, 1))


def _box(offset: int, end: int | None = None) -> Parse[tuple[int, bytes, int]]:
    """The ISO base media box at `offset`: (its size, its type, the size of its header). A size of
    0 runs to `end` (the end of the enclosing box), or to the end of the file when that is None."""
    size, kind = struct.unpack(">I4s", (yield offset, 8))
    header = 8
    if size == 1:
        (size,) = struct.unpack(">Q", (yield offset + 8, 8))
        header = 16
    elif size == 0 and end is not None:
        size = end - offset
    if size and size < header:
        raise ImageError(f"broken image: a box of {size} bytes")
    return size, kind, header


def _isobmff() -> Reader:
    """HEIF (HEIC) and AVIF: the primary image's size, cropped (clap) and rotated (irot) as shown."""
    size, _kind, header = yield from _box(0)
    listed = yield header, min(size - header, 256)
    brands = {listed[i : i + 4] for i in range(0, len(listed), 4)} - {listed[4:8]}  # less the minor version
    if brands & AVIF_BRANDS:
        image_format = "AVIF"
    elif brands & HEIF_BRANDS:
        image_format = "HEIF"
    else:
        raise _NotThisFormat
    offset = size
    while True:  # the meta box is usually next; an mdat before it is skipped, never read
        size, kind, header = yield from _box(offset)
        if size == 0:  # the last box, running to the end of the file
            raise ImageError(f"broken {image_format}: no meta box")
        if kind == b"meta":
            width, height = yield from _primary_image_size(image_format, offset + header + 4, offset + size)
            return Size(image_format, width, height)
        offset += size


NO_PROPERTY: tuple[bytes, Any] = (b"", None)  # an association to a property that is not there


def _primary_image_size(image_format: str, start: int, end: int) -> Parse[tuple[int, int]]:
    """Walk a HEIF meta box: the primary item (pitm), the item properties (ipco) and which belong to
    which item (ipma). Only ispe, clap and irot are read; every other box is skipped."""
    primary = 1
    properties: list[tuple[bytes, Any]] = []
    associations: dict[int, list[int]] = {}
    offset = start
    while offset < end:
        size, kind, header = yield from _box(offset, end)
        body = offset + header
        if kind == b"pitm":
            version = (yield body, 1)[0]
            primary = int.from_bytes((yield body + 4, 2 if version == 0 else 4), "big")
        elif kind == b"iprp":
            properties, associations = yield from _item_properties(body, offset + size)
        offset += size
    width = height = None
    for index in associations.get(primary, ()):
        kind, value = properties[index - 1] if 0 < index <= len(properties) else NO_PROPERTY
        if kind == b"ispe":
            width, height = value
        elif kind == b"clap" and width is not None:
            width_n, width_d, height_n, height_d = value
            if width_d > 0 and height_d > 0 and width_n > 0 and height_n > 0:
                width, height = round(width_n / width_d), round(height_n / height_d)
        elif kind == b"irot" and width is not None and value % 2:
            width, height = height, width
    if width is None or height is None:
        raise ImageError(f"broken {image_format}: no size (ispe) for its primary image")
    return width, height


def _item_properties(start: int, end: int) -> Parse[tuple[list, dict]]:
    """The properties of an iprp box, in order, and the property indexes (1-based) of each item."""
    properties, associations = [], {}
    offset = start
    while offset < end:
        size, kind, header = yield from _box(offset, end)
        if kind == b"ipco":
            inner = offset + header
            while inner < offset + size:
                inner_size, inner_kind, inner_header = yield from _box(inner, offset + size)
                properties.append((inner_kind, (yield from _property_value(inner_kind, inner + inner_header))))
                inner += inner_size
        elif kind == b"ipma":
            associations = _associations((yield offset + header, size - header))
        offset += size
    return properties, associations


def _property_value(kind: bytes, body: int) -> Parse[object]:
    if kind == b"ispe":  # version and flags, then width and height
        return struct.unpack(">II", (yield body + 4, 8))
    if kind == b"clap":  # width, height, then the offsets, each as numerator and denominator
        return struct.unpack(">IIII", (yield body, 16))
    if kind == b"irot":  # anticlockwise quarter turns
        return (yield body, 1)[0] & 3
    return None


def _associations(data: bytes) -> dict[int, list[int]]:
    """An ipma box's body: item id -> property indexes (the top bit of each says "essential")."""
    version, flags = data[0], int.from_bytes(data[1:4], "big")
    item_format = ">H" if version < 1 else ">I"
    index_format, index_mask = (">H", 0x7FFF) if flags & 1 else (">B", 0x7F)
    position = 4

    def take(value_format: str) -> int:
        nonlocal position
        (value,) = struct.unpack_from(value_format, data, position)
        position += struct.calcsize(value_format)
        return value

    associations = {}
    for _ in range(take(">I")):
        item = take(item_format)
        associations[item] = [take(index_format) & index_mask for _ in range(take(">B"))]
    return associations
