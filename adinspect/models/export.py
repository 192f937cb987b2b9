"""ONNX export of ADClick-Seg and ADClick with the language tensors as constants.

`SegGraph` wraps ADClick-Seg with V_lang (P, Z, Q) and the word mask as buffers, so the exported
`seg.onnx` takes only the residual and returns the max over the P defect types (Eq. 7), when
`train-seg` chose so fused with the training-free map of the same residual, and the winning type.
`ClickGraph` wraps ADClick with the same constants and picks V_lang by a defect-type index
input (a Gather), so `click.onnx` never needs the text encoder; an ADClick with the image branch
adds one input, the normalised `image` (the backbone's input name and tensor); one with the
feature prior adds `features` (the backbone's output name and tensor).
Both use the TorchScript exporter (`dynamo=False`, as the foundation's exporter) with a dynamic
batch axis; all other shapes are static.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from adinspect.contracts import CLICK, SEG  # names shared with the inspector, runtime and Triton
from adinspect.models.adclick import ADClick, ADClickSeg
from adinspect.residual.model import gaussian_blur, gaussian_kernel, residual_norm_map

OPSET = 17
BATCH = "batch"


class SegGraph(nn.Module):
    """residual (B, d_f, h, w) → seg_map, seg_score, defect_type, type_scores (language as constants).

    The max-over-types map gets the same separable Gaussian blur (reflect padding) as the
    training-free map (`method.blur_sigma`); the score is the max of the blurred map. The blur is
    a fixed-size convolution, so the graph keeps static shapes.

    With `free_threshold` t (the package's calibrated training-free threshold) the served map is
    the geometric mean of the seg probability p and the training-free map a in units of t,
    sqrt(p · a / t), computed from the same residual: a pixel scores high only where both agree,
    so the seg network's confident blobs on a moderate residual (a reflection) are damped and the
    residual's image-level ranking is kept. No constant is tuned: t comes from the fit's
    out-of-fold good scores. With the package's per-position normalisation (`position`, the
    residual model's `PositionNorm`), a is the normalised map as served, clamped at 0 (below the
    good images' mean it carries no evidence). The map is then not a probability; the seg
    threshold is calibrated on it.
    """

    v_lang: torch.Tensor
    word_mask: torch.Tensor
    blur: torch.Tensor

    def __init__(
        self,
        model: ADClickSeg,
        v_lang: torch.Tensor,
        word_mask: torch.Tensor,
        blur_sigma: float = 0.0,
        free_threshold: float | None = None,
        position: nn.Module | None = None,
    ):
        super().__init__()
        if free_threshold is not None and not (math.isfinite(free_threshold) and free_threshold > 0):
            raise ValueError(f"free_threshold must be a finite positive number, got {free_threshold!r}")
        self.model = model
        self.free_threshold = free_threshold
        self.position = position
        self.register_buffer("v_lang", v_lang.float())
        self.register_buffer("word_mask", word_mask.float())
        self.register_buffer("blur", gaussian_kernel(blur_sigma))

    def forward(self, residual: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(residual, self.v_lang, self.word_mask)
        amap = gaussian_blur(out.anomaly_map, self.blur)
        if self.free_threshold is not None:
            amap = self.fuse(amap, residual)
        return amap, amap.amax(dim=(1, 2, 3)), out.defect_type, out.type_scores

    def fuse(self, amap: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """Blurred seg map (B, 1, H, W) of `residual` → sqrt(p · a / t); NaN in, NaN out (fails closed)."""
        if self.free_threshold is None:
            raise ValueError("this SegGraph serves the seg probability alone (no free_threshold)")
        free = residual_norm_map(residual, self.model.cfg.image_hw, self.blur)
        if self.position is not None:
            free = torch.relu(self.position(free))
        return torch.sqrt(amap * free / self.free_threshold)


class ClickGraph(nn.Module):
    """residual, prev_mask, clicks, defect_type[, image][, features] → mask probability (B, 1, H, W)."""

    v_lang: torch.Tensor
    word_mask: torch.Tensor

    def __init__(self, model: ADClick, v_lang: torch.Tensor, word_mask: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("v_lang", v_lang.float())
        self.register_buffer("word_mask", word_mask.float())

    @property
    def input_names(self) -> list[str]:
        """click.onnx's inputs: the four of `ClickIO`, then `image` and `features` when the model
        takes them."""
        names = [CLICK.residual, CLICK.prev_mask, CLICK.clicks, CLICK.defect_type]
        names += [CLICK.image] if self.model.takes_image else []
        return names + ([CLICK.features] if self.model.takes_features else [])

    def forward(
        self,
        residual: torch.Tensor,
        prev_mask: torch.Tensor,
        clicks: torch.Tensor,
        defect_type: torch.Tensor,
        *priors: torch.Tensor,
    ) -> torch.Tensor:
        """`priors`: the image and / or the features, in `input_names` order."""
        rest = list(priors)
        image = rest.pop(0) if self.model.takes_image else None
        features = rest.pop(0) if self.model.takes_features else None
        if rest:
            raise ValueError(f"{len(priors)} prior inputs given, click.onnx takes {self.input_names[4:]}")
        words = self.v_lang[defect_type]
        mask = self.word_mask[defect_type]
        return torch.sigmoid(self.model(residual, prev_mask, clicks, words, mask, image, features))


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]) -> None:
    with torch.no_grad():
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={n: {0: BATCH} for n in inputs + outputs},
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path), full_check=True)


def export_seg(graph: SegGraph, residual: torch.Tensor, path: Path) -> dict[str, float]:
    """Export `graph` to `path` and return the ONNX Runtime vs torch parity on `residual`."""
    _export(
        graph,
        (residual,),
        path,
        [SEG.residual],
        [SEG.anomaly_map, SEG.score, SEG.defect_type, SEG.type_scores],
    )
    with torch.no_grad():
        ref = graph(residual)
    got = _run(path, {SEG.residual: residual.numpy()})
    return {
        "map_max_abs_diff": _diff(got[0], ref[0]),
        "score_max_abs_diff": _diff(got[1], ref[1]),
        "defect_type_agreement": float(np.mean(got[2] == ref[2].numpy())),
    }


def export_click(graph: ClickGraph, example: tuple[torch.Tensor, ...], path: Path) -> dict[str, float]:
    """Export `graph` with example (residual, prev_mask, clicks, defect_type[, image][, features]);
    returns parity."""
    names = graph.input_names
    if len(example) != len(names):
        raise ValueError(f"example has {len(example)} tensors, click.onnx takes {names}")
    _export(graph, example, path, names, [CLICK.mask])
    with torch.no_grad():
        ref = graph(*example)
    got = _run(path, {n: t.numpy() for n, t in zip(names, example, strict=True)})
    return {"mask_max_abs_diff": _diff(got[0], ref)}


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _diff(a: np.ndarray, b: torch.Tensor) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b.double().numpy())))
