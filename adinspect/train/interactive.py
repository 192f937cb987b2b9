"""ADClick on real images: the click predictor, the labelled / evaluation split, `evaluate-clicks`.

Clicks are simulated from the ground truth (RITM protocol, `clicks.py`) on defective test images;
the residuals come from the package's own models with the full bank, exactly as served. The
defective images are split per defect type into a labelled half (for pseudo labels) and an
evaluation half, deterministically by seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adinspect.data.datasets import Sample, open_dataset
from adinspect.errors import InputError
from adinspect.evaluation import load_mask_at
from adinspect.imageio import read_image
from adinspect.language.encoder import LanguageFeatures
from adinspect.metrics import pixel_ap
from adinspect.models.adclick import ADClick
from adinspect.train.click_trainer import load_click_model
from adinspect.train.clicks import MAX_CLICKS, Click, click_maps, click_metrics, click_radius, simulate_clicks
from adinspect.train.common import language_tensors, prepare_language
from adinspect.train.residual_data import ResidualContext, load_context, residuals_of

SUBSETS = ("all", "labelled", "eval")


class ClickPredictor:
    """ADClick for one image: (previous probability (S, S), clicks so far) → probability (S, S)."""

    def __init__(
        self, model: ADClick, residual: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor
    ) -> None:
        self.model = model
        self.residual = residual  # (1, d_f, h, w)
        self.words, self.word_mask = words[None], word_mask[None]
        self.size = model.cfg.image_size
        self.radius = click_radius(self.size)

    @torch.no_grad()
    def __call__(self, prev: np.ndarray, clicks: list[Click]) -> np.ndarray:
        maps = torch.from_numpy(click_maps(clicks, (self.size, self.size), self.radius))[None]
        prev_t = torch.from_numpy(prev.astype(np.float32))[None, None]
        logits = self.model(self.residual, prev_t, maps, self.words, self.word_mask)
        return torch.sigmoid(logits)[0, 0].numpy()

    def run(self, clicks: list[Click]) -> np.ndarray:
        """Feed the clicks one by one (each prediction is the next previous mask); final probability."""
        prob = np.zeros((self.size, self.size), np.float32)
        for k in range(1, len(clicks) + 1):
            prob = self(prob, clicks[:k])
        return prob


def defective_samples(data_dir: Path) -> list[Sample]:
    """Defective test images with ground-truth masks; none is a clear error."""
    samples = [s for s in open_dataset(Path(data_dir)).test if s.label == 1 and s.mask_path is not None]
    if not samples:
        raise InputError(f"{data_dir}: no defective test images with ground-truth masks")
    return samples


def split_defective(samples: list[Sample], seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Per defect type, a seeded half (rounded up) is 'labelled', the rest 'eval'."""
    labelled, evaluation = [], []
    rng = np.random.default_rng(seed)
    for defect in sorted({s.defect_type for s in samples}):
        group = sorted((s for s in samples if s.defect_type == defect), key=lambda s: str(s.path))
        order = rng.permutation(len(group))
        half = (len(group) + 1) // 2
        labelled += [group[i] for i in sorted(order[:half])]
        evaluation += [group[i] for i in sorted(order[half:])]
    return labelled, evaluation


def select(samples: list[Sample], subset: str, seed: int = 0) -> list[Sample]:
    if subset not in SUBSETS:
        raise InputError(f"unknown subset {subset!r}; choose one of {SUBSETS}")
    if subset == "all":
        return samples
    labelled, evaluation = split_defective(samples, seed)
    return labelled if subset == "labelled" else evaluation


@dataclass
class RealImages:
    """Defective images as the networks see them."""

    samples: list[Sample]
    residual: torch.Tensor  # (N, d_f, h, w)
    masks: np.ndarray  # (N, S, S) bool
    types: list[int]  # index into the language features


def load_real(
    ctx: ResidualContext, lang: LanguageFeatures, samples: list[Sample], progress: bool = True
) -> RealImages:
    """Residuals (full bank), masks at S and defect-type indices of labelled samples."""
    s = ctx.image_size
    images, masks = [], []
    for sample in tqdm(samples, desc="reading defective images", disable=not progress):
        image = read_image(sample.path)
        images.append(image)
        masks.append(load_mask_at(sample, image.shape[:2], s))
    types = [lang.index(x.defect_type) for x in samples]
    return RealImages(samples, residuals_of(ctx, images), np.stack(masks), types)


def evaluate_clicks(
    model_dir: Path, data_dir: Path, subset: str = "all", seed: int = 0, max_clicks: int = MAX_CLICKS,
    progress: bool = True,
) -> dict:  # fmt: skip
    """Simulate up to `max_clicks` clicks per defective test image and report NoC@80/85/90,
    IoU@k (k = 1..max_clicks) and the pixel AP of the probability maps after 3 and 5 clicks."""
    t0 = time.perf_counter()
    ctx = load_context(model_dir)
    lang = prepare_language(ctx, data_dir)
    model = load_click_model(ctx, lang)
    v_lang, word_mask = language_tensors(lang)
    real = load_real(ctx, lang, select(defective_samples(data_dir), subset, seed), progress)
    all_ious: list[list[float]] = []
    after: dict[int, list[np.ndarray]] = {3: [], 5: []}
    per_image = []
    for i in tqdm(range(len(real.samples)), desc="simulating clicks", disable=not progress):
        t = real.types[i]
        predictor = ClickPredictor(model, real.residual[i : i + 1], v_lang[t], word_mask[t])
        session = simulate_clicks(predictor, real.masks[i], max_clicks)
        all_ious.append(session.ious)
        for k in after:
            after[k].append(session.probs[min(k, len(session.probs)) - 1])
        per_image.append({"image": str(real.samples[i].path), "defect_type": real.samples[i].defect_type,
                          "iou": [round(v, 4) for v in session.ious]})  # fmt: skip
    out = click_metrics(all_ious, max_clicks)
    for k, probs in after.items():
        out[f"ap_{k}"] = pixel_ap(np.stack(probs), real.masks)
    out.update(n_images=len(real.samples), subset=subset, seconds=time.perf_counter() - t0, images=per_image)
    return out
