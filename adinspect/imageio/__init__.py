"""Safe image reading and writing (numpy + opencv only; safe for the serving path).

Every reader returns ``uint8`` RGB ``(H, W, 3)`` for images and ``bool`` ``(H, W)`` for masks and
raises :class:`ImageReadError` naming the file for anything it cannot read: `header` sizes an image
from its header alone, `limits` refuses it from that (pixel limit, decode memory budget), `checks`
walks the container to its end, `decode` reads and decodes, `convert` turns what OpenCV decoded
into uint8 RGB in bounded memory, `write` encodes and writes PNGs.
"""

from adinspect.imageio.decode import (
    IMAGE_EXTENSIONS,
    decode_image,
    decode_mask,
    read_image,
    read_mask,
)
from adinspect.imageio.errors import ImageReadError
from adinspect.imageio.header import ImageHeader, ImageHeaderError, read_image_header
from adinspect.imageio.limits import (
    DEFAULT_DECODE_BUDGET,
    DEFAULT_MAX_PIXELS,
    check_decodable,
    check_image_size,
    decode_cost,
)
from adinspect.imageio.write import encode_mask_png, encode_png, write_mask, write_png

__all__ = [
    "DEFAULT_DECODE_BUDGET",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageHeader",
    "ImageHeaderError",
    "ImageReadError",
    "check_decodable",
    "check_image_size",
    "decode_cost",
    "decode_image",
    "decode_mask",
    "encode_mask_png",
    "encode_png",
    "read_image",
    "read_image_header",
    "read_mask",
    "write_mask",
    "write_png",
]
