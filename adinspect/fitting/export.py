"""ONNX export of the backbone and residual models, with a parity check against torch.

Uses the TorchScript-based exporter (`dynamo=False`): our modules are static-shape by design
and this exporter writes a dynamic batch axis. Small residual models are one self-contained file;
a large bank (above `scale.external_data_mb`, always above protobuf's 2 GB limit) moves the
model's constants into one ONNX external data file, `residual.onnx.data`, beside it.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from adinspect.contracts import BACKBONE, RESIDUAL

OPSET = 17
BATCH = "batch"


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    check: bool = True,
) -> None:
    dynamic = {name: {0: BATCH} for name in inputs + outputs}
    # The tracer warns about shape checks that are constant by design (static-shape modules).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    if check:
        onnx.checker.check_model(str(path), full_check=True)


def export_backbone(embedder: nn.Module, shape: tuple[int, int], path: Path) -> None:
    """image (B, 3, H, W) at the input `shape` (H, W) → features, global_map."""
    example = torch.zeros(2, 3, *shape)
    _export(embedder, (example,), path, [BACKBONE.image], [BACKBONE.features, BACKBONE.global_map])


def export_residual(
    model: nn.Module,
    features: torch.Tensor,
    global_map: torch.Tensor,
    path: Path,
    external_data: bool = False,
) -> list[str]:
    """features, global_map → residual, anomaly_map, score (bank as constants).

    Returns the files written beside `path` that the model needs: [] or [`<name>.data`].
    """
    io = ([RESIDUAL.features, RESIDUAL.global_map], [RESIDUAL.residual, RESIDUAL.anomaly_map, RESIDUAL.score])
    example = (features[:2].float(), global_map[:2].float())
    if not external_data:
        _export(model, example, path, *io)
        return []
    location = f"{path.name}.data"
    # Above 2 GB torch writes one file per constant; export into a scratch folder, then gather
    # every constant over 1 KB into the single data file the package and Triton carry.
    with tempfile.TemporaryDirectory(prefix=".export.", dir=path.parent) as scratch:
        raw = Path(scratch) / path.name
        _export(model, example, raw, *io, check=False)
        proto = onnx.load(str(raw))
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=1024,
    )
    del proto
    onnx.checker.check_model(str(path), full_check=True)
    data = path.parent / location
    if not data.is_file():
        return []
    data.chmod(0o644)  # onnx writes it 0600; Triton in a container may run as another user
    return [location]


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if a.size else 0.0


def onnx_parity(
    tmp: Path,
    probe_feats: torch.Tensor,
    probe_gmaps: torch.Tensor,
    maps: np.ndarray,
    scores: np.ndarray,
    batch_size: int,
) -> dict[str, float]:
    """Max abs difference between ONNX Runtime and torch on the probe inputs (good images mirrored
    left-right, so their residuals are not zero), in the same chunks as torch so ONNX Runtime's
    working set stays bounded too."""
    from adinspect.package import ModelPackage
    from adinspect.runtime.sessions import make_session

    session = make_session(tmp / "residual.onnx")
    ort_maps, ort_scores = [], []
    for start in range(0, len(scores), batch_size):
        end = start + batch_size
        feeds = {
            RESIDUAL.features: probe_feats[start:end].float().numpy(),
            RESIDUAL.global_map: probe_gmaps[start:end].numpy(),
        }
        amap, score = session.run([RESIDUAL.anomaly_map, RESIDUAL.score], feeds)
        ort_maps.append(amap[:, 0])
        ort_scores.append(score)
    del session
    ModelPackage.load(tmp)  # the package as written must load and verify
    return {
        "map_max_abs_diff": max_abs_diff(np.concatenate(ort_maps), maps),
        "score_max_abs_diff": max_abs_diff(np.concatenate(ort_scores), scores),
        "score_scale": float(np.max(np.abs(scores))),
    }
