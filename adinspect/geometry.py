"""Image → normalised network input (numpy + opencv; shared by fitting, the inspector and Triton)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict


class PreprocessSpec(BaseModel):
    """The backbone's input facts, saved in the model package so no consumer re-types them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def check_rgb(image: np.ndarray, name: str) -> np.ndarray:
    """Validate an RGB uint8 HxWx3 array; raise ValueError naming the image and what was received."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{name}: expected a uint8 RGB array, got dtype {got}")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 8:
        raise ValueError(f"{name}: expected shape (H, W, 3) with H, W >= 8, got {image.shape}")
    return image


def preprocess(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (3, S, S) float32 normalised with the backbone's mean/std."""
    size = spec.image_size
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if h > size or w > size else cv2.INTER_LINEAR
    resized = cv2.resize(image, (size, size), interpolation=interp).astype(np.float32) / 255.0
    normed = (resized - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(normed.transpose(2, 0, 1))


def preprocess_batch(images: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """List of (H_i, W_i, 3) uint8 → (B, 3, S, S) float32."""
    return np.stack([preprocess(im, spec) for im in images])
