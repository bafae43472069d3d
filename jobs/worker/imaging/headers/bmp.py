"""BMP: the size in its info header, whose depth and palette must be ones a bitmap can have."""

import struct

from jobs.worker.imaging.headers.parse import ImageError, Reader, Size, at_least

DEPTHS = {1, 2, 4, 8, 16, 24, 32}  # bits per pixel; 0 only for an embedded JPEG or PNG
EMBEDDED = {4, 5}  # BI_JPEG, BI_PNG
MAX_COLOURS = 65536  # Pillow's bound on a palette
INFO_HEADERS = {16, 40, 52, 56, 64, 108, 124}  # bytes: OS/2 2.x and the Windows versions
FIELDS_BYTES = {12: 12, 16: 16}  # the fields read of the short headers; 36 of the others


def read() -> Reader:
    # The info header's size, then up to the colours used: 4 to 36 bytes as the size says.
    fields = yield from at_least(14, 4, 36)
    (header_size,) = struct.unpack_from("<I", fields)
    wanted = FIELDS_BYTES.get(header_size, 36)
    if len(fields) < wanted:
        fields += yield 14 + len(fields), wanted - len(fields)
    if header_size == 12:  # OS/2 1.x: 16-bit sizes
        width, height, _planes, depth = struct.unpack_from("<HHHH", fields, 4)
        compression = colours = 0
    elif header_size in INFO_HEADERS:
        width, height, _planes, depth = struct.unpack_from("<iiHH", fields, 4)
        compression, colours = struct.unpack_from("<I12xI", fields, 16) if header_size > 16 else (0, 0)
    else:
        raise ImageError(f"broken BMP: an unknown header of {header_size} bytes")
    if depth not in DEPTHS and not (depth == 0 and compression in EMBEDDED):
        raise ImageError(f"broken BMP: a depth of {depth} bits per pixel")
    if depth <= 8 and colours > MAX_COLOURS:
        raise ImageError(f"broken BMP: a palette of {colours:,} colours")
    return Size("BMP", width, abs(height))  # a negative height is a top-down bitmap
