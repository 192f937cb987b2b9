"""What an image may cost before it is decoded: a pixel limit and a memory budget, both checked
against the header (`imageio.header`), so a decode bomb is refused before any pixel exists.

The budget is the peak memory `decode_image` holds for one image, estimated from the header with
the factors measured on OpenCV 4 (peak RSS over the decoded array's size): ``cv2.imdecode`` keeps
its own buffer while it copies it into the numpy array it returns (2x the array), an animated PNG
holds 3 more canvases (4x), and libtiff reads through a strip buffer of 4 bytes per pixel. Then
the conversion to uint8 RGB holds the decoded array, the output and a few row chunks
(`imageio.convert`). The encoded bytes count too: they are alive while all this happens.
"""

from __future__ import annotations

from adinspect.imageio.errors import ImageReadError
from adinspect.imageio.header import ImageHeader

__all__ = [
    "CONVERT_SCRATCH",
    "DEFAULT_DECODE_BUDGET",
    "DEFAULT_MAX_PIXELS",
    "check_decodable",
    "check_image_size",
    "decode_cost",
]

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest image decoded (H*W), about 7300 x 5500. Checked from the header before decoding: a
20000 x 20000 file would otherwise cost 1.2 GB and seconds before anyone could refuse it."""

DEFAULT_DECODE_BUDGET = 512 * 2**20
"""Most memory one image may take to decode (bytes): every 8-bit image up to the pixel limit
(a 40 MP RGB PNG needs about 420 MiB), 16-bit RGB up to about 25 MP."""

CONVERT_SCRATCH = 32 * 2**20
"""Temporaries of the row-chunked 16-bit and alpha conversions (`convert.CHUNK_PIXELS` at a time)."""

DECODE_SLACK = 16 * 2**20
"""What decoding allocates besides the arrays (libpng/libjpeg/libtiff state, first-use set-up)."""

_MIB = 2**20


def decode_cost(header: ImageHeader, encoded_bytes: int) -> int:
    """Peak bytes `decode_image` holds for this image (estimated from its header; see the module)."""
    pixels = header.pixels
    decoded = pixels * 3 if header.format == "JPEG" else header.decoded_bytes  # JPEG: IMREAD_COLOR
    opencv = (4 if header.animated else 2) * decoded
    if header.format in ("TIFF", "BigTIFF"):
        opencv += 4 * pixels  # libtiff's RGBA strip buffer
    convert = decoded + 3 * pixels + (CONVERT_SCRATCH if header.bit_depth > 8 or header.channels == 4 else 0)
    return encoded_bytes + max(opencv, convert) + DECODE_SLACK


def check_image_size(size: tuple[int, int] | None, max_pixels: int | None, name: str) -> None:
    """Refuse a (height, width) above max_pixels; None (size unknown) passes."""
    if size is None:
        return
    height, width = size
    if max_pixels is not None and height * width > max_pixels:
        raise ImageReadError(
            f"{name}: image of {width}x{height} = {height * width} pixels is larger than the "
            f"{max_pixels} pixels accepted; downscale it (or raise the limit)"
        )


def check_decodable(
    header: ImageHeader, encoded_bytes: int, max_pixels: int | None, max_bytes: int | None, name: str
) -> None:
    """Refuse, from the header alone, samples that are not 8/16-bit unsigned, more pixels than
    `max_pixels` and a decode that would need more than `max_bytes` (None: no limit)."""
    if header.sample_kind != "uint" or header.bit_depth not in (8, 16):
        raise ImageReadError(
            f"{name}: {header.format} samples are {header.bit_depth}-bit {header.sample_kind}, expected 8- "
            "or 16-bit unsigned integers; convert the image to an 8- or 16-bit PNG"
        )
    check_image_size((header.height, header.width), max_pixels, name)
    cost = decode_cost(header, encoded_bytes)
    if max_bytes is not None and cost > max_bytes:
        kind = f"{header.channels} x {header.bit_depth}-bit {header.format}"
        raise ImageReadError(
            f"{name}: decoding this {header.width}x{header.height} {kind} image would take about "
            f"{cost / _MIB:.0f} MiB, more than the {max_bytes / _MIB:.0f} MiB allowed per image; send it "
            "8-bit or smaller (or raise the decode budget)"
        )
