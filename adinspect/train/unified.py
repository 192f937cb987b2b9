"""Train one InvAD model on the good images of several products together (multi-class).

Per step: a shuffled batch of good images from all products (`unified_data.ShuffledBatches`,
read per batch, never the whole set), the frozen backbone's maps under `no_grad`, InvAD's
reconstruction and the reference loss (sum over scales of the MSE). The optimiser is the
reference's: Adam with betas (0, 0.99), lr 0.001 · batch / 8, divided by 10 for the last 20 %
of the steps. `train/loop.run_loop` adds gradient clipping, an EMA of the weights (the EMA is
what is saved), the progress bar and a checkpoint every `checkpoint_every` steps, so an
interrupted run resumes where it stopped. Output: `invad.safetensors` (weights + metadata) and
`invad_training.json` (products, settings, time, peak memory) in the output folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from adinspect.features.backbones import create_backbone
from adinspect.models.invad import INVAD_VERSION, InvAD, InvADConfig, reconstruction_loss
from adinspect.residual.budget import peak_rss_bytes
from adinspect.geometry import PreprocessSpec
from adinspect.train.checkpoint import EMA, load_weights, read_meta, save_weights
from adinspect.train.loop import LoopResult, run_loop
from adinspect.train.unified_data import ProductImages, ShuffledBatches, gather_products

WEIGHTS = "invad.safetensors"
CHECKPOINT = "invad_checkpoint.safetensors"
SUMMARY = "invad_training.json"
KIND = "invad"


class UnifiedSettings(BaseModel):
    """Settings of `train_unified`; the model sizes default to the cpu preset (see InvADConfig)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: str = "efficientnet_lite0"
    image_size: int = Field(default=256, ge=64, le=1024)
    steps: int = Field(default=3000, ge=1)
    batch_size: int = Field(default=16, ge=2)
    lr: float | None = Field(default=None, gt=0, description="None: the reference's 0.001 · batch / 8.")
    decay_at: float = Field(default=0.8, gt=0, le=1, description="Fraction of steps after which lr / 10.")
    ema_decay: float = Field(default=0.995, ge=0, lt=1)
    seed: int = 0
    checkpoint_every: int = Field(default=100, ge=1)
    style_width: int = 64
    latent_channels: int = 16
    blocks_per_scale: int = 2
    style_kernel: int = 3
    blur_sigma: float = 4.0

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else 0.001 * self.batch_size / 8


@dataclass
class UnifiedResult:
    model_dir: Path
    products: list[ProductImages]
    start_step: int
    final_loss: float | None
    train_seconds: float
    peak_rss_bytes: int


def invad_config(
    settings: UnifiedSettings, channels: tuple[int, ...], strides: tuple[int, ...]
) -> InvADConfig:
    return InvADConfig(
        channels=channels,
        strides=strides,
        image_size=settings.image_size,
        style_width=settings.style_width,
        latent_channels=settings.latent_channels,
        blocks_per_scale=settings.blocks_per_scale,
        style_kernel=settings.style_kernel,
        blur_sigma=settings.blur_sigma,
    )


def train_unified(
    roots: list[Path],
    out_dir: Path,
    settings: UnifiedSettings,
    *,
    weights: Path | None = None,
    resume: bool = True,
    progress: bool = True,
) -> UnifiedResult:
    """Train InvAD on the good images of every root; write the weights and a summary to `out_dir`.

    Args:
        roots: product folders (MVTec layout or plain image folders), one product each.
        out_dir: created if missing; holds the checkpoint while training.
        settings: see `UnifiedSettings`.
        weights: backbone weights file (None: the backbone's offline default).
        resume: continue from `out_dir`'s checkpoint when it exists and matches this run.
        progress: show a tqdm bar.
    """
    products = gather_products([Path(r) for r in roots])
    extractor, spec, info = create_backbone(settings.backbone, weights=weights)
    extractor.requires_grad_(False)
    cfg = invad_config(settings, spec.channels, spec.strides)
    torch.manual_seed(settings.seed)
    model = InvAD(cfg).train()
    ema = EMA(model, settings.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.base_lr, betas=(0.0, 0.99))
    pre = PreprocessSpec(image_size=settings.image_size, mean=spec.mean, std=spec.std)
    paths = [p for product in products for p in product.paths]
    batches = ShuffledBatches(paths, pre, settings.batch_size, settings.seed)
    identity = _identity(settings, cfg, products, info.sha256)
    decay_step = int(settings.decay_at * settings.steps)

    def loss_at(step: int) -> torch.Tensor:
        with torch.no_grad():
            features = extractor(torch.from_numpy(batches(step)))
        return reconstruction_loss(features, model(*features))

    def rate_at(step: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = settings.base_lr * (0.1 if step >= decay_step else 1.0)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = run_loop(
            model, ema, optimizer, total=settings.steps, loss_at=loss_at, rate_at=rate_at,
            checkpoint=out_dir / CHECKPOINT, identity=identity, extra={}, resume=resume,
            checkpoint_every=settings.checkpoint_every, desc="invad", progress=progress,
        )  # fmt: skip
    finally:
        batches.close()
    meta = {**identity, "backbone_weights": info.source, "train_seconds": result.seconds}
    peak = _write_outputs(out_dir, ema.model, meta, settings, products, result)
    return UnifiedResult(out_dir, products, result.start, result.final_loss, result.seconds, peak)


def _write_outputs(
    out_dir: Path,
    model: InvAD,
    meta: dict,
    settings: UnifiedSettings,
    products: list[ProductImages],
    result: LoopResult,
) -> int:
    """The weights (with `meta`) and the JSON summary; returns the run's peak RSS in bytes."""
    peak = peak_rss_bytes()
    save_weights(out_dir / WEIGHTS, model, meta)
    summary = {
        **meta,
        "settings": settings.model_dump(),
        "images": sum(len(p.paths) for p in products),
        "final_loss": result.final_loss,
        "peak_rss_bytes": peak,
    }
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return peak


def _identity(
    settings: UnifiedSettings, cfg: InvADConfig, products: list[ProductImages], sha: str | None
) -> dict:
    """What a checkpoint must match to be resumed: model, data, backbone and schedule (as JSON
    values, so that a checkpoint's metadata read back compares equal)."""
    identity = {
        "kind": KIND,
        "invad_version": INVAD_VERSION,
        "backbone": settings.backbone,
        "backbone_sha256": sha,
        "invad": cfg.to_dict(),
        "products": [[p.name, len(p.paths)] for p in products],
        "steps": settings.steps,
        "batch_size": settings.batch_size,
        "seed": settings.seed,
    }
    return json.loads(json.dumps(identity))


def load_invad(path: Path) -> tuple[InvAD, dict]:
    """An InvAD in eval mode from `save_weights` output, and its metadata (products, backbone)."""
    meta = read_meta(Path(path))
    if meta.get("kind") != KIND:
        raise ValueError(f"{path}: not InvAD weights (kind {meta.get('kind')!r}, expected {KIND!r})")
    model = InvAD(InvADConfig.from_dict(meta["invad"]))
    load_weights(Path(path), model, {"kind": KIND})
    return model.eval(), meta
