"""Tensor configs of the served models: the ensemble's inputs and outputs and the shapes the
products of one backbone model share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adinspect.contracts import BACKBONE, INSPECT_IN, INSPECT_OUT, RESIDUAL, RESIDUAL_OUT, SEG, SEG_OUT
from adinspect.package import ModelPackage
from adinspect.repository.pbtxt import Enum


def tensor(name: str, dtype: str, dims: Sequence[int], **extra: Any) -> dict[str, Any]:
    return {"name": name, "data_type": Enum(dtype), "dims": list(dims), **extra}


def ensemble_io(raw_size: tuple[int, int] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The inputs and outputs of `inspect_<product>`; image_raw only with a fixed `raw_size` (H, W),
    so that Triton refuses any other shape before it is copied into the Python backend's memory."""
    inputs = [tensor(INSPECT_IN.image_bytes, "TYPE_STRING", [1], optional=True)]
    if raw_size is not None:
        inputs.append(tensor(INSPECT_IN.image_raw, "TYPE_UINT8", [*raw_size, 3], optional=True))
    inputs.append(tensor(INSPECT_IN.map_format, "TYPE_STRING", [1], optional=True))
    outputs = [
        tensor(INSPECT_OUT.score, "TYPE_FP32", [1]),
        tensor(INSPECT_OUT.threshold, "TYPE_FP32", [1]),
        tensor(INSPECT_OUT.verdict, "TYPE_STRING", [1]),
        tensor(INSPECT_OUT.reason, "TYPE_STRING", [1]),
        tensor(INSPECT_OUT.regions, "TYPE_STRING", [1]),
        tensor(INSPECT_OUT.anomaly_map, "TYPE_FP32", [-1, -1]),
        tensor(INSPECT_OUT.anomaly_map_png, "TYPE_STRING", [1]),
        tensor(INSPECT_OUT.defect_type, "TYPE_STRING", [1]),
    ]
    return inputs, outputs


@dataclass(frozen=True)
class Shapes:
    """Tensor shapes (without batch) shared by the products of one backbone model: the input
    (H_in, W_in), features (d_f, h, w) and global map (c_1, h_g, w_g)."""

    input_shape: tuple[int, int]
    feature_dim: int
    feature_grid: tuple[int, int]
    global_channels: int
    global_grid: tuple[int, int]

    @classmethod
    def of(cls, package: ModelPackage) -> Shapes:
        bb = package.manifest.backbone
        return cls(
            package.preprocess.shape, bb.feature_dim, bb.feature_shape, bb.global_channels, bb.global_shape
        )

    @property
    def suffix(self) -> str:
        """The input as "<H>x<W>": names the shared models when a repository serves several shapes."""
        return f"{self.input_shape[0]}x{self.input_shape[1]}"

    def _global(self) -> dict[str, Any]:
        return tensor(BACKBONE.global_map, "TYPE_FP32", [self.global_channels, *self.global_grid])

    def backbone_io(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return (
            [tensor(BACKBONE.image, "TYPE_FP32", [3, *self.input_shape])],
            [tensor(BACKBONE.features, "TYPE_FP32", [self.feature_dim, *self.feature_grid]), self._global()],
        )

    def residual_io(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(B,) ONNX outputs are served as [1]; backends that run the ONNX graph need `reshape`."""
        scalar: dict[str, Any] = {"reshape": {"shape": []}}
        features = [self.feature_dim, *self.feature_grid]
        return (
            [tensor(RESIDUAL.features, "TYPE_FP32", features), self._global()],
            [
                tensor(RESIDUAL_OUT.residual, "TYPE_FP32", features),
                tensor(RESIDUAL_OUT.anomaly_map, "TYPE_FP32", [1, *self.input_shape]),
                tensor(RESIDUAL_OUT.score, "TYPE_FP32", [1], **scalar),
                tensor(RESIDUAL_OUT.threshold, "TYPE_FP32", [1], **scalar),
                tensor(RESIDUAL_OUT.product_id, "TYPE_INT32", [1], **scalar),
            ],
        )

    def seg_io(self, n_types: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """`seg_<product>`: residual → seg.onnx outputs + baked threshold and defect-type name."""
        scalar: dict[str, Any] = {"reshape": {"shape": []}}
        return (
            [tensor(SEG.residual, "TYPE_FP32", [self.feature_dim, *self.feature_grid])],
            [
                tensor(SEG_OUT.anomaly_map, "TYPE_FP32", [1, *self.input_shape]),
                tensor(SEG_OUT.score, "TYPE_FP32", [1], **scalar),
                tensor(SEG_OUT.defect_type, "TYPE_INT64", [1], **scalar),
                tensor(SEG_OUT.type_scores, "TYPE_FP32", [n_types]),
                tensor(SEG_OUT.threshold, "TYPE_FP32", [1], **scalar),
                tensor(SEG_OUT.defect_name, "TYPE_STRING", [1], **scalar),
            ],
        )
