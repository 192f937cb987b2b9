"""InvAD: one feature-inversion model for the good images of many products (COCO-AD / InvAD).

The frozen backbone's multi-scale maps (shallow → deep, e.g. EfficientNet-Lite0's stride-4/8/16
maps with 24/40/112 channels) are fused into a small latent at the deepest grid; a style network
turns it into one style *map* per scale; a generator that starts from a learned constant and is
driven only through style-modulated convolutions (`stylemap.py`) inverts the latent back to the
features, scale by scale. Normal features invert well; a defect, which the latent and the
generator never learned to express, does not. The anomaly map (`invad_graph.py`) is the
per-scale cosine distance between the features and their reconstruction, upsampled to the image,
averaged and blurred.

Blocks as in the reference (ADer `model/invad.py`, config `configs/invad/invad_mvtec.py`):
  Fuser: per scale a patchify conv (kernel = stride = its factor to the deepest grid) + BN,
    concatenation, 1x1 conv + BN + ReLU to `style_width`, one ResNet bottleneck, then per scale
    (deep → shallow) a conv (an up-sampling conv between scales, lr x 0.01) and a second conv.
  Generator: a learned constant at the deepest grid and one conv; per scale (deep → shallow) two
    convs turn the style map into `latent_channels`, then `blocks_per_scale` StyledResBlocks
    whose first block up-samples (except at the deepest scale) to that scale's channels.
Shapes are fixed by `InvADConfig` (static for export); the batch is free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

from adinspect.models.stylemap import ConvLayer, StyledResBlock

INVAD_VERSION = 2


@dataclass(frozen=True)
class InvADConfig:
    """Sizes of InvAD. `channels`/`strides` are the backbone's maps (shallow → deep), `image_size`
    the input side S; the rest are named defaults (reference values in brackets).

    style_width: style map widths are min(channels, style_width) [64].
    latent_channels: width of each scale's latent style code, the bottleneck [16].
    blocks_per_scale: StyledResBlocks per scale [2].
    style_kernel: kernel of the convs that turn a style map into gamma/beta [3].
    lr_mul: learning-rate multiplier of the fuser's up-sampling convs [0.01].
    blur_sigma: Gaussian blur of the anomaly map in pixels at `image_size` [4 at 256].
    pad: pixels of reflection added on every side of the image before the backbone (a multiple of
        the deepest stride; 0: none) [not in the reference]. InvAD reconstructs the maps of the
        padded image; the anomaly map is cropped back to the image (`invad_graph.py`).
    """

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    image_size: int
    style_width: int = 64
    latent_channels: int = 16
    blocks_per_scale: int = 2
    style_kernel: int = 3
    lr_mul: float = 0.01
    blur_sigma: float = 4.0
    pad: int = 0

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.strides) or len(self.channels) < 2:
            raise ValueError(
                f"channels {self.channels} and strides {self.strides}: expected two or more maps, "
                "one stride per map"
            )
        for a, b in zip(self.strides, self.strides[1:], strict=False):
            if b != 2 * a:
                raise ValueError(f"strides {self.strides}: each map must have twice the previous stride")
        if self.image_size % self.strides[-1]:
            raise ValueError(f"image_size {self.image_size} is not a multiple of stride {self.strides[-1]}")
        if self.pad < 0 or self.pad % self.strides[-1] or self.pad >= self.image_size:
            raise ValueError(
                f"pad {self.pad}: expected a multiple of stride {self.strides[-1]} in [0, {self.image_size})"
            )
        if self.style_widths[-1] % 4 or self.latent_channels < 1 or self.blocks_per_scale < 1:
            raise ValueError(
                f"deepest style width {self.style_widths[-1]} (a multiple of 4, for the bottleneck), "
                f"latent_channels {self.latent_channels} (>= 1) and blocks_per_scale "
                f"{self.blocks_per_scale} (>= 1): out of range"
            )

    @property
    def grids(self) -> tuple[int, ...]:
        """Side of each feature map InvAD reconstructs (of the padded image), shallow → deep."""
        return tuple(self.padded_size // s for s in self.strides)

    @property
    def padded_size(self) -> int:
        """The backbone's input side: the image plus `pad` on both sides."""
        return self.image_size + 2 * self.pad

    @property
    def style_widths(self) -> tuple[int, ...]:
        return tuple(min(c, self.style_width) for c in self.channels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> InvADConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ValueError(
                f"unknown InvAD config keys {sorted(unknown)}; expected a subset of {sorted(known)}"
            )
        fixed: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**fixed)


class Fuser(nn.Module):
    """Backbone maps (shallow → deep) → style maps (deep → shallow), each at its scale's grid."""

    def __init__(self, cfg: InvADConfig) -> None:
        super().__init__()
        deep = cfg.strides[-1]
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, deep // s, stride=deep // s), nn.BatchNorm2d(c))
            for c, s in zip(cfg.channels, cfg.strides, strict=True)
        )
        width = cfg.style_widths[-1]
        self.cat = nn.Sequential(
            nn.Conv2d(sum(cfg.channels), width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.bottleneck = Bottleneck(width, width // Bottleneck.expansion)
        stages, previous = [], width
        for i, current in enumerate(reversed(cfg.style_widths)):
            first = ConvLayer(previous, current, 3, upsample=i > 0, lr_mul=cfg.lr_mul)
            stages.append(nn.Sequential(first, ConvLayer(current, current, 3)))
            previous = current
        self.stages = nn.ModuleList(stages)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = torch.cat([down(f) for down, f in zip(self.down, features, strict=True)], dim=1)
        x = self.bottleneck(self.cat(x))
        styles = []
        for stage in self.stages:
            x = stage(x)
            styles.append(x)
        return styles


class Generator(nn.Module):
    """Style maps (deep → shallow) → reconstructed features (deep → shallow)."""

    def __init__(self, cfg: InvADConfig) -> None:
        super().__init__()
        deep_c, deep_g = cfg.channels[-1], cfg.grids[-1]
        self.constant = nn.Parameter(torch.randn(1, deep_c, deep_g, deep_g))
        self.conv_in = ConvLayer(deep_c, deep_c, 3)
        latents, scales, previous = [], [], deep_c
        for i, (channels, style) in enumerate(
            zip(reversed(cfg.channels), reversed(cfg.style_widths), strict=True)
        ):
            latents.append(
                nn.Sequential(ConvLayer(style, style, 3), ConvLayer(style, cfg.latent_channels, 3))
            )
            width, k = cfg.latent_channels, cfg.style_kernel
            blocks = [StyledResBlock(previous, channels, width, upsample=i > 0, style_kernel=k)]
            blocks += [
                StyledResBlock(channels, channels, width, upsample=False, style_kernel=k)
                for _ in range(cfg.blocks_per_scale - 1)
            ]
            scales.append(nn.ModuleList(blocks))
            previous = channels
        self.latents = nn.ModuleList(latents)
        self.scales = nn.ModuleList(scales)

    def forward(self, styles: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = self.conv_in(self.constant.expand(styles[0].shape[0], -1, -1, -1))
        outs = []
        for latent, blocks, style in zip(self.latents, self.scales, styles, strict=True):
            code = latent(style)
            for block in blocks.children():
                x = block(x, code)
            outs.append(x)
        return outs


class InvAD(nn.Module):
    """Backbone maps f_1..f_n (B, c_i, S/s_i, S/s_i), shallow → deep → their reconstructions,
    same shapes and order. Pure: no backbone, no I/O; export-friendly (static shapes)."""

    def __init__(self, cfg: InvADConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fuser = Fuser(cfg)
        self.generator = Generator(cfg)

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(reversed(self.generator(self.fuser(features))))


def reconstruction_loss(
    features: Sequence[torch.Tensor], reconstructed: Sequence[torch.Tensor]
) -> torch.Tensor:
    """The reference's training loss (ADer `L2Loss`, lam 1): sum over scales of the mean squared
    error between each backbone map and its reconstruction. Scalar tensor."""
    return sum(
        (F.mse_loss(r, f) for f, r in zip(features, reconstructed, strict=True)), start=torch.zeros(())
    )
