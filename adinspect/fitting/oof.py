"""Out-of-fold scores of the good training images: every one scored as if it were new.

The bank holds every good image. Scoring an image against a bank that contains it finds itself
and scores about zero, which says nothing about the next good part. So each scored image
retrieves its K references only among the bank images outside its fold (`ResidualModel.retrieve`
with `exclude`): leave-one-out by default (`calibration.folds = 0`; the bank less the image
itself, as cheap as k folds here since only retrieval sees the rest of the bank), or k seeded
folds. The PCA of the retrieval descriptors is the bank's, fitted on all images (16 directions
of millions of layer-1 vectors: one image's share is negligible).

What is kept per image is the grid of residual norms ‖r‖ (h x w, a few KB); maps at the input
resolution are rebuilt from it a chunk at a time (`ResidualModel.raw_map`), so the per-position
statistics (`residual.position.MapMoments`) and the scores never need all maps at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adinspect.config import PipelineConfig
from adinspect.fitting.calibration import Calibration, calibrate
from adinspect.residual.bank import fit_bank, representative_subset
from adinspect.residual.model import BankTensors, ResidualModel
from adinspect.residual.position import MapMoments, PositionNorm

PROBES = 8  # good images, mirrored, that the ONNX parity check replays


@dataclass
class FittedBank:
    """What the bank was fitted from, and the inputs the parity check replays."""

    bank: BankTensors  # features on the meta device: the model holds the only copy
    ref_idx: np.ndarray  # (n_refs,) indices of the goods in the bank
    probe_feats: torch.Tensor  # a few good images mirrored left-right: not in the bank
    probe_gmaps: torch.Tensor


def fit_and_score(
    feats: torch.Tensor,
    gmaps: torch.Tensor,
    config: PipelineConfig,
    batch: int,
    turns: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
    ref_idx: np.ndarray | None = None,
) -> tuple[ResidualModel, FittedBank, OutOfFold]:
    """The bank from every good image (a k-center subset above `scale.max_references`), then every
    good image's residual norms against the bank without its fold (`out_of_fold_norms`).

    `turns`: with `method.rotations` R > 1, the features of the same images turned by 1 .. R-1
    steps; the bank holds the references turn-major (every image as photographed, then every image
    at the next turn), and an image left out of the bank is left out at every turn. `ref_idx`: the
    bank's images as `reference_indices` chose them, whose turns alone `turns` then holds."""
    n = feats.shape[0]
    at_turns: np.ndarray | slice = slice(None)  # the rows of `turns` the bank holds
    if ref_idx is None:  # `turns` holds every good image: the bank takes the references' rows
        chosen = reference_indices(gmaps, config)
        ref_idx = at_turns = np.arange(n) if chosen is None else chosen
    if len(turns) != config.method.rotations - 1:
        raise ValueError(
            f"method.rotations = {config.method.rotations} needs {config.method.rotations - 1} turns"
        )
    method = config.method.model_copy(update={"position_norm": "none"})  # statistics come from oof
    if turns:
        bank_feats = torch.cat([feats[ref_idx], *(f[at_turns] for f, _ in turns)])
        bank = fit_bank(bank_feats, torch.cat([gmaps[ref_idx], *(g[at_turns] for _, g in turns)]), method)
        del bank_feats
    else:
        bank = fit_bank(feats[ref_idx], gmaps[ref_idx], method)
    model = ResidualModel(bank, method).eval()
    bank_index = np.full(n, -1, np.int64)
    bank_index[ref_idx] = np.arange(len(ref_idx))
    oof = out_of_fold_norms(model, feats, gmaps, bank_index, config, batch)
    probe = torch.from_numpy(oof.index[:PROBES])
    probe_feats, probe_gmaps = feats[probe].flip(-1).clone(), gmaps[probe].flip(-1).clone()
    # the model made its cell-major copy: keep only the bank's shape for bank.safetensors
    bank = dataclasses.replace(bank, features=bank.features.to("meta"))
    return model, FittedBank(bank, ref_idx, probe_feats, probe_gmaps), oof


def reference_indices(gmaps: torch.Tensor, config: PipelineConfig) -> np.ndarray | None:
    """Sorted indices of the good images the bank holds: a k-center subset in the retrieval space
    where `scale.max_references` is below their number, else None (every one)."""
    cap = config.scale.max_references
    if cap is None or cap >= gmaps.shape[0]:
        return None
    return np.sort(representative_subset(gmaps, config.method, cap))


@dataclass
class OutOfFold:
    """The scored good images: their indices among the goods, folds and residual-norm grids."""

    index: np.ndarray  # (M,) into the goods, sorted
    folds: np.ndarray  # (M,) fold of each scored image (its own index for leave-one-out)
    norms: torch.Tensor  # (M, h, w) float32, ‖r‖ against the bank without the image's fold
    scheme: str  # "leave-one-out" or "k-fold (k = ...)"


def fold_assignment(n: int, folds: int, seed: int) -> tuple[np.ndarray, str]:
    """(fold of each of n images, a description): leave-one-out for folds = 0, else seeded k folds."""
    if folds == 0 or folds >= n:
        return np.arange(n), "leave-one-out"
    order = np.random.default_rng(seed).permutation(n)
    assignment = np.empty(n, np.int64)
    assignment[order] = np.arange(n) % folds
    return assignment, f"{folds}-fold"


def scored_sample(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of the good images scored out of fold: all of them up to `limit`, else a
    seeded sample of `limit`."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


@torch.no_grad()
def out_of_fold_norms(
    model: ResidualModel,
    feats: torch.Tensor,
    gmaps: torch.Tensor,
    bank_index: np.ndarray,
    config: PipelineConfig,
    batch_size: int,
) -> OutOfFold:
    """Residual norms of the good images, each against the bank without its fold.

    Args:
        feats, gmaps: every good image's features (N, d_f, h, w) and global maps (N, c_1, H', W').
        bank_index: (N,) position of each good image in the model's bank, -1 where it is not there
            (a `scale.max_references` subset): such an image excludes only its fold's bank images.
    """
    n = feats.shape[0]
    cal = config.calibration
    folds, scheme = fold_assignment(n, cal.folds, config.seed)
    index = scored_sample(n, cal.max_scored, config.seed)
    bank_fold = np.full(model.bank_descriptors.shape[0], -1, np.int64)
    in_bank = bank_index >= 0
    bank_fold[bank_index[in_bank]] = folds[in_bank]
    bank_fold_t = torch.from_numpy(bank_fold)
    norms = torch.empty(len(index), *feats.shape[-2:])
    for start in range(0, len(index), batch_size):
        chunk = torch.from_numpy(index[start : start + batch_size])
        exclude = bank_fold_t[None, :] == torch.from_numpy(folds[chunk.numpy()])[:, None]
        q = feats[chunk].float()
        residual = model.residual(q, model.retrieve(gmaps[chunk].float(), exclude))
        norms[start : start + len(chunk)] = torch.sqrt((residual**2).sum(1))
    return OutOfFold(index, folds[index], norms, scheme)


@torch.no_grad()
def position_statistics(model: ResidualModel, oof: OutOfFold, batch_size: int) -> MapMoments:
    """Per-pixel moments of the scored images' out-of-fold maps (before any normalisation)."""
    moments: MapMoments | None = None
    for start in range(0, len(oof.index), batch_size):
        maps = model.raw_map(oof.norms[start : start + batch_size])
        if moments is None:
            moments = MapMoments.zeros((maps.shape[-2], maps.shape[-1]))
        moments.add(maps)
    if moments is None:
        raise ValueError("no out-of-fold maps to take statistics of")
    return moments


@torch.no_grad()
def out_of_fold_scores(
    model: ResidualModel, oof: OutOfFold, moments: MapMoments | None, batch_size: int
) -> np.ndarray:
    """Scores (M,) of the out-of-fold maps, as the served model scores a map.

    With `moments` (position_norm = "zscore") each map is normalised by statistics of the maps
    outside its own fold, so its own map never softens its own score.
    """
    scores = np.empty(len(oof.index))
    if moments is None:
        for start in range(0, len(oof.index), batch_size):
            maps = model.raw_map(oof.norms[start : start + batch_size])
            scores[start : start + len(maps)] = model.score(maps[:, None]).numpy()
        return scores
    for fold in np.unique(oof.folds):
        members = np.flatnonzero(oof.folds == fold)
        maps = model.raw_map(oof.norms[members])
        mean, scale = moments.without(maps).stats()
        scores[members] = model.score(PositionNorm(mean, scale)(maps[:, None])).numpy()
    return scores


def attach_position_norm(model: ResidualModel, moments: MapMoments) -> tuple[torch.Tensor, torch.Tensor]:
    """Give `model` the per-position normalisation of all scored images' maps; returns (mean, scale)."""
    mean, scale = moments.stats()
    model.position = PositionNorm(mean, scale)
    return mean, scale


def calibrate_out_of_fold(
    model: ResidualModel,
    oof: OutOfFold,
    ref_idx: np.ndarray,
    goods: list[Path],
    config: PipelineConfig,
    batch: int,
) -> tuple[Calibration, tuple[torch.Tensor, torch.Tensor] | None]:
    """With `position_norm = "zscore"`, the per-position statistics (attached to `model`); then the
    out-of-fold scores and the threshold for `calibration.target_frr`. Returns the calibration and
    the statistics (mean, scale), None without normalisation."""
    moments, position = None, None
    if config.method.position_norm == "zscore":
        moments = position_statistics(model, oof, batch)
        position = attach_position_norm(model, moments)
    scores = out_of_fold_scores(model, oof, moments, batch)
    names = [str(goods[i]) for i in oof.index]
    calibration = calibrate(scores, names, config.calibration.target_frr, oof.scheme)
    place = np.full(len(goods), -1, np.int64)
    place[ref_idx] = np.arange(len(ref_idx))
    calibration.bank_index = [int(place[i]) for i in oof.index]
    return calibration, position
