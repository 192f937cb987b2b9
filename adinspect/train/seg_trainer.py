"""ADClick-Seg training: pre-training on synthetic anomalies, fine-tuning on pseudo labels.

Phase 1 (`pretrain_steps`): synthetic anomalies (with a generic defect description's language)
and good images (target all zero, any language), full NFL; language is fed as the paper does,
the prompts' mean (Eq. 6) for half of the samples and one random prompt for the other half. The
network starts from the package's ADClick weights when present (shared encoder and decoder),
or from another package's (`--init`). Phase 2 (`finetune_steps`): batches mix pseudo-labelled
real images (their own defect type; Eq. 9 tri-valued with δ ~ U[0, 0.1] drawn per iteration)
with synthetic and good samples, masked NFL (Eq. 10). In both phases a share of the samples
(`iis_fraction`) carries 1..`iis_clicks` clicks simulated from its target (IIS manner,
`iis.py`); serving uses an all-zero click map. AdamW (default lr 3e-4 / 1e-4 instead of the
paper's 3e-5: short CPU schedules), EMA, checkpoints and resume. A share of the package's good
images (`residual_data.seg_holdout`) is never trained on; after training `seg_decisions` chooses
on them and the pseudo-labelled images the served map, the seg threshold for a target false-reject
rate and whether the package serves seg at all, never on test images.
Writes seg_model.safetensors, seg_model.json (with those decisions), seg.onnx (language tensors as
constants, max over defect types inside) and the model card's ADClick-Seg section.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from adinspect.data.anomalies import AnomalySettings
from adinspect.errors import InputError
from adinspect.language.training import TrainingLanguage
from adinspect.models.adclick import ADClickSeg
from adinspect.models.export import export_seg
from adinspect.models.losses import masked_normalized_focal_loss
from adinspect.package.card import put_section
from adinspect.runtime.click import CLICK_META
from adinspect.runtime.clicks import click_radius
from adinspect.runtime.seg import SEG_META, SEG_ONNX  # the names the inspector and Triton read
from adinspect.train.batches import augment, residual_scale
from adinspect.train.checkpoint import EMA, save_weights
from adinspect.train.click_trainer import CLICK_WEIGHTS, WORK_DIR, identity, model_config, synthetic_types
from adinspect.train.common import (
    commit_files,
    language_tensors,
    make_optimizer,
    prepare_language,
    seed_everything,
    set_lr,
    staging,
    training_language,
    write_json,
)
from adinspect.train.iis import iis_maps
from adinspect.train.labeling import load_labels
from adinspect.train.loop import run_loop
from adinspect.train.pseudo_labels import DELTA_LIMIT, sample_delta, tri_valued
from adinspect.train.residual_data import (
    ResidualSet,
    load_context,
    residuals_and_scores,
    synthetic_residuals,
    training_goods,
)
from adinspect.train.seg_decisions import CARD_HEADING, card_lines, decide_after_training
from adinspect.train.seg_fusion import CHOICES as FUSION_CHOICES
from adinspect.train.seg_serving import CHOICES as SERVE_CHOICES
from adinspect.train.warm_start import warm_start_weights

SEG_WEIGHTS = "seg_model.safetensors"
# settings a resumed run may change: how long fine-tuning lasts, how often it saves, and what
# happens after training (the threshold's target, the fusion, serving); any other must match the checkpoint
RESUME_FREE = ("finetune_steps", "checkpoint_every", "target_frr", "fusion", "serve")


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
    foreground: bool = False  # True: object products' synthetic defects only on the object (README)
    single_prompt_fraction: float = 0.5  # paper: half averaged V_lang (Eq. 6), half one prompt
    iis_clicks: int = 3  # IIS-manner training: up to this many simulated clicks (0: never)
    iis_fraction: float = 0.5  # share of samples that get clicks
    synthetic_language: str = "generic"  # "generic" description, or "random_type" (earlier behaviour)
    fusion: str = "auto"  # map fused with the training-free one? auto (rule: seg_fusion), geometric, none
    serve: str = "auto"  # seg takes over the verdict? auto (rule: seg_serving), or seg
    target_frr: float | None = None  # the seg threshold's target false-reject rate; None: the package's
    thin_anomalies: float | None = None  # share of thin strokes; None: train-click's (its cache)
    checkpoint_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_delta < DELTA_LIMIT:  # checked before any training time is spent
            raise InputError(f"max_delta must lie in [0, {DELTA_LIMIT}), got {self.max_delta}")
        if self.thin_anomalies is not None and not 0.0 <= self.thin_anomalies <= 1.0:  # NaN too
            raise InputError(f"thin_anomalies must be a fraction in [0, 1], got {self.thin_anomalies}")


def _sample(data: ResidualSet, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.from_numpy(rng.integers(len(data), size=n))
    r, m, _ = augment(data.residual[idx].float(), data.masks[idx].float(), rng)
    return r, m


def _batch(
    phase: int, sets: dict, rng: np.random.Generator, s: SegTrainSettings, tl: TrainingLanguage
) -> tuple:
    """(residual (B, d, h, w), target (B, 1, H_in, W_in) in {0, 0.5, 1}, words (B, Z, Q), word mask (B, Z)).

    Language: synthetic anomalies the generic description, good images any row (no defect of any
    type is true for them), pseudo-labelled images their own type; each averaged or one prompt.
    """
    b = s.batch_size
    n_pseudo = int(round(b * s.pseudo_fraction)) if phase == 2 else 0
    n_good = int(round((b - n_pseudo) * s.good_fraction))
    n_synth = b - n_pseudo - n_good
    parts = [_sample(sets["anomalous"], n_synth, rng), _sample(sets["good"], n_good, rng)]
    types = [
        synthetic_types(tl, n_synth, s.synthetic_language, rng),
        rng.integers(tl.generic + 1, size=n_good),
    ]
    if n_pseudo:
        idx = rng.integers(len(sets["pseudo"]), size=n_pseudo)
        r, soft, _ = augment(sets["pseudo"].residual[idx].float(), sets["pseudo"].masks[idx], rng)
        parts.append((r, tri_valued(soft, sample_delta(rng, s.max_delta))))
        types.append(sets["pseudo_types"][idx].numpy())
    residual = torch.cat([p[0] for p in parts])
    target = torch.cat([p[1] for p in parts])[:, None]
    words, word_mask = tl.sample(np.concatenate(types), rng, s.single_prompt_fraction)
    return residual, target, words, word_mask


def _pseudo_set(
    ctx, lang, model_dir: Path, progress: bool
) -> tuple[ResidualSet, torch.Tensor, list[dict], torch.Tensor]:
    """Residuals of the pseudo-labelled images (full bank), soft labels, types, their records and
    their training-free scores (as served: they are defective images, never in the bank)."""
    from adinspect.imageio import read_image

    meta, soft = load_labels(model_dir)
    made_at = tuple(meta.get("input_shape") or (meta.get("image_size"),) * 2)  # square before input_shape
    if made_at != tuple(ctx.shape):
        raise InputError(
            f"pseudo labels were made at {made_at[0]}x{made_at[1]} px (HxW), the package's input is "
            f"{ctx.shape[0]}x{ctx.shape[1]}; run `adinspect label` again"
        )
    recs = meta["images"]
    images = [
        read_image(r["image"]) for r in tqdm(recs, desc="reading labelled images", disable=not progress)
    ]
    types = torch.tensor([lang.index(r["defect_type"]) for r in recs])
    residuals, free_scores = residuals_and_scores(ctx, images)
    return ResidualSet(residuals.half(), soft), types, recs, free_scores


def _shapes(settings: SegTrainSettings, model_dir: Path) -> AnomalySettings:
    """The synthetic anomaly shapes seg pre-trains on: its own share of thin strokes, else the click
    model's."""
    if settings.thin_anomalies is None:
        return click_shapes(model_dir)
    return AnomalySettings(thin_fraction=settings.thin_anomalies)


def click_shapes(model_dir: Path) -> AnomalySettings:
    """The synthetic anomaly shapes the package's click model was trained on (thin strokes too, when
    it was), so the seg model pre-trains on the same defects and shares the cached residuals; the
    default shapes when there is no click model."""
    meta = model_dir / CLICK_META
    if not meta.is_file():
        return AnomalySettings()
    try:
        record = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{meta}: unreadable ({exc}); run `adinspect train-click` again") from exc
    trained = record.get("settings", {}) if isinstance(record, dict) else None
    thin = trained.get("thin_anomalies", 0.0) if isinstance(trained, dict) else None
    if isinstance(thin, bool) or not isinstance(thin, int | float) or not 0.0 <= thin <= 1.0:
        raise InputError(
            f"{meta}: settings.thin_anomalies {thin!r} is not a fraction; run `adinspect train-click` again"
        )
    return AnomalySettings(thin_fraction=float(thin))


def _initialise(model: ADClickSeg, ctx, lang, model_dir: Path, s: SegTrainSettings, init: Path | None) -> str:
    """Load starting weights into `model`: another package's (--init), else this package's ADClick
    (shared encoder and decoder; the click embedding then only contributes its bias), else none."""
    if init is not None:
        arch = json.loads(json.dumps(model.cfg.to_dict()))
        state, source = warm_start_weights(
            ctx, init, (SEG_WEIGHTS, CLICK_WEIGHTS), arch, check_image_stem=False
        )  # the seg model has no image branch; a click model's is ignored (strict=False)
        model.load_state_dict(state, strict=source.endswith(SEG_WEIGHTS))
        return source
    if s.init_from_click and (model_dir / CLICK_WEIGHTS).is_file():
        from adinspect.train.click_trainer import load_click_model

        model.load_state_dict(load_click_model(ctx, lang).state_dict(), strict=False)
        return CLICK_WEIGHTS
    return "scratch"


# long: the two-phase training recipe read top to bottom (data, pseudo labels, model, loop, fusion,
# calibration, export); the loop's closures need its locals
def train_seg(
    model_dir: Path, data_dir: Path, settings: SegTrainSettings = SegTrainSettings(), resume: bool = False,
    progress: bool = True, init: Path | None = None,
) -> dict:  # fmt: skip
    """Train ADClick-Seg for a fitted package; pseudo labels (from `label`) enable phase 2. `init`
    names another package to start from (its ADClick-Seg, else its ADClick weights)."""
    if settings.fusion not in FUSION_CHOICES:  # checked before any training time is spent
        raise InputError(f"fusion {settings.fusion!r}: expected one of {FUSION_CHOICES}")
    if settings.serve not in SERVE_CHOICES:
        raise InputError(f"serve {settings.serve!r}: expected one of {SERVE_CHOICES}")
    t0 = time.perf_counter()
    rng = seed_everything(settings.seed)
    model_dir = Path(model_dir)
    ctx = load_context(model_dir)
    lang = prepare_language(ctx, data_dir)
    shapes = _shapes(settings, model_dir)
    anomalous, good = synthetic_residuals(
        ctx, training_goods(ctx, data_dir), settings.n_synthetic, settings.seed, settings.n_folds,
        shapes, cache_dir=model_dir / WORK_DIR, progress=progress, foreground=settings.foreground,
    )  # fmt: skip
    sets: dict = {"anomalous": ResidualSet(anomalous.residual, anomalous.masks.float()),
                  "good": ResidualSet(good.residual, good.masks.float())}  # fmt: skip
    finetune = settings.finetune_steps if settings.pseudo_fraction > 0 else 0
    if finetune:
        pseudo = _pseudo_set(ctx, lang, model_dir, progress)
        sets["pseudo"], sets["pseudo_types"], sets["pseudo_meta"], sets["pseudo_free_scores"] = pseudo
    cfg = model_config(ctx, lang)
    model = ADClickSeg(cfg)
    init_from = _initialise(model, ctx, lang, model_dir, settings, init)
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

    tl = training_language(ctx, lang, model_dir / WORK_DIR)
    radius = click_radius(ctx.image_size)

    def loss_at(step: int) -> torch.Tensor:
        phase = 1 if step < settings.pretrain_steps else 2
        residual, target, words, wmask = _batch(phase, sets, rng, settings, tl)
        maps = iis_maps(target, rng, settings.iis_clicks, settings.iis_fraction, radius)
        logits = model.forward_type(residual, words, wmask, maps=maps)
        return masked_normalized_focal_loss(logits, target)

    t1 = time.perf_counter()
    ident = identity("seg", ctx, cfg, lang)
    result = run_loop(
        model, ema, optimizer, total=total, loss_at=loss_at, rate_at=rate_at,
        checkpoint=model_dir / WORK_DIR / "seg.ckpt.safetensors",
        identity=ident, extra={"settings": asdict(settings)}, resume=resume,
        checkpoint_every=settings.checkpoint_every, desc="train-seg", progress=progress,
        free_settings=RESUME_FREE,
    )  # fmt: skip
    report: dict[str, Any] = {
        "steps": {"pretrain": settings.pretrain_steps, "finetune": finetune},
        "resumed_from": result.start,
        "init": init_from,
        "n_pseudo_labelled": len(sets["pseudo"]) if finetune else 0,
        "synthetic_on_foreground": anomalous.on_foreground,
        "synthetic_thin_fraction": shapes.thin_fraction,  # the share used (settings say None: train-click's)
        "final_loss_50": result.final_loss,
        "seconds": {"data": t1 - t0, "train": result.seconds},
        "settings": asdict(settings),
        "lr_note": "AdamW lr 3e-4 / 1e-4 (paper 3e-5): short schedules on a CPU budget",
    }
    staged = {name: staging(model_dir, name) for name in (SEG_WEIGHTS, SEG_ONNX, SEG_META)}
    save_weights(staged[SEG_WEIGHTS], ema.model, {**ident, "steps": total})
    graph, decisions = decide_after_training(
        ctx, ema.model, v_lang, word_mask, sets, settings.fusion, settings.serve, settings.target_frr
    )
    report.update(decisions)
    report["parity"] = export_seg(graph, anomalous.residual[:2].float(), staged[SEG_ONNX])
    report["seconds"]["total"] = time.perf_counter() - t0
    write_json(staged[SEG_META], {**ident, **report})
    card = model_dir / "model_card.md"
    if card.is_file():  # the card says what the package now serves and why
        staged[card.name] = staging(model_dir, card.name)
        staged[card.name].write_text(put_section(card.read_text(), CARD_HEADING, card_lines(report)))
    listed, unlisted = (["seg"], []) if report["serving"]["served"] else ([], ["seg"])
    commit_files(model_dir, staged, optional_models=listed, unserved=unlisted)
    return report
