"""Reading and decoding images and masks (numpy + opencv only; safe for the serving path).

Every reader returns the same thing whatever the file holds: ``uint8`` RGB ``(H, W, 3)`` for
images and ``bool`` ``(H, W)`` for masks. Conventions:

* 16-bit samples become 8-bit by rounding ``x / 257`` (65535 -> 255), never by truncation.
* Gray images are replicated to three channels.
* An alpha channel is **composited on black** (``rgb * alpha / max``): fully transparent pixels
  become black, opaque pixels keep their colour exactly.
* JPEG EXIF orientation is applied, as an image viewer would.

Unreadable input (missing, empty, unknown format, corrupt or truncated files) raises
:class:`ImageReadError` naming the file. OpenCV sometimes decodes a truncated JPEG or PNG into a
partly grey image without complaint, so the container structure is checked first: a JPEG must
reach its EOI marker, a PNG its IEND chunk, and BMP/TIFF pixel data must lie inside the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from adinspect.imageio.checks import PNG_SIGNATURE, bmp_problem, jpeg_problem, png_problem, tiff_problem
from adinspect.imageio.convert import to_rgb8
from adinspect.imageio.errors import ImageReadError
from adinspect.imageio.header import ImageHeader, read_image_header
from adinspect.imageio.limits import (
    DEFAULT_DECODE_BUDGET,
    DEFAULT_MAX_PIXELS,
    check_decodable,
    check_image_size,
)

__all__ = [
    "DEFAULT_DECODE_BUDGET",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "check_image_size",
    "decode_image",
    "decode_mask",
    "read_image",
    "read_mask",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_FIX = "re-export or re-copy the file, or remove it from the data folder"
Buffer = bytes | bytearray | memoryview


# --------------------------------------------------------------------------- reading


def read_image(
    path: str | os.PathLike[str],
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = DEFAULT_DECODE_BUDGET,
) -> np.ndarray:
    """Read an image file as RGB.

    Args:
        path: PNG, JPEG, BMP or TIFF file; 8- or 16-bit; gray, RGB or RGBA.
        max_pixels: refuse images with more pixels (from the header, before reading the file
            further); None: no limit.
        max_bytes: refuse images whose decoding would take more memory (`limits.decode_cost`).

    Returns:
        ``(H, W, 3)`` uint8 RGB array.

    Raises:
        ImageReadError: missing, empty, corrupt, truncated, unsupported or too large file.
    """
    header = read_image_header(path)  # a few header blocks: the rest of a bomb is never read
    check_decodable(header, Path(path).stat().st_size, max_pixels, max_bytes, str(path))
    return decode_image(_read_bytes(path), name=str(path), max_pixels=max_pixels, max_bytes=max_bytes)


def decode_image(
    data: Buffer,
    name: str = "<bytes>",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = DEFAULT_DECODE_BUDGET,
) -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, BMP, TIFF) to ``(H, W, 3)`` uint8 RGB.

    The size, sample type and the memory decoding would take are known from the header
    (`imageio.header`) and checked before any pixel is decoded.

    Args:
        data: the encoded file content.
        name: what to call the image in error messages (a path, a request id).
        max_pixels: refuse images with more pixels; None: no limit.
        max_bytes: refuse images whose decoding would take more memory; None: no limit.

    Raises:
        ImageReadError: empty, corrupt, truncated, unsupported or too large data.
    """
    header = _header(data, name)
    check_decodable(header, len(data), max_pixels, max_bytes, name)
    raw, fmt = _decode_raw(data, name, header)
    if raw.ndim == 3 and raw.shape[2] not in (1, 3, 4):
        channels = raw.shape[2]
        del raw
        raise ImageReadError(
            f"{name}: {fmt} image has {channels} channels, expected 1 (gray), 3 (RGB) or 4 (RGBA); "
            "convert it to an RGB PNG"
        )
    return to_rgb8(raw)


def read_mask(path: str | os.PathLike[str], expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a defect mask: nonzero pixels are defect.

    Args:
        path: mask file, usually a single-channel PNG with values {0, 255}. Color masks count a
            pixel as defect when any color channel is nonzero; alpha is ignored. JPEG masks are
            thresholded at half range, since compression leaves small nonzero values.
        expected_shape: ``(H, W)`` of the image the mask belongs to, checked when given.

    Returns:
        ``(H, W)`` bool array.

    Raises:
        ImageReadError: unreadable file, or its size differs from ``expected_shape``.
    """
    return decode_mask(_read_bytes(path), name=str(path), expected_shape=expected_shape)


def decode_mask(
    data: bytes | bytearray | memoryview,
    name: str = "<bytes>",
    expected_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode encoded mask bytes to ``(H, W)`` bool; see :func:`read_mask`."""
    header = _header(data, name)
    check_decodable(header, len(data), DEFAULT_MAX_PIXELS, DEFAULT_DECODE_BUDGET, name)
    raw, fmt = _decode_raw(data, name, header)
    if raw.ndim == 3:
        raw = raw[:, :, :3].max(axis=2) if raw.shape[2] >= 3 else raw[:, :, 0]
    threshold = np.iinfo(raw.dtype).max // 2 if fmt == "JPEG" else 0
    mask = raw > threshold
    if expected_shape is not None and mask.shape != tuple(expected_shape):
        exp_h, exp_w = expected_shape
        raise ImageReadError(
            f"{name}: mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image is {exp_h}x{exp_w}; "
            "a mask must have exactly its image's size: fix the mask or its pairing with the image"
        )
    return mask


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Whole file content, with file-system problems turned into ImageReadError."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: file not found; check the path (working directory is {Path.cwd()})")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, expected an image file")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot read file ({exc.strerror}); check its permissions") from exc


def _header(data: Buffer, name: str) -> ImageHeader:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageReadError(f"{name}: expected encoded image bytes, got {type(data).__name__}")
    return read_image_header(data, name)


def _decode_raw(data: Buffer, name: str, header: ImageHeader) -> tuple[np.ndarray, str]:
    """Check the container is complete, then decode with OpenCV (BGR order, native depth)."""
    data = data if isinstance(data, bytes) else bytes(data)
    fmt = _check_complete(data, name)
    flags = cv2.IMREAD_COLOR if fmt == "JPEG" else cv2.IMREAD_UNCHANGED
    raw: np.ndarray | None = None
    try:
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        problem = f"({exc.err})"
    else:
        problem = "and could not be decoded"
    if raw is None or not raw.size:  # raised out here: the exception keeps no frame holding pixels
        raise ImageReadError(f"{name}: {fmt} data is corrupt {problem}; {_FIX}")
    if raw.shape[0] * raw.shape[1] != header.pixels or raw.dtype != header.dtype:
        got = f"{raw.shape[1]}x{raw.shape[0]} {raw.dtype}"
        del raw
        raise ImageReadError(
            f"{name}: {fmt} decoded to {got}, but its header declares {header.width}x{header.height} "
            f"{header.dtype}; {_FIX}"
        )
    return raw, fmt


# --------------------------------------------------------------------------- container checks


def _check_complete(data: bytes, name: str) -> str:
    """Return the format name, or raise ImageReadError if the file is truncated or not an image."""
    if data.startswith(PNG_SIGNATURE):
        problem, fmt = png_problem(data), "PNG"
    elif data.startswith(b"\xff\xd8\xff"):
        problem, fmt = jpeg_problem(data), "JPEG"
    elif data.startswith(b"BM"):
        problem, fmt = bmp_problem(data), "BMP"
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        problem, fmt = tiff_problem(data), "TIFF"
    elif data[:4] in (b"II+\x00", b"MM\x00+"):  # BigTIFF: left to libtiff
        problem, fmt = None, "TIFF"
    else:
        raise ImageReadError(
            f"{name}: not a PNG, JPEG, BMP or TIFF file (starts with {data[:8]!r}); "
            f"convert it to PNG or remove it from the data folder"
        )
    if problem:
        raise ImageReadError(f"{name}: {fmt} file is truncated or corrupt ({problem}); {_FIX}")
    return fmt
