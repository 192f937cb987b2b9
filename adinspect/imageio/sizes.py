"""Image size from the encoded header, before anything is decoded (PNG, JPEG, BMP, classic TIFF)."""

from __future__ import annotations

import struct

from adinspect.imageio.checks import PNG_SIGNATURE


def encoded_image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG, JPEG, BMP or classic TIFF header without decoding; None if unknown."""
    try:
        if data[:8] == PNG_SIGNATURE and len(data) >= 24 and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return int(height), int(width)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:2] == b"BM" and len(data) >= 26:
            width, height = struct.unpack("<ii", data[18:26])
            return abs(int(height)), abs(int(width))
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
    except struct.error:
        return None  # a truncated header: decoding will say what is wrong
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
            pos += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame marker
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(height), int(width)
        pos += 2 + length
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) of the first IFD."""
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    found: dict[int, int] = {}
    for k in range(count):
        entry = data[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        tag, typ = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            found[tag] = struct.unpack(order + ("H" if typ == 3 else "I"), entry[8 : 10 if typ == 3 else 12])[
                0
            ]
    if 256 in found and 257 in found:
        return int(found[257]), int(found[256])
    return None
