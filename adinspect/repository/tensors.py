"""Tensor configs of the served models: the ensemble's inputs and outputs and the shapes every
product of one repository shares."""

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
    """Tensor shapes (without batch) shared by all products of one repository."""

    image_size: int
    feature_dim: int
    feature_grid: int
    global_channels: int
    global_grid: int

    @classmethod
    def of(cls, package: ModelPackage) -> Shapes:
        bb = package.manifest.backbone
        return cls(
            package.preprocess.image_size, bb.feature_dim, bb.feature_grid, bb.global_channels, bb.global_grid
        )

    def backbone_io(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        s = self.image_size
        return (
            [tensor(BACKBONE.image, "TYPE_FP32", [3, s, s])],
            [
                tensor(
                    BACKBONE.features, "TYPE_FP32", [self.feature_dim, self.feature_grid, self.feature_grid]
                ),
                tensor(
                    BACKBONE.global_map,
                    "TYPE_FP32",
                    [self.global_channels, self.global_grid, self.global_grid],
                ),
            ],
        )

    def residual_io(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(B,) ONNX outputs are served as [1]; backends that run the ONNX graph need `reshape`."""
        scalar: dict[str, Any] = {"reshape": {"shape": []}}
        s, g = self.image_size, self.feature_grid
        return (
            [
                tensor(RESIDUAL.features, "TYPE_FP32", [self.feature_dim, g, g]),
                tensor(
                    RESIDUAL.global_map,
                    "TYPE_FP32",
                    [self.global_channels, self.global_grid, self.global_grid],
                ),
            ],
            [
                tensor(RESIDUAL_OUT.residual, "TYPE_FP32", [self.feature_dim, g, g]),
                tensor(RESIDUAL_OUT.anomaly_map, "TYPE_FP32", [1, s, s]),
                tensor(RESIDUAL_OUT.score, "TYPE_FP32", [1], **scalar),
                tensor(RESIDUAL_OUT.threshold, "TYPE_FP32", [1], **scalar),
                tensor(RESIDUAL_OUT.product_id, "TYPE_INT32", [1], **scalar),
            ],
        )

    def seg_io(self, n_types: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """`seg_<product>`: residual → seg.onnx outputs + baked threshold and defect-type name."""
        scalar: dict[str, Any] = {"reshape": {"shape": []}}
        s, g = self.image_size, self.feature_grid
        return (
            [tensor(SEG.residual, "TYPE_FP32", [self.feature_dim, g, g])],
            [
                tensor(SEG_OUT.anomaly_map, "TYPE_FP32", [1, s, s]),
                tensor(SEG_OUT.score, "TYPE_FP32", [1], **scalar),
                tensor(SEG_OUT.defect_type, "TYPE_INT64", [1], **scalar),
                tensor(SEG_OUT.type_scores, "TYPE_FP32", [n_types]),
                tensor(SEG_OUT.threshold, "TYPE_FP32", [1], **scalar),
                tensor(SEG_OUT.defect_name, "TYPE_STRING", [1], **scalar),
            ],
        )
