"""Image files written for the header tests: real encoders (PIL, OpenCV, tifffile) and hand-made
writers for what they cannot produce (bombs of any size from a few KB, every BMP header, TIFF
directories anywhere, APP segments before a JPEG frame header)."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

tifffile = pytest.importorskip("tifffile")

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
GRAY = RGB[:, :, 0]
RGBA = np.dstack([RGB, GRAY])


def pil(mode: str, fmt: str, array: np.ndarray = RGB, **kw: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).convert(mode).save(out, fmt, **kw)
    return out.getvalue()


def cv2_bytes(array: np.ndarray, ext: str, params: tuple[int, ...] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, array, list(params))
    assert ok
    return buf.tobytes()


def tifffile_bytes(array: np.ndarray, **kw: object) -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(out, array, **kw)
    return out.getvalue()


def zeros_zlib(n: int, block: int = 1 << 20) -> bytes:
    """A zlib stream of n zero bytes, built from one fully flushed block repeated (300 MB in 20 ms)."""
    c = zlib.compressobj(9)
    first = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)  # identical for every later block
    count, rest = divmod(n, block)
    tail = zlib.compressobj(9)
    last = tail.compress(bytes(rest)) + tail.flush()
    return first + again * (count - 1) + last[2:-4] + struct.pack(">I", ((n % 65521) << 16) | 1)


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(width: int, height: int, depth: int, color: int, extra: tuple[bytes, ...] = ()) -> bytes:
    """A valid PNG of zero pixels (all rows filter 0); ``extra`` chunks go between IHDR and IDAT."""
    per_pixel = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    row = 1 + (width * per_pixel * depth + 7) // 8
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    body = b"".join(extra) + chunk(b"IDAT", zeros_zlib(row * height)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + ihdr + body


_TIFF_CODES = {3: "H", 4: "I", 5: "I", 16: "Q"}
TiffTags = dict[int, "tuple[int, list[int]] | None"]


def tiff(
    width: int,
    height: int,
    strip: bytes,
    *,
    big: bool = False,
    order: str = "<",
    ifd_last: bool = False,
    size_type: int = 4,
    samples: int = 1,
    photometric: int = 1,
    compression: int = 1,
    tags: TiffTags | None = None,
) -> bytes:
    """A one-strip (Big)TIFF, its directory before or after the pixel data (Pillow and libtiff: after).

    ``tags`` adds or replaces entries ({tag: (type, values)}) or drops them ({tag: None}).
    """
    word, head, offset_type = (8, 16, 16) if big else (4, 8, 4)
    entries: TiffTags = {256: (size_type, [width]), 257: (size_type, [height]), 258: (3, [8] * samples)}
    entries |= {
        259: (3, [compression]),
        262: (3, [photometric]),
        273: (offset_type, [0]),
        277: (3, [samples]),
    }
    entries |= {278: (4, [height]), 279: (offset_type, [len(strip)])} | (tags or {})
    listed = sorted((tag, *entry) for tag, entry in entries.items() if entry is not None)
    packed = [struct.pack(order + _TIFF_CODES[t] * len(v), *v) for _, t, v in listed]
    spill = sum(len(p) for p in packed if len(p) > word)
    ifd_size = (8 if big else 2) + len(listed) * (4 + 2 * word) + word
    ifd_at, data_at, spill_at = (
        (head + len(strip) + spill, head, head + len(strip))
        if ifd_last
        else (head, head + ifd_size + spill, head + ifd_size)
    )
    fields, values = [], b""
    for (tag, typ, vals), raw in zip(listed, packed, strict=True):
        raw = struct.pack(order + _TIFF_CODES[typ], data_at) if tag == 273 else raw
        far = len(raw) > word
        field = struct.pack(order + "IQ"[big], spill_at + len(values)) if far else raw.ljust(word, b"\0")
        values += raw if far else b""
        fields.append(struct.pack(order + ("HHQ" if big else "HHI"), tag, typ, len(vals)) + field)
    ifd = struct.pack(order + "QH"[not big], len(listed)) + b"".join(fields) + bytes(word)
    magic = (b"II" if order == "<" else b"MM") + struct.pack(order + "H", 43 if big else 42)
    header = magic + (struct.pack(order + "HHQ", 8, 0, ifd_at) if big else struct.pack(order + "I", ifd_at))
    return header + (strip + values + ifd if ifd_last else ifd + values + strip)


def bmp(
    width: int, height: int, bits: int, *, info: int = 40, compression: int = 0, gray: bool = False
) -> bytes:
    """A BMP of zero pixels with any info header size; a negative height stores rows top-down."""
    rows = abs(height)
    if compression in (1, 2):  # RLE8 / RLE4: one run of index 0 and an end of line per row, end of bitmap
        pixels = (bytes([width, 0, 0, 0]) * rows)[:-2] + b"\x00\x01"
    else:
        pixels = bytes((width * bits + 31) // 32 * 4 * rows)
    colours = [(i, i, i) if gray else (i, 50, 200) for i in range(1 << bits if bits <= 8 else 0)]
    masks = (0xF800, 0x7E0, 0x1F) if bits == 16 else (0xFF0000, 0xFF00, 0xFF)
    if info == 12:  # OS/2 1.x: 16-bit sizes, 3-byte palette entries
        header = struct.pack("<IHHHH", 12, width, height, 1, bits)
        table = b"".join(bytes(c) for c in colours)
    else:  # V2 and later headers hold the masks themselves; a 40-byte one is followed by them
        header = struct.pack(
            "<IiiHHIIiiII", info, width, height, 1, bits, compression, len(pixels), 0, 0, 0, 0
        )
        header = (header + struct.pack("<IIII", *masks, 0xFF000000))[:info].ljust(info, b"\0")
        table = b"".join(bytes([*c, 0]) for c in colours)
        table += struct.pack("<III", *masks) if compression == 3 and info == 40 else b""
    offset = 14 + len(header) + len(table)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + header + table + pixels


def jpeg(app_bytes: int = 0, size: tuple[int, int] | None = None, gray: bool = False, **kw: object) -> bytes:
    """A small real JPEG, with ``app_bytes`` of APP segments before its frame header and its SOF
    patched to ``size`` (height, width): libjpeg then decodes a full-size image, grey past the data."""
    data = bytearray(pil("L" if gray else "RGB", "JPEG", np.full((16, 16, 3), 128, np.uint8), **kw))
    apps = b""
    while len(apps) < app_bytes:
        apps += b"\xff\xe2" + struct.pack(">H", 65535) + bytes(65533)
    data[2:2] = apps
    if size is not None:
        sof = next(data.find(bytes([0xFF, m])) for m in (0xC0, 0xC2) if data.find(bytes([0xFF, m])) > 0)
        data[sof + 5 : sof + 9] = struct.pack(">HH", *size)
    return bytes(data)


def patched(data: bytes, find: bytes, offset: int, value: bytes) -> bytes:
    at = data.find(find) + offset
    return data[:at] + value + data[at + len(value) :]
