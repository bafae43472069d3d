"""HEIF (HEIC) and AVIF, in their ISO base media boxes: the primary image's size, cropped (clap) and
rotated (irot) as shown."""

import struct
from typing import Any

from jobs.worker.imaging.headers.parse import ImageError, NotThisFormat, Parse, Reader, Size

AVIF_BRANDS = {b"avif", b"avis"}
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"mif2"}
NO_PROPERTY: tuple[bytes, Any] = (b"", None)  # an association to a property that is not there


def read() -> Reader:
    size, _kind, header = yield from _box(0)
    listed = yield header, min(size - header, 256)
    brands = {listed[i : i + 4] for i in range(0, len(listed), 4)} - {listed[4:8]}  # less the minor version
    if brands & AVIF_BRANDS:
        image_format = "AVIF"
    elif brands & HEIF_BRANDS:
        image_format = "HEIF"
    else:
        raise NotThisFormat
    offset = size
    while True:  # the meta box is usually next; an mdat before it is skipped, never read
        size, kind, header = yield from _box(offset)
        if size == 0:  # the last box, running to the end of the file
            raise ImageError(f"broken {image_format}: no meta box")
        if kind == b"meta":
            width, height = yield from _primary_image_size(image_format, offset + header + 4, offset + size)
            return Size(image_format, width, height)
        offset += size


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


def _primary_image_size(image_format: str, start: int, end: int) -> Parse[tuple[int, int]]:
    """Walk a HEIF meta box: the primary item (pitm), the item properties (ipco) and which belong to
    which item (ipma). Only ispe, clap and irot are read; every other box is skipped. The crop and
    the rotation apply in the order they are listed, wherever the ispe is (as libheif does)."""
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
    transforms = []  # the crop and the rotation, in the order listed
    for index in associations.get(primary, ()):
        kind, value = properties[index - 1] if 0 < index <= len(properties) else NO_PROPERTY
        if kind == b"ispe" and width is None:
            width, height = value
        elif kind in (b"clap", b"irot"):
            transforms.append((kind, value))
    if width is None or height is None:
        raise ImageError(f"broken {image_format}: no size (ispe) for its primary image")
    for kind, value in transforms:
        if kind == b"clap":
            width_n, width_d, height_n, height_d = value
            if width_d > 0 and height_d > 0 and width_n > 0 and height_n > 0:
                width, height = round(width_n / width_d), round(height_n / height_d)
        elif value % 2:
            width, height = height, width
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
