"""How a package finishes its click masks, decided on labelled images: whether it snaps them to the
image (`runtime.snap`) and whether it traces the line between positive clicks (`runtime.trace`).

Rule: on the labelled defective images only (the half a user labels, or KolektorSDD2's defective
training images; never the evaluation half), simulate `CLICKS` clicks with and without snapping;
snap when that raises the mean IoU after `CLICKS` clicks by at least `MIN_GAIN`. Then, with that
choice, the same for tracing. A margin, because neither is free (a graph cut per click, ~0.1 s; a
path that may join two defects) and a gain within the noise of a few dozen images (bottle's
snapping: 0.7378 -> 0.7387) is no reason to switch one on, a real one (the misaligned product's
snapping: 0.62 -> 0.82) is. With no labelled images there is nothing to judge by and both stay off.
The choices, the rule and the figures go into click_model.json ("snap", "trace"; resealed in the
manifest), which `evaluate-clicks`, `label` and the labelling tool read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from adinspect.errors import InputError
from adinspect.package import ModelPackage
from adinspect.runtime.click import CLICK_META, MaskFinish
from adinspect.train.click_trainer import load_click_model
from adinspect.train.clicks import padded_ious
from adinspect.train.common import commit_files, language_tensors, prepare_language, staging, write_json
from adinspect.train.interactive import defective_pool, load_real
from adinspect.train.residual_data import load_context

CLICKS = 5
MIN_GAIN = 0.01
RULE = (
    f"{{}} when it raises the mean IoU after {CLICKS} simulated clicks on the labelled defective "
    f"images (never the evaluation half) by at least {MIN_GAIN}; off without labelled images"
)
CHOICES = ("auto", "on", "off")


def choose_snap(
    model_dir: Path,
    data_dir: Path,
    how: str = "auto",
    seed: int = 0,
    progress: bool = True,
    trace: str = "auto",
) -> dict:
    """Decide snapping (`how`) and then tracing (`trace`): "auto" measures on the labelled images by
    the rule, "on"/"off" force it; record both in click_model.json and return
    {"snap": decision, "trace": decision}."""
    for flag, value in (("--snap", how), ("--trace", trace)):
        if value not in CHOICES:
            raise InputError(f"{flag} {value!r}: choose one of {CHOICES}")
    t0 = time.perf_counter()
    root = Path(model_dir)
    ModelPackage.load(root).require_bank()  # clicks need one product's bank, whatever else is missing
    if not (root / CLICK_META).is_file():
        raise InputError(f"{root}: no click model ({CLICK_META}); run `adinspect train-click` first")
    measure = MeasuredFinish(root, Path(data_dir), seed, progress) if "auto" in (how, trace) else None
    snapping = measure.compare(MaskFinish(False), MaskFinish(True)) if measure and how == "auto" else {}
    snap = pays(snapping) if how == "auto" else how == "on"
    tracing = measure.compare(MaskFinish(snap), MaskFinish(snap, True)) if measure and trace == "auto" else {}
    traced = pays(tracing) if trace == "auto" else trace == "on"
    seconds = round(time.perf_counter() - t0, 1)
    decisions = {
        "snap": _decision(snap, how, "snap", snapping, measure, seconds),
        "trace": _decision(traced, trace, "trace", tracing, measure, seconds),
    }
    staged = staging(root, CLICK_META)
    write_json(staged, {**json.loads((root / CLICK_META).read_text()), **decisions})
    commit_files(root, {CLICK_META: staged})
    return decisions


def _decision(
    enabled: bool, how: str, what: str, measured: dict, measure: MeasuredFinish | None, seconds: float
) -> dict:
    return {
        "enabled": enabled,
        "how": how,
        "rule": RULE.format(what),
        "n_labelled_images": measure.n_images if measure else 0,
        f"mean_iou_at_{CLICKS}": measured,
        "seconds_both_choices": seconds,
    }


def pays(measured: dict[str, float]) -> bool:
    """The rule on `MeasuredFinish.compare`'s figures ({} when nothing was measured: off). They are rounded
    to 4 decimals, so is the gain: 0.7132 - 0.7032 is 0.00999... in floating point."""
    return bool(measured) and round(measured["on"] - measured["off"], 4) >= MIN_GAIN


class MeasuredFinish:
    """Simulated clicking on the labelled defective images, finished one way or another."""

    def __init__(self, model_dir: Path, data_dir: Path, seed: int, progress: bool) -> None:
        ctx = load_context(model_dir)
        try:
            samples = defective_pool(data_dir, ctx.shape, seed).subset("labelled")
        except InputError:  # no defective image with a mask
            samples = []
        self.n_images = len(samples)
        self._cache: dict[MaskFinish, float] = {}
        if samples:
            lang = prepare_language(ctx, data_dir)
            self.model = load_click_model(ctx, lang)
            self.v_lang, self.word_mask = language_tensors(lang)
            takes = (self.model.takes_image, self.model.takes_features)
            self.real = load_real(ctx, lang, samples, progress, *takes)

    def __bool__(self) -> bool:
        return self.n_images > 0

    def mean_iou(self, finish: MaskFinish) -> float:
        """Mean IoU after `CLICKS` clicks, rounded to 4 decimals (measured once per finish)."""
        if finish not in self._cache:
            sessions = self.real.sessions(self.model, self.v_lang, self.word_mask, CLICKS, finish)
            last = [padded_ious(s.ious, CLICKS)[-1] for s in sessions]
            self._cache[finish] = round(float(np.mean(last)), 4)
        return self._cache[finish]

    def compare(self, off: MaskFinish, on: MaskFinish) -> dict[str, float]:
        """{"off", "on"}: mean IoU finished as `off` and as `on`."""
        return {"off": self.mean_iou(off), "on": self.mean_iou(on)}
