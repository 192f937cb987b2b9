"""adinspect.imageio.header refuses what it cannot size, naming the input and what was wrong."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from image_files import (
    bmp,
    chunk,
    jpeg,
    patched,
    pil,
    png,
    tiff,
)

from adinspect.imageio.header import ImageHeaderError, read_image_header


def _sof(data: bytes) -> int:
    return data.find(b"\xff\xc0")


_JPEG = pil("RGB", "JPEG")
_TIFF8 = tiff(40, 30, bytes(1200))
REFUSED: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "is empty (0 bytes)"),
    "gif": (lambda: pil("P", "GIF"), "not an accepted image format"),
    "webp": (lambda: pil("RGB", "WEBP"), "not an accepted image format"),
    "pgm": (lambda: pil("L", "PPM"), "not an accepted image format"),
    "png-truncated-ihdr": (lambda: png(40, 30, 8, 2)[:20], "header is truncated"),
    "png-cut-before-idat": (lambda: png(40, 30, 8, 2, (chunk(b"tEXt", bytes(100)),))[:60], "truncated"),
    "png-no-idat": (lambda: png(40, 30, 8, 2)[:33] + chunk(b"IEND", b""), "before any image data"),
    "png-zero-width": (lambda: png(0, 30, 8, 2), "0 x 30 pixels"),
    "png-absurd": (
        lambda: patched(png(1, 1, 8, 2), b"IHDR", 4, struct.pack(">II", 2**31 - 1, 2**31 - 1)),
        "more than any image",
    ),
    "png-depth-4-rgb": (lambda: patched(png(4, 4, 8, 2), b"IHDR", 12, b"\x04"), "not a PNG"),
    "png-cgbi-first": (
        lambda: png(4, 4, 8, 2)[:8] + chunk(b"CgBI", bytes(4)) + png(4, 4, 8, 2)[8:],
        "13-byte IHDR",
    ),
    "png-acTL-0-frames": (lambda: png(4, 4, 8, 2, (chunk(b"acTL", bytes(8)),)), "0 frames"),
    "png-too-many-chunks": (
        lambda: png(4, 4, 8, 2, (chunk(b"tEXt", b"k\0") * 1001,)),
        "more than 1000 chunks",
    ),
    "jpeg-cut-inside-app": (lambda: jpeg(131_072)[:100_000], "truncated"),
    "jpeg-cut-before-sof": (lambda: _JPEG[: _sof(_JPEG)], "ends before its frame header"),
    "jpeg-12-bit": (lambda: patched(_JPEG, b"\xff\xc0", 4, b"\x0c"), "12-bit samples"),
    "jpeg-lossless": (lambda: patched(_JPEG, b"\xff\xc0", 1, b"\xc3"), "lossless"),
    "jpeg-hierarchical": (lambda: patched(_JPEG, b"\xff\xc0", 1, b"\xc5"), "hierarchical"),
    "jpeg-height-0-dnl": (lambda: patched(_JPEG, b"\xff\xc0", 5, b"\x00\x00"), "the image is empty"),
    "jpeg-two-components": (lambda: patched(_JPEG, b"\xff\xc0", 9, b"\x02"), "2 components"),
    "jpeg-scan-before-frame": (lambda: _JPEG[:2] + b"\xff\xda\x00\x02" + _JPEG[2:], "scan data (FFDA)"),
    "jpeg-segment-length-1": (lambda: _JPEG[:2] + b"\xff\xe1\x00\x01" + _JPEG[2:], "length 1"),
    "jpeg-1001-tiny-segments": (
        lambda: _JPEG[:2] + b"\xff\xfe\x00\x02" * 1001 + _JPEG[2:],
        "more than 1000 markers",
    ),
    "bmp-os2v2-16-byte-header": (
        lambda: patched(bmp(4, 4, 24), b"BM", 14, b"\x10"),
        "info header is 16 bytes",
    ),
    "bmp-zero-width": (lambda: bmp(0, 4, 24), "0 x 4 pixels"),
    "bmp-negative-width": (
        lambda: patched(bmp(4, 4, 24), b"BM", 18, struct.pack("<i", -4)),
        "-4 x 4 pixels",
    ),
    "bmp-jpeg-compression": (lambda: bmp(4, 4, 24, compression=4), "compression 4"),
    "bmp-256-plus-colours": (lambda: patched(bmp(4, 4, 8), b"BM", 46, b"\x2c\x01"), "300 colours"),
    "bmp-truncated-palette": (lambda: bmp(4, 4, 8)[:300], "the palette"),
    "bmp-16-bit-v4-masks-where-opencv-reads-them": (
        lambda: bmp(4, 4, 16, info=108, compression=3),
        "565 or 555",
    ),
    "bmp-absurd-height": (
        lambda: patched(bmp(4, 4, 24), b"BM", 22, struct.pack("<i", -(2**31))),
        "more than any image",
    ),
    "tiff-directory-past-the-end": (lambda: _TIFF8[:4] + struct.pack("<I", 10**6) + _TIFF8[8:], "truncated"),
    "tiff-directory-in-the-header": (lambda: _TIFF8[:4] + struct.pack("<I", 4) + _TIFF8[8:], "points into"),
    "tiff-directory-cut": (lambda: tiff(40, 30, bytes(1200), ifd_last=True)[:-20], "truncated"),
    "tiff-0-entries": (lambda: _TIFF8[:8] + b"\x00\x00" + _TIFF8[10:], "0 entries"),
    "tiff-5000-entries": (lambda: _TIFF8[:8] + struct.pack("<H", 5000) + _TIFF8[10:], "5000 entries"),
    "tiff-no-width": (lambda: tiff(40, 30, b"", tags={256: None}), "no ImageWidth"),
    "tiff-no-photometric": (lambda: tiff(40, 30, b"", tags={262: None}), "no Photometric"),
    "tiff-rational-width": (lambda: tiff(40, 30, b"", tags={256: (5, [40])}), "has type 5"),
    "tiff-2-bit-gray": (lambda: tiff(40, 30, b"", tags={258: (3, [2])}), "2-bit samples"),
    "tiff-16-bit-float": (lambda: tiff(40, 30, b"", tags={258: (3, [16]), 339: (3, [3])}), "not accepted"),
    "tiff-mixed-bits": (
        lambda: tiff(4, 3, b"", samples=3, photometric=2, tags={258: (3, [8, 8, 16])}),
        "[8, 16] bits",
    ),
    "tiff-5-samples": (lambda: tiff(4, 3, b"", samples=5, photometric=2), "5 samples"),
    "tiff-zero-length": (lambda: tiff(40, 0, b""), "40 x 0 pixels"),
    "bigtiff-4-byte-offsets": (
        lambda: patched(tiff(4, 3, b"", big=True), b"II+", 4, b"\x04"),
        "4-byte offsets",
    ),
    "bigtiff-absurd-long8-width": (
        lambda: tiff(2**40, 3, b"", big=True, size_type=16),
        "more than any image",
    ),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_refusals_name_the_input_and_what_is_wrong(case: tuple[Callable[[], bytes], str]) -> None:
    make, expected = case
    with pytest.raises(ImageHeaderError) as info:
        read_image_header(make(), name="request-7")
    assert str(info.value).startswith("request-7: ") and expected in str(info.value)


def test_paths_and_non_bytes_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    for source, expected in [
        (tmp_path / "missing.png", "file not found"),
        (tmp_path, "is a directory"),
        (12345, "expected encoded image bytes or a path, got int"),
    ]:
        with pytest.raises(ImageHeaderError, match=expected) as info:
            read_image_header(source)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)
