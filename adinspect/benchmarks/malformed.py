"""A corpus of malformed images, generated in code, that a server must refuse with INVALID_ARGUMENT.

Every entry is something a camera PC, a broken network share or a hostile client could send:
empty or garbage bytes, headers of formats with no image, truncated and bit-flipped PNG/JPEG/
BMP/TIFF files, headers declaring enormous or zero dimensions, images smaller than the 8x8
minimum (8- and 16-bit), channel counts other than gray/RGB/RGBA, and raw pixel tensors of the
wrong shape (60 in all). Nothing in it is a valid image the pipeline should inspect: unusual but
valid files (16-bit, gray, gray+alpha, RGBA, 8x8) are inspected, not refused, and are listed by
`valid_variants` as the controls.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MalformedImage:
    """One bad request: encoded bytes (sent as image_bytes) or a uint8 array (sent as image_raw)."""

    name: str
    data: bytes | np.ndarray


def _image(height: int = 64, width: int = 64, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """A smooth test pattern with some texture, so encoders produce non-trivial streams."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    ramp = np.linspace(0, top, width, dtype=np.float64)[None, :, None]
    noise = rng.uniform(0, top / 4, (height, width, channels))
    image = np.clip(ramp * 0.75 + noise, 0, top).astype(dtype)
    return image[:, :, 0] if channels == 1 else image


def _encode(ext: str, image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.dtype} {image.shape} image as {ext}")
    return buffer.tobytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR width/height replaced (CRC recomputed, so only the size is wrong)."""
    ihdr = bytearray(png[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    return png[:8] + _png_chunk(b"IHDR", bytes(ihdr)) + png[33:]


def _jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its SOF0 frame header's height/width replaced."""
    pos = jpeg.index(b"\xff\xc0")
    return jpeg[: pos + 5] + struct.pack(">HH", height, width) + jpeg[pos + 9 :]


def _flip_middle(data: bytes, start: int, count: int = 64) -> bytes:
    """XOR `count` bytes from `start` onwards (the stream stays the same length)."""
    out = bytearray(data)
    for i in range(start, min(start + count, len(out))):
        out[i] ^= 0xA5
    return bytes(out)


def _tiff(image: np.ndarray) -> bytes:
    """An uncompressed little-endian TIFF of a uint8 (H, W, C) image with any C (OpenCV writes 1, 3, 4)."""
    height, width, channels = image.shape
    pixels = image.tobytes()
    bits_offset = 8 + len(pixels)  # BitsPerSample values, after the pixels
    ifd_offset = bits_offset + 2 * channels
    ifd_offset += ifd_offset % 2
    extra = max(channels - 1, 1) if channels != 3 else 0
    tags = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, channels, bits_offset if channels > 2 else 8 | (8 << 16) * (channels == 2)),
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1 if channels != 3 else 2),  # min-is-black, or RGB
        (273, 4, 1, 8),  # the pixels start right after the header
        (277, 3, 1, channels),
        (278, 4, 1, height),
        (279, 4, 1, len(pixels)),
        (284, 3, 1, 1),
    ]
    if extra and channels not in (1, 3):
        tags.append((338, 3, 1, 0))  # one extra sample of unspecified meaning
    header = b"II*\x00" + struct.pack("<I", ifd_offset)
    bits = struct.pack(f"<{channels}H", *([8] * channels))
    body = header + pixels + bits + b"\x00" * (ifd_offset - bits_offset - len(bits))
    entries = b"".join(struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in tags)
    return body + struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0)


def _truncations(name: str, data: bytes) -> list[MalformedImage]:
    return [
        MalformedImage(f"{name}_truncated_{int(fraction * 100)}pct", data[: int(len(data) * fraction)])
        for fraction in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
    ]


def _garbage() -> list[MalformedImage]:
    rng = np.random.default_rng(1)
    return [
        MalformedImage("empty", b""),
        MalformedImage("one_byte", b"\x89"),
        MalformedImage("random_16_bytes", rng.bytes(16)),
        MalformedImage("random_4_kib", rng.bytes(4096)),
        MalformedImage("zeros_1_kib", bytes(1024)),
        MalformedImage("text", b"this is not an image\n"),
        MalformedImage("json", b'{"image": "part_0001.png"}'),
        MalformedImage("html_error_page", b"<html><body>502 Bad Gateway</body></html>"),
        MalformedImage("png_signature_only", b"\x89PNG\r\n\x1a\n"),
        MalformedImage("jpeg_soi_only", b"\xff\xd8"),
        MalformedImage("jpeg_soi_eoi", b"\xff\xd8\xff\xd9"),
        MalformedImage("gif_header", b"GIF89a" + bytes(64)),
        MalformedImage("bmp_header_only", b"BM" + bytes(52)),
        MalformedImage("tiff_header_only", b"II*\x00\x08\x00\x00\x00"),
        MalformedImage("pdf_header", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"),
    ]


def _png_cases() -> list[MalformedImage]:
    png = _encode(".png", _image())
    png16 = _encode(".png", _image(dtype=np.uint16))
    rgba = _encode(".png", _image(channels=4))
    idat = png.index(b"IDAT")
    return [
        *_truncations("png", png),
        MalformedImage("png_wrong_magic", b"\x88" + png[1:]),
        MalformedImage("png_ihdr_crc_broken", png[:29] + b"\x00\x00\x00\x00" + png[33:]),
        MalformedImage("png_idat_bits_flipped", _flip_middle(png, idat + 20)),
        MalformedImage("png_without_iend", png[:-12]),
        MalformedImage("png_declares_100000x100000", _png_with_size(png, 100_000, 100_000)),
        MalformedImage("png_declares_65535x65535", _png_with_size(png, 65_535, 65_535)),
        MalformedImage("png_declares_width_0", _png_with_size(png, 0, 64)),
        MalformedImage("png_declares_height_0", _png_with_size(png, 64, 0)),
        MalformedImage("png_1x1", _encode(".png", _image(1, 1))),
        MalformedImage("png_7x7", _encode(".png", _image(7, 7))),
        MalformedImage("png_1x4096", _encode(".png", _image(1, 4096))),
        MalformedImage("png_gray_1x1", _encode(".png", _image(1, 1, channels=1))),
        MalformedImage("png16_1x1", _encode(".png", _image(1, 1, dtype=np.uint16))),
        MalformedImage("png16_truncated_50pct", png16[: len(png16) // 2]),
        MalformedImage("png16_idat_bits_flipped", _flip_middle(png16, png16.index(b"IDAT") + 20)),
        MalformedImage("png_rgba_truncated_50pct", rgba[: len(rgba) // 2]),
        MalformedImage("png_rgba_4x4", _encode(".png", _image(4, 4, channels=4))),
    ]


def _jpeg_cases() -> list[MalformedImage]:
    jpeg = _encode(".jpg", _image())
    return [
        *_truncations("jpeg", jpeg),
        MalformedImage("jpeg_wrong_magic", b"\xff\xd9" + jpeg[2:]),
        MalformedImage("jpeg_without_eoi", jpeg[:-2]),
        MalformedImage("jpeg_declares_65535x65535", _jpeg_with_size(jpeg, 65_535, 65_535)),
        MalformedImage("jpeg_declares_width_0", _jpeg_with_size(jpeg, 0, 64)),
        MalformedImage("jpeg_1x1", _encode(".jpg", _image(1, 1))),
        MalformedImage("jpeg_gray_4x4", _encode(".jpg", _image(4, 4, channels=1))),
    ]


def _bmp_tiff_cases() -> list[MalformedImage]:
    bmp = _encode(".bmp", _image())
    tiff = _encode(".tiff", _image())
    huge_bmp = bmp[:18] + struct.pack("<ii", 100_000, 100_000) + bmp[26:]
    return [
        MalformedImage("bmp_truncated_50pct", bmp[: len(bmp) // 2]),
        MalformedImage("bmp_declares_100000x100000", huge_bmp),
        MalformedImage("bmp_1x1", _encode(".bmp", _image(1, 1))),
        MalformedImage("tiff_truncated_50pct", tiff[: len(tiff) // 2]),
        MalformedImage("tiff_1x1", _encode(".tiff", _image(1, 1))),
        MalformedImage("tiff_5_channels", _tiff(_image(channels=5))),
        MalformedImage("tiff_8_channels", _tiff(_image(channels=8))),
    ]


def _raw_cases() -> list[MalformedImage]:
    return [
        MalformedImage("raw_1x1x3", np.zeros((1, 1, 3), np.uint8)),
        MalformedImage("raw_7x64x3", np.zeros((7, 64, 3), np.uint8)),
        MalformedImage("raw_0x64x3", np.zeros((0, 64, 3), np.uint8)),
    ]


CORPUS_PARTS: tuple[Callable[[], list[MalformedImage]], ...] = (
    _garbage,
    _png_cases,
    _jpeg_cases,
    _bmp_tiff_cases,
    _raw_cases,
)


def malformed_corpus() -> list[MalformedImage]:
    """All malformed requests (at least 50), each with a unique name."""
    corpus = [item for part in CORPUS_PARTS for item in part()]
    names = [item.name for item in corpus]
    if len(set(names)) != len(names):
        raise AssertionError(f"duplicate corpus names: {sorted(n for n in names if names.count(n) > 1)}")
    return corpus


def valid_variants() -> list[MalformedImage]:
    """Unusual but valid images the server must inspect (the corpus's controls)."""
    return [
        MalformedImage("png16_rgb_64x64", _encode(".png", _image(dtype=np.uint16))),
        MalformedImage("png_gray_64x64", _encode(".png", _image(channels=1))),
        MalformedImage("png_rgba_64x64", _encode(".png", _image(channels=4))),
        MalformedImage("jpeg_64x64", _encode(".jpg", _image())),
        MalformedImage("png_8x8", _encode(".png", _image(8, 8))),
        MalformedImage("tiff_gray_alpha_64x64", _tiff(_image(channels=2))),
    ]
