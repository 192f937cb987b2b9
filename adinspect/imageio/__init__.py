"""Safe image reading and writing (numpy + opencv only; safe for the serving path).

Every reader returns ``uint8`` RGB ``(H, W, 3)`` for images and ``bool`` ``(H, W)`` for masks and
raises :class:`ImageReadError` naming the file for anything it cannot read: `decode` reads and
decodes, `checks` walks the container to its end first, `sizes` reads the size from the header
before decoding, `write` encodes and writes PNGs.
"""

from adinspect.imageio.decode import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageReadError,
    check_image_size,
    decode_image,
    decode_mask,
    read_image,
    read_mask,
)
from adinspect.imageio.sizes import encoded_image_size
from adinspect.imageio.write import encode_mask_png, encode_png, write_mask, write_png

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "check_image_size",
    "decode_image",
    "decode_mask",
    "encode_mask_png",
    "encode_png",
    "encoded_image_size",
    "read_image",
    "read_mask",
    "write_mask",
    "write_png",
]
