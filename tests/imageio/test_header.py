"""Tests for adinspect.imageio.header: header sizes equal what OpenCV decodes; bombs sized, never decoded."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_files import (
    GRAY,
    RGB,
    RGBA,
    bmp,
    chunk,
    cv2_bytes,
    jpeg,
    pil,
    png,
    tiff,
    tifffile,
    tifffile_bytes,
    zeros_zlib,
)
from PIL import Image

from adinspect.imageio.header import ACCEPTED_FORMATS, ImageHeader, read_image_header

# --------------------------------------------------------------------------- every format and mode

_PALETTE = np.tile(np.arange(256, dtype=np.uint16) * 257, (3, 1))
_STRIP = zlib.compress(bytes(30 * 40 * 3))

CASES: dict[str, Callable[[], bytes]] = {
    **{f"png-pil-{m}": (lambda m=m: pil(m, "PNG")) for m in ("1", "L", "P", "RGB", "RGBA", "LA")},
    "png-pil-16bit-gray": lambda: pil("I;16", "PNG", GRAY.astype(np.uint16) * 257),
    "png-pil-palette-trns": lambda: pil("P", "PNG", transparency=0),
    "png-pil-rgb-trns": lambda: pil("RGB", "PNG", transparency=(1, 2, 3)),
    "png-pil-gray-trns": lambda: pil("L", "PNG", GRAY, transparency=5),
    **{f"png-pil-palette-{b}bit": (lambda b=b: pil("P", "PNG", bits=b)) for b in (1, 2, 4)},
    "png-pil-apng": lambda: pil("RGB", "PNG", save_all=True, append_images=[Image.fromarray(255 - RGB)]),
    "png-cv2-16bit-rgba": lambda: cv2_bytes(RGBA.astype(np.uint16) * 257, ".png"),
    "png-cv2-16bit-rgb": lambda: cv2_bytes(RGB.astype(np.uint16) * 257, ".png"),
    "png-cv2-gray": lambda: cv2_bytes(GRAY, ".png"),
    "png-cv2-bilevel": lambda: cv2_bytes(GRAY, ".png", (cv2.IMWRITE_PNG_BILEVEL, 1)),
    "png-hand-16bit-gray-alpha": lambda: png(40, 30, 16, 4),
    "png-hand-16bit-rgb-trns": lambda: png(40, 30, 16, 2, (chunk(b"tRNS", bytes(6)),)),
    "png-hand-text-before-ihdr-data": lambda: png(
        40, 30, 8, 6, tuple(chunk(b"tEXt", b"k\0" + bytes(5000)) for _ in range(20))
    ),
    **{f"jpeg-pil-{m}": (lambda m=m: pil(m, "JPEG")) for m in ("L", "RGB", "CMYK")},
    "jpeg-pil-progressive": lambda: pil("RGB", "JPEG", progressive=True),
    "jpeg-cv2-gray": lambda: cv2_bytes(GRAY, ".jpg"),
    "jpeg-cv2-progressive": lambda: cv2_bytes(RGB, ".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
    "jpeg-sof-after-200kb-of-app-segments": lambda: jpeg(200_000, (30, 40)),
    "jpeg-progressive-sof-after-app-segments": lambda: jpeg(70_000, (30, 40), progressive=True),
    "jpeg-fill-and-stray-bytes-before-sof": lambda: _jpeg_with_junk(),
    **{f"bmp-pil-{m}": (lambda m=m: pil(m, "BMP")) for m in ("1", "L", "P", "RGB", "RGBA")},
    "bmp-cv2-bgra": lambda: cv2_bytes(RGBA, ".bmp"),
    "bmp-cv2-gray": lambda: cv2_bytes(GRAY, ".bmp"),
    "bmp-os2-8bit": lambda: bmp(40, 30, 8, info=12),
    "bmp-os2-24bit": lambda: bmp(40, 30, 24, info=12),
    "bmp-1bit-gray": lambda: bmp(40, 30, 1, gray=True),
    "bmp-4bit-colour-top-down": lambda: bmp(40, -30, 4),
    "bmp-8bit-gray-top-down": lambda: bmp(40, -30, 8, gray=True),
    "bmp-16bit-555": lambda: bmp(40, 30, 16),
    "bmp-16bit-565-bitfields": lambda: bmp(40, 30, 16, compression=3),
    "bmp-32bit-rgb": lambda: bmp(40, 30, 32),
    "bmp-32bit-bitfields": lambda: bmp(40, 30, 32, compression=3),
    "bmp-rle8": lambda: bmp(40, 30, 8, compression=1),
    "bmp-rle4-gray": lambda: bmp(40, 30, 4, compression=2, gray=True),
    "bmp-v2-24bit": lambda: bmp(40, 30, 24, info=52),
    "bmp-v3-32bit-bitfields": lambda: bmp(40, 30, 32, info=56, compression=3),
    "bmp-os2v2-24bit": lambda: bmp(40, 30, 24, info=64),
    "bmp-v4-32bit-bitfields-top-down": lambda: bmp(40, -30, 32, info=108, compression=3),
    "bmp-v5-8bit-gray": lambda: bmp(40, 30, 8, info=124, gray=True),
    **{
        f"tiff-pil-{m}": (lambda m=m: pil(m, "TIFF"))
        for m in ("1", "L", "P", "RGB", "RGBA", "CMYK", "F", "I")
    },
    "tiff-pil-16bit-gray": lambda: pil("I;16", "TIFF", GRAY.astype(np.uint16)),
    "tiff-pil-deflate-directory-last": lambda: pil("RGB", "TIFF", compression="tiff_deflate"),
    "tiff-16bit-rgba": lambda: tifffile_bytes(RGBA.astype(np.uint16)),
    "tiff-16bit-rgb-big-endian": lambda: tifffile_bytes(RGB.astype(np.uint16), byteorder=">"),
    "tiff-assoc-alpha": lambda: tifffile_bytes(RGBA, extrasamples=["assocalpha"]),
    "tiff-float32-rgb": lambda: tifffile_bytes(RGB.astype(np.float32), photometric="rgb"),
    "tiff-float64-gray": lambda: tifffile_bytes(GRAY.astype(np.float64)),
    **{
        f"tiff-{t}": (lambda t=t: tifffile_bytes(GRAY.astype(t)))
        for t in ("int8", "int16", "uint32", "uint64")
    },
    "tiff-gray-with-extra-samples": lambda: tifffile_bytes(RGB, photometric="minisblack"),
    "tiff-miniswhite": lambda: tifffile_bytes(GRAY, photometric="miniswhite"),
    "tiff-bilevel": lambda: tifffile_bytes(GRAY > 99),
    "tiff-palette": lambda: tifffile_bytes(GRAY, photometric="palette", colormap=_PALETTE),
    "tiff-separated-cmyk": lambda: tifffile_bytes(RGBA, photometric="separated"),
    "tiff-two-pages": lambda: tifffile_bytes(np.stack([GRAY, GRAY])),
    "tiff-pages-of-different-sizes": lambda: _two_page_tiff(),
    "bigtiff-little-endian": lambda: tifffile_bytes(RGB, bigtiff=True),
    "bigtiff-big-endian": lambda: tifffile_bytes(RGB, bigtiff=True, byteorder=">"),
    **{
        f"tiff-orientation-{o}": (lambda o=o: tifffile_bytes(RGB, extratags=[(274, "H", 1, o, True)]))
        for o in (1, 4, 5, 8)
    },
    "tiff-hand-short-sizes": lambda: tiff(
        40, 30, _STRIP, size_type=3, samples=3, photometric=2, compression=8
    ),
    "tiff-hand-directory-last-big-endian": lambda: tiff(
        40, 30, _STRIP, order=">", ifd_last=True, samples=3, photometric=2, compression=8
    ),
    "bigtiff-hand-long8-directory-last": lambda: tiff(
        40, 30, _STRIP, big=True, size_type=16, ifd_last=True, samples=3, photometric=2, compression=8
    ),
}


def _two_page_tiff() -> bytes:
    """A small first page and a larger second one: cv2.imdecode returns the first."""
    out = io.BytesIO()
    with tifffile.TiffWriter(out) as tif:
        tif.write(GRAY)
        tif.write(np.zeros((300, 400), np.uint8))
    return out.getvalue()


def _jpeg_with_junk() -> bytes:
    """Fill bytes, stray bytes and FF00 pairs between segments: libjpeg skips them with a warning."""
    data = pil("RGB", "JPEG")
    sof = data.find(b"\xff\xc0")
    return data[:sof] + b"\x00junk\xff\x00\xff\xff\xff" + data[sof:]


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_header_equals_what_opencv_decodes(make: Callable[[], bytes], tmp_path: Path) -> None:
    data = make()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None, "the case must be an image OpenCV decodes"
    header = read_image_header(data)
    assert header.format in ACCEPTED_FORMATS
    assert (header.shape, header.dtype) == (decoded.shape, decoded.dtype)
    assert header.decoded_bytes == decoded.nbytes
    path = tmp_path / "image"
    path.write_bytes(data)
    assert read_image_header(path) == header


# --------------------------------------------------------------------------- bombs


def _timed(source: Path | bytes) -> tuple[ImageHeader, float]:
    start = time.perf_counter()
    header = read_image_header(source)
    return header, time.perf_counter() - start


@pytest.mark.parametrize("order", ["<", ">"])
def test_20000_square_bigtiff_is_sized_from_its_header(order: str, tmp_path: Path) -> None:
    data = tiff(
        20000,
        20000,
        zeros_zlib(20000 * 20000 * 3),
        big=True,
        order=order,
        size_type=16,
        samples=3,
        photometric=2,
        compression=8,
    )
    assert len(data) < 1_300_000  # a 1.2 MB file that decodes to 1.2 GB
    path = tmp_path / "bomb.tif"
    path.write_bytes(data)
    header, seconds = _timed(path)
    assert header.format == "BigTIFF" and header.shape == (20000, 20000, 3)
    assert header.decoded_bytes == 1_200_000_000 and seconds < 0.1


@pytest.mark.parametrize("size_type", [3, 4])
@pytest.mark.parametrize("order", ["<", ">"])
def test_20000_square_tiff_with_its_directory_at_the_end(size_type: int, order: str, tmp_path: Path) -> None:
    data = tiff(
        20000,
        20000,
        zeros_zlib(20000 * 20000),
        order=order,
        size_type=size_type,
        ifd_last=True,
        compression=8,
    )
    ifd = struct.unpack(order + "I", data[4:8])[0]
    assert ifd > 300_000 and len(data) - ifd < 200  # past the 64 KB the old size check looked at
    path = tmp_path / "bomb.tif"
    path.write_bytes(data)
    header, seconds = _timed(path)
    assert header.shape == (20000, 20000) and header.decoded_bytes == 400_000_000 and seconds < 0.1
    assert read_image_header(data) == header


def test_20000_square_jpeg_with_its_sof_after_128_kb_of_app_segments(tmp_path: Path) -> None:
    data = jpeg(131_072, (20000, 20000))
    assert data.find(b"\xff\xc0") > 131_072 and len(data) < 140_000
    path = tmp_path / "bomb.jpg"
    path.write_bytes(data)
    header, seconds = _timed(path)
    assert header.format == "JPEG" and header.shape == (20000, 20000, 3) and seconds < 0.1
    assert header.decoded_bytes == 1_200_000_000
    small = jpeg(131_072, (300, 200))  # the same construction is a real JPEG: libjpeg decodes it in full
    assert cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_UNCHANGED).shape == (300, 200, 3)


def test_39_6_megapixel_16_bit_rgba_png_within_the_pixel_limit_costs_317_mb() -> None:
    data = png(6300, 6286, 16, 6)
    assert len(data) < 700_000
    header, seconds = _timed(data)
    assert header.shape == (6286, 6300, 4) and header.dtype == np.uint16 and seconds < 0.1
    assert header.pixels == 39_601_800 and header.decoded_bytes == 39_601_800 * 8


def test_zeros_zlib_helper_is_a_valid_stream() -> None:
    for n in (2 << 20, (3 << 20) + 12345):
        assert zlib.decompress(zeros_zlib(n)) == bytes(n)


def test_a_file_path_is_read_only_where_the_header_points(tmp_path: Path) -> None:
    """A TIFF whose directory sits past a 256 MB sparse hole: the reader reads two small blocks."""
    io_stats = Path("/proc/self/io")
    if not io_stats.exists():
        pytest.skip("needs /proc/self/io to count the bytes read")
    data, hole = tiff(30000, 30000, bytes(16), ifd_last=True), 256 << 20
    (ifd,) = struct.unpack("<I", data[4:8])
    path = tmp_path / "sparse.tif"
    with open(path, "wb") as f:
        f.write(data[:4] + struct.pack("<I", ifd + hole))
        f.seek(8 + hole)
        f.write(data[8:])
    before = _rchar(io_stats)
    header = read_image_header(path)
    assert _rchar(io_stats) - before < 64 * 1024
    assert header.shape == (30000, 30000)


def _rchar(io_stats: Path) -> int:
    return int(
        next(line for line in io_stats.read_text().splitlines() if line.startswith("rchar")).split()[1]
    )


def test_sizing_a_1_mb_file_takes_under_a_millisecond(tmp_path: Path) -> None:
    files = {"jpeg": jpeg(1 << 20, (5000, 7000)), "tiff": tiff(40, 30, bytes(1 << 20), ifd_last=True)}
    for kind, data in files.items():
        path = tmp_path / kind
        path.write_bytes(data)
        for source in (data, path):
            best = min(_timed(source)[1] for _ in range(20))
            assert best < 0.001, f"{kind} from {type(source).__name__}: {best * 1e3:.2f} ms"


def test_any_buffer_is_accepted() -> None:
    data = pil("RGB", "PNG")
    headers = {
        read_image_header(buf)
        for buf in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8))
    }
    assert headers == {read_image_header(data)} and read_image_header(data).shape == (30, 40, 3)
