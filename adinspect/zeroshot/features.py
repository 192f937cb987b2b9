"""LNAMD: backbone feature maps → layer-normalised patch features aggregated over r x r neighbourhoods.

For each chosen layer and each degree r, every grid cell gets the r x r neighbourhood of the
layer-normalised map (zero-padded, PatchCore-style unfold), adaptively average-pooled to a fixed
width and L2-normalised, so that the squared distance of two patches is 2 - 2·cos. Layers keep
their own grid (capped at `max_grid`): mutual scoring costs P² per image pair, so scoring the
stride-16 layer on its 16² grid instead of upsampling it to 32² is 16x cheaper; the maps are
brought to one grid only after scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adinspect.features.backbones import BackboneSpec, WeightsInfo, create_backbone, create_image_head
from adinspect.geometry import PreprocessSpec, preprocess_batch
from adinspect.zeroshot.config import ZeroShotConfig, ZeroShotError
from adinspect.zeroshot.parallel import map_in_threads, worker_count


@dataclass
class PatchFeatures:
    """Features of a batch of N images.

    Attributes:
        patches: {(layer, r): (N, P_layer, d) float32, L2-normalised rows}.
        grids: {layer: side of its square grid}, P_layer = grid².
        image_features: (N, c) L2-normalised image descriptors for RsCIN (`rscin_feature`; the
            pooled last map when RsCIN is off).
    """

    patches: dict[tuple[int, int], torch.Tensor]
    grids: dict[int, int]
    image_features: torch.Tensor


@dataclass
class ZeroShotBackbone:
    """The registered backbone's extractor, its image head (None unless RsCIN uses it) and facts."""

    extractor: nn.Module
    head: nn.Module | None
    spec: BackboneSpec
    weights: WeightsInfo


def load_backbone(config: ZeroShotConfig) -> ZeroShotBackbone:
    """The registered backbone, with the configured layers checked against it."""
    extractor, spec, weights = create_backbone(config.backbone, weights=config.weights)
    if max(config.layers) >= len(spec.channels):
        raise ZeroShotError(
            f"layers {config.layers}: backbone {spec.name} has {len(spec.channels)} feature maps "
            f"(indices 0..{len(spec.channels) - 1}, strides {spec.strides})"
        )
    head = None
    if config.rscin_feature == "embedding" and max(config.rscin_k) > 1:  # k = 1 only: RsCIN is off
        head = create_image_head(config.backbone, weights=config.weights)
    return ZeroShotBackbone(extractor, head, spec, weights)


def lnamd(fmap: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """(B, C, h, w) layer-normalised map → (B, h·w, dim) L2-normalised r x r neighbourhood features."""
    b, c, h, w = fmap.shape
    if r == 1 and dim == c:
        flat = fmap.flatten(2).transpose(1, 2)
    elif dim == c:  # pooling C·r² → C is the mean over the window per channel (zero padding counted)
        flat = (
            F.avg_pool2d(fmap, r, stride=1, padding=r // 2, count_include_pad=True).flatten(2).transpose(1, 2)
        )
    else:
        unfolded = F.unfold(fmap, r, padding=r // 2)  # (B, C·r², h·w), channel-major as PatchCore
        flat = F.adaptive_avg_pool1d(unfolded.transpose(1, 2).reshape(b * h * w, 1, -1), dim)
        flat = flat.reshape(b, h * w, dim)
    return F.normalize(flat, dim=-1)


def _layer_maps(maps: Sequence[torch.Tensor], config: ZeroShotConfig) -> dict[int, torch.Tensor]:
    """Chosen layers, pooled down to at most max_grid and layer-normalised over (C, h, w) per image."""
    out = {}
    for layer in config.layers:
        fmap = maps[layer]
        if fmap.shape[-1] > config.max_grid:
            fmap = F.adaptive_avg_pool2d(fmap, config.max_grid)
        out[layer] = F.layer_norm(fmap, fmap.shape[1:])
    return out


def embed_images(
    images: Sequence[np.ndarray], backbone: ZeroShotBackbone, config: ZeroShotConfig
) -> PatchFeatures:
    """(H_i, W_i, 3) uint8 RGB images (any sizes; resized to S x S as in fit) → PatchFeatures.

    Batches of `batch_size` images go to the worker threads (`parallel.py`), results kept in order.
    """
    spec = backbone.spec
    s = config.image_size  # MuSc scores at S x S
    pre = PreprocessSpec(image_size=s, mean=spec.mean, std=spec.std, height=s, width=s)
    # channels-last: the backbone's depthwise convolutions run ~1.7x faster on CPU (same values)
    extractor = backbone.extractor.to(memory_format=torch.channels_last)
    head = backbone.head.to(memory_format=torch.channels_last) if backbone.head is not None else None

    def embed_batch(start: int) -> tuple[dict[tuple[int, int], torch.Tensor], dict[int, int], torch.Tensor]:
        batch = torch.from_numpy(preprocess_batch(images[start : start + config.batch_size], pre))
        with torch.no_grad():  # grad mode is per thread
            maps = extractor(batch.contiguous(memory_format=torch.channels_last))
            layer_maps = _layer_maps(maps, config)
            patches = {
                (layer, r): lnamd(fmap, r, config.feature_dim or fmap.shape[1])
                for layer, fmap in layer_maps.items()
                for r in config.degrees
            }
            image = head(maps[-1]) if head is not None else maps[-1].mean(dim=(2, 3))
        return (
            patches,
            {layer: fmap.shape[-1] for layer, fmap in layer_maps.items()},
            F.normalize(image, dim=-1),
        )

    parts = map_in_threads(embed_batch, range(0, len(images), config.batch_size), worker_count(config))
    patches = {key: torch.cat([part[0][key] for part in parts]) for key in parts[0][0]}
    return PatchFeatures(patches, parts[0][1], torch.cat([part[2] for part in parts]))
