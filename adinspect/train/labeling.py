"""`adinspect label`: clicks → ADClick masks → pseudo labels (Eq. 8), written into the package.

Clicks come from a JSON file written by a person (or a labelling UI)::

    {"images": [{"image": "test/broken_large/000.png", "defect_type": "broken_large",
                 "clicks": [{"x": 412, "y": 230, "positive": true},
                            {"x": 500, "y": 260, "positive": false}]}]}

with image paths relative to --data (or absolute) and click coordinates in the original image's
pixels; or they are simulated from the ground truth (RITM protocol) for the labelled half of the
defective test images. Everything is validated before anything is written; the output directory
``MODEL_DIR/labels/`` is assembled under a temporary name and swapped in only when complete:

    labels/labels.json                 images, defect types, clicks (original and model-input pixels)
    labels/pseudo_labels.safetensors   soft labels (N, H_in, W_in) float16 (Eq. 8; Eq. 9 is drawn in training)
    labels/masks/NNN_<type>_<stem>.png binary masks (soft label > 0.5) at the original image size
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from adinspect.data.datasets import Sample
from adinspect.errors import InputError
from adinspect.imageio import read_image, write_mask
from adinspect.metrics import pixel_ap
from adinspect.package import LABELS_DIR, LABELS_JSON
from adinspect.runtime.click import CLICK_META, mask_finish
from adinspect.runtime.clicks import Click, check_clicks, click_radius, scale_clicks
from adinspect.runtime.snap import snap_rgb
from adinspect.train.click_trainer import load_click_model
from adinspect.train.clicks import iou
from adinspect.train.common import language_tensors, prepare_language
from adinspect.train.interactive import defective_pool, load_real
from adinspect.train.predictor import ClickPredictor
from adinspect.train.pseudo_labels import click_corrected
from adinspect.train.residual_data import features_and_residuals, images_of, load_context

PSEUDO_LABELS = "pseudo_labels.safetensors"


@dataclass
class ClickRequest:
    """One image's clicks, validated: path, defect type, clicks in original and model pixels."""

    path: Path
    defect_type: str
    original: list[Click]
    scaled: list[Click]
    image: np.ndarray


def parse_click_file(
    path: Path, data_dir: Path, defect_types: list[str], size: int | tuple[int, int]
) -> list[ClickRequest]:
    """Read and validate a click file; every problem names the entry and what was expected. Clicks
    are scaled per axis to the model input `size` ((H_in, W_in), or S for S x S)."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the click file ({exc})") from exc
    entries = raw.get("images") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(f'{path}: expected {{"images": [{{"image", "defect_type", "clicks"}}, ...]}}')
    out = []
    for n, e in enumerate(entries):
        where = f"{path}: images[{n}]"
        if not isinstance(e, dict) or not {"image", "defect_type", "clicks"} <= set(e):
            raise InputError(f"{where}: needs keys image, defect_type and clicks")
        image_path = Path(e["image"]) if Path(e["image"]).is_absolute() else Path(data_dir) / e["image"]
        if not image_path.is_file():
            raise InputError(f"{where}: unknown image {e['image']!r} (no file {image_path})")
        if e["defect_type"] not in defect_types:
            raise InputError(f"{where}: unknown defect type {e['defect_type']!r}; known: {defect_types}")
        try:
            clicks = [Click(int(c["y"]), int(c["x"]), bool(c["positive"])) for c in e["clicks"]]
        except (TypeError, KeyError, ValueError) as exc:
            raise InputError(f"{where}: each click needs integer x, y and boolean positive ({exc})") from exc
        if not clicks:
            raise InputError(f"{where}: no clicks")
        image = read_image(image_path)
        h, w = image.shape[:2]
        try:
            check_clicks(clicks, (h, w), name=f"{where} ({e['image']})")
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        scaled = scale_clicks(clicks, (h, w), size)
        out.append(ClickRequest(image_path, e["defect_type"], clicks, scaled, image))
    return out


# long: clicks from a file and simulated clicks share the model set-up and the labels written
def label(
    model_dir: Path,
    data_dir: Path,
    clicks_file: Path | None = None,
    n_clicks: int = 5,
    subset: str = "labelled",
    seed: int = 0,
    distance: float | None = None,
    progress: bool = True,
) -> dict:
    """Produce pseudo labels for the package; returns a summary (counts, mean IoU when simulated)."""
    ctx = load_context(model_dir)
    lang = prepare_language(ctx, data_dir)
    model = load_click_model(ctx, lang)
    finish = mask_finish(ctx.package.root / CLICK_META)  # as the labelling tool does
    v_lang, word_mask = language_tensors(lang)
    size = ctx.shape  # the model input (H_in, W_in): clicks are scaled to it per axis
    distance = 2 * click_radius(ctx.image_size) if distance is None else distance
    records, softs, masks_out, skipped = [], [], [], []
    truth = None  # the ground truth at the model input, when clicks are simulated from it
    if clicks_file is not None:
        requests = parse_click_file(clicks_file, data_dir, lang.defect_types, size)
        features, residual = features_and_residuals(ctx, [r.image for r in requests])
        images = images_of(ctx, [r.image for r in requests]) if model.takes_image else None
        for i, req in enumerate(tqdm(requests, desc="labelling", disable=not progress)):
            t = lang.index(req.defect_type)
            image = images[i : i + 1] if images is not None else None
            rgb = snap_rgb(req.image, size) if finish.needs_image else None
            prior = features[i : i + 1] if model.takes_features else None
            predictor = ClickPredictor(
                model, residual[i : i + 1], v_lang[t], word_mask[t], image, rgb, prior, finish
            )
            prob = predictor.run(req.scaled)
            softs.append(click_corrected(prob, req.scaled, distance))
            records.append(_record(req.path, req.defect_type, req.scaled, req.original))
            masks_out.append(req.image.shape[:2])
        source = f"click file {clicks_file}"
    else:
        if n_clicks < 1:
            raise InputError(f"--simulate needs at least one click, got {n_clicks}")
        pool = defective_pool(data_dir, size, seed)
        samples: list[Sample] = pool.subset(subset)
        skipped = pool.skipped
        real = load_real(ctx, lang, samples, progress, model.takes_image, model.takes_features)
        for i, session in enumerate(real.sessions(model, v_lang, word_mask, n_clicks, finish, progress)):
            sample = samples[i]
            soft = click_corrected(session.probs[-1], session.clicks, distance)
            softs.append(soft)
            rec = _record(sample.path, sample.defect_type, session.clicks, None)
            rec["iou_vs_ground_truth"] = round(iou(real.masks[i], soft > 0.5), 4)
            records.append(rec)
            masks_out.append(real.shapes[i])
        truth = real.masks
        weak = pool.weak and subset == "labelled"
        split = "defective training images" if weak else f"{subset} subset, seed {seed}"
        source = f"{n_clicks} clicks simulated from the ground truth ({split})"
    meta = {"version": 1, "source": source, "distance_px": distance, "image_size": ctx.image_size,
            "input_shape": list(size), "defect_types": lang.defect_types, "images": records,
            "skipped": skipped}  # fmt: skip
    soft_maps = np.stack(softs)
    _write_labels(Path(model_dir), meta, soft_maps, masks_out)
    ious = [r["iou_vs_ground_truth"] for r in records if "iou_vs_ground_truth" in r]
    # the soft labels ranked as a map: what a seg network trained on them can learn at best
    ranked = pixel_ap(soft_maps, truth) if truth is not None and truth.any() else None
    return {
        "n_images": len(records),
        "n_skipped": len(skipped),
        "source": source,
        "mean_iou_vs_ground_truth": float(np.mean(ious)) if ious else None,
        "pixel_ap_vs_ground_truth": ranked,
    }


def _record(path: Path, defect_type: str, scaled: list[Click], original: list[Click] | None) -> dict:
    rec = {"image": str(path), "defect_type": defect_type,
           "clicks": [{"y": c.y, "x": c.x, "positive": c.positive} for c in scaled]}  # fmt: skip
    if original is not None:
        rec["clicks_original"] = [{"y": c.y, "x": c.x, "positive": c.positive} for c in original]
    return rec


def _write_labels(root: Path, meta: dict, softs: np.ndarray, shapes: list[tuple[int, int]]) -> None:
    """Assemble labels/ under a temporary name and swap it in only when complete."""
    final, tmp = root / LABELS_DIR, root / f".{LABELS_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "masks").mkdir(parents=True)
    try:
        for n, (rec, soft, (h, w)) in enumerate(zip(meta["images"], softs, shapes, strict=True)):
            name = f"masks/{n:03d}_{rec['defect_type']}_{Path(rec['image']).stem}.png"
            big = cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
            write_mask(tmp / name, big)
            rec["mask"] = name
        save_file({"soft": torch.from_numpy(softs).half()}, str(tmp / PSEUDO_LABELS))
        (tmp / LABELS_JSON).write_text(json.dumps(meta, indent=2) + "\n")
        old = root / f".{LABELS_DIR}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_labels(model_dir: Path) -> tuple[dict, torch.Tensor]:
    """labels.json and the soft labels (N, H_in, W_in) float32; missing or inconsistent files raise."""
    root = Path(model_dir) / LABELS_DIR
    if not (root / LABELS_JSON).is_file() or not (root / PSEUDO_LABELS).is_file():
        raise InputError(
            f"{model_dir}: no pseudo labels; run `adinspect label --model {model_dir} ...` first"
        )
    meta = json.loads((root / LABELS_JSON).read_text())
    soft = load_file(str(root / PSEUDO_LABELS))["soft"].float()
    if soft.shape[0] != len(meta["images"]):
        raise InputError(
            f"{root}: {soft.shape[0]} label maps for {len(meta['images'])} images; re-run `label`"
        )
    return meta, soft
