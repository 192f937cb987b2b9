"""`fit --auto`: choose the backbone, the matching, the map normalisation, the input size and whether
the bank holds turned copies of the good images, per product, from the good training images alone
(DESIGN.md §11).

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
Four stages keep the cost down: every matching and normalisation on the config's backbone, then
the other backbones with the matching of the highest criterion there, then the candidate picked at
a larger input where the images have the pixels and time allows (`candidates.larger_inputs`; the
anomalies are painted at that input, so a thin stroke that a smaller input blurs away shows it),
then the turned bank with the candidate picked (`choose`); turns are taken on the synthetic image
AUROC (`Choice.turned`). A part that lies at any rotation scores its good images high against
upright references, so the turned bank wins there; a fixtured part gains nothing, and the margin
keeps the bank upright.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from adinspect.config import PipelineConfig, validate_config
from adinspect.data.anomalies import AnomalySettings, synthesize_anomaly
from adinspect.features.backbones import create_backbone
from adinspect.features.embedder import FeatureEmbedder
from adinspect.fitting.candidates import (
    backbone_candidates,
    first_matchings,
    global_affordable,
    larger_inputs,
    turn_candidates,
)
from adinspect.fitting.evidence import METRIC_PIXELS, synthetic_metrics
from adinspect.geometry import PreprocessSpec, preprocess_batch, turned
from adinspect.imageio import read_image
from adinspect.residual.bank import fit_bank
from adinspect.residual.model import ResidualModel
from adinspect.residual.position import MapMoments, PositionNorm

CRITERIA = ("image_auroc", "pixel_ap", "aupro")
MATCHINGS = ("local", "global")
NORMS = ("none", "zscore")
MARGIN = 0.01
MAX_IMAGES = 32  # good images in the sample (and as many synthetic anomalies)
THIN_FRACTION = 0.3  # share of thin strokes among the synthetic anomalies
RULE = (
    f"mean of synthetic image AUROC, pixel AP and AUPRO (one synthetic anomaly on each of up to "
    f"{MAX_IMAGES} good training images, {THIN_FRACTION:.0%} thin strokes; each image against the "
    f"others; maps over {METRIC_PIXELS} pixels pooled to about that), highest wins unless the "
    f"default is within {MARGIN}; backbones other than the "
    "default are tried with the matching of the highest criterion on the default backbone; then the "
    "candidate picked at a larger input (1.5 S, where it magnifies no pixel and fit and training stay "
    "within their time), measured against itself at S on anomalies painted at the larger input: taken "
    f"where it raises the synthetic image AUROC by more than {MARGIN} while the criterion falls by no "
    f"more than {MARGIN}; then the "
    "bank of every good image at quarter and at eighth turns (square inputs) for the candidate "
    f"picked: of those that raise the synthetic image AUROC by more than {MARGIN} while the criterion "
    f"falls by no more than {MARGIN}, the one that raises it most"
)


Sample = tuple[list[np.ndarray], list[np.ndarray], np.ndarray]  # good images, painted ones, masks


@dataclass(frozen=True)
class Candidate:
    backbone: str
    matching: str
    position_norm: str
    rotations: int = 1  # turns of each good image in the bank (`method.rotations`)
    input_shape: tuple[int, int] | None = None  # the network input (H, W); None: the config's

    @property
    def name(self) -> str:
        turns = f"/{self.rotations} turns" if self.rotations > 1 else ""
        size = f"/{self.input_shape[0]}x{self.input_shape[1]}" if self.input_shape else ""
        return f"{self.backbone}/{self.matching}/{self.position_norm}{turns}{size}"


@dataclass
class Choice:
    """The chosen candidate, the default it was measured against and every candidate's evidence."""

    chosen: Candidate
    default: Candidate
    evidence: dict[Candidate, dict[str, float]]
    n_images: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    config_input: tuple[int, int] | None = None  # the config's input (H, W), for the record

    def criterion(self, candidate: Candidate) -> float:
        return float(np.mean([self.evidence[candidate][c] for c in CRITERIA]))

    def best(self) -> Candidate:
        """The candidate with the highest criterion so far at the default's turns of the bank and the
        config's input (the other backbones are tried with its matching: the margin guards the final
        choice, not which candidates are explored)."""
        same = [c for c in self.evidence if c.rotations == self.default.rotations and c.input_shape is None]
        return max(same, key=self.criterion)

    def pick(self) -> Candidate:
        """The rule: the best candidate at the default's turns and input, unless the default is within
        `MARGIN` of it; then that candidate at a larger input (`larger`), then at other turns of the
        bank (`turned`), where measured."""
        best = self.best()
        if self.default in self.evidence and self.criterion(best) <= self.criterion(self.default) + MARGIN:
            best = self.default
        return self.turned(self.larger(best))

    def larger(self, base: Candidate) -> Candidate:
        """`base` at a larger input where that raises the synthetic image AUROC by more than `MARGIN`
        without the criterion falling by more than `MARGIN`, against `base` at the config's input on
        the same anomalies (painted at the larger input), else `base`. A larger input costs time at
        fit, in training and at every inspection, and finer maps alone do not pay for it (they can
        outline defects better yet move good parts over the threshold); it is taken where it changes
        verdicts: thin defects that the smaller input blurs away."""
        here = replace(base, input_shape=self.config_input)
        if base.input_shape is not None or here not in self.evidence:
            return base
        own = here.input_shape
        sizes = [c for c in self.evidence if c.input_shape not in (None, own)]
        return self._gained(here, [c for c in sizes if replace(c, input_shape=own) == here], base)

    def turned(self, base: Candidate) -> Candidate:
        """`base` at the other turns of the bank that raise the synthetic image AUROC by more than
        `MARGIN` without the criterion falling by more than `MARGIN`, else `base`. Turns change which
        references a part retrieves, so they show in the image scores; the pixel criteria of a part
        that found upright references anyway barely move."""
        turns = [c for c in self.evidence if replace(c, rotations=base.rotations) == base]
        return self._gained(base, turns, base)

    def _gained(self, base: Candidate, others: Sequence[Candidate], otherwise: Candidate) -> Candidate:
        """Of `others`, the one that raises the synthetic image AUROC most over `base`'s, by more than
        `MARGIN`, while the criterion falls by no more than `MARGIN`; else `otherwise`."""
        gains = {
            other: self.evidence[other]["image_auroc"] - self.evidence[base]["image_auroc"]
            for other in others
            if other != base
        }
        ahead = [
            c
            for c, gain in gains.items()
            if gain > MARGIN and self.criterion(c) >= self.criterion(base) - MARGIN
        ]
        return max(ahead, key=lambda c: gains[c]) if ahead else otherwise

    def apply(self, config: PipelineConfig) -> PipelineConfig:
        """`config` with the chosen backbone, matching, normalisation, turns of the bank and input."""
        return with_candidate(config, self.chosen)

    def record(self) -> dict:
        """choice.json and the model card: the rule, what was chosen and every candidate's evidence."""
        rows = [
            {**c.__dict__, "name": c.name, "metrics": m, "criterion": self.criterion(c)}
            for c, m in self.evidence.items()
        ]

        def resolved(c: Candidate) -> dict:  # the input as (H, W) even where it is the config's
            shape = c.input_shape or self.config_input
            return {**c.__dict__, "input_shape": None if shape is None else list(shape)}

        return {
            "rule": RULE,
            "chosen": resolved(self.chosen),
            "default": resolved(self.default),
            "criteria": list(CRITERIA),
            "n_good_images": self.n_images,
            "n_synthetic_images": self.n_images,
            "seconds": self.seconds,
            "notes": self.notes,
            "candidates": sorted(rows, key=lambda r: -r["criterion"]),
        }


def with_candidate(config: PipelineConfig, candidate: Candidate) -> PipelineConfig:
    """`config` with the candidate's backbone, matching, normalisation, turns of the bank and input."""
    raw = config.model_dump(mode="json")
    raw["backbone"]["name"] = candidate.backbone
    raw["method"].update(
        matching=candidate.matching, position_norm=candidate.position_norm, rotations=candidate.rotations
    )
    if candidate.input_shape is not None:
        raw["method"].update(input_shape=list(candidate.input_shape), image_size=min(candidate.input_shape))
    return validate_config(raw, source="fit --auto")


# long: the choice's four stages read top to bottom; `measure` is a closure over their shared state
def choose(
    goods: Sequence[Path],
    config: PipelineConfig,
    progress: bool = True,
    backbones: Sequence[str] | None = None,
    affordable: Callable[[Candidate], bool] | None = None,
    image_shape: tuple[int, int] | None = None,
) -> Choice:
    """Score the candidates on the sample and its synthetic anomalies; apply the rule.

    In four stages, so the cost stays at a few residual passes whatever the backbones: every
    matching and normalisation on the config's backbone, then every other backbone with the
    matching that won there (both normalisations: they cost no residual pass), then (given the
    training images' `image_shape`) the candidate the rule picks at a larger input
    (`candidates.larger_inputs`), then the bank with
    every good image turned (`turn_candidates`) for the candidate the rule picks, at the turns
    `affordable` allows (fit: the whole bank at those turns within the memory budget)."""
    t0 = time.perf_counter()
    backbones = list(backbones or backbone_candidates(config))
    larger, notes = larger_inputs(config, image_shape, len(goods)) if image_shape else ([], [])
    # the sizes are compared on anomalies painted at the larger input, as thin there as on the part
    shapes = [config.method.shape, *([max(larger, key=_pixels)] if larger else [])]
    samples = synthetic_samples(goods, config, shapes)  # the config's input, then the larger one
    method = config.method
    default = Candidate(config.backbone.name, method.matching, method.position_norm, method.rotations)
    choice = Choice(default, default, {}, len(samples[0][0]), 0.0, config_input=method.shape)
    first, skipped = first_matchings(config, MATCHINGS)
    choice.notes += skipped + notes
    turns = turn_candidates(config)
    total = len(first) + len(backbones) - 1 + (len(larger) + 1 if larger else 0) + len(turns) - 1
    steps = tqdm(total=total, desc="fit --auto", unit="pass", disable=not progress)
    seen: dict[tuple, tuple[torch.Tensor, ...]] = {}  # features of both sets, upright, per backbone and input

    def measure(backbone: str, matchings: Sequence[str], rotations: int, shape: tuple | None = None) -> None:
        at = config if shape is None else with_candidate(config, replace(default, input_shape=shape))
        embed, size = _embedder(at, backbone), at.method.shape
        images, painted, masks = samples[0 if shape is None else 1]
        resized = [[_at_input(im, size) for im in ims] for ims in (images, painted)]
        if (backbone, shape) not in seen:
            seen[backbone, shape] = (*embed(resized[0]), *embed(resized[1]))
        feats, gmaps, painted_feats, painted_gmaps = seen[backbone, shape]
        turns = [embed([turned(im, t, rotations) for im in resized[0]]) for t in range(1, rotations)]
        model = _bank(at, feats, gmaps, turns, "global" in matchings, rotations)
        pairs = ((feats.half().float(), gmaps), (painted_feats, painted_gmaps))  # the bank holds fp16
        for matching in matchings:
            model.matching = matching
            good, synthetic = (_maps(model, _left_out_norms(model, *pair)) for pair in pairs)
            for norm, (g, s) in _normalised(good, synthetic).items():
                candidate = Candidate(backbone, matching, norm, rotations, shape)
                choice.evidence[candidate] = synthetic_metrics(model, g, s, masks, CRITERIA)
            steps.update()

    measure(backbones[0], first, default.rotations)
    for backbone in backbones[1:]:
        measure(backbone, (choice.best().matching,), default.rotations)
    picked = choice.pick()
    for shape in larger:  # the candidate picked at a larger input and at its own, on anomalies painted large
        candidate = replace(picked, input_shape=shape)
        at = with_candidate(config, candidate)
        if picked.matching == "global" and not global_affordable(at):
            choice.notes.append(f"input {shape[0]}x{shape[1]} not tried: global matching would cost too much")
        elif affordable is None or affordable(candidate):
            measure(picked.backbone, (picked.matching,), default.rotations, method.shape)
            measure(picked.backbone, (picked.matching,), default.rotations, shape)
        else:
            choice.notes.append(f"input {shape[0]}x{shape[1]} not tried: it would exceed the memory budget")
    picked = choice.pick()
    seen = {key: seen[key] for key in [(picked.backbone, picked.input_shape)]}  # only it is measured again
    for rotations in turns[1:]:  # the bank at other turns, for the candidate the rule picks
        candidate = replace(picked, rotations=rotations)
        if affordable is None or affordable(candidate):  # fit's time: `candidates.capped_turned_bank`
            measure(picked.backbone, (picked.matching,), rotations, picked.input_shape)
        else:
            choice.notes.append(f"{rotations} turns not tried: the bank would exceed the memory budget")
    steps.close()
    choice.chosen = choice.pick()
    choice.seconds = time.perf_counter() - t0
    return choice


def synthetic_samples(
    goods: Sequence[Path], config: PipelineConfig, shapes: Sequence[tuple[int, int]]
) -> list[Sample]:
    """For each input (H, W) of `shapes`: a seeded sample of the good images at it, the same with one
    synthetic anomaly each, and the anomalies' masks (N, H, W) bool. Each sampled image is read once;
    every shape gets the same random draws, so the first is the sample the config's input always had."""
    rng = np.random.default_rng(config.seed)
    pick = np.sort(rng.permutation(len(goods))[:MAX_IMAGES])
    originals = (read_image(goods[i]) for i in pick)  # one at a time: a 40 MP photograph is not kept
    at_shapes = [[_at_input(image, shape) for shape in shapes] for image in originals]
    settings = AnomalySettings(thin_fraction=THIN_FRACTION)
    samples = []
    for k in range(len(shapes)):
        draws = copy.deepcopy(rng)
        images = [sized[k] for sized in at_shapes]
        painted, masks = [], []
        for image in images:
            out, mask, _ = synthesize_anomaly(image, draws, settings, donors=images)
            painted.append(out)
            masks.append(mask.astype(bool))
        samples.append((images, painted, np.stack(masks)))
    return samples


def _pixels(shape: tuple[int, int]) -> int:
    return shape[0] * shape[1]


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
