"""`adinspect fit`: good images → a model package (DESIGN.md §5).

Orchestration only: read images, embed them, fit the bank on all of them, score every good image
out of fold (`fitting.oof`: against the bank without it), set the threshold for the target
false-reject rate (`fitting.calibration`), export ONNX, check parity, write the package.
Memory is planned before any work (`residual.budget`): features are kept in fp16, every batch
through torch and ONNX Runtime is a chunk sized by the budget, and out-of-fold maps are rebuilt
a chunk at a time from per-image grids of residual norms.
The package is assembled in a temporary sibling directory and moved into place only when
complete, so a failed fit never leaves a half-written package or destroys an existing one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adinspect.config import PipelineConfig
from adinspect.data.datasets import open_dataset
from adinspect.errors import InputError
from adinspect.features.backbones import WeightsInfo, create_backbone
from adinspect.features.embedder import FeatureEmbedder
from adinspect.fitting.calibration import Calibration
from adinspect.fitting.candidates import capped_turned_bank
from adinspect.fitting.choice import choose, with_candidate
from adinspect.fitting.embed import embed_paths
from adinspect.fitting.export import export_backbone, export_residual, onnx_parity
from adinspect.fitting.input_shape import at_input_shape, chosen_geometry, resolve_input_shape
from adinspect.fitting.oof import FittedBank, calibrate_out_of_fold, fit_and_score, reference_indices
from adinspect.fitting.write import (
    backbone_record,
    finalise_manifest,
    replace_dir,
    write_files,
    write_package_manifest,
)
from adinspect.geometry import InputGeometry, PreprocessSpec
from adinspect.package import (
    sha256_of,
)
from adinspect.package.card import write_model_card
from adinspect.residual.budget import MB, BudgetError, MemoryPlan, Shapes, peak_rss_bytes, plan_memory
from adinspect.residual.model import ResidualModel
from adinspect.zeroshot.clean import CleaningReport, clean_training_set, write_cleaning
from adinspect.zeroshot.config import CleanConfig

CHOICE_JSON = "choice.json"  # fit --auto: the rule, the choice and every candidate's evidence


class FitError(InputError):
    """Fitting cannot proceed (too few images, existing output, ...); the message says what to do."""


@dataclass
class FitReport:
    out_dir: Path
    n_references: int
    n_scored: int  # good images scored out of fold for the threshold
    threshold: float
    seconds: dict[str, float]
    parity: dict[str, float]
    memory: dict[str, float]  # peak_rss_mb (this process), estimate_mb, budget_mb, bank_mb, chunk sizes
    statement: str = ""  # how far the good images vouch for the threshold
    choice: dict[str, str | int] | None = None  # fit --auto: backbone, matching, position_norm, rotations


def residual_outputs(
    model: ResidualModel, feats: torch.Tensor, gmaps: torch.Tensor, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The torch residual model over (N, ...) inputs in chunks → maps (N, H, W), scores (N,)."""
    maps, scores = [], []
    with torch.no_grad():
        for start in range(0, feats.shape[0], batch_size):
            end = start + batch_size
            _, amap, score = model(feats[start:end].float(), gmaps[start:end])
            maps.append(amap[:, 0].numpy())
            scores.append(score.numpy())
    return np.concatenate(maps), np.concatenate(scores)


def check_enough(n: int) -> None:
    """Out-of-fold scoring needs another good image to score each one against."""
    if n < 2:
        raise FitError(
            f"{n} good image is too few: every good image is scored against the others to set the "
            "threshold; give at least 2 (a few dozen is better)"
        )


@dataclass
class Embedded:
    """The good images embedded by the backbone, and what the package records about that backbone."""

    goods: list[Path]
    feats: torch.Tensor  # (N, d_f, h, w) fp16
    gmaps: torch.Tensor  # (N, c_1, h_g, w_g) fp32
    embedder: FeatureEmbedder
    spec_name: str
    weights: WeightsInfo
    pre: PreprocessSpec
    plan: MemoryPlan
    cleaning: CleaningReport | None = None  # with `fit --clean`: what was dropped and why
    from_files: bool = True  # False: features generated at the preset's shapes (`bench-scale`)
    geometry: InputGeometry | None = None  # the input shape chosen from the training images, and why
    # with method.rotations R > 1: the same images turned by 1 .. R-1 steps, (feats, gmaps) each
    turns: list[tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=list)
    ref_idx: np.ndarray | None = None  # with turns: the bank's images, whose turns alone were embedded


def fit_product(
    data_dir: Path,
    config: PipelineConfig,
    out_dir: Path,
    overwrite: bool = False,
    progress: bool = True,
    clean: CleanConfig | None = None,
    auto: bool = False,
    backbones: Sequence[str] | None = None,
    sizes: bool = True,
) -> FitReport:
    """Fit one product on the good images under `data_dir` and write its package to `out_dir`.

    With `clean`, training images whose zero-shot mutual score stands out are dropped first
    (`adinspect.zeroshot.clean`); the package's cleaning.json and model card list them. With
    `auto`, the backbone (among `backbones`, by default `candidates.backbone_candidates`), the
    matching, the map normalisation, the turns of the bank and (with `sizes`) the input size are
    chosen from the good images (`fitting.choice`).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FitError(f"{out_dir} already exists; choose another --out or pass --overwrite")
    t0 = time.perf_counter()
    goods, config, geometry, cleaning = select_goods(Path(data_dir), config, clean)
    seconds, record = {}, None
    if auto:
        _planned(goods, config)  # a budget error before the choice's work, not after it
        affordable = lambda c: _fits(goods, with_candidate(config, c))  # noqa: E731
        sized = sizes and geometry is not None and geometry.rule != "override"  # an input asked for stays
        image_shape = geometry.image_shape if sized and geometry is not None else None
        choice = choose(goods, config, progress, backbones, affordable, image_shape)
        config, record = choice.apply(config), choice.record()
        geometry = chosen_geometry(geometry, config) if geometry is not None else None
        seconds["choose"] = choice.seconds
    config, capped = capped_turned_bank(config, len(goods))
    if capped and record is not None:
        record["notes"].append(capped)
    t1 = time.perf_counter()
    embedded = embed_images(goods, config, progress, cleaning, geometry)
    seconds["embed"] = time.perf_counter() - t1
    report = fit_embedded(embedded, config, Path(data_dir), out_dir, seconds, record)
    report.seconds["total"] = time.perf_counter() - t0
    return report


def select_goods(
    data_dir: Path, config: PipelineConfig, clean: CleanConfig | None = None
) -> tuple[list[Path], PipelineConfig, InputGeometry | None, CleaningReport | None]:
    """The good training images, the config at the input shape chosen from them (`fitting.input_shape`,
    unless the config fixes it) and why, and with `clean` the cleaning report (images whose
    zero-shot mutual score stands out are dropped)."""
    goods = open_dataset(data_dir).train
    if not goods:
        raise FitError(
            f"{data_dir}: no good training images found (expected train/good/ or a folder of images)"
        )
    config, geometry = resolve_input_shape(config, goods)  # before any work: sizes are read from headers
    cleaning = None
    if clean is not None:  # before anything is planned or embedded: dropped images cost nothing more
        goods, cleaning = clean_training_set(goods, clean)
    check_enough(len(goods))
    return goods, config, geometry, cleaning


def embed_goods(
    data_dir: Path, config: PipelineConfig, progress: bool = True, clean: CleanConfig | None = None
) -> Embedded:
    """`select_goods`, then `embed_images`."""
    goods, config, geometry, cleaning = select_goods(data_dir, config, clean)
    return embed_images(goods, config, progress, cleaning, geometry)


def embed_images(
    goods: list[Path],
    config: PipelineConfig,
    progress: bool = True,
    cleaning: CleaningReport | None = None,
    geometry: InputGeometry | None = None,
) -> Embedded:
    """The memory plan (a budget error before any work), then every good image through the backbone."""
    embedder, spec_name, weights, pre, plan = _planned(goods, config)
    shapes = shapes_of(embedder, config)
    feats, gmaps = embed_paths(embedder, goods, pre, shapes, plan.embed_batch, progress=progress)
    rotations = config.method.rotations
    ref_idx = reference_indices(gmaps, config) if rotations > 1 else None
    turned_goods = goods if ref_idx is None else [goods[i] for i in ref_idx]  # only the bank's are turned
    turns = [
        embed_paths(embedder, turned_goods, pre, shapes, plan.embed_batch, progress, (t, rotations))
        for t in range(1, rotations)
    ]
    parts = (goods, feats, gmaps, embedder, spec_name, weights, pre, plan, cleaning)
    return Embedded(*parts, geometry=geometry, turns=turns, ref_idx=ref_idx)


def _fits(goods: list[Path], config: PipelineConfig) -> bool:
    """Whether fitting `goods` with `config` stays within the memory budget (`_planned`)."""
    try:
        _planned(goods, config)
    except BudgetError:
        return False
    return True


def _planned(
    goods: list[Path], config: PipelineConfig
) -> tuple[FeatureEmbedder, str, WeightsInfo, PreprocessSpec, MemoryPlan]:
    """The config's backbone, its input spec and the memory plan for `goods`; raises the budget error
    before any image is read."""
    torch.manual_seed(config.seed)
    extractor, spec, weights = create_backbone(
        config.backbone.name, weights=config.backbone.weights, allow_random=config.backbone.allow_random
    )
    embedder = FeatureEmbedder(extractor, spec, config.method).eval()
    height, width = config.method.shape
    pre = PreprocessSpec(
        image_size=config.method.image_size, mean=spec.mean, std=spec.std, height=height, width=width
    )
    n_params = sum(p.numel() for p in embedder.parameters())
    n_refs = min(len(goods), config.scale.max_references or len(goods))
    turns = config.method.rotations  # every image is embedded and banked at each turn
    plan = plan_memory(config, shapes_of(embedder, config), turns * len(goods), turns * n_refs, n_params)
    return embedder, spec.name, weights, pre, plan


# long: the fit after the backbone read top to bottom (bank, calibration, export, parity, package);
# one try block owns the staging folder
def fit_embedded(
    embedded: Embedded,
    config: PipelineConfig,
    data_dir: Path,
    out_dir: Path,
    seconds: dict[str, float],
    choice: dict | None = None,
) -> FitReport:
    """Everything after the backbone: bank, out-of-fold calibration, export, parity, the package.

    Takes ownership of `embedded`'s feature arrays (they are released once every good image has
    been scored out of fold); the package records the input shape the features were made at.
    `choice` (`fit --auto`'s record) goes into choice.json, the model card and, in short, the manifest.
    """
    config = at_input_shape(config, embedded.pre.shape)
    t1 = time.perf_counter()
    plan, goods = embedded.plan, embedded.goods
    model, fitted, calibration = _bank_and_calibration(embedded, config, data_dir)
    probe_maps, probe_scores = residual_outputs(
        model, fitted.probe_feats, fitted.probe_gmaps, plan.residual_batch
    )
    seconds["bank_and_calibration"] = time.perf_counter() - t1

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        t2 = time.perf_counter()
        export_backbone(embedded.embedder, config.method.shape, tmp / "backbone.onnx")
        external = _bank_bytes(model) > config.scale.external_data_mb * MB
        data_files = export_residual(
            model, fitted.probe_feats, fitted.probe_gmaps, tmp / "residual.onnx", external_data=external
        )
        seconds["export"] = time.perf_counter() - t2
        del model  # free the bank before ONNX Runtime loads its copy for the parity check
        record = backbone_record(embedded.spec_name, embedded.weights, shapes_of(embedded.embedder, config))
        write_files(tmp, config, fitted.bank, record, embedded.weights, calibration)
        choices = None if choice is None else {**_as_text(choice["chosen"]), "rule": choice["rule"]}
        manifest = write_package_manifest(
            tmp,
            config,
            embedded.pre,
            record,
            calibration,
            len(fitted.ref_idx),
            data_files,
            geometry=embedded.geometry,
            choices=choices,
        )
        parity = onnx_parity(
            tmp, fitted.probe_feats, fitted.probe_gmaps, probe_maps, probe_scores, plan.residual_batch
        )
        seconds["total"] = seconds.get("embed", 0.0) + time.perf_counter() - t1
        memory = _memory_summary(plan)
        write_model_card(
            tmp, manifest, config, data_dir=data_dir, n_images=len(goods), parity=parity,
            seconds=seconds, calibration=calibration, memory=memory, choice=choice,
        )  # fmt: skip
        _finish(tmp, embedded, choice)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    counts = len(fitted.ref_idx), len(calibration.holdout_scores)
    chosen = None if choice is None else dict(choice["chosen"])
    return FitReport(
        out_dir, *counts, calibration.threshold, seconds, parity, memory, calibration.statement, chosen
    )


def _as_text(chosen: dict) -> dict[str, str]:
    """The chosen candidate's fields as the manifest's strings (rotations 4 → "4", an input → "384x384")."""
    return {k: "x".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in chosen.items()}


def _bank_and_calibration(
    embedded: Embedded, config: PipelineConfig, data_dir: Path
) -> tuple[ResidualModel, FittedBank, Calibration]:
    """The bank of every good image, their out-of-fold scores and the threshold they give."""
    goods = embedded.goods
    check_enough(len(goods))
    model, fitted, oof = fit_and_score(
        embedded.feats, embedded.gmaps, config, embedded.plan.residual_batch, embedded.turns, embedded.ref_idx
    )
    embedded.feats = embedded.gmaps = torch.empty(0)  # all images' features: no longer needed
    embedded.turns = []
    calibration, position = calibrate_out_of_fold(
        model, oof, fitted.ref_idx, goods, config, embedded.plan.residual_batch
    )
    if position is not None:  # the bank file records the normalisation the model now holds
        fitted.bank = dataclasses.replace(fitted.bank, position_mean=position[0], position_scale=position[1])
    # Generated features (`bench-scale --generated-features`) have no image files behind them:
    # nothing for `repo verify` to replay, so nothing is recorded.
    if embedded.from_files:
        scored = [goods[i] for i in oof.index]
        calibration.holdout_files = [Path(os.path.relpath(p, data_dir)).as_posix() for p in scored]
        calibration.holdout_sha256 = [sha256_of(p) for p in scored]
    return model, fitted, calibration


def shapes_of(embedder: FeatureEmbedder, config: PipelineConfig) -> Shapes:
    """Per-image shapes, known from the config before any image is embedded."""
    m = config.method
    (h, w), pool = m.shape, 4 * m.global_pool
    return Shapes(embedder.feature_dim, (h // 8, w // 8), embedder.global_channels, (h // pool, w // pool))


def _finish(tmp: Path, embedded: Embedded, choice: dict | None) -> None:
    """The cleaning and choice records, then the manifest's checksums of everything written last."""
    extra = [] if embedded.cleaning is None else write_cleaning(tmp, embedded.cleaning)
    if choice is not None:
        (tmp / CHOICE_JSON).write_text(json.dumps(choice, indent=2) + "\n")
        extra.append(CHOICE_JSON)
    finalise_manifest(tmp, "model_card.md", *extra)


def _bank_bytes(model: ResidualModel) -> int:
    return sum(b.numel() * b.element_size() for b in (model.bank_features, model.bank_sqnorm))


def _memory_summary(plan: MemoryPlan) -> dict[str, float]:
    return {
        "peak_rss_mb": peak_rss_bytes() / MB,
        "estimate_mb": plan.peak / MB,
        "budget_mb": plan.budget / MB,
        "bank_mb": plan.bank / MB,
        "embed_batch": float(plan.embed_batch),
        "residual_batch": float(plan.residual_batch),
    }
