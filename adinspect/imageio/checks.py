"""Container completeness checks: does an encoded PNG, JPEG, BMP or TIFF reach its end?

OpenCV sometimes decodes a truncated JPEG or PNG into a partly grey image without complaint, so
the structure is walked first: a JPEG must reach its EOI marker, a PNG its IEND chunk, and BMP/TIFF
pixel data must lie inside the file. Each check returns what is wrong, or None.
"""

from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


def png_problem(data: bytes) -> str | None:
    """Walk the chunks; a complete PNG reaches IEND with every chunk inside the file."""
    pos, n = len(PNG_SIGNATURE), len(data)
    while pos + 8 <= n:
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > n:
            return f"{kind.decode('latin-1')!r} chunk at byte {pos} runs past the end of the file"
        if kind == b"IEND":
            return None
        pos = end
    return "no IEND chunk"


def jpeg_problem(data: bytes) -> str | None:
    """Walk the markers (skipping segment payloads and entropy-coded data) up to EOI (FFD9)."""
    pos, n = 2, len(data)
    while True:
        pos = data.find(b"\xff", pos)  # libjpeg also skips stray bytes between segments
        while 0 <= pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos < 0 or pos >= n:
            return "no EOI marker (FFD9)"
        marker, pos = data[pos], pos + 1
        if marker == 0xD9:
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        if pos + 2 > n:
            return "no EOI marker (FFD9)"
        pos += struct.unpack(">H", data[pos : pos + 2])[0]
        if pos > n:
            return f"segment FF{marker:02X} runs past the end of the file"
        if marker == 0xDA:
            pos = _skip_entropy_data(data, pos)
            if pos < 0:
                return "image data ends before the EOI marker (FFD9)"


def _skip_entropy_data(data: bytes, pos: int) -> int:
    """Position of the first real marker after entropy-coded data, or -1 if the data ends first."""
    n = len(data)
    while True:
        i = data.find(b"\xff", pos)
        if i < 0 or i + 1 >= n:
            return -1
        nxt = data[i + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:  # stuffed byte or restart marker
            pos = i + 2
        elif nxt == 0xFF:
            pos = i + 1
        else:
            return i


def bmp_problem(data: bytes) -> str | None:
    """The declared file size and the uncompressed pixel rows must fit in the data."""
    if len(data) < 26:
        return "header is incomplete"
    declared, offset, header = struct.unpack("<I4xII", data[2:18])
    if declared > len(data):
        return f"header declares {declared} bytes, file has {len(data)}"
    if header >= 40 and len(data) >= 34:
        width, height, _, bits, compression = struct.unpack("<iiHHI", data[18:34])
        if compression in (0, 3):  # BI_RGB, BI_BITFIELDS: rows stored uncompressed
            need = offset + ((bits * abs(width) + 31) // 32) * 4 * abs(height)
            if need > len(data):
                return f"pixel data needs {need} bytes, file has {len(data)}"
    return None


def tiff_problem(data: bytes) -> str | None:
    """The first IFD and all its strips or tiles must lie inside the file (classic TIFF)."""
    order = "<" if data[:2] == b"II" else ">"
    n = len(data)
    if n < 8:
        return "header is incomplete"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    if ifd + 2 > n:
        return "image directory lies past the end of the file"
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    if ifd + 6 + 12 * count > n:
        return "image directory runs past the end of the file"
    tags: dict[int, list[int]] = {}
    for k in range(count):
        entry = data[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        tag, typ, num = struct.unpack(order + "HHI", entry[:8])
        nbytes = num * _TIFF_TYPE_SIZES.get(typ, 1)
        start = ifd + 10 + 12 * k if nbytes <= 4 else struct.unpack(order + "I", entry[8:])[0]
        if start + nbytes > n:
            return f"values of tag {tag} lie past the end of the file"
        if tag in (273, 279, 324, 325) and typ in (3, 4):
            fmt = order + ("H" if typ == 3 else "I") * num
            tags[tag] = list(struct.unpack(fmt, data[start : start + nbytes]))
    for offsets_tag, counts_tag in ((273, 279), (324, 325)):
        pairs = zip(tags.get(offsets_tag, []), tags.get(counts_tag, []), strict=False)
        if any(off + cnt > n for off, cnt in pairs):
            return "pixel data runs past the end of the file"
    return None
