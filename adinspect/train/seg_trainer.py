"""ADClick-Seg training: pre-training on synthetic anomalies, fine-tuning on pseudo labels.

Phase 1 (`pretrain_steps`): synthetic anomalies and good images (target all zero), each with the
V_lang of a random defect type, full NFL. The network starts from the package's ADClick weights
when present (shared encoder and decoder; the click embedding then only contributes its bias,
i.e. an all-zero click map). Phase 2 (`finetune_steps`): batches mix pseudo-labelled real images
(their own defect type; Eq. 9 tri-valued with δ ~ U[0, 0.1] drawn per iteration) with synthetic
and good samples, masked NFL (Eq. 10). AdamW (default lr 3e-4 / 1e-4 instead of the paper's
3e-5: short CPU schedules), EMA, checkpoints and resume. Good images of the package's calibration
hold-out are never trained on; afterwards the fit's threshold rule is applied to their seg scores.
Writes seg_model.safetensors, seg_model.json (with that threshold) and seg.onnx (language tensors
as constants, max over defect types inside).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from adinspect.errors import InputError
from adinspect.models.adclick import ADClickSeg
from adinspect.models.export import SegGraph, export_seg
from adinspect.models.losses import masked_normalized_focal_loss
from adinspect.runtime.seg import SEG_META, SEG_ONNX  # the names the inspector and Triton read
from adinspect.train.checkpoint import EMA, save_weights
from adinspect.train.click_trainer import CLICK_WEIGHTS, WORK_DIR, identity, model_config
from adinspect.train.common import (
    commit_files,
    language_tensors,
    make_optimizer,
    prepare_language,
    seed_everything,
    set_lr,
    staging,
    write_json,
)
from adinspect.train.labeling import load_labels
from adinspect.train.loop import run_loop
from adinspect.train.pseudo_labels import sample_delta, tri_valued
from adinspect.train.residual_data import (
    ResidualSet,
    augment,
    holdout_images,
    load_context,
    residual_scale,
    residuals_of,
    synthetic_residuals,
    training_goods,
)

SEG_WEIGHTS = "seg_model.safetensors"


@dataclass(frozen=True)
class SegTrainSettings:
    pretrain_steps: int = 500
    finetune_steps: int = 500
    batch_size: int = 8
    lr: float = 3e-4
    finetune_lr: float = 1e-4
    weight_decay: float = 0.05
    warmup: int = 50
    ema_decay: float = 0.998
    n_synthetic: int = 1200
    n_folds: int = 4
    good_fraction: float = 0.25
    pseudo_fraction: float = 0.5
    max_delta: float = 0.1
    init_from_click: bool = True
    checkpoint_every: int = 100
    seed: int = 0


def _sample(data: ResidualSet, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.from_numpy(rng.integers(len(data), size=n))
    r, m = augment(data.residual[idx].float(), data.masks[idx].float(), rng)
    return r, m


def _batch(phase: int, sets: dict, rng: np.random.Generator, s: SegTrainSettings, n_types: int) -> tuple:
    """(residual (B, d, h, w), target (B, 1, S, S) in {0, 0.5, 1}, type index (B,))."""
    b = s.batch_size
    n_pseudo = int(round(b * s.pseudo_fraction)) if phase == 2 else 0
    n_good = int(round((b - n_pseudo) * s.good_fraction))
    parts = [_sample(sets["anomalous"], b - n_pseudo - n_good, rng), _sample(sets["good"], n_good, rng)]
    types = [torch.from_numpy(rng.integers(n_types, size=b - n_pseudo))]
    if n_pseudo:
        idx = rng.integers(len(sets["pseudo"]), size=n_pseudo)
        r, soft = augment(sets["pseudo"].residual[idx].float(), sets["pseudo"].masks[idx], rng)
        parts.append((r, tri_valued(soft, sample_delta(rng, s.max_delta))))
        types.append(sets["pseudo_types"][idx])
    residual = torch.cat([p[0] for p in parts])
    target = torch.cat([p[1] for p in parts])[:, None]
    return residual, target, torch.cat(types)


def _pseudo_set(ctx, lang, model_dir: Path, progress: bool) -> tuple[ResidualSet, torch.Tensor]:
    """Residuals of the pseudo-labelled images (full bank) with their soft labels and types."""
    from adinspect.imageio import read_image

    meta, soft = load_labels(model_dir)
    if meta.get("image_size") != ctx.image_size:
        raise InputError(
            f"pseudo labels were made at {meta.get('image_size')} px, the package uses {ctx.image_size}"
        )
    recs = meta["images"]
    images = [
        read_image(r["image"]) for r in tqdm(recs, desc="reading labelled images", disable=not progress)
    ]
    types = torch.tensor([lang.index(r["defect_type"]) for r in recs])
    return ResidualSet(residuals_of(ctx, images).half(), soft), types


def calibrate_seg(ctx, graph: SegGraph) -> dict:
    """The fit's threshold rule applied to ADClick-Seg scores of the package's held-out good images.

    The seg score is a probability, on another scale than the residual score, so the served
    verdict must use this threshold when seg_<product> is in the pipeline. It is at least
    `calibration.seg_floor` (0.5, the network's own pixel decision): good scores crowd near 0
    with a long tail, so mean + 3 std of ~20 held-out images lands far inside that tail (bottle:
    0.054, rejecting 4 of 20 good test images, while every defective one scored above 0.76).
    """
    from adinspect.fit import calibrate
    from adinspect.imageio import read_image

    paths = holdout_images(ctx)
    if not paths:
        raise InputError(
            f"{ctx.package.root}: calibration.json lists no held-out good images; re-run `adinspect fit`"
        )
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(
            f"held-out good image {missing[0]} (from calibration.json) is missing; restore the data"
        )
    with torch.no_grad():
        scores = graph(residuals_of(ctx, [read_image(p) for p in paths]))[1].numpy()
    rules = ctx.package.config.calibration
    cal = calibrate(scores, [str(p) for p in paths], rules.std_factor, floor=rules.seg_floor)
    return {"threshold": cal.threshold, "rule": cal.rule, "holdout_scores": cal.holdout_scores}


def train_seg(
    model_dir: Path, data_dir: Path, settings: SegTrainSettings = SegTrainSettings(), resume: bool = False,
    progress: bool = True,
) -> dict:  # fmt: skip
    """Train ADClick-Seg for a fitted package; pseudo labels (from `label`) enable phase 2."""
    t0 = time.perf_counter()
    rng = seed_everything(settings.seed)
    model_dir = Path(model_dir)
    ctx = load_context(model_dir)
    lang = prepare_language(ctx, data_dir)
    anomalous, good = synthetic_residuals(
        ctx, training_goods(ctx, data_dir), settings.n_synthetic, settings.seed, settings.n_folds,
        cache_dir=model_dir / WORK_DIR, progress=progress,
    )  # fmt: skip
    sets: dict = {"anomalous": ResidualSet(anomalous.residual, anomalous.masks.float()),
                  "good": ResidualSet(good.residual, good.masks.float())}  # fmt: skip
    finetune = settings.finetune_steps if settings.pseudo_fraction > 0 else 0
    if finetune:
        sets["pseudo"], sets["pseudo_types"] = _pseudo_set(ctx, lang, model_dir, progress)
    cfg = model_config(ctx, lang)
    model = ADClickSeg(cfg)
    init = "scratch"
    if settings.init_from_click and (model_dir / CLICK_WEIGHTS).is_file():
        from adinspect.train.click_trainer import load_click_model

        model.load_state_dict(load_click_model(ctx, lang).state_dict(), strict=False)
        init = CLICK_WEIGHTS
    else:
        model.encoder.residual_scale.fill_(residual_scale(anomalous.residual))
    ema = EMA(model, settings.ema_decay)
    optimizer = make_optimizer(model, settings.lr, settings.weight_decay)
    total = settings.pretrain_steps + finetune
    v_lang, word_mask = language_tensors(lang)

    def rate_at(step: int) -> None:
        if step < settings.pretrain_steps:
            set_lr(optimizer, step, settings.pretrain_steps, settings.lr, settings.warmup)
        else:
            set_lr(optimizer, step - settings.pretrain_steps, finetune, settings.finetune_lr, settings.warmup)

    def loss_at(step: int) -> torch.Tensor:
        phase = 1 if step < settings.pretrain_steps else 2
        residual, target, types = _batch(phase, sets, rng, settings, lang.num_types)
        logits = model.forward_type(residual, v_lang[types], word_mask[types])
        return masked_normalized_focal_loss(logits, target)

    t1 = time.perf_counter()
    ident = identity("seg", ctx, cfg, lang)
    result = run_loop(
        model, ema, optimizer, total=total, loss_at=loss_at, rate_at=rate_at,
        checkpoint=model_dir / WORK_DIR / "seg.ckpt.safetensors",
        identity=ident, extra={"settings": asdict(settings)}, resume=resume,
        checkpoint_every=settings.checkpoint_every, desc="train-seg", progress=progress,
    )  # fmt: skip
    report: dict[str, Any] = {
        "steps": {"pretrain": settings.pretrain_steps, "finetune": finetune},
        "resumed_from": result.start,
        "init": init,
        "n_pseudo_labelled": len(sets["pseudo"]) if finetune else 0,
        "final_loss_50": result.final_loss,
        "seconds": {"data": t1 - t0, "train": result.seconds},
        "settings": asdict(settings),
        "lr_note": "AdamW lr 3e-4 / 1e-4 (paper 3e-5): short schedules on a CPU budget",
    }
    staged = {name: staging(model_dir, name) for name in (SEG_WEIGHTS, SEG_ONNX, SEG_META)}
    save_weights(staged[SEG_WEIGHTS], ema.model, {**ident, "steps": total})
    graph = SegGraph(ema.model, v_lang, word_mask, ctx.package.config.method.blur_sigma).eval()
    report["calibration"] = calibrate_seg(ctx, graph)
    report["parity"] = export_seg(graph, anomalous.residual[:2].float(), staged[SEG_ONNX])
    report["seconds"]["total"] = time.perf_counter() - t0
    write_json(staged[SEG_META], {**ident, **report})
    commit_files(model_dir, staged, optional_models=["seg"])
    return report
