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

from adinspect.errors import InputError
from adinspect.imageio.checks import PNG_SIGNATURE, bmp_problem, jpeg_problem, png_problem, tiff_problem
from adinspect.imageio.sizes import encoded_image_size

__all__ = [
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

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest image decoded (H*W), about 7300 x 5500. Checked from the header before decoding: a
20000 x 20000 file would otherwise cost 1.2 GB and seconds before anyone could refuse it."""

_FIX = "re-export or re-copy the file, or remove it from the data folder"


class ImageReadError(InputError):
    """An image or mask could not be read; the message names the file and what to do."""


# --------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB.

    Args:
        path: PNG, JPEG, BMP or TIFF file; 8- or 16-bit; gray, RGB or RGBA.
        max_pixels: refuse images with more pixels (from the header, before decoding); None: no limit.

    Returns:
        ``(H, W, 3)`` uint8 RGB array.

    Raises:
        ImageReadError: missing, empty, corrupt, truncated or unsupported file.
    """
    return decode_image(_read_bytes(path), name=str(path), max_pixels=max_pixels)


def decode_image(
    data: bytes | bytearray | memoryview, name: str = "<bytes>", max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, BMP, TIFF) to ``(H, W, 3)`` uint8 RGB.

    Args:
        data: the encoded file content.
        name: what to call the image in error messages (a path, a request id).
        max_pixels: refuse images with more pixels (from the header, before decoding); None: no limit.

    Raises:
        ImageReadError: empty, corrupt, truncated, unsupported or too large data.
    """
    check_image_size(encoded_image_size(bytes(data[:65536])), max_pixels, name)
    raw, fmt = _decode_raw(data, name)
    check_image_size((raw.shape[0], raw.shape[1]), max_pixels, name)
    # cv2.cvtColor, not a reversed-stride view + copy (py-spy: a quarter of decode_image on 900² PNGs)
    if raw.ndim == 2 or raw.shape[2] == 1:
        rgb = cv2.cvtColor(raw.reshape(raw.shape[0], raw.shape[1]), cv2.COLOR_GRAY2RGB)
    elif raw.shape[2] == 3:
        rgb = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
    elif raw.shape[2] == 4:
        rgb = _composite_on_black(raw[:, :, 2::-1], raw[:, :, 3])
    else:
        raise ImageReadError(
            f"{name}: {fmt} image has {raw.shape[2]} channels, expected 1 (gray), 3 (RGB) or 4 (RGBA); "
            "convert it to an RGB PNG"
        )
    return np.ascontiguousarray(_to_uint8(rgb))


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
    raw, fmt = _decode_raw(data, name)
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


def _decode_raw(data: bytes | bytearray | memoryview, name: str) -> tuple[np.ndarray, str]:
    """Check the container is complete, then decode with OpenCV (BGR order, native depth)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageReadError(f"{name}: expected encoded image bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ImageReadError(f"{name}: file is empty (0 bytes); {_FIX}")
    fmt = _check_complete(data, name)
    flags = cv2.IMREAD_COLOR if fmt == "JPEG" else cv2.IMREAD_UNCHANGED
    try:
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        raise ImageReadError(f"{name}: {fmt} data is corrupt ({exc.err}); {_FIX}") from exc
    if raw is None or raw.size == 0:
        raise ImageReadError(f"{name}: {fmt} data is corrupt and could not be decoded; {_FIX}")
    if raw.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(
            f"{name}: {fmt} samples are {raw.dtype}, expected 8- or 16-bit unsigned integers; "
            "convert the image to an 8- or 16-bit PNG"
        )
    return raw, fmt


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 unchanged; uint16 -> uint8 by rounding x / 257."""
    if image.dtype == np.uint8:
        return image
    return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _composite_on_black(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``color * alpha / max`` rounded, in the input's integer dtype. Shapes (H, W, 3), (H, W)."""
    full = int(np.iinfo(color.dtype).max)
    blended = (color.astype(np.int64) * alpha[:, :, None].astype(np.int64) + full // 2) // full
    return blended.astype(color.dtype)


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


# --------------------------------------------------------------------------- size limit


def check_image_size(size: tuple[int, int] | None, max_pixels: int | None, name: str) -> None:
    """Refuse a (height, width) above max_pixels; None (size unknown yet) passes."""
    if size is None:
        return
    height, width = size
    if max_pixels is not None and height * width > max_pixels:
        raise ImageReadError(
            f"{name}: image of {width}x{height} = {height * width} pixels is larger than the "
            f"{max_pixels} pixels accepted; downscale it (or raise the limit)"
        )
