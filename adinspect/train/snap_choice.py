"""How a package finishes its click masks, decided on labelled images: whether it snaps them to the
image (`runtime.snap`) and the labeller's margin it widens them by (`runtime.margin`).

Rule: on the labelled defective images only (the half a user labels, or KolektorSDD2's defective
training images; never the evaluation half), simulate `CLICKS` clicks with and without snapping;
snap when that raises the mean IoU after `CLICKS` clicks by at least `MIN_GAIN`. Then, with that
choice, the same for each margin in `MARGINS`: the one with the highest mean IoU, when it beats
no margin by at least `MIN_GAIN`. A margin, because neither is free (a graph cut per click, ~0.1
s; a margin changes every mask's outline) and a gain within the noise of a few dozen images
(bottle's snapping: 0.7378 -> 0.7387) is no reason to switch it on, a real one (the misaligned
product's snapping: 0.62 -> 0.82) is. With no labelled images there is nothing to judge by:
snapping stays off and the margin 0. The choices, the rule and the figures go into
click_model.json "snap" (resealed in the manifest), which `evaluate-clicks`, `label` and the
labelling tool read.
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
MARGINS = (2, 4, 8)  # model-input px tried besides 0; KolektorSDD's bands reach ~5 px past the crack
RULE = (
    f"snap when it raises the mean IoU after {CLICKS} simulated clicks on the labelled defective "
    f"images (never the evaluation half) by at least {MIN_GAIN}; then the margin of {MARGINS} px "
    f"with the highest mean IoU when it beats none by at least {MIN_GAIN}; off and 0 without "
    "labelled images"
)
CHOICES = ("auto", "on", "off")


def choose_snap(
    model_dir: Path,
    data_dir: Path,
    how: str = "auto",
    seed: int = 0,
    progress: bool = True,
    margin: int | None = None,
) -> dict:
    """Decide (`how`: "auto" measures snapping on the labelled images by the rule; "on"/"off" force it;
    `margin`: None measures it by the rule, pixels force it), record the decision in
    click_model.json and return it."""
    if how not in CHOICES:
        raise InputError(f"--snap {how!r}: choose one of {CHOICES}")
    if margin is not None and margin < 0:
        raise InputError(f"--margin {margin}: give pixels >= 0 (0: masks as predicted), or auto")
    t0 = time.perf_counter()
    root = Path(model_dir)
    ModelPackage.load(root).require_bank()  # clicks need one product's bank, whatever else is missing
    if not (root / CLICK_META).is_file():
        raise InputError(f"{root}: no click model ({CLICK_META}); run `adinspect train-click` first")
    measuring = how == "auto" or margin is None
    measure = MeasuredFinish(root, Path(data_dir), seed, progress) if measuring else None
    measured = measure.snapping() if measure and how == "auto" else {}
    enabled = snap_pays(measured) if how == "auto" else how == "on"
    by_margin = measure.margins(enabled) if measure and margin is None else {}
    chosen = margin_pays(by_margin) if margin is None else margin
    decision = {
        "enabled": enabled,
        "how": how,
        "margin": chosen,
        "margin_how": "auto" if margin is None else "forced",
        "rule": RULE,
        "n_labelled_images": measure.n_images if measure else 0,
        f"mean_iou_at_{CLICKS}": measured,
        f"mean_iou_at_{CLICKS}_by_margin": by_margin,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    staged = staging(root, CLICK_META)
    write_json(staged, {**json.loads((root / CLICK_META).read_text()), "snap": decision})
    commit_files(root, {CLICK_META: staged})
    return decision


def snap_pays(measured: dict[str, float]) -> bool:
    """The rule on `MeasuredFinish.snapping`'s figures ({} when nothing was measured: off). They are rounded
    to 4 decimals, so is the gain: 0.7132 - 0.7032 is 0.00999... in floating point."""
    return bool(measured) and round(measured["on"] - measured["off"], 4) >= MIN_GAIN


def margin_pays(by_margin: dict[str, float]) -> int:
    """The rule on `MeasuredFinish.margins`' figures: the best margin when it beats 0 by `MIN_GAIN`
    (rounded as `snap_pays`), else 0; {} (nothing measured): 0."""
    if not by_margin:
        return 0
    best = max(by_margin, key=lambda m: (by_margin[m], -int(m)))  # a tie goes to the narrower
    return int(best) if round(by_margin[best] - by_margin["0"], 4) >= MIN_GAIN else 0


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

    def snapping(self) -> dict[str, float]:
        """{"off", "on"}: mean IoU without / with snapping, no margin."""
        return {"off": self.mean_iou(MaskFinish(False)), "on": self.mean_iou(MaskFinish(True))}

    def margins(self, snap: bool) -> dict[str, float]:
        """{"0", "2", ...}: mean IoU with each margin (px) and `snap`."""
        return {str(m): self.mean_iou(MaskFinish(snap, m)) for m in (0, *MARGINS)}
