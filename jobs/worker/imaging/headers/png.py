"""PNG: the header chunk's size, checked as Pillow checks it, turned by an eXIf chunk before the
image data (PNG, third edition)."""

import struct
import zlib

from jobs.worker.imaging.headers.exif import exif_orientation
from jobs.worker.imaging.headers.parse import ImageError, Reader, displayed

# The bit depths each colour type allows (the PNG specification's table, and Pillow's).
BIT_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}


def read() -> Reader:
    header = yield 8, 25  # the IHDR chunk: length, type, 13 bytes of data, CRC
    if header[4:8] != b"IHDR":
        raise ImageError("broken PNG: it does not start with its header chunk")
    if zlib.crc32(header[4:21]) != struct.unpack(">I", header[21:25])[0]:
        raise ImageError("broken PNG: its header chunk fails its checksum")
    width, height, depth, colour_type, _compression, filter_method = struct.unpack(">IIBBBB", header[8:20])
    if depth not in BIT_DEPTHS.get(colour_type, ()):
        raise ImageError(f"broken PNG: a bit depth of {depth} in colour type {colour_type}")
    if filter_method:
        raise ImageError(f"broken PNG: an unknown filter method {filter_method}")
    offset, orientation = 33, 1
    while True:
        length, kind = struct.unpack(">I4s", (yield offset, 8))
        if kind in (b"IDAT", b"IEND"):
            return displayed("PNG", width, height, orientation)
        if kind == b"eXIf":
            orientation = yield from exif_orientation(offset + 8, offset + 8 + length)
        offset += 12 + length
