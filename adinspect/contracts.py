"""Named tensor contracts: the same names are ONNX I/O names, Triton tensors and client constants.

One place defines them, on the floor both sides stand on: the exported models' graph inputs and
outputs (BACKBONE, RESIDUAL, SEG, CLICK, UNIFIED), then what the serving path adds (the
`inspect_<product>` ensemble's inputs and outputs, the steps between them and the served model
names). The same names
are written into every config.pbtxt by `adinspect.repository` and read by `adinspect.client`;
`tests/repository/test_contracts.py` checks that the exported models, the generated configs and
the client agree.

Shapes: (H_in, W_in) is the network input (the package's `preprocess.shape`, S x S in packages from
before rectangular inputs), (h, w) the feature grid; [H, W] without "in" is the received image.
"""

from __future__ import annotations

from typing import NamedTuple


class BackboneIO(NamedTuple):
    image: str = "image"  # (B, 3, H_in, W_in) float32, normalised
    features: str = "features"  # (B, d_f, S/8, S/8) float32
    global_map: str = "global_map"  # (B, c_1, S/4/p, S/4/p) float32, pooled layer-1 map


class ResidualIO(NamedTuple):
    features: str = "features"
    global_map: str = "global_map"
    residual: str = "residual"  # (B, d_f, S/8, S/8)
    anomaly_map: str = "anomaly_map"  # (B, 1, H_in, W_in), blurred residual norm
    score: str = "score"  # (B,)


class SegIO(NamedTuple):
    """seg.onnx (ADClick-Seg, written by `adinspect train-seg`); same names as models.export.SEG."""

    residual: str = "residual"  # (B, d_f, S/8, S/8) float32, the residual model's output
    anomaly_map: str = "seg_map"  # (B, 1, H_in, W_in) float32 probability, max over defect types
    score: str = "seg_score"  # (B,) float32, max of seg_map
    defect_type: str = "defect_type"  # (B,) int64 index into the package's defect-type list
    type_scores: str = "type_scores"  # (B, P) float32, max probability per defect type


class ClickIO(NamedTuple):
    """click.onnx (ADClick, written by `adinspect train-click`).

    Used offline by `adinspect annotate` (runtime/click.py), not served on Triton. The image priors
    are fed with the backbone's own tensors, so their names are the backbone's (a test checks).
    """

    residual: str = "residual"  # (B, d_f, S/8, S/8) float32
    prev_mask: str = "prev_mask"  # (B, 1, H_in, W_in) float32 in [0, 1]
    clicks: str = "clicks"  # (B, 2, H_in, W_in) float32 positive / negative discs
    defect_type: str = "defect_type"  # (B,) int64
    mask: str = "mask"  # (B, 1, H_in, W_in) float32 probability
    # optional inputs, present when the click model was trained with the image prior of that name
    image: str = "image"  # (B, 3, H_in, W_in) float32, the backbone's input (`--image-branch`)
    features: str = "features"  # (B, d_f, H_in/8, W_in/8) float32, the backbone's output (`--image-features`)


class UnifiedIO(NamedTuple):
    """invad.onnx (InvAD, written by `adinspect train-unified`): one graph from the image to the map,
    the same for every product of the package (the product only picks the threshold)."""

    image: str = BackboneIO().image  # (B, 3, S, S) float32, normalised
    anomaly_map: str = "anomaly_map"  # (B, 1, S, S) float32, blurred feature-reconstruction distance
    score: str = "score"  # (B,) float32, max of anomaly_map


BACKBONE = BackboneIO()
RESIDUAL = ResidualIO()
UNIFIED = UnifiedIO()
SEG = SegIO()
CLICK = ClickIO()


# ------------------------------------------------------------------ the served pipeline


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
    image: str = BACKBONE.image  # TYPE_FP32 [3, H_in, W_in], normalised
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


class UnifiedServingOutputs(NamedTuple):
    """What a unified package's shared `invad_<model>` serves in the cpu flavour (it decodes and
    preprocesses too): invad.onnx's outputs plus the received image's size."""

    anomaly_map: str = UNIFIED.anomaly_map
    score: str = UNIFIED.score
    original_size: str = PreprocessOutputs().original_size


class PostprocessInputs(NamedTuple):
    anomaly_map: str = "anomaly_map"  # TYPE_FP32 [1, H_in, W_in]
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
UNIFIED_OUT = UnifiedServingOutputs()
POSTPROCESS_IN = PostprocessInputs()

MAP_FORMATS = ("none", "array", "png")

PREPROCESS_MODEL = "preprocess"
BACKBONE_MODEL = "backbone"
POSTPROCESS_MODEL = "postprocess"


def shared_model(name: str, suffix: str = "") -> str:
    """A shared step of the gpu flavour (preprocess, backbone, postprocess): `name`, or `name_<suffix>`
    when one repository serves products of several input shapes (suffix "<H>x<W>", e.g. "640x256")."""
    return f"{name}_{suffix}" if suffix else name


def residual_model(product: str) -> str:
    return f"residual_{product}"


def seg_model(product: str) -> str:
    return f"seg_{product}"


def ensemble_model(product: str) -> str:
    return f"inspect_{product}"


def unified_model(model: str) -> str:
    """A unified package's one served model, shared by all its products."""
    return f"invad_{model}"


def product_postprocess_model(product: str) -> str:
    """A unified package's product step: postprocess with the product's threshold baked in."""
    return f"{POSTPROCESS_MODEL}_{product}"
