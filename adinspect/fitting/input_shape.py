"""The network input a product is fitted at (DESIGN.md §11, geometry).

Every training image must have one size (within `SIZE_TOLERANCE` per side: a camera's crop may
wander by a few pixels); the input (H, W) then follows the images' aspect ratio
(`geometry.choose_input_shape`), unless the config (or `fit --input-shape`) fixes it, in which case
it is checked against the images. The chosen shape is written into the config the package records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from adinspect.config import PipelineConfig, validate_config
from adinspect.errors import InputError
from adinspect.geometry import InputGeometry, check_override, choose_input_shape, input_limit
from adinspect.imageio import ImageHeaderError, read_image, read_image_header

SIZE_TOLERANCE = 0.05  # training images may differ from the first by this fraction per side


class ImageSizeError(InputError):
    """Training images of different sizes, or an input shape that does not suit them."""


def image_shape_of(path: Path) -> tuple[int, int]:
    """(H, W) of an image file from its header; decoded (and refused with a reason) when the header
    cannot say."""
    try:
        header = read_image_header(path)
    except ImageHeaderError:
        shape = read_image(path).shape[:2]  # raises ImageReadError naming the file and what is wrong
        return int(shape[0]), int(shape[1])
    return header.height, header.width


def training_image_shape(paths: Sequence[Path]) -> tuple[int, int]:
    """(H, W) of the first training image, after checking that every other one has about that size.

    Raises:
        ImageSizeError: naming the first image whose size differs, both sizes and what to do.
    """
    first = image_shape_of(paths[0])
    for path in paths[1:]:
        shape = image_shape_of(path)
        if any(abs(a - b) > SIZE_TOLERANCE * b for a, b in zip(shape, first, strict=True)):
            raise ImageSizeError(
                f"{path} is {shape[0]}x{shape[1]} (HxW) but the first training image {paths[0]} is "
                f"{first[0]}x{first[1]}; all training images of a product must have one size (within "
                f"{SIZE_TOLERANCE:.0%} per side): crop or resize them to one size, or fit them as separate "
                "products"
            )
    return first


def resolve_input_shape(
    config: PipelineConfig, goods: Sequence[Path]
) -> tuple[PipelineConfig, InputGeometry]:
    """The config with its input shape decided from the training images, and why."""
    image_shape = training_image_shape(goods)
    method = config.method
    if method.input_shape is None:
        geometry = choose_input_shape(image_shape, method.image_size, method.side_multiple)
    else:
        try:
            geometry = check_override(method.input_shape, image_shape, method.side_multiple)
        except ValueError as exc:
            raise ImageSizeError(str(exc)) from exc
    return at_input_shape(config, geometry.input_shape), geometry


def chosen_geometry(geometry: InputGeometry, config: PipelineConfig) -> InputGeometry:
    """`geometry` as `fit --auto` left it: the same, or the rule's input at the short side it chose
    for `config` (a larger input where thin synthetic defects showed it keeps them: `fitting.choice`)."""
    if tuple(config.method.shape) == tuple(geometry.input_shape):
        return geometry
    method = config.method
    chosen = choose_input_shape(geometry.image_shape, method.image_size, method.side_multiple)
    reason = f"{chosen.reason}; S = {method.image_size} chosen by fit --auto (choice.json)"
    return chosen.model_copy(update={"reason": reason})


def check_asked_size(config: PipelineConfig, goods: Sequence[Path]) -> None:
    """A short side S the user asked for (`fit --image-size S`): ImageSizeError when the input it
    gives the training images is larger than they are, as for `--input-shape` (it would only magnify
    pixels; the preset's own S is not checked, so small images still fit at its default)."""
    method, multiple = config.method, config.method.side_multiple
    image_shape = training_image_shape(goods)
    h, w = choose_input_shape(image_shape, method.image_size, multiple).input_shape
    limit = input_limit(image_shape, multiple)
    if h > limit[0] or w > limit[1]:
        raise ImageSizeError(
            f"--image-size {method.image_size} gives an input of {h}x{w} (HxW), larger than the training "
            f"images ({image_shape[0]}x{image_shape[1]}; at most {limit[0]}x{limit[1]} in multiples of "
            f"{multiple}): it would only magnify pixels; choose a smaller S"
        )


def at_input_shape(config: PipelineConfig, shape: tuple[int, int]) -> PipelineConfig:
    """`config` with method.input_shape = `shape` (H, W) and image_size its short side; a config
    that already names another shape is a ValueError (its features were made at `shape`)."""
    given = config.method.input_shape
    if given is not None and tuple(given) != tuple(shape):
        raise ValueError(f"the config's input shape {given} differs from the features' {shape}")
    raw = json.loads(config.model_dump_json())
    raw["method"].update(input_shape=list(shape), image_size=min(shape))
    return validate_config(raw, source="the fitted config")


def parse_input_shape(text: str, flag: str = "--input-shape") -> tuple[int, int]:
    """'640x256' (H x W) → (640, 256); anything else raises ImageSizeError with an example."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        h = w = 0
    if len(parts) != 2 or h < 1 or w < 1:
        raise ImageSizeError(f"{flag}: expected HEIGHTxWIDTH in pixels, e.g. 640x256, got {text!r}")
    return h, w
