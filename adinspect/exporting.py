"""ONNX export of the backbone and residual models, with a parity check against torch.

Uses the TorchScript-based exporter (`dynamo=False`): our modules are static-shape by design
and this exporter writes self-contained files (no external data) with a dynamic batch axis.
"""

from __future__ import annotations

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
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str], outputs: list[str]
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
    onnx.checker.check_model(str(path), full_check=True)


def export_backbone(embedder: nn.Module, image_size: int, path: Path) -> None:
    """image (B, 3, S, S) → features, global_map."""
    example = torch.zeros(2, 3, image_size, image_size)
    _export(embedder, (example,), path, [BACKBONE.image], [BACKBONE.features, BACKBONE.global_map])


def export_residual(model: nn.Module, features: torch.Tensor, global_map: torch.Tensor, path: Path) -> None:
    """features, global_map → residual, anomaly_map, score (bank as constants)."""
    _export(
        model,
        (features[:2], global_map[:2]),
        path,
        [RESIDUAL.features, RESIDUAL.global_map],
        [RESIDUAL.residual, RESIDUAL.anomaly_map, RESIDUAL.score],
    )


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if a.size else 0.0
