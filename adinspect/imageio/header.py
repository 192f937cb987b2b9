"""Image size from the file header, before any pixel is decoded (numpy + pydantic; serving-safe).

:func:`read_image_header` reports the array ``cv2.imdecode(data, cv2.IMREAD_UNCHANGED)`` would
return (height, width, channels, sample type) and its size in bytes, so a caller can hold a decode
bomb against a pixel limit or a memory budget before the decoder allocates anything. Only header
bytes are parsed; a file is read in small blocks where the format points.

Accepted formats (:data:`ACCEPTED_FORMATS`); anything else is refused, never decoded:

* **PNG** (and APNG): every colour type and depth; tRNS makes RGB and palette images 4-channel.
* **JPEG**, 8-bit, baseline / extended / progressive, Huffman or arithmetic (SOF0, 1, 2, 9, 10),
  1, 3 or 4 (CMYK, decoded to 3) components; the frame header is found by walking the marker
  segments as libjpeg does, wherever it sits. Lossless, hierarchical and 12-bit JPEG are refused.
* **BMP** with a 12 (OS/2 1.x), 40, 52, 56, 64 (OS/2 2.x), 108 (V4) or 124 (V5) byte info header,
  bottom-up or top-down; 1/4/8-bit palette, 16, 24, 32-bit, RLE4/8, bitfields.
* **TIFF** and **BigTIFF**, either byte order: the first directory (the page ``cv2.imdecode``
  returns) wherever it sits; width and length as SHORT, LONG or LONG8; orientations 5-8 swap height
  and width. The numbers follow OpenCV's reading of each header (4.9 to 5.x), quirks included
  (an OS/2 1.x BMP decodes to 1 channel). JPEG EXIF orientation is not applied with
  ``IMREAD_UNCHANGED``; with ``IMREAD_COLOR`` height and width may swap.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import BinaryIO, Literal, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from adinspect.imageio.errors import ImageReadError

ImageFormat = Literal["PNG", "JPEG", "BMP", "TIFF", "BigTIFF"]
ACCEPTED_FORMATS: tuple[ImageFormat, ...] = ("PNG", "JPEG", "BMP", "TIFF", "BigTIFF")
HEADER_MAX_SIDE = 1 << 20
"""Widest or tallest image a header may declare (OpenCV's own default limit)."""
HEADER_MAX_PIXELS = 1 << 30
"""Most pixels a header may declare (OpenCV's default); callers apply their own, smaller limit."""

_MAX_PNG_CHUNKS = 1000  # chunks before IDAT (libpng keeps at most 1000 ancillary chunks)
_MAX_JPEG_MARKERS = 1000  # markers before the frame header
_MAX_TIFF_ENTRIES = 4096  # libtiff's own sanity limit on a directory
_FIX = "re-export the image as PNG or JPEG, or do not send it"


class ImageHeaderError(ImageReadError):
    """An image header that cannot be sized: the message names the input and what was wrong."""


class ImageHeader(BaseModel):
    """What ``cv2.imdecode(..., IMREAD_UNCHANGED)`` would return, known from the header alone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: ImageFormat
    width: int = Field(ge=1, le=HEADER_MAX_SIDE)
    height: int = Field(ge=1, le=HEADER_MAX_SIDE)
    channels: int = Field(ge=1, le=4, description="1 (gray), 3 (BGR) or 4 (BGRA) as decoded.")
    bit_depth: Literal[8, 16, 32, 64] = Field(description="Bits per sample of the decoded array.")
    sample_kind: Literal["uint", "int", "float"] = "uint"
    animated: bool = Field(default=False, description="APNG: OpenCV holds 3 more canvases while decoding.")

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def dtype(self) -> np.dtype:
        """numpy dtype of the decoded array (uint8, uint16, int8, float32, ...)."""
        return np.dtype(f"{self.sample_kind[0]}{self.bit_depth // 8}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the decoded array: ``(H, W)`` for one channel, else ``(H, W, C)``."""
        return (self.height, self.width) + ((self.channels,) if self.channels > 1 else ())

    @property
    def decoded_bytes(self) -> int:
        """Size of the decoded array: height * width * channels * bytes per sample."""
        return self.pixels * self.channels * self.bit_depth // 8


def read_image_header(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview, name: str | None = None
) -> ImageHeader:
    """Size an encoded image from its header, without decoding it.

    Args:
        source: a file path (read in small blocks, only where the header points) or the encoded
            bytes (any buffer: bytes, bytearray, memoryview, a uint8 numpy array).
        name: what to call the image in errors (a request id); default: the path or ``<bytes>``.

    Raises:
        ImageHeaderError: not an accepted format, a truncated or malformed header, a zero or
            absurd size, or a variant of a format that is not accepted (the message says which).
    """
    if isinstance(source, (str, os.PathLike)):
        label = name or os.fspath(source)
        try:
            with open(source, "rb") as file:
                return _parse(_Source(label, os.fstat(file.fileno()).st_size, file=file))
        except FileNotFoundError:
            raise ImageHeaderError(f"{label}: file not found; check the path") from None
        except IsADirectoryError:
            raise ImageHeaderError(f"{label}: is a directory, expected an image file") from None
        except OSError as exc:
            raise ImageHeaderError(f"{label}: cannot read the file ({exc.strerror})") from None
    label = name or "<bytes>"
    try:
        view = memoryview(source).cast("B")
    except (TypeError, ValueError):
        kind = type(source).__name__
        raise ImageHeaderError(f"{label}: expected encoded image bytes or a path, got {kind}") from None
    return _parse(_Source(label, view.nbytes, buffer=view))


class _Source:
    """Random access to an encoded image: a buffer, or a file read in small blocks on demand."""

    _BLOCK = 4096

    def __init__(self, name: str, size: int, buffer: memoryview | None = None, file: BinaryIO | None = None):
        self.name, self.size, self.fmt = name, size, "image"
        self._buffer, self._file = buffer, file
        self._block_start, self._block = 0, b""

    def fail(self, problem: str) -> ImageHeaderError:
        return ImageHeaderError(f"{self.name}: {self.fmt} {problem}")

    def read(self, offset: int, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes at ``offset``; data shorter than that is a truncated header."""
        if offset < 0 or offset + n > self.size:
            end = f"bytes {offset}..{offset + n} of {self.size}"
            raise self.fail(f"header is truncated: {what} would be at {end}; {_FIX}")
        if self._buffer is not None:
            return bytes(self._buffer[offset : offset + n])
        start, file = offset - self._block_start, cast(BinaryIO, self._file)
        if start < 0 or start + n > len(self._block):
            file.seek(offset)
            self._block_start, self._block, start = offset, file.read(max(n, self._BLOCK)), 0
            if len(self._block) < n:
                raise self.fail(f"header is truncated: the file ended inside {what}; {_FIX}")
        return self._block[start : start + n]

    def scan(self, offset: int, want_ff: bool) -> int:
        """First position at or after ``offset`` holding 0xFF (want_ff) or not 0xFF; ``size`` if none."""
        step = 64  # markers are usually where expected: look a little ahead, then further
        while offset < self.size:
            chunk = self.read(offset, min(step, self.size - offset), "a marker")
            found = chunk.find(b"\xff") if want_ff else len(chunk) - len(chunk.lstrip(b"\xff"))
            if 0 <= found < len(chunk):
                return offset + found
            offset, step = offset + len(chunk), min(step * 4, 1 << 16)
        return self.size


def _parse(src: _Source) -> ImageHeader:
    if src.size == 0:
        raise ImageHeaderError(f"{src.name}: is empty (0 bytes); {_FIX}")
    head = src.read(0, min(8, src.size), "the signature")
    for fmt, signatures, parser in _FORMATS:
        if head.startswith(signatures):
            src.fmt = fmt
            return parser(src)
    accepted = f"not an accepted image format ({', '.join(ACCEPTED_FORMATS)}); use PNG"
    raise ImageHeaderError(f"{src.name}: {accepted}; it starts {head!r}")


def _header(src: _Source, width: int, height: int, channels: int, bits: int, **kw: object) -> ImageHeader:
    """The checked result: at least one pixel, at most HEADER_MAX_SIDE per side and HEADER_MAX_PIXELS."""
    size = f"header declares {width} x {height} pixels (width x height)"
    if width < 1 or height < 1:
        raise src.fail(f"{size}: the image is empty; {_FIX}")
    if width > HEADER_MAX_SIDE or height > HEADER_MAX_SIDE or width * height > HEADER_MAX_PIXELS:
        limits = f"{HEADER_MAX_SIDE} per side, {HEADER_MAX_PIXELS} in all"
        raise src.fail(f"{size}, more than any image decoded here ({limits}); do not send it")
    fields = {"format": src.fmt, "width": width, "height": height, "channels": channels, "bit_depth": bits}
    return ImageHeader.model_validate(fields | kw)


# ------------------------------------------------------------------------------------------- PNG

_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _png(src: _Source) -> ImageHeader:
    ihdr = src.read(8, 21, "the IHDR chunk")
    length, kind, width, height, depth, color, *methods = struct.unpack(">I4sIIBBBBB", ihdr)
    if kind != b"IHDR" or length != 13:
        raise src.fail(f"first chunk must be a 13-byte IHDR, found {kind!r} of {length} bytes; {_FIX}")
    if depth not in _PNG_DEPTHS.get(color, ()) or methods[0] or methods[1] or methods[2] > 1:
        raise src.fail(f"IHDR declares depth {depth}, colour type {color}, methods {methods}: not a PNG")
    transparency, animated = _png_chunks(src, color)
    channels = {0: 1, 4: 4, 6: 4}.get(color, 4 if transparency else 3)
    return _header(src, width, height, channels, 16 if depth == 16 else 8, animated=animated)


def _png_chunks(src: _Source, color: int) -> tuple[bool, bool]:
    """(tRNS applies, animated) from the chunks between IHDR and the first IDAT."""
    pos, palette, transparency, frames = 33, 0, False, 1
    for _ in range(_MAX_PNG_CHUNKS):
        length, kind = struct.unpack(">I4s", src.read(pos, 8, f"the chunk at byte {pos}"))
        if kind == b"IDAT":
            return transparency, frames > 1
        if kind == b"IEND" or length > 0x7FFFFFFF:
            raise src.fail(f"chunk {kind!r} at byte {pos} comes before any image data (IDAT); {_FIX}")
        if kind == b"PLTE":
            palette = length // 3
        elif kind == b"tRNS" and not transparency:  # libpng ignores an invalid or repeated tRNS
            transparency = (color == 2 and length == 6) or (color == 3 and 0 < length <= min(palette, 256))
        elif kind == b"acTL":
            (frames,) = struct.unpack(">I", src.read(pos + 8, 4, "the acTL chunk"))
            if frames == 0:
                raise src.fail(f"acTL chunk declares 0 frames; {_FIX}")
        pos += 12 + length
    raise src.fail(f"has more than {_MAX_PNG_CHUNKS} chunks before its image data; {_FIX}")


# ------------------------------------------------------------------------------------------ JPEG

_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC9, 0xCA}  # baseline, extended, progressive; Huffman or arithmetic
_JPEG_REFUSED = dict.fromkeys((0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF), "hierarchical")
_JPEG_REFUSED |= {0xC3: "lossless", 0xCB: "lossless"}
_JPEG_STOPS = {0xD8: "a second start (FFD8)", 0xD9: "its end (FFD9)", 0xDA: "its scan data (FFDA)"}


def _jpeg(src: _Source) -> ImageHeader:
    """Walk the marker segments, skipping their payloads, to the first frame header (as libjpeg does)."""
    pos = 2
    for _ in range(_MAX_JPEG_MARKERS):
        marker, pos = _next_jpeg_marker(src, pos)
        if marker in _JPEG_FRAMES:
            return _jpeg_frame(src, pos)
        if marker in _JPEG_REFUSED:
            raise src.fail(f"is {_JPEG_REFUSED[marker]} (FF{marker:02X}), which is not accepted; {_FIX}")
        if marker in _JPEG_STOPS:
            raise src.fail(f"reaches {_JPEG_STOPS[marker]} at byte {pos - 2} before a frame header; {_FIX}")
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        (length,) = struct.unpack(">H", src.read(pos, 2, f"the length of segment FF{marker:02X}"))
        if length < 2:
            raise src.fail(f"segment FF{marker:02X} at byte {pos - 2} has length {length} (< 2); {_FIX}")
        if (pos := pos + length) > src.size:
            raise src.fail(f"header is truncated: segment FF{marker:02X} runs past the end; {_FIX}")
    raise src.fail(f"has more than {_MAX_JPEG_MARKERS} markers before its frame header (SOF); {_FIX}")


def _next_jpeg_marker(src: _Source, pos: int) -> tuple[int, int]:
    """(marker, position after it), skipping stray bytes, fill bytes and FF00 as libjpeg does."""
    for _ in range(_MAX_JPEG_MARKERS):
        pos = src.scan(src.scan(pos, want_ff=True) + 1, want_ff=False)
        if pos >= src.size:
            break
        if (marker := src.read(pos, 1, "a marker")[0]) != 0x00:
            return marker, pos + 1
    raise src.fail(f"ends before its frame header (SOF marker); {_FIX}")


def _jpeg_frame(src: _Source, pos: int) -> ImageHeader:
    length, bits, height, width, components = struct.unpack(">HBHHB", src.read(pos, 8, "the frame header"))
    if bits != 8:
        raise src.fail(f"has {bits}-bit samples; only 8-bit JPEG is accepted: convert it to 8-bit")
    if components not in (1, 3, 4) or length < 8 + 3 * components:
        raise src.fail(f"frame header ({length} bytes) declares {components} components; expected 1, 3 or 4")
    return _header(src, width, height, 1 if components == 1 else 3, 8)


# ------------------------------------------------------------------------------------------- BMP

_BMP_INFO_SIZES = (12, 40, 52, 56, 64, 108, 124)
# (bits per pixel, compression) OpenCV decodes: 0 = BI_RGB, 1 = RLE8, 2 = RLE4, 3 = BI_BITFIELDS
_BMP_MODES = {(1, 0), (4, 0), (8, 0), (24, 0), (32, 0), (16, 0), (16, 3), (32, 3), (4, 2), (8, 1)}
_BMP_565_555 = ((0xF800, 0x7E0, 0x1F), (0x7C00, 0x3E0, 0x1F))


def _bmp(src: _Source) -> ImageHeader:
    (info_size,) = struct.unpack("<I", src.read(14, 4, "the info header size"))
    if info_size not in _BMP_INFO_SIZES:
        raise src.fail(f"info header is {info_size} bytes; accepted: {_BMP_INFO_SIZES}; {_FIX}")
    if info_size == 12:  # OS/2 1.x: OpenCV decodes it as one channel whatever its depth
        width, height, _, bits = struct.unpack("<HHHH", src.read(18, 8, "the core header"))
        if bits not in (1, 4, 8, 24, 32):
            raise src.fail(f"has {bits} bits per pixel, expected 1, 4, 8, 24 or 32; {_FIX}")
        src.read(26, 3 << bits if bits <= 8 else 0, "the palette")
        return _header(src, width, height, 1, 8)
    width, height, _, bits, compression = struct.unpack("<iiHHI", src.read(18, 16, "the info header"))
    (colors_used,) = struct.unpack("<I", src.read(46, 4, "the info header"))
    if width < 1 or height == 0:
        raise src.fail(f"header declares {width} x {height} pixels (width x height); {_FIX}")
    if (bits, compression) not in _BMP_MODES or (bits <= 8 and colors_used > 256):
        mode = f"{bits} bits per pixel, compression {compression}, {colors_used} colours"
        raise src.fail(f"has {mode}, which is not accepted; {_FIX}")
    channels = 4 if bits == 32 and compression == 3 else 3
    if bits <= 8:  # gray palettes decode to one channel
        palette = src.read(14 + info_size, 4 * (colors_used or 1 << bits), "the palette")
        bgr = np.frombuffer(palette, np.uint8).reshape(-1, 4)[: 1 << bits, :3].astype(np.int16)
        channels = 3 if np.any(np.diff(bgr, axis=1)) else 1
    elif bits == 16 and compression == 3:  # OpenCV reads the masks right after the info header
        masks = struct.unpack("<III", src.read(14 + info_size, 12, "the colour masks"))
        if masks not in _BMP_565_555:
            raise src.fail(f"16-bit colour masks {[hex(m) for m in masks]} are not 565 or 555; {_FIX}")
    return _header(src, width, abs(height), channels, 8)


# ------------------------------------------------------------------------------------------ TIFF

_TIFF_INT_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}
_TIFF_TAGS = {256: "ImageWidth", 257: "ImageLength", 258: "BitsPerSample", 262: "Photometric"}
_TIFF_TAGS |= {274: "Orientation", 277: "SamplesPerPixel", 339: "SampleFormat"}
_TIFF_KINDS = {1: "uint", 2: "int", 3: "float"}  # SampleFormat values
_PALETTE, _LOGLUV = 3, 32845


class _Directory:
    """The tags this reader needs from one TIFF directory; values read only when asked for."""

    def __init__(self, src: _Source, entries: np.ndarray, order: str, big: bool):
        self._src, self._order, self._big = src, order, big
        self._entries: dict[int, tuple[int, int, bytes]] = {}
        for tag, typ, count, value in entries[np.isin(entries["tag"], list(_TIFF_TAGS))].tolist():
            self._entries.setdefault(tag, (typ, count, bytes(value)))  # the first of duplicates wins

    def values(self, tag: int, default: int | None = None, limit: int = 1) -> list[int]:
        """Up to ``limit`` integer values of a tag, inline or at the offset its entry holds."""
        if tag not in self._entries:
            if default is None:
                raise self._src.fail(f"first directory has no {_TIFF_TAGS[tag]} ({tag}) tag; {_FIX}")
            return [default]
        typ, count, field = self._entries[tag]
        code = _TIFF_INT_TYPES.get(typ, "")
        if not code or count == 0:
            raise self._src.fail(f"tag {_TIFF_TAGS[tag]} has type {typ} and {count} values; {_FIX}")
        size, n = struct.calcsize(code), min(count, limit)
        if count * size > len(field):  # the values lie elsewhere: the field holds their offset
            (offset,) = struct.unpack(self._order + ("Q" if self._big else "I"), field)
            field = self._src.read(offset, n * size, f"the values of tag {_TIFF_TAGS[tag]}")
        return list(struct.unpack(self._order + code * n, field[: n * size]))

    def first(self, tag: int, default: int | None = None) -> int:
        return self.values(tag, default)[0]


def _tiff(src: _Source) -> ImageHeader:
    order = "<" if src.read(0, 2, "the byte order") == b"II" else ">"
    big = src.fmt == "BigTIFF"
    word = 8 if big else 4  # offsets, counts and value fields: 8 bytes in BigTIFF, else 4
    if big:
        offset_size, zero, ifd = struct.unpack(order + "HHQ", src.read(4, 12, "the BigTIFF header"))
        if offset_size != 8 or zero != 0:
            raise src.fail(f"header declares {offset_size}-byte offsets, expected 8; {_FIX}")
    else:
        (ifd,) = struct.unpack(order + "I", src.read(4, 4, "the first directory offset"))
    if ifd < 2 * word:
        raise src.fail(f"first directory offset {ifd} points into the file header; {_FIX}")
    count_code, count_size = ("Q", 8) if big else ("H", 2)
    (count,) = struct.unpack(order + count_code, src.read(ifd, count_size, "the first directory"))
    if not 1 <= count <= _MAX_TIFF_ENTRIES:
        raise src.fail(f"first directory has {count} entries, expected 1 to {_MAX_TIFF_ENTRIES}; {_FIX}")
    raw = src.read(ifd + count_size, count * (4 + 2 * word), "the first directory")
    formats = [f"{order}u2", f"{order}u2", f"{order}u{word}", f"V{word}"]
    layout = np.dtype({"names": ["tag", "type", "count", "value"], "formats": formats})
    return _tiff_image(src, _Directory(src, np.frombuffer(raw, layout), order, big))


def _tiff_image(src: _Source, tags: _Directory) -> ImageHeader:
    """OpenCV's TiffDecoder::readHeader on the first directory: decoded channels and sample type."""
    width, height, photometric = tags.first(256), tags.first(257), tags.first(262)
    gray = photometric in (0, 1)
    channels = tags.first(277, default=1 if gray else 3)
    bit_values = set(tags.values(258, default=1, limit=channels if 1 <= channels <= 4 else 1))
    bits, kind = max(bit_values), _TIFF_KINDS.get(tags.first(339, default=1))
    if 5 <= tags.first(274, default=1) <= 8:  # orientations that transpose the image
        width, height = height, width
    if photometric == _LOGLUV and channels == 3:
        return _header(src, width, height, 3, 32, sample_kind="float")
    if bits > 8 and (photometric > 2 or channels == 2):
        bits = 8
    if not 1 <= channels <= 4 or len(bit_values) > 1 or kind is None or (kind == "float" and bits < 32):
        found = f"{channels} samples of {sorted(bit_values)} bits, sample format {tags.first(339, 1)}"
        raise src.fail(f"has {found}, which is not accepted; {_FIX}")
    if bits == 1 or (bits == 8 and photometric != _PALETTE):
        return _header(src, width, height, 1 if gray else channels, 8, sample_kind=kind)
    if bits in (4, 8) and photometric == _PALETTE:
        return _header(src, width, height, 3, 8, sample_kind=kind)
    if bits in (10, 12, 14, 16):
        return _header(src, width, height, 1 if gray else channels, 16, sample_kind=kind)
    if bits in (32, 64):
        return _header(src, width, height, channels, bits, sample_kind=kind)
    raise src.fail(f"has {bits}-bit samples; accepted: 1, 4 (palette), 8, 10, 12, 14, 16, 32, 64; {_FIX}")


_FORMATS: tuple[tuple[str, tuple[bytes, ...], Callable[[_Source], ImageHeader]], ...] = (
    ("PNG", (b"\x89PNG\r\n\x1a\n",), _png),
    ("JPEG", (b"\xff\xd8\xff",), _jpeg),
    ("BMP", (b"BM",), _bmp),
    ("TIFF", (b"II*\x00", b"MM\x00*"), _tiff),
    ("BigTIFF", (b"II+\x00", b"MM\x00+"), _tiff),
)
