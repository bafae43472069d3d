"""An image's size as displayed, read from its bytes as they arrive: no pixel is decoded, and only a
few kilobytes are copied whatever metadata comes before the size.

Each format's reader (a module beside this one) is a generator that asks for byte ranges by
absolute offset, always forward (jobs.worker.imaging.headers.parse); HeaderReader feeds it from
the download and drops every byte it was not asked for. Pillow and pillow-heif read a header only
from the whole file, or the whole prefix up to it: for a HEIF, or a JPEG with 400 KB of ICC and XMP
blocks, that is the file in memory for every image in flight.

Width and height are as displayed: EXIF orientation 5-8 (JPEG, MPO, PNG, WEBP, TIFF) swaps them,
and so does a HEIF or AVIF container's rotation (irot), which those formats use instead of EXIF.
"""

import collections
import itertools
import struct
from collections.abc import Callable, Collection
from typing import NoReturn

from jobs.worker.imaging.headers import bmp, gif, isobmff, jpeg, png, tiff, webp
from jobs.worker.imaging.headers.other import other_format
from jobs.worker.imaging.headers.parse import MAX_BLOCK, TRUNCATED, ImageError, NotThisFormat, Reader, Size

MEASURED_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF")
SNIFF_BYTES = 4096  # the first bytes kept to name a format that is not measured here
SIGNATURE_BYTES = 12  # enough to tell the measured formats apart


class HeaderReader:
    """Feed it an image's bytes as they arrive; `size` is (width, height) as soon as it is known.

    An error (no image, a format outside `formats`, a broken or cut header, too many pixels) is
    raised by feed() as soon as it is certain, else by close() at the end of the bytes.
    """

    def __init__(self, formats: Collection[str], max_pixels: int):
        self.formats, self.max_pixels = formats, max_pixels
        self.size: tuple[int, int] | None = None
        self._name = "image"  # the format as far as it is known, for error messages
        self._reader: Reader | None = None
        self._wanted: tuple[int, int] | None = None  # the (offset, length) the reader waits for
        self._ended = False  # the last byte has been fed
        self._head = bytearray()  # the first SNIFF_BYTES, to name a format no reader knows
        # The pieces fed and not yet passed, kept as they came: the first often holds most of the
        # file, and only the few bytes the reader asks for are copied out of it.
        self._pieces: collections.deque[bytes] = collections.deque()
        self._pieces_start = 0  # the offset of _pieces[0][0] in the file
        self._pieces_length = 0

    def feed(self, data: bytes) -> None:
        if self.size is not None:
            return
        if len(self._head) < SNIFF_BYTES:
            self._head += data[: SNIFF_BYTES - len(self._head)]
        self._pieces.append(data)
        self._pieces_length += len(data)
        if self._reader is not None or self._start(at_end=False):
            self._advance()

    def close(self) -> tuple[int, int]:
        """The size, at the end of the bytes."""
        self._ended = True
        if self.size is None and (self._reader is not None or self._start(at_end=True)):
            self._advance()  # a reader waiting for what has arrived is told the file has ended
        if self.size is None:
            raise ImageError(TRUNCATED.format(self._name))
        return self.size

    def _start(self, at_end: bool) -> bool:
        """Pick the reader from the signature; False while more bytes are needed to know."""
        head = bytes(self._head)
        if len(head) < SIGNATURE_BYTES and not at_end:
            return False
        found = _reader_for(head)
        if found is None:
            if len(head) < SNIFF_BYTES and not at_end:
                return False
            self._refuse_unknown()
        self._name, read = found
        self._reader = read()
        self._wanted = next(self._reader)
        return True

    def _advance(self) -> None:
        """Send the reader the bytes it waits for, as long as they are here; drop the ones before."""
        try:
            while self._wanted is not None:
                offset, length = self._wanted
                if length > MAX_BLOCK:
                    raise ImageError(f"broken {self._name}: a header block of {length:,} bytes")
                if offset < self._pieces_start:
                    raise ImageError(f"broken {self._name}: its header points backwards")
                while self._pieces and self._pieces_start + len(self._pieces[0]) <= offset:
                    dropped = self._pieces.popleft()
                    self._pieces_start += len(dropped)
                    self._pieces_length -= len(dropped)
                skip = offset - self._pieces_start
                if self._pieces_length - skip < length:
                    return
                assert self._reader is not None, "the reader of the format found"
                if length < 0:  # whatever has arrived of -length bytes (parse.arrived)
                    length = min(-length, self._pieces_length - skip)
                    if length <= 0:
                        if not self._ended:
                            return
                        self._wanted = self._reader.send(b"")
                        continue
                self._wanted = self._reader.send(self._take(skip, length))
        except StopIteration as finished:
            self._finish(finished.value)
        except NotThisFormat:
            self._refuse_unknown()
        except (struct.error, IndexError):
            raise ImageError(f"broken {self._name}: a header shorter than its fields") from None

    def _take(self, skip: int, length: int) -> bytes:
        """`length` bytes from `skip` bytes into the pieces (which hold them)."""
        first = self._pieces[0]
        if skip + length <= len(first):
            return first[skip : skip + length]
        taken = bytearray(memoryview(first)[skip:])
        for piece in itertools.islice(self._pieces, 1, None):
            if len(taken) >= length:
                break
            taken += memoryview(piece)[: length - len(taken)]
        return bytes(taken)

    def _finish(self, size: Size) -> None:
        self._reader = self._wanted = None
        self._pieces.clear()
        self._head = bytearray()
        self._refuse_unless_accepted(size.format)
        if size.width <= 0 or size.height <= 0:
            raise ImageError(f"broken {size.format}: a size of {size.width}x{size.height}")
        if size.width * size.height > self.max_pixels:
            raise ImageError(f"too many pixels: {size.width}x{size.height} (over {self.max_pixels:,})")
        self.size = (size.width, size.height)

    def _accepted(self) -> str:
        return ", ".join(self.formats)

    def _refuse_unless_accepted(self, image_format: str) -> None:
        if image_format not in self.formats:
            raise ImageError(f"unsupported image format {image_format} (accepted: {self._accepted()})")

    def _refuse_unknown(self) -> NoReturn:
        other = other_format(bytes(self._head), MEASURED_FORMATS)
        if other is not None:
            raise ImageError(f"unsupported image format {other} (accepted: {self._accepted()})")
        raise ImageError(f"not an image (accepted: {self._accepted()})")


def _reader_for(head: bytes) -> tuple[str, Callable[[], Reader]] | None:
    """The reader of a measured format whose signature starts `head`, with the format's name."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG", jpeg.read  # or MPO: the reader tells
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", png.read
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF", gif.read
    if head.startswith(b"BM"):
        return "BMP", bmp.read
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP", webp.read
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF", tiff.read
    if head[4:8] == b"ftyp":
        return "HEIF or AVIF", isobmff.read  # the brands tell which
    return None
