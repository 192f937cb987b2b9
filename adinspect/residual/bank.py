"""Fitting the reference bank: PCA of layer-1 vectors and window descriptors (orchestration, no I/O)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from adinspect.config import MethodConfig
from adinspect.residual.model import BankTensors, window_descriptors
from adinspect.residual.subset import cell_coreset, k_center_greedy


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
    features = features.half()
    share, coreset = method.global_coreset, None
    if method.matching == "global" and share is not None and share < 1.0:  # only global matching uses it
        coreset = cell_coreset(features, share)
    return BankTensors(mean, components, descriptors, features, global_cells=coreset)


BANK_INITIALIZER = "bank_features"  # ResidualModel's buffer name, kept as the ONNX initializer's name


def save_bank(bank: BankTensors, path: Path, metadata: dict[str, str]) -> None:
    """Write the bank's small tensors as safetensors (never pickle) with string metadata.

    The features — nearly all of the bank's bytes — are stored once, as the `bank_features`
    constant of the residual model next to this file (inside residual.onnx, or in its external
    data file for large banks); `load_bank` reads them from there.
    """
    n, d, h, w = bank.features.shape
    tensors = {name: getattr(bank, name).contiguous() for name in _SMALL_FIELDS}
    for name in _POSITION_FIELDS:
        if getattr(bank, name) is not None:
            tensors[name] = getattr(bank, name).float().contiguous()
    if bank.global_cells is not None:
        tensors[_CORESET_FIELD] = bank.global_cells.contiguous()
    shape = {"features_in": f"{RESIDUAL_ONNX}:{BANK_INITIALIZER}", "features_shape": f"{n},{d},{h},{w}"}
    save_file(tensors, str(path), metadata={**metadata, **shape})


def load_bank(path: Path) -> BankTensors:
    """The bank written by `save_bank` (features from the residual model beside it), or an older
    bank.safetensors that still holds `features` itself."""
    path = Path(path)
    tensors = load_file(str(path))
    fields = _SMALL_FIELDS if "features" not in tensors else (*_SMALL_FIELDS, "features")
    missing = [n for n in fields if n not in tensors]
    if missing:
        raise ValueError(f"{path}: bank lacks tensors {missing}; re-run `adinspect fit`")
    if "features" not in tensors:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if "features_shape" not in meta:
            raise ValueError(f"{path}: bank names no features_shape; re-run `adinspect fit`")
        n, d, h, w = (int(v) for v in meta["features_shape"].split(","))
        cells = bank_features_from_onnx(path.parent / RESIDUAL_ONNX)  # (h*w, N, d)
        if tuple(cells.shape) != (h * w, n, d):
            raise ValueError(
                f"{path.parent / RESIDUAL_ONNX}: bank_features is {tuple(cells.shape)}, "
                f"expected {(h * w, n, d)}; re-run `adinspect fit`"
            )
        tensors["features"] = cells.reshape(h, w, n, d).permute(2, 3, 0, 1).contiguous()
    optional = {n: tensors[n] for n in (*_POSITION_FIELDS, _CORESET_FIELD) if n in tensors}
    return BankTensors(**{n: tensors[n] for n in (*_SMALL_FIELDS, "features")}, **optional)


def bank_features_from_onnx(onnx_path: Path) -> torch.Tensor:
    """The residual model's bank constant (h*w, N, d_f) fp16, inline or in its external data file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    for tensor in model.graph.initializer:
        if tensor.name == BANK_INITIALIZER:
            array = numpy_helper.to_array(tensor, base_dir=str(Path(onnx_path).parent))
            return torch.from_numpy(array.copy() if not array.flags.writeable else array)
    raise ValueError(f"{onnx_path}: no {BANK_INITIALIZER!r} constant; re-run `adinspect fit`")


RESIDUAL_ONNX = "residual.onnx"
_SMALL_FIELDS = ("pca_mean", "pca_components", "descriptors")
_POSITION_FIELDS = ("position_mean", "position_scale")  # with method.position_norm = "zscore"
_CORESET_FIELD = "global_cells"  # with method.global_coreset < 1


def representative_subset(global_maps: torch.Tensor, method: MethodConfig, n: int) -> np.ndarray:
    """Sorted indices of `n` of the images (N, c_1, H, W): k-center greedy on their window descriptors
    (PCA fitted on all N), i.e. in the space retrieval compares images in."""
    mean, components = fit_pca(global_maps, method.pca_dim)
    descriptors = window_descriptors(global_maps.float(), mean, components, method.window)
    return k_center_greedy(descriptors.numpy(), n, method.keep_fraction)
