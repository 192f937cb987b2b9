"""InvAD: one feature-inversion model for the good images of many products (COCO-AD / InvAD).

The frozen backbone's multi-scale maps (shallow → deep, e.g. EfficientNet-Lite0's stride-4/8/16
maps with 24/40/112 channels) are fused into a small latent at the deepest grid; a style network
turns it into one style *map* per scale; a generator that starts from a learned constant and is
driven only through style-modulated convolutions (`stylemap.py`) inverts the latent back to the
features, scale by scale. Normal features invert well; a defect, which the latent and the
generator never learned to express, does not. The anomaly map is the per-scale cosine distance
between the features and their reconstruction, upsampled to the image, averaged and blurred.

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
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

from adinspect.models.stylemap import ConvLayer, StyledResBlock
from adinspect.residual.model import gaussian_kernel

INVAD_VERSION = 1
_COS_EPS = 1e-8


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
    preset: str = "cpu"

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
        if self.style_widths[-1] % 4 or self.latent_channels < 1 or self.blocks_per_scale < 1:
            raise ValueError(
                f"deepest style width {self.style_widths[-1]} (a multiple of 4, for the bottleneck), "
                f"latent_channels {self.latent_channels} (>= 1) and blocks_per_scale "
                f"{self.blocks_per_scale} (>= 1): out of range"
            )

    @property
    def grids(self) -> tuple[int, ...]:
        """Side of each feature map, shallow → deep."""
        return tuple(self.image_size // s for s in self.strides)

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


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) x2 → (B, 1, h, w): 1 − cos over channels, written out for export."""
    dot = (a * b).sum(1, keepdim=True)
    norms = torch.sqrt((a * a).sum(1, keepdim=True) * (b * b).sum(1, keepdim=True))
    return 1.0 - dot / torch.clamp(norms, min=_COS_EPS)


class GaussianBlur(nn.Module):
    """Separable Gaussian blur of (B, 1, S, S) maps with reflect padding, radius 4σ (as scipy).

    The same numbers as `residual.model.gaussian_blur`, but the reflect padding is a gather with
    constant indices instead of a Pad op, whose pads the TorchScript exporter computes at run time
    (the graph then loses its static spatial shapes).
    """

    kernel_w: torch.Tensor
    kernel_h: torch.Tensor
    index: torch.Tensor

    def __init__(self, sigma: float, size: int) -> None:
        super().__init__()
        kernel = gaussian_kernel(sigma)
        self.radius = r = kernel.numel() // 2
        if r >= size:
            raise ValueError(f"blur sigma {sigma} needs a radius of {r} px, more than the map side {size}")
        index = [r - i for i in range(r)] + list(range(size)) + [size - 2 - i for i in range(r)]
        self.register_buffer("kernel_w", kernel.view(1, 1, 1, -1))
        self.register_buffer("kernel_h", kernel.view(1, 1, -1, 1))
        self.register_buffer("index", torch.tensor(index, dtype=torch.long))

    def forward(self, amap: torch.Tensor) -> torch.Tensor:
        if self.radius == 0:
            return amap
        amap = F.conv2d(amap.index_select(3, self.index), self.kernel_w)
        return F.conv2d(amap.index_select(2, self.index), self.kernel_h)


def distance_map(
    features: Sequence[torch.Tensor],
    reconstructed: Sequence[torch.Tensor],
    strides: Sequence[int],
    blur: nn.Module,
) -> torch.Tensor:
    """The InvAD anomaly map (B, 1, S, S): per scale 1 − cos(f, f̂), bilinear up-sampling by the
    map's stride to S x S, mean over scales, then `blur` (a `GaussianBlur`). Up-sampling by a
    constant factor (not to a size read from the tensor) keeps every shape of the graph static.

    The reference (ADer `cal_anomaly_map`, uni_am, use_cos) L2-normalises each scale, resizes
    all to the largest grid, concatenates and takes one cosine: with unit vectors that is the
    mean of the per-scale cosines, computed here before resizing so every scale is exact.
    """
    maps = [
        F.interpolate(cosine_distance(f, r), scale_factor=float(s), mode="bilinear", align_corners=False)
        for f, r, s in zip(features, reconstructed, strides, strict=True)
    ]
    return blur(sum(maps[1:], maps[0]) / len(maps))


class InvADIO(NamedTuple):
    """Tensor names of the exported InvAD scorer: one input per backbone map, map and score out."""

    feature_prefix: str = "feature_"  # feature_<i>: (B, c_i, S/s_i, S/s_i) float32, shallow → deep
    anomaly_map: str = "anomaly_map"  # (B, 1, S, S) float32, blurred cosine distance
    score: str = "score"  # (B,) float32, max of anomaly_map

    def features(self, n: int) -> list[str]:
        return [f"{self.feature_prefix}{i}" for i in range(n)]


INVAD_IO = InvADIO()


class InvADScorer(nn.Module):
    """Backbone maps → (anomaly_map (B, 1, S, S), score (B,)): InvAD, `distance_map` and the max.

    The blur's kernel and indices are buffers (constants of the exported graph).
    """

    def __init__(self, model: InvAD) -> None:
        super().__init__()
        self.model = model
        self.strides = model.cfg.strides
        self.blur = GaussianBlur(model.cfg.blur_sigma, model.cfg.image_size)

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        amap = distance_map(features, self.model(*features), self.strides, self.blur)
        return amap, amap.flatten(1).max(dim=1).values
