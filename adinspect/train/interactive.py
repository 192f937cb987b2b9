"""ADClick on real images: the click predictor, the labelled / evaluation split, `evaluate-clicks`.

Clicks are simulated from the ground truth (RITM protocol, `clicks.py`) on defective images; the
residuals come from the package's own models with the full bank, exactly as served. The defective
test images are split per defect type into a labelled half (for pseudo labels) and an evaluation
half, deterministically by seed; a dataset with defective *training* images (KolektorSDD2) labels
those instead and evaluates on all defective test images (the paper's weakly supervised protocol).
Images whose ground-truth mask is missing or empty are skipped with one warning line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from adinspect.data.datasets import Sample, open_dataset
from adinspect.errors import InputError
from adinspect.evaluation.evaluate import load_mask_at
from adinspect.evaluation.plots import click_session_panel
from adinspect.geometry import as_shape
from adinspect.imageio import read_image, read_mask, write_png
from adinspect.language.encoder import LanguageFeatures
from adinspect.metrics import aupro, pixel_ap, pixel_auroc
from adinspect.models.adclick import ADClick
from adinspect.runtime.click import AS_PREDICTED, CLICK_META, MaskFinish, mask_finish
from adinspect.runtime.clicks import PRED_THRESHOLD
from adinspect.runtime.snap import snap_rgb
from adinspect.train.click_trainer import load_click_model
from adinspect.train.clicks import MAX_CLICKS, ClickSession, click_metrics, simulate_clicks
from adinspect.train.common import language_tensors, prepare_language
from adinspect.train.predictor import ClickPredictor
from adinspect.train.residual_data import ResidualContext, features_and_residuals, images_of, load_context

SUBSETS = ("all", "labelled", "eval")


def split_defective(samples: list[Sample], seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Per defect type, a seeded half (rounded up) is 'labelled', the rest 'eval'."""
    labelled, evaluation = [], []
    rng = np.random.default_rng(seed)
    for defect in sorted({s.defect_type for s in samples}):
        group = sorted((s for s in samples if s.defect_type == defect), key=lambda s: str(s.path))
        order = rng.permutation(len(group))
        half = (len(group) + 1) // 2
        labelled += [group[i] for i in sorted(order[:half])]
        evaluation += [group[i] for i in sorted(order[half:])]
    return labelled, evaluation


@dataclass
class DefectivePool:
    """Defective images usable for clicks: each has a ground-truth mask, non-empty at the model input.

    `skipped` lists the others (image and reason: no mask file, or an empty mask) so that a run
    reports them instead of dying on the first; `weak` is True when the labelled images are the
    dataset's own defective *training* images (KolektorSDD2's weakly supervised protocol).
    """

    labelled: list[Sample]
    evaluation: list[Sample]
    skipped: list[dict[str, str]]
    weak: bool = False

    def subset(self, name: str) -> list[Sample]:
        """'labelled', 'eval', or 'all' (every defective *test* image)."""
        if name not in SUBSETS:
            raise InputError(f"unknown subset {name!r}; choose one of {SUBSETS}")
        if name == "all":
            return self.evaluation if self.weak else self.labelled + self.evaluation
        return self.labelled if name == "labelled" else self.evaluation


def usable(samples: list[Sample], size: int | tuple[int, int]) -> tuple[list[Sample], list[dict[str, str]]]:
    """Defective samples whose mask is non-empty at the model input `size` ((H_in, W_in), or S for
    S x S), and the others with the reason."""
    height, width = as_shape(size)
    keep, skipped = [], []
    for s in samples:
        if s.mask_path is None:
            skipped.append({"image": str(s.path), "reason": "no ground-truth mask"})
            continue
        mask = read_mask(s.mask_path).astype(np.uint8)
        if not cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST).any():
            skipped.append({"image": str(s.path), "reason": "empty ground-truth mask"})
            continue
        keep.append(s)
    return keep, skipped


def defective_pool(data_dir: Path, size: int | tuple[int, int], seed: int = 0) -> DefectivePool:
    """The dataset's defective images with usable masks, as labelled / evaluation sets.

    With defective training images (KolektorSDD2) those are the labelled set and the defective
    test images the evaluation set; otherwise the defective test images are split in half per
    defect type by seed. Skipped images are announced in one warning line on stderr.
    """
    ds = open_dataset(Path(data_dir), require_masks=False)
    test, skipped = usable([s for s in ds.test if s.label == 1], size)
    train, skipped_train = usable(ds.train_defective, size)
    skipped += skipped_train
    skipped += [{"image": str(p), "reason": "no _GT mask: label unknown"} for p in ds.unlabelled]
    if skipped:
        names = ", ".join(f"{x['image']} ({x['reason']})" for x in skipped)
        print(f"warning: skipped {len(skipped)} defective image(s) without a usable mask: {names}",
              file=sys.stderr)  # fmt: skip
    if ds.train_defective:
        pool = DefectivePool(train, test, skipped, weak=True)
    else:
        pool = DefectivePool(*split_defective(test, seed), skipped)
    if not pool.labelled + pool.evaluation:
        raise InputError(f"{data_dir}: no defective images with a non-empty ground-truth mask")
    return pool


@dataclass
class RealImages:
    """Defective images as the networks see them."""

    samples: list[Sample]
    residual: torch.Tensor  # (N, d_f, h, w)
    masks: np.ndarray  # (N, H_in, W_in) bool
    types: list[int]  # index into the language features
    rgb: np.ndarray  # (N, H_in, W_in, 3) uint8: the images at the model input (snapping, panels)
    shapes: list[tuple[int, int]]  # (H, W) of each original image
    images: torch.Tensor | None = None  # (N, 3, H_in, W_in) normalised, when asked for (image branch)
    features: torch.Tensor | None = None  # (N, d_f, h, w) backbone features, when asked for (prior)

    def sessions(
        self,
        model: ADClick,
        v_lang: torch.Tensor,
        word_mask: torch.Tensor,
        max_clicks: int,
        finish: MaskFinish = AS_PREDICTED,
        progress: bool = False,
    ) -> Iterator[ClickSession]:
        """Simulated clicking on each image in order, with its defect type's language (and the
        image or its features when the model takes them), each prediction finished as `finish`
        says (snapped to the image, traced between positive clicks); each session counts the
        predictions that missed a positive click or were empty before the coverage floor
        (`ClickPredictor`)."""
        for i in tqdm(range(len(self.samples)), desc="simulating clicks", disable=not progress):
            t = self.types[i]
            image = self.images[i : i + 1] if self.images is not None else None
            features = self.features[i : i + 1] if self.features is not None else None
            rgb = self.rgb[i] if finish.needs_image else None
            predict = ClickPredictor(
                model, self.residual[i : i + 1], v_lang[t], word_mask[t], image, rgb, features, finish
            )
            session = simulate_clicks(predict, self.masks[i], max_clicks)
            session.missed, session.empty = predict.missed, predict.empty
            yield session


def load_real(
    ctx: ResidualContext,
    lang: LanguageFeatures,
    samples: list[Sample],
    progress: bool = True,
    with_images: bool = False,
    with_features: bool = False,
) -> RealImages:
    """Residuals (full bank), masks at the model input and defect-type indices of labelled samples,
    with `with_images` the normalised images (ADClick's image branch), with `with_features` the
    backbone's features (its feature prior)."""
    s = ctx.shape
    images, masks = [], []
    for sample in tqdm(samples, desc="reading defective images", disable=not progress):
        image = read_image(sample.path)
        images.append(image)
        masks.append(load_mask_at(sample, image.shape[:2], s))
    types = [lang.index(x.defect_type) for x in samples]
    normalised = images_of(ctx, images) if with_images else None
    rgb = np.stack([snap_rgb(im, s) for im in images])
    shapes = [(im.shape[0], im.shape[1]) for im in images]
    features, residual = features_and_residuals(ctx, images)
    return RealImages(samples, residual, np.stack(masks), types, rgb, shapes, normalised,
                      features if with_features else None)  # fmt: skip


def _write_panel(
    folder: Path, sample: Sample, rgb: np.ndarray, truth: np.ndarray, session: ClickSession
) -> None:
    panel = click_session_panel(rgb, truth, session.probs[-1], session.clicks, PRED_THRESHOLD)
    write_png(Path(folder) / f"{sample.defect_type}_{sample.path.stem}.png", panel)


def evaluate_clicks(
    model_dir: Path, data_dir: Path, subset: str = "all", seed: int = 0, max_clicks: int = MAX_CLICKS,
    progress: bool = True, panels: Path | None = None, snap: bool | None = None, trace: bool | None = None,
) -> dict:  # fmt: skip
    """Simulate up to `max_clicks` clicks per defective test image and report NoC@80/85/90,
    IoU@k (k = 1..max_clicks) and, as the paper's Table 1, pixel AP, pixel AUROC and AUPRO (30 %
    FPR) of the probability maps after 3 and 5 clicks. Images without a usable mask are skipped
    (listed under `skipped`, counted in `n_skipped`). With `panels`, each session is also drawn
    there as `<defect type>_<image stem>.png` (`plots.click_session_panel`). `snap` (None: as the
    package says) snaps each prediction to the image (`runtime.snap`); `trace` (None: as the
    package says) traces the line between positive clicks (`runtime.trace`). `before_coverage_floor`
    counts the predictions whose mask, as the network (and snapping) gave it, left a positive click
    out or was empty; the floor (`runtime.coverage`) then covers every positive click."""
    t0 = time.perf_counter()
    ctx = load_context(model_dir)
    lang = prepare_language(ctx, data_dir)
    model = load_click_model(ctx, lang)
    package = mask_finish(ctx.package.root / CLICK_META)
    finish = MaskFinish(package.snap if snap is None else snap, package.trace if trace is None else trace)
    v_lang, word_mask = language_tensors(lang)
    pool = defective_pool(data_dir, ctx.shape, seed)
    real = load_real(ctx, lang, pool.subset(subset), progress, model.takes_image, model.takes_features)
    all_ious: list[list[float]] = []
    floor = {"predictions": 0, "missed_positive_click": 0, "empty": 0}
    after: dict[int, list[np.ndarray]] = {3: [], 5: []}
    per_image = []
    for i, session in enumerate(real.sessions(model, v_lang, word_mask, max_clicks, finish, progress)):
        all_ious.append(session.ious)
        floor["predictions"] += len(session.probs)
        floor["missed_positive_click"] += session.missed
        floor["empty"] += session.empty
        if panels is not None:
            _write_panel(panels, real.samples[i], real.rgb[i], real.masks[i], session)
        for k in after:
            after[k].append(session.probs[min(k, len(session.probs)) - 1])
        per_image.append({"image": str(real.samples[i].path), "defect_type": real.samples[i].defect_type,
                          "iou": [round(v, 4) for v in session.ious]})  # fmt: skip
    out = click_metrics(all_ious, max_clicks)
    for k, probs in after.items():
        maps = np.stack(probs)
        out[f"ap_{k}"] = pixel_ap(maps, real.masks)
        out[f"pixel_auroc_{k}"] = pixel_auroc(maps, real.masks)
        out[f"aupro_{k}"] = aupro(maps, real.masks)
    out["before_coverage_floor"] = floor
    out.update(n_images=len(real.samples), subset=subset, snap=finish.snap, trace=finish.trace,
               n_skipped=len(pool.skipped), skipped=pool.skipped, seconds=time.perf_counter() - t0,
               images=per_image)  # fmt: skip
    return out
