"""The name of a format that is not measured here, from the first bytes of the file: one Pillow
knows, or SVG."""

import contextlib
import re
import warnings
from collections.abc import Callable
from io import BytesIO

from PIL import Image

SIGNATURE_MOST = 16  # bytes: what Pillow's signature checks look at
# Before the root element: a byte-order mark, then any of processing instructions (the XML
# declaration), comments and the doctype (with or without its internal subset).
SVG_START = re.compile(
    rb"(\xef\xbb\xbf)?\s*(<\?[^>]*>\s*|<!--.*?-->\s*|<!doctype svg[^>\[]*(\[.*?\])?\s*>\s*)*<svg[\s>]",
    re.IGNORECASE | re.DOTALL,
)


def other_format(head: bytes, measured: tuple[str, ...]) -> str | None:
    """The format of `head` outside `measured`; None for bytes that are no image. A format whose
    header Pillow reads from `head` wins (a TGA starts like a CUR); if none, the longest signature
    that matches (an XPM starts like an XBM)."""
    Image.init()
    signed = {}
    for name, (_factory, accept) in Image.OPEN.items():
        with contextlib.suppress(Exception):  # some checks assume 16 bytes
            if accept is not None and name not in measured and accept(head[:SIGNATURE_MOST]):
                signed[name] = _signature_length(accept, head)
    with warnings.catch_warnings():  # Pillow warns of some headers it reads
        warnings.simplefilter("ignore")
        # TGA has no signature: Pillow reads its header to tell. Pillow's other formats without one
        # (IM, IMT, IPTC, PCD, SPIDER) are left out: trying them would cost every web page or text
        # that comes instead of an image two thirds more CPU.
        for name in [*signed, "TGA"]:
            if name == "TGA" and head[1:2] == b"\0" and head[2:3] in (b"\1", b"\x09"):
                continue  # colour-mapped without a colour map: an icon's header (\0\0\1\0), no TGA
            # Pillow raises all kinds of errors for a header it cannot read.
            with contextlib.suppress(Exception), Image.open(BytesIO(head), formats=[name]) as image:
                return image.format
    if signed:
        return max(signed, key=signed.__getitem__)
    return "SVG" if SVG_START.match(head) else None


def _signature_length(accept: Callable[[bytes], bool | str], head: bytes) -> int:
    """How many of the first bytes of `head` its signature check needs to match."""
    for length in range(1, SIGNATURE_MOST):
        with contextlib.suppress(Exception):
            if accept(head[:length]):
                return length
    return SIGNATURE_MOST
