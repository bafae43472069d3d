"""Image files of every kind a phone, a camera or a scanner makes, written by Pillow and pillow-heif,
each with the result the service must give: its displayed (width, height), or the start of its
per-image error. The local image server serves them as /sample/NAME."""

import io
import struct
import zlib

import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()

ORIENTATION = 0x0112


def _encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _picture(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A picture with some detail, so encoders write real data rather than one flat block."""
    image = Image.linear_gradient("L").resize((width, height)).convert(mode)
    return image


def _exif(orientation: int, description_bytes: int = 0) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    if description_bytes:
        exif[0x010E] = "x" * description_bytes  # ImageDescription: a big EXIF block
    return exif.tobytes()


def _frames(width: int, height: int, count: int) -> list[Image.Image]:
    return [Image.new("RGB", (width, height), (40 * n, 200 - 40 * n, 90)) for n in range(count)]


def _interlaced_png(width: int, height: int) -> bytes:
    """An Adam7-interlaced greyscale PNG (Pillow reads these but does not write them)."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        columns, rows = len(range(x0, width, dx)), len(range(y0, height, dy))
        if columns and rows:
            raw += b"".join(b"\0" + bytes((x * 7) % 256 for x in range(columns)) for _ in range(rows))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1)  # 8-bit grey, interlace method 1
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _psd(width: int, height: int) -> bytes:
    """A Photoshop file of one flat RGB layer (Pillow reads PSD but does not write it)."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    pixels = b"\0" * (width * height * 3)
    return header + struct.pack(">I", 0) + struct.pack(">I", 0) + struct.pack(">I", 0) + struct.pack(">H", 0) + pixels


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"></svg>\n'


def _measured() -> dict[str, tuple]:
    """name -> (bytes, (width, height) as displayed)."""
    jpeg_metadata = _encode(
        _picture(120, 80), "JPEG", exif=_exif(6, description_bytes=60_000), icc_profile=b"\0" * 400_000
    )
    samples = {
        "baseline.jpg": (_encode(_picture(64, 48), "JPEG"), (64, 48)),
        "progressive.jpg": (_encode(_picture(70, 50), "JPEG", progressive=True), (70, 50)),
        "cmyk.jpg": (_encode(_picture(33, 21, "CMYK"), "JPEG"), (33, 21)),
        "big-metadata.jpg": (jpeg_metadata, (80, 120)),  # 460 KB of EXIF and ICC before the frame, turned
        "two-pictures.mpo": (
            _encode(_frames(90, 60, 2)[0], "MPO", save_all=True, append_images=_frames(90, 60, 2)[1:]),
            (90, 60),
        ),
        "16-bit.png": (_encode(Image.new("I;16", (41, 17)), "PNG"), (41, 17)),
        "interlaced.png": (_interlaced_png(37, 23), (37, 23)),
        "palette.png": (_encode(_picture(25, 35).convert("P"), "PNG"), (25, 35)),
        "turned.png": (_encode(_picture(50, 20), "PNG", exif=_exif(8)), (20, 50)),
        "animated.gif": (
            _encode(_frames(31, 12, 3)[0], "GIF", save_all=True, append_images=_frames(31, 12, 3)[1:]),
            (31, 12),
        ),
        "lossy.webp": (_encode(_picture(123, 45), "WEBP"), (123, 45)),
        "lossless.webp": (_encode(_picture(67, 89), "WEBP", lossless=True), (67, 89)),
        "animated.webp": (
            _encode(_frames(44, 22, 3)[0], "WEBP", save_all=True, append_images=_frames(44, 22, 3)[1:]),
            (44, 22),
        ),
        "turned.webp": (_encode(_picture(60, 30), "WEBP", exif=_exif(6)), (30, 60)),
        "photo.heic": (_encode(_picture(64, 48), "HEIF"), (64, 48)),
        "turned.heic": (_encode(_picture(64, 48), "HEIF", exif=_exif(6)), (48, 64)),  # stored as a rotation (irot)
        "odd.heic": (_encode(_picture(65, 47), "HEIF"), (65, 47)),  # coded as 66x48, cropped (clap)
        "photo.avif": (_encode(_picture(64, 48), "AVIF"), (64, 48)),
        "turned.avif": (_encode(_picture(64, 48), "AVIF", exif=_exif(8)), (48, 64)),
        "pages.tiff": (_encode(_picture(52, 26), "TIFF", save_all=True, append_images=[_picture(10, 10)]), (52, 26)),
        "compressed.tiff": (_encode(_picture(28, 56), "TIFF", compression="tiff_lzw"), (28, 56)),
        "turned.tiff": (_encode(_picture(52, 26), "TIFF", exif=_exif(5)), (26, 52)),
        "plain.bmp": (_encode(_picture(19, 11), "BMP"), (19, 11)),
    }
    for orientation in range(1, 9):
        turned = orientation >= 5
        samples[f"orientation-{orientation}.jpg"] = (
            _encode(_picture(60, 40), "JPEG", exif=_exif(orientation)),
            (40, 60) if turned else (60, 40),
        )
    return samples


def _refused() -> dict[str, tuple]:
    """name -> (bytes, the start of the per-image error)."""
    big_metadata_jpeg = MEASURED["big-metadata.jpg"][0]
    return {
        "icon.ico": (_encode(_picture(32, 32), "ICO"), "unsupported image format ICO"),
        "targa.tga": (_encode(_picture(20, 10), "TGA"), "unsupported image format TGA"),
        "jpeg2000.jp2": (_encode(_picture(20, 10), "JPEG2000"), "unsupported image format JPEG2000"),
        "quite-ok.qoi": (_encode(_picture(20, 10), "QOI"), "unsupported image format QOI"),
        "netpbm.ppm": (_encode(_picture(20, 10), "PPM"), "unsupported image format PPM"),
        "texture.dds": (_encode(_picture(20, 12), "DDS"), "unsupported image format DDS"),
        "paintbrush.pcx": (_encode(_picture(20, 10), "PCX"), "unsupported image format PCX"),
        "layers.psd": (_psd(20, 10), "unsupported image format PSD"),
        "drawing.svg": (SVG, "unsupported image format SVG"),
        "page.html": (b"<!doctype html><html><body>hello</body></html>", "not an image"),
        "empty": (b"", "not an image"),
        "text.txt": (b"field notes, store 12: shelf B restocked\n" * 20, "not an image"),
        "cut-before-frame.jpg": (big_metadata_jpeg[:100_000], "truncated JPEG: the file ends before its size"),
        "cut-header.png": (MEASURED["palette.png"][0][:20], "truncated PNG: the file ends before its size"),
        "scan-before-frame.jpg": (b"\xff\xd8\xff\xda\x00\x08" + b"\0" * 64, "broken JPEG: no frame header"),
    }


MEASURED = _measured()
REFUSED = _refused()
ALL = {name: data for name, (data, _expected) in {**MEASURED, **REFUSED}.items()}
