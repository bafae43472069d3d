"""WEBP: the canvas of its first chunk (VP8, VP8L or VP8X), turned by an EXIF chunk after the image
data."""

import struct

from jobs.worker.imaging.headers.exif import exif_orientation
from jobs.worker.imaging.headers.parse import ImageError, Reader, Size, at_least, displayed


def read() -> Reader:
    # The first chunk's header and 10 bytes of its data (a lossless one's size takes 5 of them).
    header = yield from at_least(12, 13, 18)
    kind, data = header[:4], header[8:]
    if kind == b"VP8L":
        (bits,) = struct.unpack("<I", data[1:5])
        return Size("WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind not in (b"VP8 ", b"VP8X"):
        raise ImageError(f"broken WEBP: an unknown first chunk {kind.decode('latin-1')!r}")
    if len(data) < 10:
        data += yield 12 + len(header), 10 - len(data)
    if kind == b"VP8 ":
        if data[3:6] != b"\x9d\x01\x2a":
            raise ImageError("broken WEBP: no VP8 start code")
        width, height = struct.unpack("<HH", data[6:10])
        return Size("WEBP", width & 0x3FFF, height & 0x3FFF)
    width, height = 1 + int.from_bytes(data[4:7], "little"), 1 + int.from_bytes(data[7:10], "little")
    if not data[0] & 0x08:  # the extended header says there is no EXIF chunk
        return Size("WEBP", width, height)
    offset = 30
    while True:  # the EXIF chunk comes after the image data
        kind, length = struct.unpack("<4sI", (yield offset, 8))
        if kind == b"EXIF":
            orientation = yield from exif_orientation(offset + 8, offset + 8 + length)
            return displayed("WEBP", width, height, orientation)
        offset += 8 + length + (length & 1)  # chunks are padded to an even size
