"""Input geometry: image → normalised network input (numpy + opencv; shared by fitting, the inspector
and Triton), and the rule `fit` uses to choose that input's (H, W) from the training images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

SQUARE_ASPECT = 1.15  # training images within this aspect ratio of square get an S x S input
MAX_ASPECT = 4  # the long side is at most this many short sides


class PreprocessSpec(BaseModel):
    """The backbone's input facts, saved in the model package so no consumer re-types them.

    `height` x `width` is the network input; `image_size` is its short side S. Packages from before
    rectangular inputs record only `image_size`: their input is S x S.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    height: int
    width: int

    @model_validator(mode="before")
    @classmethod
    def _square_when_unrecorded(cls, data: Any) -> Any:
        if isinstance(data, dict) and "image_size" in data:
            data = {"height": data["image_size"], "width": data["image_size"], **data}
        return data

    @property
    def shape(self) -> tuple[int, int]:
        """The network input (H, W)."""
        return self.height, self.width


class InputGeometry(BaseModel):
    """What `fit` chose as the network input and why (the package's manifest and model card)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_shape: tuple[int, int]  # (H, W) of the training images
    input_shape: tuple[int, int]  # (H, W) of the network input
    rule: Literal["square", "aspect", "override"]
    reason: str


def choose_input_shape(image_shape: tuple[int, int], short_side: int, multiple: int) -> InputGeometry:
    """The network input for training images of `image_shape` (H, W).

    Within `SQUARE_ASPECT` of square: S x S. Otherwise the short side is S and the long side the
    multiple of `multiple` nearest S · aspect, at most `MAX_ASPECT` · S, so thin defects keep their
    width instead of being squashed along the long side.
    """
    h, w = image_shape
    aspect = max(h, w) / min(h, w)
    s = short_side
    if aspect <= SQUARE_ASPECT:
        reason = f"the training images are {h}x{w} (HxW), within {SQUARE_ASPECT} of square: S x S"
        return InputGeometry(image_shape=(h, w), input_shape=(s, s), rule="square", reason=reason)
    long = max(multiple, multiple * int(s * aspect / multiple + 0.5))
    capped = long > MAX_ASPECT * s
    long = min(long, MAX_ASPECT * s)
    shape = (long, s) if h > w else (s, long)
    reason = (
        f"the training images are {h}x{w} (HxW), aspect {aspect:.2f}: short side S = {s}, long side the "
        f"multiple of {multiple} nearest S x {aspect:.2f}, at most {MAX_ASPECT} S = {MAX_ASPECT * s}"
        + (" (capped: the input is squashed along the long side)" if capped else "")
    )
    return InputGeometry(image_shape=(h, w), input_shape=shape, rule="aspect", reason=reason)


def check_override(
    input_shape: tuple[int, int], image_shape: tuple[int, int], multiple: int, flag: str = "--input-shape"
) -> InputGeometry:
    """An input shape the user asked for, checked against the training images: ValueError when a side
    is larger than the image's rounded up to `multiple` (it would only magnify pixels)."""
    (h, w), (ih, iw) = input_shape, image_shape
    limit = input_limit(image_shape, multiple)
    if h > limit[0] or w > limit[1]:
        raise ValueError(
            f"{flag} {h}x{w} (HxW) is larger than the training images ({ih}x{iw}; at most "
            f"{limit[0]}x{limit[1]} in multiples of {multiple}); choose a smaller input"
        )
    reason = f"asked for with {flag} {h}x{w}; the training images are {ih}x{iw} (HxW)"
    return InputGeometry(image_shape=(ih, iw), input_shape=(h, w), rule="override", reason=reason)


def input_limit(image_shape: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The largest input (H, W) for images of `image_shape`: each side rounded up to `multiple`."""
    return (-(-image_shape[0] // multiple) * multiple, -(-image_shape[1] // multiple) * multiple)


def as_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) from a side S (a square) or an (H, W) pair."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_rgb(image: np.ndarray, name: str) -> np.ndarray:
    """Validate an RGB uint8 HxWx3 array; raise ValueError naming the image and what was received."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{name}: expected a uint8 RGB array, got dtype {got}")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 8:
        raise ValueError(f"{name}: expected shape (H, W, 3) with H, W >= 8, got {image.shape}")
    return image


def turned(image: np.ndarray, turn: int, rotations: int) -> np.ndarray:
    """`image` (H, W, ...) turned counter-clockwise by `turn` of `rotations` equal steps of a full
    circle. Multiples of 90° are exact on the pixel grid; other angles (rotations 8) turn the image
    about its centre in its own frame, bilinear, the corners that come into view filled by
    reflecting the image's border (background, on a part photographed with a margin)."""
    degrees = 360 * turn // rotations
    if degrees % 90 == 0:
        return np.ascontiguousarray(np.rot90(image, degrees // 90))
    return turned_in_frame(image, degrees, cv2.BORDER_REFLECT_101)


def turned_in_frame(
    image: np.ndarray, degrees: float, border: int, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """`image` (H, W[, C]) turned counter-clockwise by `degrees` about its centre in its own frame,
    the corners that come into view filled by OpenCV's `border` mode (constant: zeros)."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2 - 0.5, height / 2 - 0.5), degrees, 1.0)
    return cv2.warpAffine(
        image, matrix, (width, height), flags=interpolation, borderMode=border, borderValue=0
    )


def resize_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, C) uint8 → (h, w, C) uint8 at `shape` (h, w): area-averaged when shrinking, else bilinear."""
    height, width = shape
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if h > height or w > width else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def preprocess(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (3, h, w) float32 at the spec's input shape, normalised with the
    backbone's mean/std."""
    resized = resize_to(image, spec.shape).astype(np.float32) / 255.0
    normed = (resized - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(normed.transpose(2, 0, 1))


def preprocess_batch(images: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """List of (H_i, W_i, 3) uint8 → (B, 3, h, w) float32."""
    return np.stack([preprocess(im, spec) for im in images])
