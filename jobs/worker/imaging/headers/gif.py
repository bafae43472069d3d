"""GIF: the logical screen, widened to the first frame where that frame reaches past it (as Pillow
and browsers show it)."""

import struct

from jobs.worker.imaging.headers.parse import SCAN_BYTES, TRUNCATED, ImageError, Reader, Size, arrived

IMAGE, EXTENSION, TRAILER = 0x2C, 0x21, 0x3B


def read() -> Reader:
    width, height, flags = struct.unpack("<HHB", (yield 6, 5))
    offset = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global colour table
    in_sub_blocks = False  # within an extension's sub-blocks: a length byte and as many bytes each
    while True:  # the blocks before the first frame, walked in what has arrived
        data = yield from arrived(offset, SCAN_BYTES)
        if not data:
            raise ImageError(TRUNCATED.format("GIF"))
        position = 0
        while position < len(data):
            if in_sub_blocks:
                length = data[position]
                position += 1 + length
                in_sub_blocks = length != 0  # a length of 0 ends the extension
                continue
            introducer = data[position]
            if introducer == IMAGE:
                descriptor = data[position + 1 : position + 9]
                if len(descriptor) < 8:
                    descriptor = yield offset + position + 1, 8
                left, top, frame_width, frame_height = struct.unpack("<HHHH", descriptor)
                return Size("GIF", max(width, left + frame_width), max(height, top + frame_height))
            if introducer == TRAILER:
                raise ImageError("broken GIF: it ends before its first frame")
            if introducer == EXTENSION:
                position += 2  # the introducer and the extension's label
                in_sub_blocks = True
            else:  # a stray byte: skipped, as Pillow does
                position += 1
        offset += position
