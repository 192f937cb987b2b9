"""What a training step does to a batch before the network sees it: the same random turn of
residuals, masks and images (`augment`), images normalised as served (`normalise_images`), and the
scale that brings residuals to unit size inside the networks (`residual_scale`)."""

from __future__ import annotations

import numpy as np
import torch

from adinspect.geometry import PreprocessSpec
from adinspect.train.residual_data import TrainDataError


def augment(
    residual: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator, images: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The same random flip / 90° rotation of a batch of residuals (B, d, h, w), masks (B, H, W)
    and, when given, images (B, 3, H, W). A rectangular batch turns by 0° or 180° only (a quarter
    turn would swap its sides), so with the flip it still meets all four of a rectangle's symmetries."""
    k = int(rng.integers(4))
    if masks.shape[-2] != masks.shape[-1]:
        k &= 2
    if k:
        residual, masks = torch.rot90(residual, k, (-2, -1)), torch.rot90(masks, k, (-2, -1))
        images = torch.rot90(images, k, (-2, -1)) if images is not None else None
    if rng.random() < 0.5:
        residual, masks = residual.flip(-1), masks.flip(-1)
        images = images.flip(-1) if images is not None else None
    return residual, masks, images


def normalise_images(images: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """(B, H_in, W_in, 3) uint8 at the model size → (B, 3, H_in, W_in) float32, as `preprocess`
    normalises."""
    mean = torch.tensor(spec.mean, dtype=torch.float32)[None, :, None, None]
    std = torch.tensor(spec.std, dtype=torch.float32)[None, :, None, None]
    return (images.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def residual_scale(residual: torch.Tensor) -> float:
    """1 / RMS of residual entries: brings R to unit scale inside the networks."""
    rms = float(residual.float().pow(2).mean().sqrt())
    if not np.isfinite(rms) or rms <= 0:
        raise TrainDataError(
            "residuals of the training images are all zero; is the bank made of these images?"
        )
    return 1.0 / rms
