"""`adinspect evaluate`: run a package on a labelled test set and compute the metrics of DESIGN.md §1.

Maps are compared with the ground truth at the model's input resolution H_in x W_in (the package's
`preprocess.shape`; masks resized with nearest neighbour), as anomalib and the ADClick authors' code
do at S x S.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from adinspect.data.datasets import Sample, open_dataset
from adinspect.evaluation.expected import (
    expected_misses,
    image_key,
    labelled_images,
    stated_false_rejects,
)
from adinspect.geometry import as_shape, preprocess_batch
from adinspect.imageio import read_image, read_mask
from adinspect.metrics import compute_metrics
from adinspect.package import ModelPackage
from adinspect.runtime.postprocess import passes
from adinspect.runtime.seg import SEG_META


@dataclass
class EvalData:
    """Model outputs over a test set, all at the model input (H_in, W_in)."""

    samples: list[Sample]
    scores: np.ndarray  # (N,)
    maps: np.ndarray  # (N, H_in, W_in) float32
    masks: np.ndarray  # (N, H_in, W_in) bool
    images: list[np.ndarray] = field(default_factory=list)  # (H_in, W_in, 3) uint8, kept for plots


def load_mask_at(sample: Sample, image_shape: tuple[int, int], size: int | tuple[int, int]) -> np.ndarray:
    """The sample's mask (all False for good images) checked against its image and resized (nearest)
    to `size`: (H_in, W_in), or S for S x S."""
    height, width = as_shape(size)
    if sample.mask_path is None:
        return np.zeros((height, width), bool)
    mask = read_mask(sample.mask_path, expected_shape=image_shape)
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0


def collect(
    runner,
    samples: Sequence[Sample],
    size: int | tuple[int, int],
    preprocess_spec,
    batch_size: int = 8,
    keep_images: bool = False,
    progress: bool = True,
) -> EvalData:
    """Run `runner.run((B, 3, H_in, W_in)) -> (maps, scores)` over samples, with their masks at `size`
    ((H_in, W_in), or S for S x S)."""
    scores, maps, masks, images = [], [], [], []
    for start in tqdm(
        range(0, len(samples), batch_size), desc="evaluating", unit="batch", disable=not progress
    ):
        chunk = samples[start : start + batch_size]
        rgb = [read_image(s.path) for s in chunk]
        masks += [load_mask_at(s, im.shape[:2], size) for s, im in zip(chunk, rgb, strict=True)]
        m, sc = runner.run(preprocess_batch(rgb, preprocess_spec))
        maps.append(m)
        scores.append(sc)
        if keep_images:
            images += [cv2.resize(im, as_shape(size)[::-1], interpolation=cv2.INTER_AREA) for im in rgb]
    return EvalData(list(samples), np.concatenate(scores), np.concatenate(maps), np.stack(masks), images)


def evaluate_package(
    model_dir: Path,
    data_dir: Path,
    plots_dir: Path | None = None,
    progress: bool = True,
    product: str | None = None,
) -> dict:
    """Metrics of a package on the test split of `data_dir` (MVTec or KolektorSDD2 layout), with
    what the package states to expect at its threshold beside the measured rates
    (`evaluation.expected`).

    A unified package inspects the data as `product` (default: the product named like the data
    folder); its threshold gives the false-reject and miss rates.
    """
    from adinspect.runtime.inspector import Inspector

    dataset = open_dataset(Path(data_dir))
    package = ModelPackage.load(Path(model_dir), verify=False)  # which product; Inspector verifies
    inspector = Inspector(model_dir, product=package.product_for_data(product, dataset.name))
    if not dataset.test:
        raise ValueError(f"{data_dir}: no test images (expected test/good and test/<defect> folders)")
    pre = inspector.package.preprocess
    data = collect(
        inspector, dataset.test, pre.shape, pre, keep_images=plots_dir is not None, progress=progress
    )
    labels = np.array([s.label for s in data.samples])
    metrics: dict = {"product": inspector.product, "threshold": inspector.threshold}
    metrics.update(compute_metrics(data.scores, labels, data.maps, data.masks))
    passed = passes(data.scores, inspector.threshold)  # fail closed, as served
    metrics["false_reject_rate"] = float((~passed[labels == 0]).mean()) if (labels == 0).any() else 0.0
    metrics["miss_rate"] = float(passed[labels == 1].mean()) if (labels == 1).any() else 0.0
    metrics["n_images"] = len(data.samples)
    metrics["n_defective"] = int(labels.sum())
    seg_meta = inspector.package.path(SEG_META) if inspector.seg_info is not None else None
    metrics.update(stated_false_rejects(inspector.package, seg_meta))
    labelled = labelled_images(Path(model_dir))
    scored = {image_key(Path(s.path)): float(v) for s, v in zip(data.samples, data.scores, strict=True)}
    metrics.update(expected_misses(labelled, scored, inspector.threshold, _scorer(inspector)))
    if inspector.seg is not None:
        # ADClick-Seg was fine-tuned on pseudo labels of some test images: say how many are in here
        trained_on = {image_key(p) for p in labelled}
        metrics["n_pseudo_labelled"] = sum(image_key(Path(s.path)) in trained_on for s in data.samples)
    if plots_dir is not None:
        _plots(Path(plots_dir), data, labels, inspector.threshold)
    return metrics


def _scorer(inspector):
    """path → the inspector's score of that image (for labelled images outside the test split)."""

    def score_of(path: Path) -> float:
        return inspector.inspect_file(path).result.score

    return score_of


def _plots(out: Path, data: EvalData, labels: np.ndarray, threshold: float) -> None:
    from adinspect.evaluation.plots import plot_overlay_grid, plot_roc_pr

    out.mkdir(parents=True, exist_ok=True)
    plot_roc_pr(data.scores, labels, data.maps, data.masks, out / "roc_pr.png")
    order = np.argsort(-data.scores)
    pick = list(order[:12]) + list(order[-4:])
    titles = [f"{data.samples[i].defect_type} {data.scores[i]:.2f}" for i in pick]
    plot_overlay_grid(
        [data.images[i] for i in pick],
        [data.maps[i] for i in pick],
        [data.masks[i] for i in pick],
        titles,
        out / "overlays.png",
        vmin=0.0,
        vmax=float(threshold) * 1.5,
    )
