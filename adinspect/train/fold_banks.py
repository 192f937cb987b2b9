"""Fold banks: the good images' residuals for training, each against a bank without its fold (k-fold,
the package's PCA), so a training residual looks like a new part's and not like zero."""

from __future__ import annotations

import numpy as np
import torch

from adinspect.config import MethodConfig
from adinspect.residual.model import BankTensors, ResidualModel, window_descriptors
from adinspect.residual.position import PositionNorm
from adinspect.residual.subset import cell_coreset


def fold_models(
    bank: ResidualModel,
    method: MethodConfig,
    feats: torch.Tensor,
    gmaps: torch.Tensor,
    folds: np.ndarray,
    turns: list[tuple[torch.Tensor, torch.Tensor]],
) -> list:
    """One bank per fold: the good images outside it, at every turn the package's bank holds
    (`turns`: the same images turned, (feats, gmaps) each; turn-major, as `fit` banks them), with
    the package bank's PCA and normalisation, and each reference's own cells for global matching."""
    n = feats.shape[0]
    every_feats = torch.cat([feats, *(f for f, _ in turns)])  # image i at turn t is row t·n + i
    every_gmaps = torch.cat([gmaps, *(g for _, g in turns)])
    desc = window_descriptors(every_gmaps, bank.pca_mean, bank.pca_components, method.window)
    cells = None
    if bank.global_cells is not None and method.global_coreset is not None:
        cells = cell_coreset(every_feats, method.global_coreset)
    models = []
    position = bank.position
    mean, scale = (position.mean, position.scale) if isinstance(position, PositionNorm) else (None, None)
    for f in range(int(folds.max()) + 1):
        keep = np.flatnonzero(folds != f)
        rows = torch.from_numpy(np.concatenate([keep + t * n for t in range(len(turns) + 1)]))
        coreset = None if cells is None else cells[:, rows]
        tensors = BankTensors(
            bank.pca_mean, bank.pca_components, desc[rows], every_feats[rows].half(), mean, scale, coreset
        )
        models.append(ResidualModel(tensors, method).eval())
    return models


def by_fold(models: list, folds: np.ndarray, feats: torch.Tensor, gmaps: torch.Tensor) -> torch.Tensor:
    """Residual of sample i against the bank that excludes fold folds[i]: (N, d_f, h, w)."""
    out = torch.empty_like(feats)
    for f, model in enumerate(models):
        idx = torch.from_numpy(np.flatnonzero(folds == f))
        if len(idx):
            out[idx] = model(feats[idx], gmaps[idx])[0]
    return out
