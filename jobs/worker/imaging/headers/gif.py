"""GIF: the logical screen, widened to the first frame where that frame reaches past it (as Pillow
and browsers show it)."""

import struct

from jobs.worker.imaging.headers.parse import ImageError, Reader, Size

IMAGE, EXTENSION, TRAILER = 0x2C, 0x21, 0x3B


def read() -> Reader:
    width, height, flags = struct.unpack("<HHB", (yield 6, 5))
    offset = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global colour table
    while True:
        introducer = (yield offset, 1)[0]
        if introducer == IMAGE:
            left, top, frame_width, frame_height = struct.unpack("<HHHH", (yield offset + 1, 8))
            return Size("GIF", max(width, left + frame_width), max(height, top + frame_height))
        if introducer == TRAILER:
            raise ImageError("broken GIF: it ends before its first frame")
        if introducer != EXTENSION:  # a stray byte: skipped, as Pillow does
            offset += 1
            continue
        offset += 2  # the introducer and the extension's label, then its sub-blocks
        while (length := (yield offset, 1)[0]) != 0:
            offset += 1 + length
        offset += 1
