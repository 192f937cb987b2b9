"""`adinspect zero-shot`: score a folder or a labelled dataset's test split as one unlabelled batch.

Writes `maps.npy` ((N, S, S) float32, in the order of `results.json`), `scores.csv`,
`results.json` (scores, skipped files, config, timings) and `overlays/*.png`; for a labelled
dataset also the metrics of `evaluate` (same registry, maps compared at S x S) and `roc_pr.png`.
Ground truth is read only after scoring, for the metrics: the method never sees a label.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from adinspect.data.datasets import Sample, detect_layout, open_dataset
from adinspect.imageio import ImageReadError, read_image, write_png
from adinspect.zeroshot.api import ZeroShotResult, check_batch_size, score_images
from adinspect.zeroshot.config import ZeroShotConfig


@dataclass
class Batch:
    """Readable images in order, their samples (labelled input only) and the files skipped."""

    paths: list[Path]
    images: list[np.ndarray]
    samples: list[Sample] | None
    errors: list[dict[str, str]]


def list_inputs(inputs: Sequence[Path]) -> tuple[list[Path], list[Sample] | None]:
    """One MVTec/KolektorSDD2 folder with a test split → its labelled test samples; else image files."""
    from adinspect.evaluation.predict import expand_inputs

    if len(inputs) == 1 and Path(inputs[0]).is_dir() and detect_layout(inputs[0]) != "folder":
        test = open_dataset(inputs[0]).test
        if test:
            return [s.path for s in test], test
    return expand_inputs(inputs), None


def read_batch(inputs: Sequence[Path]) -> Batch:
    """Read every input; unreadable files are listed (as `predict` does) and left out of the batch."""
    paths, samples = list_inputs(inputs)
    kept_paths, images, kept_samples, errors = [], [], [], []
    for i, path in enumerate(paths):
        try:
            images.append(read_image(path))
        except ImageReadError as exc:
            errors.append({"image": str(path), "error": str(exc)})
            continue
        kept_paths.append(path)
        if samples is not None:
            kept_samples.append(samples[i])
    return Batch(kept_paths, images, kept_samples if samples is not None else None, errors)


def run_zero_shot(
    inputs: Sequence[Path], out_dir: Path, config: ZeroShotConfig, overlays: bool = True
) -> dict:
    """Score the batch, write the outputs; returns the summary (also `results.json`)."""
    batch = read_batch(inputs)
    unreadable = f"{len(batch.errors)} unreadable, first: {batch.errors[0]['error']}" if batch.errors else ""
    check_batch_size(len(batch.images), unreadable)
    result = score_images(batch.images, config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "maps.npy", result.maps)
    rows = _rows(batch, result)
    _write_csv(out_dir / "scores.csv", rows)
    if overlays:
        _write_overlays(out_dir, batch, result, rows)
    summary: dict = {
        "n_images": len(rows),
        "images": rows,
        "errors": batch.errors,
        "seconds": result.seconds,
        "config": json.loads(config.model_dump_json()),
    }
    if batch.samples is not None:
        summary["metrics"] = labelled_metrics(batch, result, out_dir, config.image_size)
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def labelled_metrics(batch: Batch, result: ZeroShotResult, out_dir: Path, size: int) -> dict:
    """The registry's metrics (as `evaluate`) against the ground truth, and the ROC/PR plot."""
    from adinspect.evaluation.evaluate import load_mask_at
    from adinspect.evaluation.plots import plot_roc_pr
    from adinspect.metrics import compute_metrics

    assert batch.samples is not None
    labels = np.array([s.label for s in batch.samples])
    masks = np.stack(
        [load_mask_at(s, im.shape[:2], size) for s, im in zip(batch.samples, batch.images, strict=True)]
    )
    metrics: dict = {}
    if 0 < labels.sum() < len(labels) and masks.any():
        metrics = compute_metrics(result.scores, labels, result.maps, masks)
        raw = compute_metrics(result.raw_scores, labels, result.maps, masks, names=["image_auroc"])
        metrics["image_auroc_before_rscin"] = raw["image_auroc"]
        plot_roc_pr(result.scores, labels, result.maps, masks, out_dir / "roc_pr.png")
    metrics["n_images"] = len(labels)
    metrics["n_defective"] = int(labels.sum())
    return metrics


def _rows(batch: Batch, result: ZeroShotResult) -> list[dict]:
    from adinspect.evaluation.predict import overlay_name

    used: set[str] = set()
    rows = []
    for i, path in enumerate(batch.paths):
        row = {
            "image": str(path),
            "score": float(result.scores[i]),
            "raw_score": float(result.raw_scores[i]),
            "overlay": f"overlays/{overlay_name(path, used)}",
        }
        if batch.samples is not None:
            row["label"] = batch.samples[i].label
            row["defect_type"] = batch.samples[i].defect_type
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "score", "raw_score"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _write_overlays(out_dir: Path, batch: Batch, result: ZeroShotResult, rows: list[dict]) -> None:
    """One colour scale for the whole batch: median map value (blue) to the largest (red)."""
    from adinspect.evaluation.plots import overlay_heatmap

    vmin, vmax = float(np.median(result.maps)), float(result.maps.max())
    vmax = vmax if vmax > vmin else vmin + 1e-6
    size = result.maps.shape[-1]
    for image, amap, row in zip(batch.images, result.maps, rows, strict=True):
        small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        write_png(out_dir / row["overlay"], overlay_heatmap(small, amap, vmin, vmax))
