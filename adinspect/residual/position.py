"""Per-position normalisation of the anomaly map by the good training images' out-of-fold maps.

Where good parts themselves differ from their references (image borders, a reflection that
moves, a seam), the raw map is high on every image; a defect elsewhere must then beat that.
z(y, x) = (map(y, x) − μ(y, x)) / max(σ(y, x), median σ): μ and σ are the mean and standard
deviation of the good images' out-of-fold maps at each pixel; the floor (the median σ over the
map) keeps flat places from turning noise into large z. μ and the floored σ become constants of
the exported graph (`PositionNorm`); `MapMoments` accumulates them from maps a chunk at a time,
so no set of maps is ever held whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class PositionNorm(nn.Module):
    """(B, 1, H, W) map → (map − mean) / scale, both (H, W) constants (buffers, exported as is)."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        if mean.shape != scale.shape or mean.dim() != 2:
            raise ValueError(
                f"mean and scale must be (H, W) alike, got {tuple(mean.shape)}, {tuple(scale.shape)}"
            )
        if not bool(torch.all(scale > 0)):
            raise ValueError("position scale must be positive everywhere")
        self.register_buffer("mean", mean.float().contiguous())
        self.register_buffer("scale", scale.float().contiguous())

    def forward(self, amap: torch.Tensor) -> torch.Tensor:
        return (amap - self.mean) / self.scale


@dataclass
class MapMoments:
    """Running per-pixel sums of maps (H, W), float64: count, Σ map, Σ map²."""

    total: torch.Tensor
    squares: torch.Tensor
    count: int = 0

    @classmethod
    def zeros(cls, shape: tuple[int, int]) -> MapMoments:
        return cls(torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64))

    def add(self, maps: torch.Tensor) -> None:
        """Accumulate maps (B, H, W)."""
        m = maps.double()
        self.total += m.sum(0)
        self.squares += (m * m).sum(0)
        self.count += m.shape[0]

    def without(self, maps: torch.Tensor) -> MapMoments:
        """The moments with maps (B, H, W), which were added before, taken out again."""
        m = maps.double()
        return MapMoments(self.total - m.sum(0), self.squares - (m * m).sum(0), self.count - m.shape[0])

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, scale) (H, W) float32: scale = max(std, median std), never zero."""
        if self.count < 2:
            raise ValueError(f"per-position statistics need at least 2 maps, got {self.count}")
        mean = self.total / self.count
        std = (self.squares / self.count - mean * mean).clamp_min(0.0).sqrt()
        floor = float(np.median(std.numpy()))  # the usual median (torch's takes the lower middle)
        if floor <= 0.0:
            floor = float(std.max()) or 1.0
        return mean.float(), std.clamp_min(floor).float()
