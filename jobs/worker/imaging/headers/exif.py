"""The TIFF structure, as a TIFF file and as the EXIF block of a JPEG, PNG or WEBP: the values of a
few tags of its first directory (IFD0), read as Pillow reads them."""

import struct
from collections.abc import Collection

from jobs.worker.imaging.headers.parse import MAX_BLOCK, Parse, arrived

ORIENTATION, IMAGE_WIDTH, IMAGE_LENGTH = 0x0112, 0x0100, 0x0101
# Field types whose value is an integer, by their struct format; Pillow reads every type up to 18
# but 14 and 15, and a field of any other of them holds a value that is no integer (None here).
INTEGER_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}
KNOWN_TYPES = {*range(1, 14), 16, 17, 18}


def ifd0_values(base: int, end: int | None, tags: Collection[int]) -> Parse[dict[int, int | None]]:
    """The values of `tags` in the first IFD of the TIFF structure at `base` (a TIFF file, or an
    EXIF block ending at `end`). As in Pillow: a tag's first entry of a known type and a count of
    at least one wins, and a directory cut by the end of the file or block keeps the entries
    before the cut."""
    header = yield base, 8
    order = {b"II": "<", b"MM": ">"}.get(header[:2])
    if order is None:
        return {}
    (version,) = struct.unpack(order + "H", header[2:4])
    if version == 42:
        (ifd,) = struct.unpack(order + "I", header[4:8])
        entry_format, entry_size, count_size = order + "HHI4s", 12, 2
    elif version == 43:  # BigTIFF: 8-byte offsets and counts
        (ifd,) = struct.unpack(order + "Q", (yield base + 8, 8))
        entry_format, entry_size, count_size = order + "HHQ8s", 20, 8
    else:
        return {}
    if ifd < 8 or (end is not None and base + ifd + count_size > end):
        return {}
    (count,) = struct.unpack(order + ("H" if count_size == 2 else "Q"), (yield base + ifd, count_size))
    offset = base + ifd + count_size
    stop = offset + count * entry_size if end is None else min(offset + count * entry_size, end)
    values: dict[int, int | None] = {}
    partial = b""  # the start of an entry cut by the end of what had arrived
    while offset < stop and len(values) < len(tags):
        data = partial + (yield from arrived(offset, min(stop - offset, MAX_BLOCK)))
        if len(data) == len(partial):  # the end of the file
            break
        offset += len(data) - len(partial)
        whole = len(data) - len(data) % entry_size
        for start in range(0, whole, entry_size):
            tag, kind, value_count, value = struct.unpack_from(entry_format, data, start)
            if tag in tags and tag not in values and kind in KNOWN_TYPES and value_count:
                value_format = INTEGER_TYPES.get(kind)
                values[tag] = struct.unpack_from(order + value_format, value)[0] if value_format else None
        partial = data[whole:]
    return values


def exif_orientation(start: int, end: int) -> Parse[int]:
    """The orientation in an EXIF block (with or without its `Exif\\0\\0` prefix); 1 if none."""
    if end - start < 14:
        return 1
    prefix = yield start, 6
    base = start + 6 if prefix == b"Exif\0\0" else start
    orientation = (yield from ifd0_values(base, end, (ORIENTATION,))).get(ORIENTATION)
    return orientation if orientation is not None and 1 <= orientation <= 8 else 1
