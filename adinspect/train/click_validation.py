"""How a trained ADClick clicks on synthetic anomalies it never trained on: the training-time
figure for choosing the click model's image prior (no test image, no labelled defect).

The good images kept out of click and seg training (`seg_holdout`) are never trained on.
`n_images` synthetic anomalies, with the training's shapes but their own seed, are painted on
them in turn; their residuals are against the package's bank without the image painted on (as a
new part's would be) and their features are the backbone's, as served. `CLICKS` clicks are
simulated on each (RITM protocol, `train.clicks`) with the generic description's averaged
language, each prediction through the same coverage floor as everywhere (`ClickPredictor`).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from adinspect.data.anomalies import AnomalySettings, synthesize_anomaly
from adinspect.imageio import read_image
from adinspect.language.training import TrainingLanguage
from adinspect.metrics import pixel_ap
from adinspect.models.adclick import ADClick
from adinspect.train.clicks import padded_ious, simulate_clicks
from adinspect.train.predictor import ClickPredictor
from adinspect.train.residual_data import (
    ResidualContext,
    honest_features_and_residuals,
    images_of,
    resize_to_model,
    seg_holdout,
)

CLICKS = 5
SEED_OFFSET = 7919  # the validation anomalies' generator: seed + this, apart from training's draws


@torch.no_grad()
def validate_on_synthetic(
    ctx: ResidualContext,
    model: ADClick,
    tl: TrainingLanguage,
    shapes: AnomalySettings,
    seed: int,
    n_images: int = 48,
    progress: bool = False,
) -> dict:
    """IoU after 1..`CLICKS` clicks, pixel AP after `CLICKS` and the coverage floor's counts on
    `n_images` synthetic anomalies on the held-out good images; {"n_images": 0, ...} without one."""
    names, places = seg_holdout(ctx)
    kept = [(p, k) for p, k in zip(names, places, strict=True) if p.is_file()]
    held = [p for p, _ in kept]
    if not held or n_images < 1:
        return {"n_images": 0, "note": "no hold-out good image to paint on, or no validation asked for"}
    goods = [resize_to_model(read_image(p), ctx.shape) for p in held]
    rng = np.random.default_rng(seed + SEED_OFFSET)
    painted, masks, source = [], [], []
    for n in range(n_images):
        image, mask = synthesize_anomaly(goods[n % len(goods)], rng, shapes, donors=goods)[:2]
        painted.append(image)
        masks.append(mask.astype(bool))
        source.append(kept[n % len(goods)][1])
    features, residual = honest_features_and_residuals(ctx, painted, source)
    images = images_of(ctx, painted) if model.takes_image else None
    avg, avg_mask = tl.averaged()
    words, word_mask = avg[tl.generic], avg_mask[tl.generic]
    ious, last, counts = [], [], {"predictions": 0, "missed_positive_click": 0, "empty": 0}
    for i in tqdm(range(n_images), desc="validating clicks", disable=not progress):
        predict = ClickPredictor(
            model.eval(), residual[i : i + 1], words, word_mask,
            images[i : i + 1] if images is not None else None, None,
            features[i : i + 1] if model.takes_features else None,
        )  # fmt: skip
        session = simulate_clicks(predict, masks[i], CLICKS)
        ious.append(padded_ious(session.ious, CLICKS))
        last.append(session.probs[-1])
        counts["predictions"] += predict.predictions
        counts["missed_positive_click"] += predict.missed
        counts["empty"] += predict.empty
    mean = np.mean(ious, axis=0)
    return {
        "n_images": n_images,
        "holdout_images": len(held),
        "clicks": CLICKS,
        "iou_at_k": [round(float(v), 4) for v in mean],
        f"ap_{CLICKS}": round(pixel_ap(np.stack(last), np.stack(masks)), 4),
        "before_coverage_floor": counts,
    }
