"""`adinspect fit`: good images → a model package (DESIGN.md §5).

Orchestration only: read images, embed them, split off held-out good images, fit the bank,
calibrate the threshold on the held-out scores, export ONNX, check parity, write the package.
The package is assembled in a temporary sibling directory and moved into place only when
complete, so a failed fit never leaves a half-written package or destroys an existing one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adinspect import __version__
from adinspect.config import PipelineConfig, save_config
from adinspect.data.datasets import open_dataset
from adinspect.errors import InputError
from adinspect.exporting import export_backbone, export_residual, max_abs_diff
from adinspect.features.backbones import WeightsInfo, create_backbone
from adinspect.features.embedder import FeatureEmbedder
from adinspect.imageio import read_image
from adinspect.model_card import write_model_card
from adinspect.package import FORMAT_VERSION, MANIFEST, BackboneRecord, Manifest, ModelPackage, sha256_of
from adinspect.residual.bank import fit_bank, save_bank
from adinspect.residual.model import ResidualModel
from adinspect.runtime.preprocess import PreprocessSpec, preprocess_batch
from adinspect.zeroshot.clean import clean_training_set, write_cleaning
from adinspect.zeroshot.config import CleanConfig


class FitError(InputError):
    """Fitting cannot proceed (too few images, existing output, ...); the message says what to do."""


@dataclass
class Calibration:
    rule: str
    threshold: float
    holdout: list[str]
    holdout_scores: list[float]


@dataclass
class FitReport:
    out_dir: Path
    n_references: int
    n_holdout: int
    threshold: float
    seconds: dict[str, float]
    parity: dict[str, float]


def embed_paths(
    embedder: FeatureEmbedder,
    paths: Sequence[Path],
    spec: PreprocessSpec,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read, preprocess and embed images → features (N, d_f, h, w), global maps (N, c_1, H, W)."""
    feats, gmaps = [], []
    for start in tqdm(range(0, len(paths), batch_size), desc="embedding", unit="batch", disable=not progress):
        chunk = paths[start : start + batch_size]
        batch = torch.from_numpy(preprocess_batch([read_image(p) for p in chunk], spec))
        with torch.no_grad():
            f, g = embedder(batch)
        feats.append(f)
        gmaps.append(g)
    return torch.cat(feats), torch.cat(gmaps)


def split_holdout(n: int, config: PipelineConfig) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of n good images into (reference indices, held-out indices)."""
    cal = config.calibration
    n_hold = max(cal.min_holdout, int(round(cal.holdout_fraction * n)))
    if n - n_hold < 1:
        raise FitError(
            f"{n} good images are too few: {n_hold} are held out to calibrate the threshold and at least one "
            f"must remain as a reference; give at least {n_hold + 1} (a few dozen is better)"
        )
    order = np.random.default_rng(config.seed).permutation(n)
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def calibrate(
    scores: np.ndarray, names: list[str], std_factor: float, floor: float | None = None
) -> Calibration:
    """threshold = max(mean + k·std, max[, floor]) of held-out good scores: none of them is rejected.

    `floor` is a lower bound for scores with a meaning of their own (ADClick-Seg's probability).
    """
    threshold = max(float(scores.mean() + std_factor * scores.std()), float(scores.max()))
    bounds = f"mean + {std_factor:g}*std, max"
    if floor is not None:
        threshold = max(threshold, float(floor))
        bounds = f"{floor:g}, {bounds}"
    rule = f"max({bounds}) of {len(scores)} held-out good images' scores"
    return Calibration(rule, threshold, names, [float(s) for s in scores])


def fit_product(
    data_dir: Path,
    config: PipelineConfig,
    out_dir: Path,
    overwrite: bool = False,
    progress: bool = True,
    clean: CleanConfig | None = None,
) -> FitReport:
    """Fit one product on the good images under `data_dir` and write its package to `out_dir`.

    With `clean`, training images whose zero-shot mutual score stands out are dropped first
    (`adinspect.zeroshot.clean`); the package's cleaning.json and model card list them.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FitError(f"{out_dir} already exists; choose another --out or pass --overwrite")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    goods = open_dataset(Path(data_dir)).train
    if not goods:
        raise FitError(
            f"{data_dir}: no good training images found (expected train/good/ or a folder of images)"
        )
    cleaning = None
    if clean is not None:
        goods, cleaning = clean_training_set(goods, clean)
        seconds["clean"] = time.perf_counter() - t0
    ref_idx, hold_idx = split_holdout(len(goods), config)

    torch.manual_seed(config.seed)
    extractor, spec, weights = create_backbone(
        config.backbone.name, weights=config.backbone.weights, allow_random=config.backbone.allow_random
    )
    embedder = FeatureEmbedder(extractor, spec, config.method).eval()
    pre = PreprocessSpec(image_size=config.method.image_size, mean=spec.mean, std=spec.std)
    feats, gmaps = embed_paths(embedder, goods, pre, progress=progress)
    seconds["embed"] = time.perf_counter() - t0 - seconds.get("clean", 0.0)

    t1 = time.perf_counter()
    bank = fit_bank(feats[ref_idx], gmaps[ref_idx], config.method)
    model = ResidualModel(bank, config.method).eval()
    with torch.no_grad():
        _, hold_maps, hold_scores = model(feats[hold_idx], gmaps[hold_idx])
    hold_names = [str(goods[i]) for i in hold_idx]
    calibration = calibrate(hold_scores.numpy(), hold_names, config.calibration.std_factor)
    seconds["bank_and_calibration"] = time.perf_counter() - t1

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        t2 = time.perf_counter()
        export_backbone(embedder, config.method.image_size, tmp / "backbone.onnx")
        export_residual(model, feats[hold_idx], gmaps[hold_idx], tmp / "residual.onnx")
        seconds["export"] = time.perf_counter() - t2
        record = BackboneRecord(
            name=spec.name,
            weights_source=weights.source,
            weights_sha256=weights.sha256,
            random_weights=weights.random,
            feature_dim=embedder.feature_dim,
            feature_grid=feats.shape[-1],
            global_channels=gmaps.shape[1],
            global_grid=gmaps.shape[-1],
        )
        _write_files(tmp, config, bank, record, weights, calibration)
        manifest = _write_manifest(tmp, config, pre, record, calibration, n_refs=len(ref_idx))
        parity = _parity(
            tmp, feats[hold_idx], gmaps[hold_idx], hold_maps[:, 0].numpy(), hold_scores.numpy(), pre
        )
        seconds["total"] = time.perf_counter() - t0
        write_model_card(
            tmp,
            manifest,
            config,
            data_dir=Path(data_dir),
            n_images=len(goods),
            parity=parity,
            seconds=seconds,
            calibration=calibration,
        )
        extra = [] if cleaning is None else write_cleaning(tmp, cleaning)
        _finalise_manifest(tmp, "model_card.md", *extra)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FitReport(out_dir, len(ref_idx), len(hold_idx), calibration.threshold, seconds, parity)


def _write_files(
    tmp: Path,
    config: PipelineConfig,
    bank,
    record: BackboneRecord,
    weights: WeightsInfo,
    calibration: Calibration,
) -> None:
    save_config(config, tmp / "config.json")
    save_bank(
        bank,
        tmp / "bank.safetensors",
        {"backbone": record.name, "weights_sha256": str(weights.sha256), "adinspect_version": __version__},
    )
    (tmp / "calibration.json").write_text(json.dumps(calibration.__dict__, indent=2) + "\n")


def _write_manifest(
    tmp: Path,
    config: PipelineConfig,
    pre: PreprocessSpec,
    record: BackboneRecord,
    calibration: Calibration,
    n_refs: int,
) -> Manifest:
    files = ["config.json", "backbone.onnx", "residual.onnx", "bank.safetensors", "calibration.json"]
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        adinspect_version=__version__,
        product=config.product.name,
        preprocess=pre,
        backbone=record,
        threshold=calibration.threshold,
        threshold_rule=calibration.rule,
        n_references=n_refs,
        files={name: sha256_of(tmp / name) for name in files},
    )
    (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest


def _finalise_manifest(tmp: Path, *extra: str) -> None:
    manifest = Manifest.model_validate_json((tmp / MANIFEST).read_text())
    files = {**manifest.files, **{name: sha256_of(tmp / name) for name in extra}}
    (tmp / MANIFEST).write_text(manifest.model_copy(update={"files": files}).model_dump_json(indent=2) + "\n")


def _parity(
    tmp: Path,
    feats: torch.Tensor,
    gmaps: torch.Tensor,
    maps: np.ndarray,
    scores: np.ndarray,
    pre: PreprocessSpec,
) -> dict[str, float]:
    """Max abs difference between ONNX Runtime and torch on the held-out images (residual stage)."""
    from adinspect.runtime.sessions import make_session

    session = make_session(tmp / "residual.onnx")
    _, ort_maps, ort_scores = session.run(None, {"features": feats.numpy(), "global_map": gmaps.numpy()})
    ModelPackage.load(tmp)  # the package as written must load and verify
    return {
        "map_max_abs_diff": max_abs_diff(ort_maps[:, 0], maps),
        "score_max_abs_diff": max_abs_diff(ort_scores, scores),
        "score_scale": float(np.max(np.abs(scores))),
    }


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the complete package into place; an existing one is removed only after the move works."""
    tmp.chmod(0o755)  # mkdtemp makes 0700; servers in containers run as other users
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)
