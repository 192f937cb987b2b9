"""`adinspect evaluate-seg`: ADClick-Seg (seg.onnx, ONNX Runtime) against the training-free map.

Both maps are computed on the same images: by default the evaluation half of the defective test
images (never pseudo-labelled) plus all good test images. The training-free map is the package's
residual norm (blurred), the ADClick-Seg map the max over defect types of seg.onnx; metrics are
those of `adinspect evaluate` (metrics registry), at the model input (H_in x W_in).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adinspect.contracts import SEG
from adinspect.data.datasets import open_dataset
from adinspect.errors import InputError
from adinspect.evaluation.evaluate import load_mask_at
from adinspect.imageio import read_image
from adinspect.metrics import compute_metrics
from adinspect.runtime.postprocess import passes
from adinspect.runtime.seg import SEG_ONNX
from adinspect.train.interactive import defective_pool
from adinspect.train.residual_data import embed, load_context


def evaluate_seg(
    model_dir: Path, data_dir: Path, subset: str = "eval", seed: int = 0, progress: bool = True
) -> dict:
    """Metrics of the training-free map and of ADClick-Seg on `subset` defects + good test images."""
    import onnxruntime as ort

    t0 = time.perf_counter()
    ctx = load_context(model_dir)
    path = ctx.package.root / SEG_ONNX
    if not path.is_file():
        raise InputError(f"{model_dir}: no {SEG_ONNX}; run `adinspect train-seg` first")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    goods = [s for s in open_dataset(Path(data_dir)).test if s.label == 0]
    pool = defective_pool(data_dir, ctx.shape, seed)
    samples = pool.subset(subset) + goods
    s = ctx.shape
    free_maps, free_scores, seg_maps, masks, winners, type_scores = [], [], [], [], [], []
    for sample in tqdm(samples, desc="evaluating seg", disable=not progress):
        image = read_image(sample.path)
        masks.append(load_mask_at(sample, image.shape[:2], s))
        with torch.no_grad():
            f, g = embed(ctx, [image])
            residual, amap, score = ctx.pipeline.residual_model(f, g)
        out = session.run(None, {SEG.residual: residual.numpy()})
        free_maps.append(amap[0, 0].numpy())
        free_scores.append(float(score[0]))
        seg_maps.append(out[0][0, 0])
        winners.append(int(out[2][0]))
        type_scores.append(out[3][0])
    labels = np.array([x.label for x in samples])
    masks_a = np.stack(masks)
    free = np.stack(free_maps)
    seg = np.stack(seg_maps)
    result = {
        "training_free": compute_metrics(free.max(axis=(1, 2)), labels, free, masks_a),
        "adclick_seg": compute_metrics(seg.max(axis=(1, 2)), labels, seg, masks_a),
        "n_images": len(samples),
        "n_defective": int(labels.sum()),
        "subset": subset,
        "n_skipped": len(pool.skipped),
        "seconds": time.perf_counter() - t0,
    }
    from adinspect.language.encoder import load_language

    types = load_language(ctx.package.root).defect_types
    result.update(type_report(samples, winners, type_scores, types))
    result.update(_verdicts(ctx.package.root, seg.max(axis=(1, 2)), labels))
    # what the package judged before seg took over the verdict: its own score and threshold
    free_threshold = ctx.package.threshold_for(None)
    result["training_free_verdicts"] = {
        "threshold": free_threshold,
        **_counts(np.array(free_scores), free_threshold, labels),
    }
    # which of the two the package serves (train-seg's decision, seg_serving)
    result["served"] = "seg" if "seg" in ctx.package.manifest.optional_models else "training_free"
    result["images"] = [str(x.path) for x in samples]
    return result


# what seg_model.json states to expect at its threshold (train/seg_calibration.py)
STATED = (
    "target_frr",
    "false_reject_rate",
    "false_reject_upper_95",
    "statement",
    "pseudo_passed",
    "expected_miss_rate",
    "expected_miss_low_95",
    "expected_miss_high_95",
)


def _verdicts(root: Path, scores: np.ndarray, labels: np.ndarray) -> dict:
    """Verdicts at the package's seg threshold on the evaluated images alone, how that threshold
    was chosen and what it states to expect (rule, training-time images, rates: seg_model.json)."""
    import json

    from adinspect.runtime.seg import SEG_META

    cal = json.loads((root / SEG_META).read_text())["calibration"]
    threshold = float(cal["threshold"])
    return {
        "threshold": {
            "value": threshold,
            "rule": cal["rule"],
            "holdout_good_images": cal.get("holdout", []),
            "pseudo_labelled_images": cal.get("pseudo_labelled", []),
            **{k: cal[k] for k in STATED if k in cal},
        },
        "verdicts": _counts(scores, threshold, labels),
    }


def _counts(scores: np.ndarray, threshold: float, labels: np.ndarray) -> dict:
    """Good parts rejected and defective parts passed at `threshold`; NaN / inf never pass."""
    passed = passes(scores, threshold)
    good, bad = labels == 0, labels == 1
    return {
        "good_rejected": int((good & ~passed).sum()),
        "n_good": int(good.sum()),
        "defective_passed": int((bad & passed).sum()),
        "n_defective": int(bad.sum()),
    }


def type_report(samples: list, winners: list[int], type_scores: list[np.ndarray], types: list[str]) -> dict:
    """How well the served `defect_type` (the type holding the map's maximum) names the folder's
    type on the defective images: overall and per-type accuracy, the confusion matrix (rows: the
    folder's type, columns: the predicted one), chance level, and per image the max probability
    per type (what a result could report instead of one type)."""
    rows = [(s, w, sc) for s, w, sc in zip(samples, winners, type_scores, strict=True) if s.label == 1]
    known = [(types.index(s.defect_type), w, sc, s) for s, w, sc in rows if s.defect_type in types]
    if not known:
        return {"defect_type_accuracy": None}
    confusion = np.zeros((len(types), len(types)), int)
    for truth, w, _, _ in known:
        confusion[truth, w] += 1
    per_type = {
        t: float(confusion[i, i] / confusion[i].sum()) for i, t in enumerate(types) if confusion[i].sum()
    }
    return {
        "defect_type_accuracy": float(np.trace(confusion) / confusion.sum()),
        "defect_type_chance": float((confusion.sum(1) / confusion.sum()).max()),
        "defect_type_per_type": per_type,
        "defect_type_confusion": {"types": types, "matrix": confusion.tolist()},
        "type_scores": [
            {
                "image": str(s.path),
                "defect_type": s.defect_type,
                **dict(zip(types, map(float, sc), strict=True)),
            }
            for _, _, sc, s in known
        ],
    }
