"""Whether a package snaps its click masks to the image (`runtime.snap`), decided on labelled images.

Rule: on the labelled defective images only (the half a user labels, or KolektorSDD2's defective
training images; never the evaluation half), simulate `CLICKS` clicks with and without snapping;
snap when that raises the mean IoU after `CLICKS` clicks by at least `MIN_GAIN`. A margin,
because snapping is not free (a graph cut per click, ~0.1 s) and changes how every mask looks: a
gain within the noise of a few dozen images (bottle: 0.7378 -> 0.7387) is no reason to switch it
on, a real one (the misaligned product: 0.62 -> 0.82) is. With no labelled images there is
nothing to judge by and snapping stays off. The choice, the rule and both figures go into
click_model.json (resealed in the manifest), which `evaluate-clicks`, `label` and the labelling
tool read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from adinspect.errors import InputError
from adinspect.package import ModelPackage
from adinspect.runtime.click import CLICK_META
from adinspect.train.click_trainer import load_click_model
from adinspect.train.clicks import padded_ious
from adinspect.train.common import commit_files, language_tensors, prepare_language, staging, write_json
from adinspect.train.interactive import defective_pool, load_real
from adinspect.train.residual_data import load_context

CLICKS = 5
MIN_GAIN = 0.01
RULE = (
    f"snap when it raises the mean IoU after {CLICKS} simulated clicks on the labelled defective "
    f"images (never the evaluation half) by at least {MIN_GAIN}; off without labelled images"
)
CHOICES = ("auto", "on", "off")


def choose_snap(
    model_dir: Path, data_dir: Path, how: str = "auto", seed: int = 0, progress: bool = True
) -> dict:
    """Decide (`how`: "auto" measures on the labelled images by the rule; "on"/"off" force it
    without measuring), record the decision in click_model.json and return it."""
    if how not in CHOICES:
        raise InputError(f"--snap {how!r}: choose one of {CHOICES}")
    t0 = time.perf_counter()
    root = Path(model_dir)
    ModelPackage.load(root).require_bank()  # clicks need one product's bank, whatever else is missing
    if not (root / CLICK_META).is_file():
        raise InputError(f"{root}: no click model ({CLICK_META}); run `adinspect train-click` first")
    n_images, measured = measure_snap(root, Path(data_dir), seed, progress) if how == "auto" else (0, {})
    enabled = snap_pays(measured) if how == "auto" else how == "on"
    decision = {
        "enabled": enabled,
        "how": how,
        "rule": RULE,
        "n_labelled_images": n_images,
        f"mean_iou_at_{CLICKS}": measured,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    staged = staging(root, CLICK_META)
    write_json(staged, {**json.loads((root / CLICK_META).read_text()), "snap": decision})
    commit_files(root, {CLICK_META: staged})
    return decision


def snap_pays(measured: dict[str, float]) -> bool:
    """The rule on `measure_snap`'s figures ({} when nothing was measured: off). They are rounded
    to 4 decimals, so is the gain: 0.7132 - 0.7032 is 0.00999... in floating point."""
    return bool(measured) and round(measured["on"] - measured["off"], 4) >= MIN_GAIN


def measure_snap(model_dir: Path, data_dir: Path, seed: int, progress: bool) -> tuple[int, dict[str, float]]:
    """(labelled images, mean IoU after `CLICKS` clicks without / with snapping as {"off", "on"});
    (0, {}) when the dataset has no labelled defective image with a mask."""
    ctx = load_context(model_dir)
    try:
        samples = defective_pool(data_dir, ctx.shape, seed).subset("labelled")
    except InputError:  # no defective image with a mask
        return 0, {}
    if not samples:
        return 0, {}
    lang = prepare_language(ctx, data_dir)
    model = load_click_model(ctx, lang)
    v_lang, word_mask = language_tensors(lang)
    real = load_real(ctx, lang, samples, progress, model.takes_image, model.takes_features)
    measured = {}
    for snap in (False, True):
        last = [
            padded_ious(s.ious, CLICKS)[-1] for s in real.sessions(model, v_lang, word_mask, CLICKS, snap)
        ]
        measured["on" if snap else "off"] = round(float(np.mean(last)), 4)
    return len(samples), measured
