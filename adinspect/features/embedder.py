"""Feature embedder: backbone maps → one location-aware feature tensor F and the layer-1 map.

This module is exported to ONNX as the `backbone` model, shared by every product that uses the
same backbone and input shape, so it is a pure `nn.Module` with static shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adinspect.config import MethodConfig
from adinspect.features.backbones import BackboneSpec


def channel_pool_matrix(in_channels: int, out_channels: int) -> torch.Tensor:
    """Adaptive average pooling over channels written as a fixed (out, in) matrix.

    Same result as `F.adaptive_avg_pool1d` over the channel axis, but a 1x1 convolution exports
    to ONNX/TensorRT with static shapes whatever the ratio of the widths.
    """
    weight = torch.zeros(out_channels, in_channels)
    for o in range(out_channels):
        start = (o * in_channels) // out_channels
        end = -((-(o + 1) * in_channels) // out_channels)  # ceil, as adaptive pooling does
        weight[o, start:end] = 1.0 / (end - start)
    return weight


class FeatureEmbedder(nn.Module):
    """image (B, 3, H, W) → features (B, d_f, H/8, W/8), global_map (B, c_1, H/4/p, W/4/p).

    Each layer is averaged over its k x k neighbourhood (PatchCore), resized bilinearly to the
    stride-8 grid, projected to `layer_dim` channels (or kept) and the layers are concatenated or
    averaged. The global map is the raw layer-1 map average-pooled by `global_pool`.
    """

    def __init__(self, extractor: nn.Module, spec: BackboneSpec, method: MethodConfig) -> None:
        super().__init__()
        self.extractor = extractor
        height, width = method.shape
        self.grid = (height // 8, width // 8)  # (h, w) of the feature grid
        self.kernel = method.aggregate_kernel
        self.global_pool = method.global_pool
        self.combine = method.combine
        projections = []
        for channels in spec.channels:
            width = method.layer_dim or channels
            proj = nn.Conv2d(channels, width, kernel_size=1, bias=False)
            proj.weight.data.copy_(channel_pool_matrix(channels, width)[:, :, None, None])
            proj.requires_grad_(False)
            projections.append(proj)
        self.projections = nn.ModuleList(projections)
        widths = [p.out_channels for p in projections]
        self.feature_dim: int = widths[0] if self.combine == "mean" else sum(widths)
        self.global_channels = spec.channels[0]
        # Channels-last weights make PyTorch run every convolution in oneDNN's NHWC layout: a third
        # less time for EfficientNet-Lite on CPU. The ONNX export is the same graph, byte for byte.
        self.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.extractor(image)
        layers = []
        for fmap, proj in zip(maps, self.projections, strict=True):
            if self.kernel > 1:
                fmap = F.avg_pool2d(
                    fmap, self.kernel, stride=1, padding=self.kernel // 2, count_include_pad=False
                )
            if tuple(fmap.shape[-2:]) != self.grid:
                fmap = F.interpolate(fmap, size=self.grid, mode="bilinear", align_corners=False)
            layers.append(proj(fmap))
        features = torch.stack(layers).mean(0) if self.combine == "mean" else torch.cat(layers, dim=1)
        global_map = F.avg_pool2d(maps[0], self.global_pool) if self.global_pool > 1 else maps[0]
        return features.contiguous(), global_map.contiguous()  # the layout callers index; no-op in ONNX
