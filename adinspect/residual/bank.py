"""Fitting the reference bank: PCA of layer-1 vectors and window descriptors (orchestration, no I/O)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from adinspect.config import MethodConfig
from adinspect.residual.model import BankTensors, window_descriptors


def fit_pca(global_maps: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA of all layer-1 vectors of the references.

    Args:
        global_maps: (N, c_1, H, W).
        dim: number of components p (≤ c_1).

    Returns:
        mean (c_1,), components (c_1, p), ordered by explained variance.
    """
    c = global_maps.shape[1]
    if dim > c:
        raise ValueError(f"method.pca_dim = {dim} exceeds the layer-1 width {c}; use at most {c}")
    x = global_maps.permute(0, 2, 3, 1).reshape(-1, c).double()
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / max(1, x.shape[0] - 1)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    components = vectors.flip(1)[:, :dim]
    return mean.float(), components.float()


def fit_bank(features: torch.Tensor, global_maps: torch.Tensor, method: MethodConfig) -> BankTensors:
    """Build the bank from N good images' features (N, d_f, h, w) and global maps (N, c_1, H, W)."""
    if features.shape[0] != global_maps.shape[0]:
        raise ValueError(
            f"features and global maps disagree on N: {features.shape[0]} vs {global_maps.shape[0]}"
        )
    mean, components = fit_pca(global_maps, method.pca_dim)
    descriptors = window_descriptors(global_maps.float(), mean, components, method.window)
    return BankTensors(mean, components, descriptors, features.half())


def save_bank(bank: BankTensors, path: Path, metadata: dict[str, str]) -> None:
    """Write the bank as safetensors (never pickle) with string metadata."""
    tensors = {name: getattr(bank, name).contiguous() for name in _BANK_FIELDS}
    save_file(tensors, str(path), metadata=metadata)


def load_bank(path: Path) -> BankTensors:
    tensors = load_file(str(path))
    missing = [n for n in _BANK_FIELDS if n not in tensors]
    if missing:
        raise ValueError(f"{path}: bank lacks tensors {missing}; re-run `adinspect fit`")
    return BankTensors(**{n: tensors[n] for n in _BANK_FIELDS})


_BANK_FIELDS = ("pca_mean", "pca_components", "descriptors", "features")
