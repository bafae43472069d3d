"""JPEG and MPO: the frame header's size, turned by the EXIF orientation before it."""

import struct

from jobs.worker.imaging.headers.exif import exif_orientation
from jobs.worker.imaging.headers.parse import SCAN_BYTES, TRUNCATED, ImageError, Parse, Reader, arrived, displayed

FRAME_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
STANDALONE_MARKERS = set(range(0xD0, 0xD9))  # RST0-7, SOI: no length field
# The markers with a length field: the codes from 0xC0 up but those above, EOI (0xD9) and SOS
# (0xDA); the codes below 0xC0 are reserved, no marker Pillow knows.
SEGMENT_MARKERS = set(range(0xC0, 0xFF)) - STANDALONE_MARKERS - {0xD9, 0xDA}


def read() -> Reader:
    offset, orientation, image_format = 2, 1, "JPEG"
    while True:
        marker = yield offset, 2
        if marker[0] != 0xFF:  # stray bytes between segments: skipped, as libjpeg and Pillow do
            offset = yield from _next_fill_byte(offset)
            continue
        kind = marker[1]
        if kind not in SEGMENT_MARKERS:
            if kind == 0xFF:  # a fill byte before the marker
                offset += 1
            elif kind == 0x00 or kind in STANDALONE_MARKERS:  # 0xFF00 is an escaped 0xFF: stray data
                offset += 2
            elif kind in (0xD9, 0xDA):  # end of image, start of scan
                raise ImageError("broken JPEG: no frame header before the image data")
            else:
                raise ImageError("broken JPEG: no marker where one was expected")
            continue
        (length,) = struct.unpack(">H", (yield offset + 2, 2))
        if length < 2:
            raise ImageError("broken JPEG: a segment shorter than its length field")
        data, end = offset + 4, offset + 2 + length
        if kind in FRAME_MARKERS:
            _precision, height, width = struct.unpack(">BHH", (yield data, 5))
            if not width or not height:
                raise ImageError(f"broken JPEG: a frame of {width}x{height}")
            return displayed(image_format, width, height, orientation)
        if kind == 0xE1 and length >= 8 and (yield data, 6) == b"Exif\0\0":
            orientation = yield from exif_orientation(data, end)
        elif kind == 0xE2 and length >= 6 and (yield data, 4) == b"MPF\0":
            image_format = "MPO"  # a Multi-Picture file: its first picture is the one displayed
        offset = end


def _next_fill_byte(offset: int) -> Parse[int]:
    """The offset of the next 0xFF at or after `offset`."""
    while True:
        data = yield from arrived(offset, SCAN_BYTES)
        if not data:
            raise ImageError(TRUNCATED.format("JPEG"))
        found = data.find(0xFF)
        if found >= 0:
            return offset + found
        offset += len(data)
