"""Good images → backbone features, chunk by chunk into arrays allocated once (`fit`'s embedding)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from adinspect.features.embedder import FeatureEmbedder
from adinspect.geometry import PreprocessSpec, preprocess_batch, turned
from adinspect.imageio import read_image
from adinspect.residual.budget import Shapes


def embed_paths(
    embedder: FeatureEmbedder,
    paths: Sequence[Path],
    spec: PreprocessSpec,
    shapes: Shapes,
    batch_size: int = 8,
    progress: bool = True,
    turn: tuple[int, int] = (0, 1),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read, preprocess and embed images chunk by chunk → features (N, d_f, h, w) fp16, global
    maps (N, c_1, h_g, w_g) fp32, written into arrays allocated once (no list of fp32 batches).
    `turn` (t, rotations): each image turned by t of `rotations` steps of a full circle first."""
    n = len(paths)
    feats = torch.empty(n, shapes.feature_dim, *shapes.grid, dtype=torch.float16)
    gmaps = torch.empty(n, shapes.global_channels, *shapes.global_grid)
    for start in tqdm(range(0, n, batch_size), desc="embedding", unit="batch", disable=not progress):
        chunk = paths[start : start + batch_size]
        batch = torch.from_numpy(preprocess_batch([turned(read_image(p), *turn) for p in chunk], spec))
        with torch.no_grad():
            f, gm = embedder(batch)
        feats[start : start + len(chunk)] = f.half()
        gmaps[start : start + len(chunk)] = gm
    return feats, gmaps
