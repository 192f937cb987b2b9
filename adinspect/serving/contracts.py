"""Tensor names of the served pipeline: ensemble inputs/outputs and the steps between them.

The exported ONNX names come from `adinspect.contracts` (BACKBONE, RESIDUAL, SEG); these add what the
serving path defines. The same names are written into every config.pbtxt by
`adinspect.serving.repository` and read by `adinspect.client`; `tests/serving/test_contracts.py`
checks that they agree.
"""

from __future__ import annotations

from typing import NamedTuple

from adinspect.contracts import BACKBONE, RESIDUAL, SEG


class InspectInputs(NamedTuple):
    """Inputs of the `inspect_<product>` ensemble; send exactly one of the two images."""

    image_bytes: str = "image_bytes"  # TYPE_STRING [1]: an encoded PNG/JPEG/BMP/TIFF file
    image_raw: str = "image_raw"  # TYPE_UINT8 [H, W, 3]: decoded RGB pixels
    map_format: str = "map_format"  # TYPE_STRING [1], optional: b"none" (default), b"array" or b"png"


class InspectOutputs(NamedTuple):
    """Outputs of the `inspect_<product>` ensemble (and of the `postprocess` step)."""

    score: str = "score"  # TYPE_FP32 [1]
    threshold: str = "threshold"  # TYPE_FP32 [1]
    verdict: str = "verdict"  # TYPE_STRING [1]: b"pass" or b"fail"
    reason: str = "reason"  # TYPE_STRING [1]: why it failed (b"" for a pass), e.g. a non-finite score
    regions: str = "regions"  # TYPE_STRING [1]: JSON list of adinspect.results.Region
    anomaly_map: str = "anomaly_map"  # TYPE_FP32 [H, W] at the original size ([0, 0] unless asked)
    anomaly_map_png: str = "anomaly_map_png"  # TYPE_STRING [1]: 8-bit PNG, 128 = threshold (b"" unless asked)
    defect_type: str = "defect_type"  # TYPE_STRING [1]: highest-scoring defect type (b"" without seg)


class PreprocessOutputs(NamedTuple):
    image: str = BACKBONE.image  # TYPE_FP32 [3, S, S], normalised
    original_size: str = "original_size"  # TYPE_INT32 [2]: height, width of the received image


class ResidualServingOutputs(NamedTuple):
    """What `residual_<product>` serves: the package's residual.onnx outputs plus its threshold."""

    residual: str = RESIDUAL.residual
    anomaly_map: str = RESIDUAL.anomaly_map
    score: str = RESIDUAL.score
    threshold: str = "threshold"  # (B,) the product's calibrated threshold, baked in at build time
    product_id: str = "product_id"  # (B,) int32 monitoring.product_id(product), baked in at build time


class SegServingOutputs(NamedTuple):
    """What `seg_<product>` serves: seg.onnx outputs plus, baked in at build time, the seg model's
    calibrated threshold and the name of the highest-scoring defect type."""

    anomaly_map: str = SEG.anomaly_map
    score: str = SEG.score
    defect_type: str = SEG.defect_type  # (B,) int64 index
    type_scores: str = SEG.type_scores
    threshold: str = "threshold"  # (B,) float32
    defect_name: str = "defect_name"  # (B,) string


class PostprocessInputs(NamedTuple):
    anomaly_map: str = "anomaly_map"  # TYPE_FP32 [1, S, S]
    score: str = "score"  # TYPE_FP32 [1]
    threshold: str = "threshold"  # TYPE_FP32 [1]
    original_size: str = PreprocessOutputs().original_size
    map_format: str = InspectInputs().map_format
    defect_type: str = "defect_type"  # TYPE_STRING [1], optional: given by seg_<product>
    product_id: str = "product_id"  # TYPE_INT32 [1], optional: which product's metrics to count in


INSPECT_IN = InspectInputs()
INSPECT_OUT = InspectOutputs()
PREPROCESS_OUT = PreprocessOutputs()
RESIDUAL_OUT = ResidualServingOutputs()
SEG_OUT = SegServingOutputs()
POSTPROCESS_IN = PostprocessInputs()

MAP_FORMATS = ("none", "array", "png")

PREPROCESS_MODEL = "preprocess"
BACKBONE_MODEL = "backbone"
POSTPROCESS_MODEL = "postprocess"


def residual_model(product: str) -> str:
    return f"residual_{product}"


def seg_model(product: str) -> str:
    return f"seg_{product}"


def ensemble_model(product: str) -> str:
    return f"inspect_{product}"
