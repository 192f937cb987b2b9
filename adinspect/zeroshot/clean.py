"""`fit --clean`: drop training images that stand out from the rest before fitting.

The training images are mutually scored as one zero-shot batch (MSM; RsCIN off by default, so a
dropped image is judged on its own patches). The rule is a robust z-score of the image scores,
z = (s - median) / (1.4826 · MAD), and an image is dropped when z > z_max (default 3): median and
MAD are those of the majority, so a minority of defective images (even a quarter) barely moves
them. What was dropped and why goes into `cleaning.json` and the model card.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from adinspect.imageio import read_image
from adinspect.zeroshot.api import score_images
from adinspect.zeroshot.config import CleanConfig

CLEANING_JSON = "cleaning.json"
MAD_TO_STD = 1.4826  # MAD of a normal distribution times this is its standard deviation


class DroppedImage(BaseModel):
    model_config = ConfigDict(frozen=True)

    image: str
    score: float
    z: float


class CleaningReport(BaseModel):
    """What `fit --clean` did; saved as cleaning.json in the package."""

    model_config = ConfigDict(frozen=True)

    rule: str
    n_scored: int
    median: float
    mad: float
    dropped: list[DroppedImage]
    seconds: float
    config: CleanConfig


def robust_z(scores: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(N,) scores → (z-scores, median, MAD); a zero MAD falls back to the standard deviation."""
    median = float(np.median(scores))
    mad = float(np.median(np.abs(scores - median)))
    scale = MAD_TO_STD * mad if mad > 0 else float(np.std(scores))
    return (scores - median) / (scale if scale > 0 else 1.0), median, mad


def clean_training_set(paths: Sequence[Path], config: CleanConfig) -> tuple[list[Path], CleaningReport]:
    """Mutually score the training images and drop the outliers → (kept paths in order, report)."""
    t0 = time.perf_counter()
    result = score_images([read_image(p) for p in paths], config.zeroshot)
    z, median, mad = robust_z(result.scores)
    drop = z > config.z_max
    dropped = [
        DroppedImage(image=str(p), score=float(s), z=float(v))
        for p, s, v, d in zip(paths, result.scores, z, drop, strict=True)
        if d
    ]
    report = CleaningReport(
        rule=f"dropped when (score - median) / (1.4826 * MAD) > {config.z_max:g}; score = zero-shot mutual "
        f"score (MSM, max of the map) of each image against the other {len(paths) - 1} training images",
        n_scored=len(paths),
        median=median,
        mad=mad,
        dropped=sorted(dropped, key=lambda d: -d.z),
        seconds=time.perf_counter() - t0,
        config=config,
    )
    return [p for p, d in zip(paths, drop, strict=True) if not d], report


def write_cleaning(root: Path, report: CleaningReport) -> list[str]:
    """cleaning.json, and a section appended to the model card naming every dropped image.

    Returns the names of the files written (for the manifest).
    """
    (Path(root) / CLEANING_JSON).write_text(report.model_dump_json(indent=2) + "\n")
    lines = [
        "## Cleaning (`fit --clean`)",
        f"- {len(report.dropped)} of {report.n_scored} good images dropped before fitting",
        f"- rule: {report.rule}",
        f"- median score {report.median:.4g}, MAD {report.mad:.4g}; took {report.seconds:.1f} s",
    ]
    lines += [f"- dropped `{d.image}`: score {d.score:.4g}, z = {d.z:.1f}" for d in report.dropped]
    card = Path(root) / "model_card.md"
    card.write_text(card.read_text().rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")
    return [CLEANING_JSON]


def load_cleaning(root: Path) -> CleaningReport | None:
    path = Path(root) / CLEANING_JSON
    return CleaningReport.model_validate(json.loads(path.read_text())) if path.is_file() else None
