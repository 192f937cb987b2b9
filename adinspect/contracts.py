"""Named tensor contracts: the same names are ONNX I/O names, Triton tensors and client constants.

One place defines them; `tests/test_contracts.py` checks the exported models, the generated
config.pbtxt files and the client agree.
"""

from __future__ import annotations

from typing import NamedTuple


class BackboneIO(NamedTuple):
    image: str = "image"  # (B, 3, S, S) float32, normalised
    features: str = "features"  # (B, d_f, S/8, S/8) float32
    global_map: str = "global_map"  # (B, c_1, S/4/p, S/4/p) float32, pooled layer-1 map


class ResidualIO(NamedTuple):
    features: str = "features"
    global_map: str = "global_map"
    residual: str = "residual"  # (B, d_f, S/8, S/8)
    anomaly_map: str = "anomaly_map"  # (B, 1, S, S), blurred residual norm
    score: str = "score"  # (B,)


class SegIO(NamedTuple):
    """seg.onnx (ADClick-Seg, written by `adinspect train-seg`); same names as models.export.SEG."""

    residual: str = "residual"  # (B, d_f, S/8, S/8) float32, the residual model's output
    anomaly_map: str = "seg_map"  # (B, 1, S, S) float32 probability, max over defect types
    score: str = "seg_score"  # (B,) float32, max of seg_map
    defect_type: str = "defect_type"  # (B,) int64 index into the package's defect-type list
    type_scores: str = "type_scores"  # (B, P) float32, max probability per defect type


class ClickIO(NamedTuple):
    """click.onnx (ADClick, written by `adinspect train-click`; same names as models.export.CLICK).

    Used offline by `adinspect annotate` (runtime/click.py), not served on Triton.
    """

    residual: str = "residual"  # (B, d_f, S/8, S/8) float32
    prev_mask: str = "prev_mask"  # (B, 1, S, S) float32 in [0, 1]
    clicks: str = "clicks"  # (B, 2, S, S) float32 positive / negative discs
    defect_type: str = "defect_type"  # (B,) int64
    mask: str = "mask"  # (B, 1, S, S) float32 probability


BACKBONE = BackboneIO()
RESIDUAL = ResidualIO()
SEG = SegIO()
CLICK = ClickIO()
