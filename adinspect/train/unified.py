"""`adinspect train-unified`: one InvAD model on the good images of several products together.

Orchestration: each product's good images are split into training and held-out images
(`unified_data.gather_products`); the training images go through the frozen backbone once into a
feature file in the work folder; then per step a shuffled batch of all products' maps is read
back and InvAD learns to reconstruct them with the reference's loss (sum over scales of the MSE)
and optimiser (Adam, betas (0, 0.99), lr 0.001 · batch / 8, divided by 10 for the last 20 % of
the steps). `train/loop.run_loop` adds gradient clipping, an EMA of the weights (the EMA is what
ships), the progress bar and a checkpoint every `checkpoint_every` steps, so an interrupted run
resumes where it stopped when the same command is run again. `unified_package.write_unified_package`
then calibrates each product's threshold on its held-out images and writes the model package.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from adinspect.errors import InputError
from adinspect.features.backbones import create_backbone
from adinspect.geometry import PreprocessSpec
from adinspect.models.invad import INVAD_VERSION, InvAD, InvADConfig, reconstruction_loss
from adinspect.models.invad_graph import InvADGraph
from adinspect.residual.budget import peak_rss_bytes
from adinspect.train.checkpoint import EMA, CheckpointError
from adinspect.train.loop import LoopResult, run_loop
from adinspect.train.unified_data import FeatureFile, ProductImages, ShuffledBatches, gather_products
from adinspect.train.unified_package import PackageReport, model_name, write_unified_package
from adinspect.train.unified_settings import UnifiedSettings

CHECKPOINT = "invad_checkpoint.safetensors"
FEATURES = "features.f16"
SUMMARY = "training.json"
KIND = "invad"


@dataclass
class UnifiedResult:
    model_dir: Path
    products: list[ProductImages]
    start_step: int
    final_loss: float | None
    seconds: dict[str, float]
    peak_rss_bytes: int
    package: PackageReport


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
        pad=settings.pad,
    )


def work_dir_of(out_dir: Path) -> Path:
    """Where a run keeps its checkpoint and feature file until the package is written: `<out>.work`."""
    return out_dir.with_name(out_dir.name + ".work")


# long: the run read top to bottom (products, backbone, feature file, training, package); one try
# block owns the feature file
def train_unified(
    roots: list[Path],
    out_dir: Path,
    settings: UnifiedSettings,
    *,
    weights: Path | None = None,
    overwrite: bool = False,
    keep_work: bool = False,
    progress: bool = True,
) -> UnifiedResult:
    """Train InvAD on the good images of every root and write the unified package to `out_dir`.

    Args:
        roots: product folders (MVTec layout or plain image folders), one product each, named by
            the folder.
        out_dir: the package; refused if it exists unless `overwrite`. Its name names the model.
        settings: see `UnifiedSettings`.
        weights: backbone weights file (None: the backbone's offline default).
        keep_work: keep `<out>.work` (checkpoint, feature file) after the package is written.
        progress: show tqdm bars.

    A run interrupted before the package is written resumes from `<out>.work` when called again
    with the same data and settings (a different run there is refused with what differs).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise CheckpointError(f"{out_dir} already exists; choose another --out or pass --overwrite")
    model_name(out_dir)  # refused now rather than after training
    products = gather_products(roots, settings.holdout_fraction, settings.min_holdout, settings.seed)
    t0 = time.perf_counter()
    extractor, spec, info = create_backbone(settings.backbone, weights=weights)
    extractor.requires_grad_(False)
    torch.manual_seed(settings.seed)
    try:
        cfg = invad_config(settings, spec.channels, spec.strides)
    except ValueError as exc:
        raise InputError(f"train-unified settings: {exc}") from exc
    model = InvAD(cfg).train()
    graph = InvADGraph(extractor, model).eval()
    s = settings.image_size
    pre = PreprocessSpec(image_size=s, mean=spec.mean, std=spec.std, height=s, width=s)
    identity = _identity(settings, cfg, products, info.sha256)
    work = work_dir_of(out_dir)
    work.mkdir(parents=True, exist_ok=True)
    features = _feature_file(work / FEATURES, graph, products, pre, identity, progress)
    seconds = {"embed": time.perf_counter() - t0}
    ema = EMA(model, settings.ema_decay)
    try:
        result = _fit(model, ema, features, settings, work / CHECKPOINT, identity, progress)
    finally:
        features.close()
    seconds["train"] = result.seconds
    trained = InvADGraph(extractor, ema.model).eval()
    meta = {**identity, "backbone_weights": info.source, "final_loss": result.final_loss}
    report = write_unified_package(out_dir, trained, products, settings, pre, info, meta, seconds)
    peak = peak_rss_bytes()
    summary = {**meta, "seconds": seconds, "peak_rss_bytes": peak, "start_step": result.start}
    (work / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return UnifiedResult(out_dir, products, result.start, result.final_loss, seconds, peak, report)


def _feature_file(
    path: Path,
    graph: InvADGraph,
    products: list[ProductImages],
    pre: PreprocessSpec,
    identity: dict,
    progress: bool,
) -> FeatureFile:
    """Every product's training images through the backbone once (reused when already done)."""
    paths = [p for product in products for p in product.train]
    cfg = graph.model.cfg
    shapes = [[c, g, g] for c, g in zip(cfg.channels, cfg.grids, strict=True)]
    stamp = {**identity, "shapes": shapes, "images": [str(p) for p in paths]}
    return FeatureFile.build(path, paths, graph.features, pre, stamp, progress=progress)


def _fit(
    model: InvAD,
    ema: EMA,
    features: FeatureFile,
    settings: UnifiedSettings,
    checkpoint: Path,
    identity: dict,
    progress: bool,
) -> LoopResult:
    """The optimisation: shuffled batches of the stored maps, the reference's loss and schedule."""
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.base_lr, betas=(0.0, 0.99))
    batches = ShuffledBatches(features.n, settings.batch_size, settings.seed, features.read)
    decay_step = int(settings.decay_at * settings.steps)

    def loss_at(step: int) -> torch.Tensor:
        maps = [torch.from_numpy(m) for m in batches(step)]
        return reconstruction_loss(maps, model(*maps))

    def rate_at(step: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = settings.base_lr * (0.1 if step >= decay_step else 1.0)

    try:
        return run_loop(
            model, ema, optimizer, total=settings.steps, loss_at=loss_at, rate_at=rate_at,
            checkpoint=checkpoint, identity=identity, extra={}, resume=True,
            checkpoint_every=settings.checkpoint_every, desc="invad", progress=progress,
        )  # fmt: skip
    finally:
        batches.close()


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
        "products": [[p.name, len(p.train), len(p.holdout)] for p in products],
        "steps": settings.steps,
        "batch_size": settings.batch_size,
        "lr": settings.base_lr,
        "seed": settings.seed,
    }
    return json.loads(json.dumps(identity))
