"""In-process inspector: a model package run on ONNX Runtime (the embedded default, no server).

images → preprocess → backbone.onnx → residual.onnx → [seg.onnx] → postprocess → InspectionResult.
With a trained ADClick-Seg (manifest `optional_models` lists 'seg'), its map, score, calibrated
threshold and highest-scoring defect type replace the training-free ones. A unified package (one
InvAD model for several products) runs invad.onnx instead, image → map and score, and takes the
threshold of the product the inspector was opened for.
Imports numpy, opencv, onnxruntime and pydantic only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adinspect.contracts import BACKBONE, RESIDUAL, SEG, UNIFIED
from adinspect.geometry import check_rgb, preprocess_batch
from adinspect.imageio import read_image
from adinspect.package import ModelPackage
from adinspect.results import InspectionResult
from adinspect.runtime.postprocess import find_regions, resize_map, verdict_of
from adinspect.runtime.seg import seg_info
from adinspect.runtime.sessions import make_session


@dataclass
class Inspection:
    """One image's result and its anomaly map at the original image size (H, W) float32."""

    result: InspectionResult
    anomaly_map: np.ndarray


UNIFIED_ONNX = "invad.onnx"


class Inspector:
    """Runs one product's model package.

    Args:
        model_dir: a directory written by `adinspect fit` (or `adinspect train-unified`).
        threads: ONNX Runtime intra-op threads (default: all cores).
        providers: ONNX Runtime execution providers (default: CPU).
        product: which product's threshold decides the verdict: required for a unified package
            (one of its products), optional for a one-product package (its own).

    Raises:
        PackageError: a broken package, or a product the package was not calibrated for.
    """

    def __init__(
        self,
        model_dir: Path,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        product: str | None = None,
    ) -> None:
        self.package = ModelPackage.load(Path(model_dir))
        self._product = self.package.resolve_product(product)
        self.seg_info = None
        self.seg = None
        if self.package.is_unified:
            self.unified = make_session(self.package.path(UNIFIED_ONNX), threads, providers)
            return
        self.unified = None
        self.backbone = make_session(self.package.path("backbone.onnx"), threads, providers)
        self.residual = make_session(self.package.path("residual.onnx"), threads, providers)
        self.seg_info = seg_info(self.package)
        self.seg = None if self.seg_info is None else make_session(self.seg_info.onnx, threads, providers)

    @property
    def product(self) -> str:
        return self._product

    @property
    def threshold(self) -> float:
        """The seg model's calibrated threshold when it is used, else the product's."""
        return self.package.threshold_for(self._product) if self.seg_info is None else self.seg_info.threshold

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H_in, W_in) float32 normalised → anomaly maps (B, H_in, W_in), scores (B,)."""
        maps, scores, _ = self.run_with_types(batch)
        return maps, scores

    def run_with_types(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Like `run`, plus the highest-scoring defect-type index (B,) int64, None without seg."""
        if self.unified is not None:
            amap, score = self.unified.run([UNIFIED.anomaly_map, UNIFIED.score], {UNIFIED.image: batch})
            return amap[:, 0], score, None
        features, global_map = self.backbone.run(None, {BACKBONE.image: batch})
        feeds = {RESIDUAL.features: features, RESIDUAL.global_map: global_map}
        if self.seg is None:
            amap, score = self.residual.run([RESIDUAL.anomaly_map, RESIDUAL.score], feeds)
            return amap[:, 0], score, None
        (residual,) = self.residual.run([RESIDUAL.residual], feeds)
        amap, score, types = self.seg.run(
            [SEG.anomaly_map, SEG.score, SEG.defect_type], {SEG.residual: residual}
        )
        return amap[:, 0], score, types

    def inspect_batch(self, images: Sequence[np.ndarray], names: Sequence[str]) -> list[Inspection]:
        """uint8 RGB (H_i, W_i, 3) images → one Inspection each, maps at each image's own size."""
        if len(images) != len(names):
            raise ValueError(f"got {len(images)} images but {len(names)} names")
        for image, name in zip(images, names, strict=True):
            check_rgb(image, name)
        if not images:
            return []
        maps, scores, types = self.run_with_types(preprocess_batch(images, self.package.preprocess))
        info = self.seg_info
        kinds = (
            [None] * len(images) if types is None or info is None else [info.type_name(int(t)) for t in types]
        )
        return [
            self._finish(im, name, m, float(s), kind)
            for im, name, m, s, kind in zip(images, names, maps, scores, kinds, strict=True)
        ]

    def inspect(self, image: np.ndarray, name: str = "image") -> Inspection:
        return self.inspect_batch([image], [name])[0]

    def inspect_file(self, path: Path) -> Inspection:
        return self.inspect(read_image(path), name=str(path))

    def _finish(
        self, image: np.ndarray, name: str, amap: np.ndarray, score: float, defect_type: str | None
    ) -> Inspection:
        full = resize_map(amap, image.shape[0], image.shape[1])
        verdict, reason = verdict_of(score, self.threshold, full)
        result = InspectionResult(
            image=name,
            product=self.product,
            score=score,
            threshold=self.threshold,
            verdict=verdict,
            reason=reason,
            regions=find_regions(full, self.threshold),
            defect_type=defect_type,
            random_weights=self.package.manifest.backbone.random_weights,
        )
        return Inspection(result, full)
