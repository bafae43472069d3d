"""What every format's reader shares: the size it returns, the errors it raises, and how it asks
for bytes.

A format's reader is a generator that asks for byte ranges by absolute offset, always forward:
`data = yield offset, length` is sent exactly `length` bytes once they have arrived. A negative
length (see `arrived`) asks for whatever has arrived of the next `-length` bytes instead, and is
answered at the end of the file too: with what is left, or b"" past it.
"""

from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeVar

MAX_BLOCK = 64 * 1024  # bytes: the largest header structure read whole (a JPEG segment's maximum)
SCAN_BYTES = 4096  # the most a walk through what has arrived (stray bytes, sub-blocks) asks for at once
TRUNCATED = "truncated {}: the file ends before its size"


class ImageError(Exception):
    """Why one image could not be measured; the message is what the client sees."""


class NotThisFormat(Exception):
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


def arrived(offset: int, most: int) -> Parse[bytes]:
    """At least one and at most `most` bytes from `offset`, as many as have arrived; b"" once the
    file has ended before `offset`. For structures whose length the file may not hold."""
    return (yield offset, -most)


def at_least(offset: int, least: int, most: int) -> Parse[bytes]:
    """`least` bytes from `offset`, and up to `most` where they have arrived with them: one request
    in the common case (a download's first piece holds them all) for a structure whose length is
    known only once its start is read."""
    data = yield offset, -most  # as arrived() asks, one generator fewer
    if len(data) < least:
        data += yield offset + len(data), least - len(data)
    return data


def displayed(image_format: str, width: int, height: int, orientation: int) -> Size:
    """EXIF orientations 5-8 turn the image a quarter: its displayed width is its stored height."""
    return Size(image_format, height, width) if orientation in (5, 6, 7, 8) else Size(image_format, width, height)
