"""InvAD from the image to the anomaly map, in one exportable graph (`invad.onnx` of a unified package).

image (B, 3, S, S) → reflect padding (`pad` px per side) → the frozen backbone's maps of the padded
image → InvAD's reconstruction → per scale 1 − cos(f, f̂), up-sampled to the padded side, averaged
→ cropped back to S x S → Gaussian blur → anomaly_map (B, 1, S, S) and score = its maximum (B,).

Why the mirrored margin: convolutions pad with zeros, so the cells at a map's edge are unlike any
interior cell, twice over: the backbone's (EfficientNet-Lite0: TF "same" padding) and, worse, InvAD's
own generator, which must learn to reproduce edge cells from its zero-padded convolutions and
reconstructs them worst (held-out good images peaked at the image border). With the image mirrored
by `pad` px, both edges fall on the mirrored margin, whose distances are cropped away; the image's
own border cells have real context on every side. The padding is a constant-index gather and the
crop a constant slice (no Pad op, no sizes read from tensors), so the graph keeps static shapes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from adinspect.contracts import UNIFIED
from adinspect.models.invad import InvAD
from adinspect.residual.model import gaussian_kernel

_COS_EPS = 1e-8
OPSET = 17


def reflect_index(size: int, pad: int) -> list[int]:
    """Indices of a 1-D reflection ('reflect' mode: the edge is not repeated) of length size + 2·pad."""
    if not 0 <= pad < size:
        raise ValueError(f"reflect padding {pad} px needs a side of more than {pad} px, got {size}")
    return [pad - i for i in range(pad)] + list(range(size)) + [size - 2 - i for i in range(pad)]


class ReflectPad(nn.Module):
    """(B, C, S, S) → (B, C, S + 2p, S + 2p), mirrored at the edges, as two constant-index gathers."""

    index: torch.Tensor

    def __init__(self, size: int, pad: int) -> None:
        super().__init__()
        self.register_buffer("index", torch.tensor(reflect_index(size, pad), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(3, self.index).index_select(2, self.index)


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
        self.register_buffer("kernel_w", kernel.view(1, 1, 1, -1))
        self.register_buffer("kernel_h", kernel.view(1, 1, -1, 1))
        self.register_buffer("index", torch.tensor(reflect_index(size, r), dtype=torch.long))

    def forward(self, amap: torch.Tensor) -> torch.Tensor:
        if self.radius == 0:
            return amap
        amap = F.conv2d(amap.index_select(3, self.index), self.kernel_w)
        return F.conv2d(amap.index_select(2, self.index), self.kernel_h)


def distance_map(
    features: Sequence[torch.Tensor], reconstructed: Sequence[torch.Tensor], strides: Sequence[int]
) -> torch.Tensor:
    """The InvAD distance (B, 1, H, W) at the input's side: per scale 1 − cos(f, f̂), bilinear
    up-sampling by the map's stride, mean over scales. Up-sampling by a constant factor (not to a
    size read from the tensor) keeps every shape of the graph static.

    The reference (ADer `cal_anomaly_map`, uni_am, use_cos) L2-normalises each scale, resizes
    all to the largest grid, concatenates and takes one cosine: with unit vectors that is the
    mean of the per-scale cosines, computed here before resizing so every scale is exact.
    """
    maps = [
        F.interpolate(cosine_distance(f, r), scale_factor=float(s), mode="bilinear", align_corners=False)
        for f, r, s in zip(features, reconstructed, strides, strict=True)
    ]
    return sum(maps[1:], maps[0]) / len(maps)


class InvADGraph(nn.Module):
    """image (B, 3, S, S) normalised → (anomaly_map (B, 1, S, S), score (B,)).

    The blurred distance d is standardised per position, (d − mean) / scale, with statistics of good
    images of all products together (`set_position_statistics`; identity until set): what one
    position's distance usually is on good parts, whichever the product, so that positions the
    model reconstructs less well on every product (near the border) do not decide the score.

    Args:
        extractor: the frozen backbone, image → its maps (shallow → deep), as `create_backbone` gives.
        model: the trained InvAD; its config fixes S, the strides and the padding.
    """

    position_mean: torch.Tensor
    position_scale: torch.Tensor

    def __init__(self, extractor: nn.Module, model: InvAD) -> None:
        super().__init__()
        cfg = model.cfg
        self.extractor = extractor
        self.model = model
        self.strides = cfg.strides
        self.pad = ReflectPad(cfg.image_size, cfg.pad) if cfg.pad else None
        self.margin, self.size = cfg.pad, cfg.image_size
        self.blur = GaussianBlur(cfg.blur_sigma, cfg.image_size)
        size = (1, 1, cfg.image_size, cfg.image_size)
        self.register_buffer("position_mean", torch.zeros(size))
        self.register_buffer("position_scale", torch.ones(size))

    def set_position_statistics(self, mean: torch.Tensor, std: torch.Tensor, floor: float = 0.1) -> None:
        """Standardise maps with these per-position statistics ((S, S) each, of blurred distances of
        good images); std is floored at `floor` x its median so no position divides by ~0."""
        size = self.position_mean.shape
        if mean.shape != size[2:] or std.shape != size[2:]:
            raise ValueError(f"position statistics of shape {tuple(mean.shape)}, {tuple(std.shape)}; "
                             f"expected {tuple(size[2:])}")  # fmt: skip
        scale = torch.clamp(std, min=max(floor * float(std.median()), 1e-6))
        self.position_mean.copy_(mean.view(size))
        self.position_scale.copy_(scale.view(size))

    def distance(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Backbone maps → the blurred distance (B, 1, S, S), before standardising."""
        distance = distance_map(features, self.model(*features), self.strides)
        m, s = self.margin, self.size
        return self.blur(distance[:, :, m : m + s, m : m + s] if m else distance)

    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The maps InvAD reconstructs, of the mirrored image: (B, c_i, g_i, g_i), shallow → deep."""
        return self.extractor(self.pad(image) if self.pad is not None else image)

    def score_features(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone maps → (anomaly_map (B, 1, S, S), score (B,))."""
        amap = (self.distance(features) - self.position_mean) / self.position_scale
        return amap, amap.flatten(1).max(dim=1).values

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_features(self.features(image))


def export_invad(graph: InvADGraph, path: Path) -> None:
    """`graph` → ONNX at `path`: image → anomaly_map, score (contracts.UNIFIED), batch axis free,
    every other shape static (TorchScript exporter, `dynamo=False`, as the other exported graphs)."""
    size = graph.model.cfg.image_size
    names = [UNIFIED.image], [UNIFIED.anomaly_map, UNIFIED.score]
    dynamic = {name: {0: "batch"} for name in [*names[0], *names[1]]}
    # The tracer warns about shape checks that are constant by design (static-shape modules).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            graph.eval(),
            (torch.zeros(2, 3, size, size),),
            str(path),
            input_names=names[0],
            output_names=names[1],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path), full_check=True)
