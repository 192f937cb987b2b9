"""Training ADClick on crops of a large input (`train-click --train-crop`).

No weight of ADClick depends on the input size (1x1 and patch embeddings, window attention without
position tables, convolutions), so a network built for crops trains the same weights as the one at
the whole input, which is what is exported and served. The input's geometry lives only in each
part's `cfg` and each block's attention window, so one network switches between crops and the whole
input in place (`set_input`): every `whole_every`-th step trains on the whole input, so the network
also learns to stay quiet across all of it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from adinspect.models.adclick import ADClick, ADClickConfig, compact
from adinspect.models.blocks import Block


def crop_config(cfg: ADClickConfig, side: int) -> ADClickConfig:
    """The network ADClick trains as: `cfg` at crops of at most `side` input pixels per axis (rounded
    up to whole windows of the deepest stage), or `cfg` itself when its input is no larger (or
    `side` is 0). Every weight of ADClick is independent of the input size, so the trained weights
    load into `cfg` unchanged; only attention windows that no longer divide a cropped side differ."""
    if side <= 0:
        return cfg
    unit = cfg.patch * 2 ** (len(cfg.dims) - 1)  # input pixels per cell of the deepest stage
    want = -(-side // unit) * unit
    hw = tuple(min(full, want) for full in cfg.image_hw)
    if hw == cfg.image_hw:
        return cfg
    grid = tuple(n // cfg.patch for n in hw)
    return replace(cfg, grid=compact(grid), image_size=compact(hw))


def crop_around(
    residual: torch.Tensor, masks: torch.Tensor, images: torch.Tensor | None, cfg: ADClickConfig,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """Per sample, a crop of `cfg`'s size (whole grid cells) that holds a random defect pixel: R
    (B, d, h, w), masks (B, H, W) and images (B, 3, H, W) cut alike."""
    (ch, cw), p = cfg.grid_hw, cfg.patch
    h, w = residual.shape[-2:]
    if (ch, cw) == (h, w):
        return residual, masks, images
    rs, ms, ims = [], [], []
    for b in range(len(masks)):
        ys, xs = np.nonzero(masks[b].numpy())
        i = int(rng.integers(len(ys))) if len(ys) else None
        cy, cx = (int(ys[i]) // p, int(xs[i]) // p) if i is not None else (h // 2, w // 2)
        oy = int(rng.integers(max(0, cy - ch + 1), min(cy, h - ch) + 1))
        ox = int(rng.integers(max(0, cx - cw + 1), min(cx, w - cw) + 1))
        rs.append(residual[b, :, oy : oy + ch, ox : ox + cw])
        ms.append(masks[b, oy * p : (oy + ch) * p, ox * p : (ox + cw) * p])
        if images is not None:
            ims.append(images[b, :, oy * p : (oy + ch) * p, ox * p : (ox + cw) * p])
    return torch.stack(rs), torch.stack(ms), torch.stack(ims) if images is not None else None


def on_whole_input(step: int, whole_every: int) -> bool:
    """Whether training step `step` uses the whole input rather than crops: every `whole_every`-th
    step (0: none), decided by the step alone so a resumed run trains exactly as an unbroken one."""
    return whole_every > 0 and step % whole_every == whole_every - 1


def set_input(model: ADClick, cfg: ADClickConfig) -> None:
    """Points `model`, built for another input size of the same network, at `cfg`'s input, in place:
    the same parameters (so optimizer and EMA follow), the geometry (grid, sizes, attention windows)
    of `cfg`, exactly as if `model` had been built with it."""
    for module in model.modules():
        if isinstance(getattr(module, "cfg", None), ADClickConfig):
            module.cfg = cfg  # type: ignore[assignment]
    for i, stage in enumerate(model.encoder.stages):
        for block in stage.children():
            assert isinstance(block, Block)
            block.attn.window = cfg.stage_window(i)
