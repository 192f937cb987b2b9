"""Iterative click training of ADClick on synthetic anomalies (RITM / SimpleClick protocol).

Each step: a batch of synthetic-anomaly residuals (random flip/rotation), initial clicks sampled
inside / around the defect, then 0..`max_correction_clicks` simulated rounds without gradient
(predict → `next_click` on the error → previous mask = prediction), and one forward/backward
pass with the Normalized Focal Loss. Synthetic anomalies are of no product defect type: they get
the language of a generic defect description (`language.training`), as the paper feeds it: the
prompts' mean (Eq. 6) for half of the samples, one random prompt for the other half. With
probability `target_subset_prob` only some of a sample's anomalous regions are the target (the
rest stay visible in R), which teaches the network to follow the clicks rather than segment
every residual peak. AdamW (default lr 5e-4, larger than the paper's 3e-5 because the network
starts from scratch on a CPU budget; `--init` starts from another package), linear warm-up +
cosine decay, EMA of the weights, checkpoint every `checkpoint_every` steps and `--resume`.
With `image_branch` the network also sees the painted image (normalised as served) and click.onnx
takes an `image` input; `capture_shift_aug` photographs that fraction of the synthetic anomalies
under a random gain / illumination gradient, so their residual lights up beyond the defect and
the boundary must come from the image. With `image_features` the network also sees the backbone's
features F of the painted image (the tensor its residual came from) and click.onnx takes a
`features` input. At the end the trained model clicks on synthetic anomalies painted on the
calibration hold-out images (`click_validation`), never trained on, and the figures go into
click_model.json.
Writes into the package: click_model.safetensors (EMA weights + metadata), click_model.json and
click.onnx.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from adinspect.data.anomalies import AnomalySettings
from adinspect.errors import InputError
from adinspect.geometry import as_shape
from adinspect.language.encoder import LanguageFeatures
from adinspect.language.training import TrainingLanguage
from adinspect.models.adclick import ADClick, ADClickConfig, compact
from adinspect.models.export import ClickGraph, export_click
from adinspect.models.losses import normalized_focal_loss, soft_iou_loss
from adinspect.runtime.click import CLICK_META, CLICK_ONNX  # the names the labelling tool reads
from adinspect.runtime.clicks import PRED_THRESHOLD, Click, click_maps, click_radius
from adinspect.train.batches import augment, normalise_images, residual_scale
from adinspect.train.checkpoint import (
    EMA,
    CheckpointError,
    load_weights,
    read_meta,
    save_weights,
)
from adinspect.train.click_validation import validate_on_synthetic
from adinspect.train.clicks import next_click
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
from adinspect.train.crops import crop_around, crop_config, on_whole_input, set_input
from adinspect.train.loop import run_loop
from adinspect.train.residual_data import (
    ResidualContext,
    load_context,
    synthetic_residuals,
    training_goods,
)
from adinspect.train.warm_start import warm_start_weights

CLICK_WEIGHTS = "click_model.safetensors"
# A step's input pixels: the recipe's batch of 8 at 256 x 256. A larger input trains fewer samples a
# step (at least MIN_BATCH), so a step costs about the same on every product and 2000 steps fit the
# time a line has for training: KolektorSDD's 640 x 256 trains 4 at a time.
STEP_PIXELS = 8 * 256 * 256
MIN_BATCH, MAX_BATCH = 4, 8
WORK_DIR = ".train"  # checkpoints and residual caches inside the package, not in the manifest
# settings a resumed run may change (how long it trains, how often it saves, how many images it
# validates on after training); any other must match the checkpoint
RESUME_FREE = ("steps", "checkpoint_every", "validation_images")


@dataclass(frozen=True)
class ClickTrainSettings:
    steps: int = 2000
    batch_size: int | None = None  # None: by the input's size (`batch_for`)
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: int = 100
    ema_decay: float = 0.999
    n_synthetic: int = 1200
    n_folds: int = 4
    max_correction_clicks: int = 3
    target_subset_prob: float = 0.25
    foreground: bool = False  # True: object products' synthetic defects only on the object (README)
    single_prompt_fraction: float = 0.5  # paper: half averaged V_lang (Eq. 6), half one prompt
    synthetic_language: str = "generic"  # "generic" description, or "random_type" (earlier behaviour)
    checkpoint_every: int = 100
    seed: int = 0
    image_branch: bool = False  # ADClick also sees the image; off by default: docs/weak-supervision.md
    image_features: bool = False  # ADClick also sees the backbone's features F of the image
    capture_shift_aug: float = 0.0  # fraction of synthetic anomalies under a random capture shift
    thin_anomalies: float = 0.0  # fraction of synthetic anomalies that are thin strokes (scratches)
    iou_loss: float = 0.0  # soft-IoU weight added to the NFL (thin defects); docs/weak-supervision.md
    validation_images: int = 48  # synthetic anomalies on the hold-out to validate on (0: none)
    crop: int = 0  # > 0: train on crops of at most crop x crop input pixels around the defect
    whole_every: int = 3  # with crops, every whole_every-th step on the whole input (0: never)

    def __post_init__(self) -> None:
        for name in ("capture_shift_aug", "thin_anomalies"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name} must be a fraction in [0, 1], got {getattr(self, name)}")
        if not self.iou_loss >= 0.0:  # also refuses NaN
            raise InputError(f"iou_loss must be a weight >= 0, got {self.iou_loss}")
        if self.crop < 0:
            raise InputError(f"crop must be a side in pixels >= 0 (0: the whole input), got {self.crop}")
        if self.whole_every < 0:
            raise InputError(f"whole_every must be a step count >= 0 (0: crops only), got {self.whole_every}")
        if self.validation_images < 0:
            raise InputError(f"validation_images must be >= 0, got {self.validation_images}")
        if self.steps < 1 or (self.batch_size is not None and self.batch_size < 1) or self.n_synthetic < 1:
            raise InputError(
                f"steps, batch_size and n_synthetic must be >= 1, got {self.steps}, {self.batch_size}, "
                f"{self.n_synthetic}"
            )


def batch_for(input_hw: tuple[int, int]) -> int:
    """Samples a step for a training input of (H, W): `STEP_PIXELS` of them, within
    [MIN_BATCH, MAX_BATCH]."""
    h, w = input_hw
    return max(MIN_BATCH, min(MAX_BATCH, STEP_PIXELS // (h * w)))


def model_config(
    ctx: ResidualContext, lang: LanguageFeatures, image_branch: bool = False, image_features: bool = False
) -> ADClickConfig:
    """Network sizes for this package: its preset, d_f, grid (h, w), input (H_in, W_in), the encoder
    width Q, image priors. Square sizes are written as ints, as before rectangular inputs."""
    return ADClickConfig.for_preset(
        ctx.preset,
        ctx.feature_dim,
        lang.width,
        compact(ctx.grid),
        compact(ctx.shape),
        image_branch,
        image_features,
    )


def identity(kind: str, ctx: ResidualContext, cfg: ADClickConfig, lang: LanguageFeatures) -> dict:
    """What a checkpoint must match to be loaded into this run."""
    return {
        "kind": kind,
        "preset": ctx.preset,
        "arch": json.loads(json.dumps(cfg.to_dict())),
        "defect_types": lang.defect_types,
        "encoder_checksum": lang.encoder_checksum,
    }


def initial_clicks(gt: np.ndarray, rng: np.random.Generator) -> list[Click]:
    """One positive click inside the defect (the deepest point half of the time, else a random
    interior point), sometimes with extra positives inside and negatives near the defect."""
    dt = cv2.distanceTransform(np.pad(gt, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    if rng.random() < 0.5:
        flat = int(np.argmax(dt))
        clicks = [Click(flat // gt.shape[1], flat % gt.shape[1], True)]
    else:
        ys, xs = np.nonzero(dt >= 0.3 * dt.max())
        i = int(rng.integers(len(ys)))
        clicks = [Click(int(ys[i]), int(xs[i]), True)]
    if rng.random() < 0.3:
        ys, xs = np.nonzero(gt)
        for i in rng.integers(len(ys), size=int(rng.integers(1, 3))):
            clicks.append(Click(int(ys[i]), int(xs[i]), True))
    if rng.random() < 0.3:
        near = cv2.dilate(gt.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
        ring = near & ~gt.astype(bool)
        ys, xs = np.nonzero(ring)
        if len(ys):
            for i in rng.integers(len(ys), size=int(rng.integers(1, 3))):
                clicks.append(Click(int(ys[i]), int(xs[i]), False))
    return clicks


def target_subset(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random non-empty proper subset of the connected regions of gt (unchanged if it has one):
    the other regions stay visible in R but are not the target, so the model must follow clicks."""
    n, labels = cv2.connectedComponents(gt.astype(np.uint8))
    if n < 3:
        return gt
    keep = rng.permutation(np.arange(1, n))[: int(rng.integers(1, n - 1))]
    return np.isin(labels, keep)


def render(click_lists: list[list[Click]], shape: int | tuple[int, int], radius: float) -> torch.Tensor:
    """Click lists → (B, 2, H, W) disc maps at `shape` ((H, W), or S for S x S)."""
    return torch.from_numpy(np.stack([click_maps(c, as_shape(shape), radius) for c in click_lists]))


def synthetic_types(tl: TrainingLanguage, n: int, how: str, rng: np.random.Generator) -> np.ndarray:
    """Language rows for n synthetic anomalies: the generic description (true for them), or
    (`how` = "random_type") a random defect type of the product."""
    if how == "generic":
        return np.full(n, tl.generic)
    if how == "random_type":
        return rng.integers(tl.generic, size=n)
    raise ValueError(f"synthetic_language {how!r}, expected 'generic' or 'random_type'")


def _batch(
    anomalous, rng: np.random.Generator, settings: ClickTrainSettings, tl: TrainingLanguage, spec,
    cfg: ADClickConfig,
) -> tuple:  # fmt: skip
    n = settings.batch_size
    if n is None:  # one rule for the batch, in train_click; not a second one here
        raise ValueError("the batch size is resolved by train_click (batch_for) before any batch is drawn")
    idx = torch.from_numpy(rng.integers(len(anomalous), size=n))
    images = normalise_images(anomalous.images[idx], spec) if settings.image_branch else None
    r = anomalous.residual[idx].float()
    if settings.image_features:  # F turns and flips with R: one tensor through `augment`
        r = torch.cat([r, anomalous.features[idx].float()], 1)
    r, m, images = augment(r, anomalous.masks[idx], rng, images)
    r, m, images = crop_around(r, m, images, cfg, rng)
    d = anomalous.residual.shape[1]
    features = r[:, d:].contiguous() if settings.image_features else None
    types = synthetic_types(tl, n, settings.synthetic_language, rng)
    words, wmask = tl.sample(types, rng, settings.single_prompt_fraction)
    return r[:, :d].contiguous(), m.contiguous(), words, wmask, images, features


def train_step(model, batch: tuple, rng: np.random.Generator, settings: ClickTrainSettings, radius: float):
    """One iterative-click training step on (residual, masks, words, word mask, image or None,
    features or None); returns the loss."""
    residual, masks, words, wmask, image, features = batch
    gts = np.stack(
        [target_subset(g, rng) if rng.random() < settings.target_subset_prob else g for g in masks.numpy()]
    )
    masks = torch.from_numpy(gts)
    clicks = [initial_clicks(g, rng) for g in gts]
    shape = (gts.shape[-2], gts.shape[-1])
    prev = torch.zeros(len(gts), 1, *shape)
    with torch.no_grad():
        for _ in range(int(rng.integers(0, settings.max_correction_clicks + 1))):
            maps = render(clicks, shape, radius)
            prob = torch.sigmoid(model(residual, prev, maps, words, wmask, image, features))
            for b, g in enumerate(gts):
                c = next_click(g, prob[b, 0].numpy() > PRED_THRESHOLD)
                if c is not None:
                    clicks[b].append(c)
            prev = prob
    logits = model(residual, prev, render(clicks, shape, radius), words, wmask, image, features)
    target = masks[:, None].float()
    loss = normalized_focal_loss(logits, target)
    if settings.iou_loss > 0:
        loss = loss + settings.iou_loss * soft_iou_loss(logits, target)
    return loss


# long: the training recipe read top to bottom (data, language, model, loop, export, report); the
# loop's closure needs its locals
def train_click(
    model_dir: Path,
    data_dir: Path,
    settings: ClickTrainSettings = ClickTrainSettings(),
    prompts_file: Path | None = None,
    encoder: str | None = None,
    resume: bool = False,
    progress: bool = True,
    init: Path | None = None,
) -> dict:
    """Train ADClick for a fitted package on synthetic anomalies of `data_dir`'s good images;
    `init` names another package whose ADClick weights to start from (`warm_start`)."""
    t0 = time.perf_counter()
    rng = seed_everything(settings.seed)
    ctx = load_context(model_dir)
    goods = training_goods(ctx, data_dir)
    lang = prepare_language(ctx, data_dir, prompts_file, encoder, seed=settings.seed)
    work = Path(model_dir) / WORK_DIR
    shapes = AnomalySettings(thin_fraction=settings.thin_anomalies)
    anomalous, _ = synthetic_residuals(
        ctx, goods, settings.n_synthetic, settings.seed, settings.n_folds, shapes, cache_dir=work,
        progress=progress, foreground=settings.foreground, keep_images=settings.image_branch,
        capture_shift=settings.capture_shift_aug, keep_features=settings.image_features,
    )  # fmt: skip
    t_data = time.perf_counter() - t0
    cfg = model_config(ctx, lang, settings.image_branch, settings.image_features)
    train_cfg = crop_config(cfg, settings.crop)  # with --train-crop a large input trains on crops
    if settings.batch_size is None:  # recorded as resolved, so the report and a resume see the number
        settings = replace(settings, batch_size=batch_for(train_cfg.image_hw))
    model = ADClick(train_cfg)
    init_from = "scratch"
    if init is not None:
        state, init_from = warm_start_weights(
            ctx, init, (CLICK_WEIGHTS,), json.loads(json.dumps(cfg.to_dict()))
        )
        model.load_state_dict(state)
    model.encoder.residual_scale.fill_(residual_scale(anomalous.residual))
    if model.feature_embed is not None and anomalous.features is not None:
        model.feature_embed.set_statistics(anomalous.features)  # this product's own, as the scale
    ema = EMA(model, settings.ema_decay)
    optimizer = make_optimizer(model, settings.lr, settings.weight_decay)
    ident = identity("click", ctx, cfg, lang)
    lang_t = language_tensors(lang)
    radius = click_radius(ctx.image_size)

    tl = training_language(ctx, lang, work)

    def loss_at(step: int) -> torch.Tensor:
        at = cfg if on_whole_input(step, settings.whole_every) else train_cfg
        if model.cfg is not at:  # crops <-> whole input: same weights, so optimizer and EMA follow
            set_input(model, at)
            set_input(ema.model, at)
        batch = _batch(anomalous, rng, settings, tl, ctx.preprocess, at)
        return train_step(model, batch, rng, settings, radius)

    result = run_loop(
        model, ema, optimizer, total=settings.steps, loss_at=loss_at,
        rate_at=lambda step: set_lr(optimizer, step, settings.steps, settings.lr, settings.warmup),
        checkpoint=work / "click.ckpt.safetensors", identity=ident, extra={"settings": asdict(settings)},
        resume=resume, checkpoint_every=settings.checkpoint_every, desc="train-click", progress=progress,
        free_settings=RESUME_FREE,
    )  # fmt: skip
    report: dict[str, Any] = {
        "steps": settings.steps,
        "resumed_from": result.start,
        "init": init_from,
        "final_loss_50": result.final_loss,
        "seconds": {"data": t_data, "train": result.seconds},
        "settings": asdict(settings),
        "n_synthetic": len(anomalous),
        "trained_at": list(train_cfg.image_hw),  # the crops' (H, W); the input's when not cropped
        "synthetic_on_foreground": anomalous.on_foreground,
        "lr_note": "AdamW lr 5e-4 (paper 3e-5): from-scratch training on a CPU budget",
    }
    root = Path(model_dir)
    staged = {name: staging(root, name) for name in (CLICK_WEIGHTS, CLICK_ONNX, CLICK_META)}
    trained = ADClick(cfg)  # at the input's size
    trained.load_state_dict(ema.model.state_dict())
    save_weights(staged[CLICK_WEIGHTS], trained, {**ident, "steps": settings.steps})
    report["parity"] = _export_click(trained, anomalous, lang, lang_t, staged[CLICK_ONNX], ctx.preprocess)
    t_val = time.perf_counter()
    report["validation"] = validate_on_synthetic(
        ctx, trained.eval(), tl, shapes, settings.seed, settings.validation_images, progress
    )
    report["seconds"]["validation"] = time.perf_counter() - t_val
    report["seconds"]["total"] = time.perf_counter() - t0
    write_json(staged[CLICK_META], {**ident, **report})
    commit_files(root, staged)  # not an optional *served* model: click.onnx is for labelling
    return report


def _export_click(model: ADClick, anomalous, lang: LanguageFeatures, lang_t: tuple, path: Path, spec) -> dict:
    """Export click.onnx to `path`, with an example that clicks and uses the first and last type
    (and the painted images and / or their features when the model takes them)."""
    h, w = model.cfg.image_hw
    example: tuple[torch.Tensor, ...] = (
        anomalous.residual[:2].float(),
        torch.zeros(2, 1, h, w),
        torch.zeros(2, 2, h, w),
        torch.tensor([0, 0]),
    )
    example[2][:, 0, h // 2 - 3 : h // 2 + 3, w // 2 - 3 : w // 2 + 3] = 1
    example[3][1] = lang.num_types - 1
    if model.takes_image:
        example = (*example, normalise_images(anomalous.images[:2], spec))
    if model.takes_features:
        example = (*example, anomalous.features[:2].float())
    return export_click(ClickGraph(model, *lang_t), example, path)


def load_click_model(ctx: ResidualContext, lang: LanguageFeatures) -> ADClick:
    """The package's trained ADClick (EMA weights); preset / size mismatches are clear errors."""
    path = ctx.package.root / CLICK_WEIGHTS
    if not path.is_file():
        raise CheckpointError(
            f"{ctx.package.root}: no trained click model; run `adinspect train-click` first"
        )
    meta = read_meta(path)
    cfg = ADClickConfig.from_dict(meta.get("arch", {})) if meta.get("arch") else model_config(ctx, lang)
    model = ADClick(cfg)
    expected = identity("click", ctx, model_config(ctx, lang, cfg.image_stem > 0, cfg.image_features), lang)
    for field in ("image_stem", "refine_full", "image_features"):  # older models: their defaults ran
        if field not in meta.get("arch", {}):
            expected["arch"].pop(field)
    load_weights(path, model, expected)
    return model.eval()
