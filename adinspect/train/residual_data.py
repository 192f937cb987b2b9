"""Residual tensors R for training and labelling, computed with a fitted package's own models.

Real images go through the package's torch reference (backbone → full bank → R), exactly what
the exported ONNX models compute. Synthetic anomalies are painted on the good training images;
since those images (or most of them) are in the bank, each one is matched against a bank built
from the *other* folds of the good images (k-fold, the package's PCA), otherwise the defect-free
part of the image would find itself and its residual would be exactly zero, unlike any test image.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from adinspect.data.anomalies import AnomalySettings, synthesize_anomaly
from adinspect.data.capture import misalign, random_capture_shift, random_offset
from adinspect.data.datasets import open_dataset
from adinspect.data.foreground import product_foregrounds
from adinspect.errors import InputError
from adinspect.fitting.pipeline import TorchPipeline
from adinspect.geometry import PreprocessSpec, preprocess_batch, resize_to, turned
from adinspect.imageio import read_image
from adinspect.package import ModelPackage
from adinspect.train.fold_banks import by_fold, fold_models


class TrainDataError(InputError):
    """Training data that cannot be used (no good images, no defects, ...)."""


@dataclass
class ResidualContext:
    """A fitted package's torch models, used to turn images into residuals R (B, d_f, h, w)."""

    package: ModelPackage
    pipeline: TorchPipeline
    preprocess: PreprocessSpec

    @property
    def image_size(self) -> int:
        """The model input's short side S (click discs and distances scale with it)."""
        return self.preprocess.image_size

    @property
    def shape(self) -> tuple[int, int]:
        """The model input (H_in, W_in): masks, clicks and images of training are at this size."""
        return self.preprocess.shape

    @property
    def feature_dim(self) -> int:
        return self.package.manifest.backbone.feature_dim

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the residual grid."""
        return self.package.manifest.backbone.feature_shape

    @property
    def preset(self) -> str:
        return self.package.config.preset


def load_context(model_dir: Path) -> ResidualContext:
    """Open a fitted package and rebuild its torch models (weights checksum checked)."""
    package = ModelPackage.load(Path(model_dir))
    package.require_bank()  # a unified package has no bank to compute residuals with
    return ResidualContext(package, TorchPipeline.from_package(Path(model_dir)), package.preprocess)


def resize_to_model(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 → the model input (H_in, W_in, 3) uint8, interpolated as `preprocess` does."""
    return resize_to(image, shape)


@torch.no_grad()
def embed(
    ctx: ResidualContext, images: list[np.ndarray], batch: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (any size, uint8 RGB) → features (N, d_f, h, w), global maps (N, c_1, h_g, w_g)."""
    feats, gmaps = [], []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(preprocess_batch(images[i : i + batch], ctx.preprocess))
        f, g = ctx.pipeline.embedder(x)
        feats.append(f)
        gmaps.append(g)
    return torch.cat(feats), torch.cat(gmaps)


@torch.no_grad()
def residuals_of(ctx: ResidualContext, images: list[np.ndarray], batch: int = 16) -> torch.Tensor:
    """Residuals against the package's full bank: (N, d_f, h, w) float32, as served."""
    return full_bank_pass(ctx, images, batch)[1]


def residuals_and_scores(
    ctx: ResidualContext, images: list[np.ndarray], batch: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals against the package's full bank (N, d_f, h, w) float32 and the training-free
    scores (N,), as served."""
    return full_bank_pass(ctx, images, batch)[1:]


def features_and_residuals(
    ctx: ResidualContext, images: list[np.ndarray], batch: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's features F and the residuals against the full bank, each (N, d_f, h, w)
    float32, as served (ADClick's feature prior reads F)."""
    return full_bank_pass(ctx, images, batch)[:2]


@torch.no_grad()
def full_bank_pass(
    ctx: ResidualContext, images: list[np.ndarray], batch: int = 16
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, chunk by chunk, through the backbone and the residual model with the package's full
    bank, as served → features F and residuals (N, d_f, h, w) float32, training-free scores (N,)."""
    feats, residuals, scores = [], [], []
    for i in range(0, len(images), batch):
        f, g = embed(ctx, images[i : i + batch], batch)
        residual, _, score = ctx.pipeline.residual_model(f, g)
        feats.append(f)
        residuals.append(residual)
        scores.append(score)
    return torch.cat(feats), torch.cat(residuals), torch.cat(scores)


@dataclass
class ResidualSet:
    """Training samples: residual (N, d_f, h, w) float16 and masks (N, H_in, W_in) bool; with `images`
    the painted images (N, H_in, W_in, 3) uint8 the residuals were computed from (ADClick's image
    branch), with `features` their backbone features F (N, d_f, h, w) float16 (ADClick's feature prior)."""

    residual: torch.Tensor
    masks: torch.Tensor
    on_foreground: bool = False  # synthetic defects were confined to the object's foreground
    images: torch.Tensor | None = None
    features: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.residual.shape[0]


def _cache_key(ctx: ResidualContext, goods: list[Path], **params: object) -> str:
    h = hashlib.sha256(ctx.package.manifest.files.get("bank.safetensors", "").encode())
    h.update(json.dumps({"goods": [str(p) for p in goods], **params}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def good_images(data_dir: Path) -> list[Path]:
    """Good training images of a dataset; none is a clear error."""
    goods = open_dataset(Path(data_dir)).train
    if not goods:
        raise TrainDataError(f"{data_dir}: no good training images (train/good/ or a folder of images)")
    return goods


SEG_HOLDOUT_FRACTION = 0.3  # of the package's good images, never trained on: the seg threshold's
MIN_SEG_HOLDOUT = 8


def scored_goods(ctx: ResidualContext) -> tuple[list[Path], list[int]]:
    """The good images `fit` scored out of fold (calibration.json) and their places in the bank."""
    path = ctx.package.root / "calibration.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainDataError(f"{path}: unreadable ({exc}); re-run `adinspect fit`") from exc
    names = [Path(p) for p in record.get("holdout", [])]
    places = [int(i) for i in record.get("bank_index", [-1] * len(names))]
    return names, places


def seg_holdout(ctx: ResidualContext) -> tuple[list[Path], list[int]]:
    """The good images kept out of click and seg training (a seeded `SEG_HOLDOUT_FRACTION` of the
    package's good images, at least `MIN_SEG_HOLDOUT` where there are twice as many): the seg
    threshold is set on them, so they must stay unseen. Returns (paths, places in the bank)."""
    names, places = scored_goods(ctx)
    n = len(names)
    k = min(n // 2, max(MIN_SEG_HOLDOUT, int(round(SEG_HOLDOUT_FRACTION * n))))
    if k < 1:
        raise TrainDataError(f"{ctx.package.root}: too few good images ({n}) to keep any out of training")
    chosen = np.sort(np.random.default_rng(ctx.package.config.seed).permutation(n)[:k])
    return [names[i] for i in chosen], [places[i] for i in chosen]


def training_goods(ctx: ResidualContext, data_dir: Path) -> list[Path]:
    """Good images to train on: the dataset's, minus `seg_holdout` (kept unseen so the seg threshold
    calibrated on it stays honest)."""
    held = {p.resolve() for p in seg_holdout(ctx)[0]}
    goods = [p for p in good_images(data_dir) if p.resolve() not in held]
    if not goods:
        raise TrainDataError(f"{data_dir}: every good image is held out of training; add good images")
    return goods


@torch.no_grad()
def honest_residuals(
    ctx: ResidualContext, images: list[np.ndarray], places: list[int], batch: int = 16
) -> torch.Tensor:
    """Residuals (N, d_f, h, w) of good images against the package's bank without each of them
    (`places`: each image's index in the bank, -1 when it is not there), as a new good part's."""
    return honest_features_and_residuals(ctx, images, places, batch)[1]


@torch.no_grad()
def honest_features_and_residuals(
    ctx: ResidualContext, images: list[np.ndarray], places: list[int], batch: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's features F and `honest_residuals`, each (N, d_f, h, w), from one backbone pass."""
    model = ctx.pipeline.residual_model
    n_bank = model.bank_descriptors.shape[0]
    feats, out = [], []
    for i in range(0, len(images), batch):
        f, g = embed(ctx, images[i : i + batch], batch)
        exclude = torch.zeros(f.shape[0], n_bank, dtype=torch.bool)
        for row, place in enumerate(places[i : i + batch]):
            if place >= 0:
                exclude[row, place] = True
        feats.append(f)
        out.append(model.residual(f, model.retrieve(g, exclude)))
    return torch.cat(feats), torch.cat(out)


# long: one cache entry holds the k-fold residuals of the goods and of the painted anomalies; the
# two are computed with the same fold models, so they are made in one place
@torch.no_grad()
def synthetic_residuals(
    ctx: ResidualContext,
    goods: list[Path],
    n_samples: int,
    seed: int,
    n_folds: int = 4,
    settings: AnomalySettings | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    foreground: bool = False,
    keep_images: bool = False,
    capture_shift: float = 0.0,
    keep_features: bool = False,
) -> tuple[ResidualSet, ResidualSet]:
    """Synthetic anomalies on the good images and the good images themselves, as residuals.

    With `foreground`, an object product's anomalies are painted only on the object
    (`data.foreground`); a texture's anywhere. `keep_images` also returns (and caches) the painted
    images, `keep_features` their backbone features. `capture_shift` > 0: that fraction of the
    anomalies is photographed with a random capture shift (`data.capture`: light of strength
    0.1–0.4 and the part moved by up to 20 % of the side, its mask with it) before its residual is
    computed, so their residual lights up beyond the defect.

    Returns:
        (anomalous set with n_samples masks, good set with one empty mask per good image).
    """
    if len(goods) < n_folds:
        raise TrainDataError(f"{len(goods)} good images are too few for {n_folds}-fold residuals; give more")
    settings = settings or AnomalySettings()
    shift = {"shift": capture_shift, "shift_kind": "light+pose"} if capture_shift else {}
    if settings.thin_fraction:  # not in the settings' repr, so default caches keep their keys
        shift["thin"] = settings.thin_fraction
    key = _cache_key(
        ctx, goods, n=n_samples, seed=seed, folds=n_folds, settings=settings, fg=foreground, **shift,
        fold_banks="own cells, every turn",  # what the fold banks hold is part of what is cached
    )  # fmt: skip
    cache = Path(cache_dir) / f"synthetic-{key}.safetensors" if cache_dir else None
    cached = _read_cache(cache, keep_images, keep_features) if cache is not None else None
    if cached is not None:
        return cached
    images = [
        resize_to_model(read_image(p), ctx.shape)
        for p in tqdm(goods, desc="reading good images", disable=not progress)
    ]
    feats, gmaps = embed(ctx, images)
    rotations = ctx.package.config.method.rotations
    turns = [embed(ctx, [turned(im, t, rotations) for im in images]) for t in range(1, rotations)]
    fgs = product_foregrounds(images) if foreground else None
    rng = np.random.default_rng(seed)
    folds = rng.permutation(np.arange(len(images)) % n_folds)
    models = fold_models(ctx.pipeline.residual_model, ctx.package.config.method, feats, gmaps, folds, turns)
    good = by_fold(models, folds, feats, gmaps)
    residual, masks, kept, kept_features = [], [], [], []
    batch = 16
    for start in tqdm(range(0, n_samples, batch), desc="synthetic anomalies", disable=not progress):
        src = [int(rng.integers(len(images))) for _ in range(min(batch, n_samples - start))]
        painted = [_shifted(*_paint(images, i, fgs, rng, settings), capture_shift, rng) for i in src]
        shown = [p[0] for p in painted]
        f, g = embed(ctx, shown)
        residual.append(by_fold(models, folds[src], f, g).half())
        kept_features += [f.half()] if keep_features else []
        masks += [torch.from_numpy(p[1].astype(bool)) for p in painted]
        if keep_images:
            kept += [torch.from_numpy(np.ascontiguousarray(im)) for im in shown]
    anomalous = ResidualSet(
        torch.cat(residual), torch.stack(masks), fgs is not None, torch.stack(kept) if keep_images else None,
        torch.cat(kept_features) if keep_features else None,
    )  # fmt: skip
    goods_set = ResidualSet(good.half(), torch.zeros(len(images), *ctx.shape, dtype=torch.bool))
    if cache is not None:
        _write_cache(cache, anomalous, goods_set)
    return anomalous, goods_set


def _read_cache(
    cache: Path, keep_images: bool, keep_features: bool
) -> tuple[ResidualSet, ResidualSet] | None:
    """The sets `synthetic_residuals` cached under these settings, None if absent (or without the
    painted images or their features when they are asked for)."""
    if not cache.is_file():
        return None
    t = load_file(str(cache))
    if (keep_images and "anomalous_images" not in t) or (keep_features and "anomalous_features" not in t):
        return None
    on_fg = bool(t["on_foreground"].item()) if "on_foreground" in t else False
    anomalous = ResidualSet(
        t["anomalous"], t["anomalous_masks"], on_fg, t.get("anomalous_images"), t.get("anomalous_features")
    )
    return anomalous, ResidualSet(t["good"], t["good_masks"])


def _write_cache(cache: Path, anomalous: ResidualSet, goods_set: ResidualSet) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    save_file(
        {
            "anomalous": anomalous.residual.contiguous(),
            "anomalous_masks": anomalous.masks.contiguous(),
            "good": goods_set.residual.contiguous(),
            "good_masks": goods_set.masks.contiguous(),
            "on_foreground": torch.tensor(anomalous.on_foreground),
            **({"anomalous_images": anomalous.images} if anomalous.images is not None else {}),
            **({"anomalous_features": anomalous.features} if anomalous.features is not None else {}),
        },
        str(tmp),
    )
    tmp.replace(cache)


def _paint(
    images: list[np.ndarray], i: int, fgs: list[np.ndarray] | None, rng, settings
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic anomaly on images[i] → (image, mask), on its foreground when there is one (the
    whole image when no Perlin mask fits a very small foreground)."""
    if fgs is not None:
        try:
            return synthesize_anomaly(images[i], rng, settings, foreground=fgs[i], donors=images)[:2]
        except RuntimeError:
            pass
    return synthesize_anomaly(images[i], rng, settings, donors=images)[:2]


def _shifted(
    image: np.ndarray, mask: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """With probability `fraction`, the image under a random capture shift: another light and the
    part moved (its mask with it, unless that would push the defect out of the frame); no draw
    when `fraction` is 0."""
    if fraction <= 0 or rng.random() >= fraction:
        return image, mask
    image = random_capture_shift(image, float(rng.uniform(0.1, 0.4)), rng)
    offset = random_offset(float(rng.uniform(0.0, 0.2)), image.shape[0], rng)
    moved = misalign(mask.astype(bool), offset)
    if not moved.any():
        return image, mask
    return misalign(image, offset), moved


@torch.no_grad()
def images_of(ctx: ResidualContext, images: list[np.ndarray]) -> torch.Tensor:
    """Normalised model inputs (N, 3, H_in, W_in) float32 of images of any size, as served."""
    return torch.from_numpy(preprocess_batch(images, ctx.preprocess))
