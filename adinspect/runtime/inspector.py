"""In-process inspector: a model package run on ONNX Runtime (the embedded default, no server).

images → preprocess → backbone.onnx → residual.onnx → postprocess → InspectionResult.
Imports numpy, opencv, onnxruntime and pydantic only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from adinspect.contracts import BACKBONE, RESIDUAL
from adinspect.imageio import read_image
from adinspect.package import ModelPackage
from adinspect.results import InspectionResult
from adinspect.runtime.postprocess import find_regions, resize_map, verdict_of
from adinspect.runtime.preprocess import check_rgb, preprocess_batch


@dataclass
class Inspection:
    """One image's result and its anomaly map at the original image size (H, W) float32."""

    result: InspectionResult
    anomaly_map: np.ndarray


def make_session(
    path: Path, threads: int | None = None, providers: Sequence[str] | None = None
) -> ort.InferenceSession:
    """An ONNX Runtime session with full graph optimisation; `threads` defaults to the CPU count."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"])
    )


class Inspector:
    """Runs one product's model package.

    Args:
        model_dir: a directory written by `adinspect fit`.
        threads: ONNX Runtime intra-op threads (default: all cores).
        providers: ONNX Runtime execution providers (default: CPU).
    """

    def __init__(
        self, model_dir: Path, threads: int | None = None, providers: Sequence[str] | None = None
    ) -> None:
        self.package = ModelPackage.load(Path(model_dir))
        self.backbone = make_session(self.package.path("backbone.onnx"), threads, providers)
        self.residual = make_session(self.package.path("residual.onnx"), threads, providers)

    @property
    def product(self) -> str:
        return self.package.product

    @property
    def threshold(self) -> float:
        return self.package.threshold

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, S, S) float32 normalised → anomaly maps (B, S, S), scores (B,)."""
        features, global_map = self.backbone.run(None, {BACKBONE.image: batch})
        _, amap, score = self.residual.run(
            [RESIDUAL.residual, RESIDUAL.anomaly_map, RESIDUAL.score],
            {RESIDUAL.features: features, RESIDUAL.global_map: global_map},
        )
        return amap[:, 0], score

    def inspect_batch(self, images: Sequence[np.ndarray], names: Sequence[str]) -> list[Inspection]:
        """uint8 RGB (H_i, W_i, 3) images → one Inspection each, maps at each image's own size."""
        if len(images) != len(names):
            raise ValueError(f"got {len(images)} images but {len(names)} names")
        for image, name in zip(images, names, strict=True):
            check_rgb(image, name)
        if not images:
            return []
        maps, scores = self.run(preprocess_batch(images, self.package.preprocess))
        return [
            self._finish(im, name, m, float(s))
            for im, name, m, s in zip(images, names, maps, scores, strict=True)
        ]

    def inspect(self, image: np.ndarray, name: str = "image") -> Inspection:
        return self.inspect_batch([image], [name])[0]

    def inspect_file(self, path: Path) -> Inspection:
        return self.inspect(read_image(path), name=str(path))

    def _finish(self, image: np.ndarray, name: str, amap: np.ndarray, score: float) -> Inspection:
        full = resize_map(amap, image.shape[0], image.shape[1])
        result = InspectionResult(
            image=name,
            product=self.product,
            score=score,
            threshold=self.threshold,
            verdict=verdict_of(score, self.threshold),
            regions=find_regions(full, self.threshold),
            random_weights=self.package.manifest.backbone.random_weights,
        )
        return Inspection(result, full)
