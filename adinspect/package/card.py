"""The model card: what a person reads about a fitted package (data, backbone, threshold, checks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from adinspect.config import PipelineConfig
from adinspect.package import Manifest, ProductThreshold


def write_model_card(
    root: Path,
    manifest: Manifest,
    config: PipelineConfig,
    *,
    data_dir: Path,
    n_images: int,
    parity: dict[str, float],
    seconds: dict[str, float],
    calibration: Any,
    memory: dict[str, float] | None = None,
    choice: dict[str, Any] | None = None,
) -> Path:
    """Write root/model_card.md from the manifest and the fit's measurements."""
    bb = manifest.backbone
    scores = np.asarray(calibration.holdout_scores)
    warning = (
        "\n> **RANDOM WEIGHTS**: this package was made with a randomly initialised backbone. "
        "Its results are not meaningful for inspection.\n"
        if bb.random_weights
        else ""
    )
    lines = [
        f"# Model card: {manifest.product}",
        warning,
        "## Data",
        f"- Good images found: {n_images} under `{data_dir}`",
        f"- References in the bank: {manifest.n_references} (every good image unless "
        "`scale.max_references` caps it)"
        + (f", each at {config.method.rotations} turns" if config.method.rotations > 1 else ""),
        "",
        "## Backbone",
        f"- {bb.name}, weights `{bb.weights_source}`",
        f"- weights SHA-256: `{bb.weights_sha256}`"
        + (" (random initialisation)" if bb.random_weights else ""),
        f"- matching: {config.method.matching}; map normalisation: {config.method.position_norm}",
        "",
        *_geometry_lines(manifest),
        *_threshold_lines(manifest, scores),
        *(_choice_lines(choice) if choice else []),
        "## Checks",
        "- ONNX Runtime vs torch on good images mirrored left-right (residual model): "
        f"max |Δmap| = {parity['map_max_abs_diff']:.3g}, max |Δscore| = {parity['score_max_abs_diff']:.3g} "
        f"(scores up to {parity['score_scale']:.3g})",
        "",
        "## Fit time (s)",
        "- " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()),
        "",
        *(_memory_lines(memory) if memory else []),
        "## Config",
        "```json",
        json.dumps(json.loads(config.model_dump_json()), indent=2),
        "```",
        "",
    ]
    path = root / "model_card.md"
    path.write_text("\n".join(lines))
    return path


def put_section(card: str, heading: str, lines: list[str], before: str = "## Config") -> str:
    """The card with its section `heading` (a '## ' line) set to `lines`: replaced where it is, else
    put before the section `before` (at the end without it). Training adds its own sections so a
    person reads in one place what the package serves and why."""
    rows = card.splitlines()
    section = [heading, *lines, ""]
    if heading in rows:
        start = rows.index(heading)
        end = next((i for i in range(start + 1, len(rows)) if rows[i].startswith("## ")), len(rows))
        rows[start:end] = section
    elif before in rows:
        at = rows.index(before)
        rows[at:at] = section
    else:
        rows += ["", *section]
    return "\n".join(rows) + "\n"


def _hw(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def _geometry_lines(manifest: Manifest) -> list[str]:
    """The network input and why fit chose it (H x W: rows x columns)."""
    pre, geometry, bb = manifest.preprocess, manifest.geometry, manifest.backbone
    lines = [
        "## Input geometry",
        f"- network input {_hw(pre.shape)} (HxW), short side S = {pre.image_size}; features "
        f"{bb.feature_dim} x {_hw(bb.feature_shape)}, global map {bb.global_channels} x "
        f"{_hw(bb.global_shape)}",
    ]
    if geometry is not None:
        lines += [f"- training images {_hw(geometry.image_shape)} (HxW); rule: {geometry.rule}",
                  f"- why: {geometry.reason}"]  # fmt: skip
    lines += [
        "- anomaly maps are computed at the network input and resized to each image's own size",
        "",
    ]
    return lines


def _memory_lines(memory: dict[str, float]) -> list[str]:
    return [
        "## Memory (MB)",
        f"- peak resident memory of the fitting process: **{memory['peak_rss_mb']:.0f}**",
        f"- planned: estimate {memory['estimate_mb']:.0f} within a budget of {memory['budget_mb']:.0f}; "
        f"bank {memory['bank_mb']:.0f}; chunks of {memory['embed_batch']:.0f} images through the backbone, "
        f"{memory['residual_batch']:.0f} through the residual model",
        "",
    ]


def _threshold_lines(manifest: Manifest, scores: np.ndarray) -> list[str]:
    """The threshold, its rule and how far the good images' out-of-fold scores vouch for it."""
    ev = manifest.threshold_evidence
    lines = [
        "## Threshold",
        f"- threshold = **{manifest.threshold:.6g}**",
        f"- rule: {manifest.threshold_rule}",
        f"- out-of-fold good scores (each image against the bank without it): min {scores.min():.4g}, "
        f"median {np.median(scores):.4g}, max {scores.max():.4g}",
    ]
    if ev is not None:
        lines += [
            f"- target false-reject rate {ev.target_frr:.3g}; out of fold: {ev.false_rejects} of {ev.n_good} "
            f"rejected ({ev.false_reject_rate:.1%}), 95 % upper bound {ev.false_reject_upper_95:.1%}",
            f"- {ev.statement}",
        ]
    return [*lines, ""]


def _choice_lines(choice: dict[str, Any]) -> list[str]:
    """What `fit --auto` chose, by which rule, and every candidate's evidence."""
    lines = ["## Choices (`fit --auto`, from training data only)", f"- rule: {choice['rule']}"]
    shown = {k: "x".join(map(str, v)) if isinstance(v, list) else v for k, v in choice["chosen"].items()}
    lines += [f"- {name}: **{value}**" for name, value in shown.items()]
    lines += [
        "",
        "| candidate | " + " | ".join(choice["criteria"]) + " | criterion |",
        "| --- " * (len(choice["criteria"]) + 2) + "|",
    ]
    for row in choice["candidates"]:
        values = " | ".join(f"{row['metrics'][c]:.3f}" for c in choice["criteria"])
        lines.append(f"| {row['name']} | {values} | {row['criterion']:.3f} |")
    return [*lines, ""]


def write_unified_card(
    root: Path,
    manifest: Manifest,
    calibrations: dict[str, Any],
    *,
    parity: dict[str, float],
    seconds: dict[str, float],
    settings: dict[str, Any],
    position_images: int,
) -> Path:
    """Write root/model_card.md of a unified package: its products, each one's threshold and
    held-out scores, the backbone, the map's standardisation, the parity check and the settings."""
    bb, unified = manifest.backbone, manifest.unified
    if unified is None:
        raise ValueError(
            f"{root}: write_unified_card needs a unified manifest, got product {manifest.product!r}"
        )
    rows = [_product_row(name, entry, calibrations[name]) for name, entry in unified.products.items()]
    rule = next(iter(unified.products.values())).threshold_rule
    lines = [
        f"# Model card: {manifest.product} (one InvAD model for {len(rows)} products)",
        "",
        "## Products",
        "The model does not know the product; each product's threshold comes from its own held-out good "
        f"images, never trained on (rule: {rule}).",
        "",
        "| product | trained on | held out | threshold | held-out scores min / median / max | rejected |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "## Backbone",
        f"- {bb.name}, weights `{bb.weights_source}`, SHA-256 `{bb.weights_sha256}`",
        f"- input {manifest.preprocess.image_size}², inside invad.onnx with the model",
        "",
        "## Map",
        "- per position (d − mean) / scale, d the blurred feature distance; mean and scale (the standard "
        f"deviation, floored at a tenth of its median) over {position_images} training images of every "
        "product (position.safetensors)",
        "",
        "## Checks",
        "- ONNX Runtime vs torch on every held-out image: "
        f"max |Δmap| = {parity['map_max_abs_diff']:.3g}, max |Δscore| = {parity['score_max_abs_diff']:.3g} "
        f"(scores up to {parity['score_scale']:.3g})",
        "",
        "## Time (s)",
        "- " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()),
        "",
        "## Settings",
        "```json",
        json.dumps(settings, indent=2),
        "```",
        "",
    ]
    path = root / "model_card.md"
    path.write_text("\n".join(lines))
    return path


def _product_row(name: str, entry: ProductThreshold, calibration: Any) -> str:
    """One product's line of the unified card's table."""
    scores = np.asarray(calibration.holdout_scores)
    rejected = int((scores > entry.threshold).sum())
    return (
        f"| {name} | {entry.n_train} | {entry.n_holdout} | {entry.threshold:.6g} | "
        f"{scores.min():.4g} / {np.median(scores):.4g} / {scores.max():.4g} | {rejected}/{len(scores)} |"
    )
