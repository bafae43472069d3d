"""The TIFF structure, as a TIFF file and as the EXIF block of a JPEG, PNG or WEBP: the values of a
few tags of its first directory (IFD0), read as Pillow reads them."""

import struct
from collections.abc import Collection
from typing import NamedTuple

from jobs.worker.imaging.headers.parse import SCAN_BYTES, ImageError, Parse, arrived

ORIENTATION, IMAGE_WIDTH, IMAGE_LENGTH = 0x0112, 0x0100, 0x0101
# The field types Pillow reads, and the struct format of those whose value is an integer: a value
# of another (a rational, a string) is None here, and no size.
KNOWN_TYPES = {*range(1, 14), 16, 17, 18}
INTEGER_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}
MAX_ENTRIES = 65535  # in a directory: as many as a classic TIFF's count can say


class Layout(NamedTuple):
    """A TIFF structure's, as its first 4 bytes say: byte order, the format of an offset (and of an
    entry's value count), that of a directory's entry count and its size, and the size of an entry
    (tag, type, value count, value) and where its value starts."""

    order: str
    offset: str
    entries: str
    entries_size: int
    entry_size: int
    value_at: int


CLASSIC, BIG = ("I", "H", 2, 12, 8), ("Q", "Q", 8, 20, 12)  # BigTIFF: 8-byte offsets and counts
LAYOUTS = {
    b"II*\0": Layout("<", *CLASSIC),
    b"MM\0*": Layout(">", *CLASSIC),
    b"II+\0": Layout("<", *BIG),
    b"MM\0+": Layout(">", *BIG),
}


def ifd0_values(base: int, end: int | None, tags: Collection[int]) -> Parse[dict[int, int | None]]:
    """The values of `tags` in the first IFD of the TIFF structure at `base` (a TIFF file, or an
    EXIF block ending at `end`). As in Pillow: a tag's first entry of a known type and a count of
    at least one wins, and a directory cut by the end of the file or block keeps the entries
    before the cut."""
    header = yield base, 8
    layout = LAYOUTS.get(header[:4])
    if layout is None:
        return {}
    if layout.offset == "I":
        (ifd,) = struct.unpack(layout.order + "I", header[4:8])
    else:
        (ifd,) = struct.unpack(layout.order + "Q", (yield base + 8, 8))
    offset = base + ifd + layout.entries_size
    if ifd < 8 or (end is not None and offset > end):
        return {}
    (count,) = struct.unpack(layout.order + layout.entries, (yield base + ifd, layout.entries_size))
    stop = offset + count * layout.entry_size
    values: dict[int, int | None] = {}
    if end is not None:  # an EXIF block, in memory: its directory as far as the block goes
        if min(stop, end) > offset:
            _read_entries(values, layout, (yield offset, min(stop, end) - offset), tags)
        return values
    if count > MAX_ENTRIES:  # only a BigTIFF's count can say so: walking them would be the cost
        raise ImageError(f"broken TIFF: a directory of {count:,} entries")
    partial = b""  # the start of an entry cut by the end of what had arrived
    while offset < stop and len(values) < len(tags):  # a TIFF file's, as it arrives, whatever its length
        data = partial + (yield from arrived(offset, min(stop - offset, SCAN_BYTES)))
        if len(data) == len(partial):  # the end of the file
            break
        offset += len(data) - len(partial)
        partial = data[_read_entries(values, layout, data, tags) :]
    return values


def _read_entries(values: dict[int, int | None], layout: Layout, data: bytes, tags: Collection[int]) -> int:
    """Add the values of `tags` first met in the whole entries of `data`; the bytes those take."""
    whole = len(data) - len(data) % layout.entry_size
    tag_and_type, value_count = layout.order + "HH", layout.order + layout.offset
    for start in range(0, whole, layout.entry_size):
        tag, kind = struct.unpack_from(tag_and_type, data, start)
        known = tag in tags and tag not in values and kind in KNOWN_TYPES
        if known and struct.unpack_from(value_count, data, start + 4)[0]:  # a count of 0 holds nothing
            value_format = INTEGER_TYPES.get(kind)
            value_at = start + layout.value_at
            values[tag] = struct.unpack_from(layout.order + value_format, data, value_at)[0] if value_format else None
    return whole


def exif_orientation(start: int, end: int) -> Parse[int]:
    """The orientation in an EXIF block (with or without its `Exif\\0\\0` prefix); 1 if none."""
    if end - start < 14:
        return 1
    prefix = yield start, 6
    base = start + 6 if prefix == b"Exif\0\0" else start
    orientation = (yield from ifd0_values(base, end, (ORIENTATION,))).get(ORIENTATION)
    return orientation if orientation is not None and 1 <= orientation <= 8 else 1
