"""Typed configuration: presets, product spec, pipeline settings.

One source of truth, serialised as JSON into every model package. Every model is frozen and
closed (unknown keys are errors), so a typo in a config file fails loudly instead of being
silently ignored. Presets are only named defaults (DESIGN.md §2).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adinspect.errors import InputError

CONFIG_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BackboneConfig(_Frozen):
    """Which CNN produces the features, and where its weights come from."""

    name: str = Field(description="Registered backbone name, see `adinspect backbones`.")
    weights: Path | None = Field(
        default=None,
        description="Weights file; None uses the backbone's offline default (packaged or cached).",
    )
    allow_random: bool = Field(
        default=False,
        description="Use random weights when none are found. Results are labelled 'random-weights'.",
    )


class MethodConfig(_Frozen):
    """The training-free residual method (DESIGN.md §1)."""

    image_size: int = Field(
        ge=64, le=2048, description="Short side S of the network input (S x S unless input_shape is set)."
    )
    input_shape: tuple[int, int] | None = Field(
        default=None,
        description="Network input (H, W) in pixels, its short side S; None: `fit` decides it from the "
        "training images' aspect ratio, and packages from before rectangular inputs are S x S.",
    )
    layer_dim: int | None = Field(
        default=None,
        ge=8,
        description="Per-layer channel projection width (adaptive avg pool); None keeps native widths.",
    )
    combine: Literal["concat", "mean"] = Field(
        default="concat",
        description="How projected layers form F; 'mean' needs layer_dim. The paper preset averages: §3.5 "
        "says 'concatenated', but at 512 channels per layer that triples d_f (1536) and the bank; the "
        "mean keeps d_f = 512, the width of the authors' code (DESIGN.md §1).",
    )
    aggregate_kernel: int = Field(default=3, ge=1, description="Local neighbourhood average (PatchCore).")
    global_pool: int = Field(default=4, ge=1, description="Layer-1 downsampling for the global descriptor.")
    pca_dim: int = Field(default=16, ge=1)
    window: int = Field(default=4, ge=1, description="Window side of the global descriptor, in cells.")
    keep_fraction: float = Field(default=0.8, gt=0.0, le=1.0, description="Mean of lowest window distances.")
    k_neighbors: int = Field(ge=1, description="K most similar references (Θ_knn).")
    global_coreset: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Global matching searches a k-center coreset of this share of each reference's "
        "cells (PatchCore's coreset, per reference): a reference repeats itself, so a quarter of its "
        "cells covers it, at a quarter of the cost; None: every cell (packages from before).",
    )
    sigma: float = Field(
        ge=0.0,
        description="Matching radius in feature-grid cells; offsets with dy² + dx² <= sigma². Eq. 3 is "
        "strict (< sigma): the same disc for the paper's 3.2 (37 offsets); the cpu preset's 2.0 keeps "
        "the 13-offset disc, which Eq. 3 gives for any sigma in (2, √5].",
    )
    blur_sigma: float = Field(ge=0.0, description="Gaussian blur of the map, pixels at image_size.")
    score: Literal["max", "topk_mean"] = "max"
    score_topk: int = Field(default=10, ge=1, description="Pixels averaged when score='topk_mean'.")
    matching: Literal["local", "global"] = Field(
        default="local",
        description="'local': each feature's nearest reference feature within `sigma` cells of its "
        "position (Eq. 3; parts that sit in one place); 'global': the nearest among all cells of the K "
        "retrieved references (textures, crops, parts that are not fixtured).",
    )
    position_norm: Literal["none", "zscore"] = Field(
        default="none",
        description="'zscore': the map is normalised per pixel by the good training images' out-of-fold "
        "maps, (map - mean) / max(std, median std), so places where good parts vary (borders, "
        "reflections) count less; thresholds and scores are then on the normalised map.",
    )
    rotations: Literal[1, 2, 4, 8] = Field(
        default=1,
        description="The bank holds every good image at this many turns: 1 as photographed; 2 also "
        "turned 180°; 4 also 90° and 270°; 8 every 45° (4 and 8: square inputs only). For parts that "
        "lie at any rotation: the K references retrieved are then the turns that look most like the part.",
    )

    @model_validator(mode="after")
    def _turns_fit_the_input(self) -> MethodConfig:
        h, w = self.shape
        if self.rotations > 2 and h != w:
            raise ValueError(
                f"rotations = {self.rotations} turns images by {360 // self.rotations}°, which needs a "
                f"square input, not {h}x{w} (HxW); use rotations = 2 (180°) or 1"
            )
        return self

    @property
    def shape(self) -> tuple[int, int]:
        """The network input (H, W): `input_shape`, or S x S when none is recorded."""
        return self.input_shape or (self.image_size, self.image_size)

    @property
    def side_multiple(self) -> int:
        """Both input sides must be multiples of this: the backbone's stride 32, and the stride-4 map
        pooled by `global_pool` must split into `window`-cell windows (64 for both presets)."""
        return math.lcm(32, 4 * self.global_pool * self.window)


class CalibrationConfig(_Frozen):
    """How the pass/fail threshold is set from the good training images' out-of-fold scores."""

    target_frr: float = Field(
        default=0.01,
        gt=0.0,
        lt=0.5,
        description="Target false-reject rate: the threshold is the (floor(target * N) + 1)-th largest "
        "out-of-fold score of the N good training images.",
    )
    folds: int = Field(
        default=0,
        ge=0,
        description="Out-of-fold scoring: 0 = leave-one-out (each good image against the bank without "
        "it), k >= 2 = k seeded folds (each against the bank without its fold).",
    )
    max_scored: int = Field(
        default=2000,
        ge=10,
        description="At most this many good images (a seeded sample) are scored out of fold; all of them "
        "stay in the bank.",
    )
    seg_floor: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Optional lower bound of the ADClick-Seg threshold (a defect probability); None: the "
        "threshold comes only from held-out good training images' seg scores.",
    )

    @field_validator("folds")
    @classmethod
    def _not_one_fold(cls, v: int) -> int:
        if v == 1:
            raise ValueError("calibration.folds = 1 leaves no bank to score against; use 0 or >= 2")
        return v


class ScaleConfig(_Frozen):
    """How fit stays within memory as a product grows (resources, not the method's maths)."""

    memory_budget_mb: int | None = Field(
        default=None,
        ge=256,
        description="Peak memory fit may plan for, MB; None = 70 % of the RAM available when fit starts.",
    )
    max_references: int | None = Field(
        default=None,
        ge=1,
        description="Cap on bank images: a k-center greedy subset in the retrieval (descriptor) space.",
    )
    external_data_mb: float = Field(
        default=512.0,
        ge=0.0,
        description="Banks above this size (MB) keep residual.onnx's constants in residual.onnx.data "
        "(ONNX external data; needed above 2 GB). 0 forces it.",
    )


_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def check_product_name(value: str) -> str:
    """A product name becomes Triton model names and paths: lower-case identifier or ValueError."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"product name {value!r} must be lower-case letters, digits and '_' "
            f"(it becomes a Triton model name and a folder name), e.g. 'bottle'"
        )
    return value


class DefectType(_Frozen):
    name: str
    prompts: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"defect type name {v!r} must match {_NAME_RE.pattern}")
        return v


class ProductSpec(_Frozen):
    """One product on the line. Its name becomes Triton model names, so it is an identifier."""

    name: str
    object_name: str | None = Field(default=None, description="Noun used in prompts, e.g. 'glass bottle'.")
    defect_types: list[DefectType] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, v: str) -> str:
        return check_product_name(v)


class PipelineConfig(_Frozen):
    """Everything `adinspect fit` needs; serialised into the model package."""

    version: int = CONFIG_VERSION
    preset: str
    product: ProductSpec
    backbone: BackboneConfig
    method: MethodConfig
    calibration: CalibrationConfig = CalibrationConfig()
    scale: ScaleConfig = ScaleConfig()
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        m = self.method
        if m.image_size % 32:
            raise ValueError(f"method.image_size must be a multiple of 32, got {m.image_size}")
        if (m.image_size // 4 // m.global_pool) % m.window:
            raise ValueError(
                f"the global map (image_size/4/global_pool = {m.image_size // 4 // m.global_pool}) "
                f"must split into method.window = {m.window} windows"
            )
        if m.input_shape is not None:
            check_input_shape(m)
        if m.combine == "mean" and m.layer_dim is None:
            raise ValueError("method.combine = 'mean' needs method.layer_dim (layers must share a width)")
        return self


MAX_INPUT_SIDE = 4096


def check_input_shape(method: MethodConfig) -> None:
    """ValueError naming the side of `method.input_shape` that the network cannot take, and a fix."""
    shape, step = method.input_shape, method.side_multiple
    if shape is None:
        return
    h, w = shape
    for name, side in (("height", h), ("width", w)):
        if side % step or not step <= side <= MAX_INPUT_SIDE:
            nearest = min(MAX_INPUT_SIDE, max(step, step * round(side / step)))
            raise ValueError(
                f"method.input_shape {h}x{w} (HxW): the {name} {side} must be a multiple of {step} between "
                f"{step} and {MAX_INPUT_SIDE} (stride 32, and the stride-4 map pooled by global_pool = "
                f"{method.global_pool} splits into window = {method.window} windows), e.g. {nearest}"
            )
    if min(h, w) != method.image_size:
        raise ValueError(
            f"method.input_shape {h}x{w} (HxW): its short side {min(h, w)} must equal method.image_size "
            f"{method.image_size} (S, the short side); set image_size to {min(h, w)}"
        )


def _preset_paper() -> dict:
    return {
        "preset": "paper",
        "backbone": {"name": "wide_resnet50_2"},
        "method": {
            "image_size": 512,
            "layer_dim": 512,
            "combine": "mean",
            "k_neighbors": 50,
            "global_coreset": 0.25,
            "sigma": 3.2,
            "blur_sigma": 4.0,
        },
    }


def _preset_cpu() -> dict:
    return {
        "preset": "cpu",
        "backbone": {"name": "efficientnet_lite0"},
        "method": {
            "image_size": 256,
            "layer_dim": None,
            "k_neighbors": 16,
            "global_coreset": 0.25,
            "sigma": 2.0,
            "blur_sigma": 2.0,
        },
    }


PRESETS = {"paper": _preset_paper, "cpu": _preset_cpu}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def preset_config(preset: str, product: str | ProductSpec = "product", **overrides: dict) -> PipelineConfig:
    """Build a validated config from a named preset.

    Args:
        preset: one of `list_presets()`.
        product: product name or full spec.
        **overrides: per-section dicts merged over the preset, e.g. ``method={"k_neighbors": 8}``.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known presets: {', '.join(list_presets())}")
    raw = PRESETS[preset]()
    raw["product"] = product.model_dump() if isinstance(product, ProductSpec) else {"name": product}
    for section, values in overrides.items():
        if section not in PipelineConfig.model_fields:
            raise ConfigError(
                f"unknown config section {section!r}; known: {', '.join(PipelineConfig.model_fields)}"
            )
        if isinstance(values, dict):
            raw[section] = {**raw.get(section, {}), **values}
        else:
            raw[section] = values
    return validate_config(raw, source=f"preset {preset!r}")


class ConfigError(InputError):
    """A config file or dict that does not validate; the message names the source and fields."""


def validate_config(raw: dict, source: str) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: invalid config"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from exc


def load_config(path: Path) -> PipelineConfig:
    """Load a PipelineConfig from JSON or YAML (by suffix)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    try:
        raw = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{path}: not valid {'YAML' if path.suffix in {'.yaml', '.yml'} else 'JSON'}: {exc}"
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return validate_config(raw, source=str(path))


def save_config(config: PipelineConfig, path: Path) -> None:
    path = Path(path)
    data = json.loads(config.model_dump_json())
    if path.suffix in {".yaml", ".yml"}:
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    else:
        path.write_text(json.dumps(data, indent=2) + "\n")
