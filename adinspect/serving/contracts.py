"""Tensor names of the served pipeline: ensemble inputs/outputs and the steps between them.

The exported ONNX names come from `adinspect.contracts` (BACKBONE, RESIDUAL); these add what the
serving path defines. The same names are written into every config.pbtxt by
`adinspect.serving.repository` and read by `adinspect.client`; `tests/serving/test_contracts.py`
checks that they agree.
"""

from __future__ import annotations

from typing import NamedTuple

from adinspect.contracts import BACKBONE, RESIDUAL


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
    regions: str = "regions"  # TYPE_STRING [1]: JSON list of adinspect.results.Region
    anomaly_map: str = "anomaly_map"  # TYPE_FP32 [H, W] at the original size ([0, 0] unless asked)
    anomaly_map_png: str = "anomaly_map_png"  # TYPE_STRING [1]: 8-bit PNG, 128 = threshold (b"" unless asked)


class PreprocessOutputs(NamedTuple):
    image: str = BACKBONE.image  # TYPE_FP32 [3, S, S], normalised
    original_size: str = "original_size"  # TYPE_INT32 [2]: height, width of the received image


class ResidualServingOutputs(NamedTuple):
    """What `residual_<product>` serves: the package's residual.onnx outputs plus its threshold."""

    residual: str = RESIDUAL.residual
    anomaly_map: str = RESIDUAL.anomaly_map
    score: str = RESIDUAL.score
    threshold: str = "threshold"  # (B,) the product's calibrated threshold, baked in at build time


class PostprocessInputs(NamedTuple):
    anomaly_map: str = "anomaly_map"  # TYPE_FP32 [1, S, S]
    score: str = "score"  # TYPE_FP32 [1]
    threshold: str = "threshold"  # TYPE_FP32 [1]
    original_size: str = PreprocessOutputs().original_size
    map_format: str = InspectInputs().map_format


INSPECT_IN = InspectInputs()
INSPECT_OUT = InspectOutputs()
PREPROCESS_OUT = PreprocessOutputs()
RESIDUAL_OUT = ResidualServingOutputs()
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
