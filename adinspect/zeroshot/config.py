"""Typed settings of zero-shot mutual scoring (MuSc, DESIGN.md §9) and of cleaning a good set.

Frozen and closed like `adinspect.config`: a typo in a field name is an error, not a default.
The authors use CLIP ViT-L/14-336 (layers 5/11/17/23 at 518²), which is not available offline;
here the features come from a registered offline backbone (`adinspect backbones`), so the layers
are indices into that backbone's feature maps (EfficientNet-Lite0: 0, 1, 2 = strides 4, 8, 16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adinspect.errors import InputError


class ZeroShotError(InputError):
    """Zero-shot scoring cannot proceed (too few images, bad config); the message says what to do."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ZeroShotConfig(_Frozen):
    """LNAMD + MSM + RsCIN over one unlabelled batch."""

    backbone: str = Field(default="efficientnet_lite0", description="Registered backbone name.")
    weights: Path | None = Field(default=None, description="Weights file; None = the offline default.")
    image_size: int = Field(default=256, ge=64, le=2048, description="Images are resized to S x S.")
    layers: tuple[int, ...] = Field(
        default=(1, 2), min_length=1, description="Indices into the backbone's feature maps."
    )
    max_grid: int = Field(
        default=32, ge=4, description="A layer finer than this grid is average-pooled down to it."
    )
    degrees: tuple[int, ...] = Field(
        default=(1, 3, 5), min_length=1, description="LNAMD aggregation degrees r (odd): r x r patches."
    )
    feature_dim: int | None = Field(
        default=None, ge=4, description="LNAMD output width per layer; None keeps the layer's channels."
    )
    lowest: tuple[float, float] = Field(
        default=(0.0, 0.3), description="MSM: mean over this interval of the sorted per-image distances."
    )
    rscin_feature: Literal["embedding", "pooled_map"] = Field(
        default="embedding",
        description="RsCIN image similarity from the backbone classifier's pooled embedding (as the "
        "authors use CLIP's image embedding) or from the average-pooled last feature map.",
    )
    rscin_k: tuple[int, ...] = Field(
        default=(1, 2, 3), min_length=1, description="RsCIN neighbourhood sizes (self included)."
    )
    blur_sigma: float = Field(default=2.0, ge=0.0, description="Gaussian blur of the map, pixels at S.")
    block_kb: int = Field(
        default=1024,
        ge=4,
        description="Size of one block of patch-to-patch similarities; small enough to stay in cache.",
    )
    workers: int | None = Field(
        default=None, ge=1, description="Threads scoring image pairs; None = torch.get_num_threads()."
    )
    batch_size: int = Field(default=8, ge=1, description="Images per backbone forward pass.")

    @model_validator(mode="after")
    def _consistent(self) -> ZeroShotConfig:
        if any(r < 1 or r % 2 == 0 for r in self.degrees):
            raise ValueError(f"degrees must be odd and >= 1, got {self.degrees}")
        lo, hi = self.lowest
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"lowest must satisfy 0 <= lo < hi <= 1, got {self.lowest}")
        if any(k < 1 for k in self.rscin_k):
            raise ValueError(f"rscin_k must be >= 1, got {self.rscin_k}")
        if len(set(self.layers)) != len(self.layers) or min(self.layers) < 0:
            raise ValueError(f"layers must be distinct non-negative indices, got {self.layers}")
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {self.image_size}")
        return self


class CleanConfig(_Frozen):
    """`fit --clean`: drop training images whose mutual score stands out (robust z-score)."""

    z_max: float = Field(
        default=3.0, gt=0.0, description="Drop an image when (score - median) / (1.4826 * MAD) > z_max."
    )
    zeroshot: ZeroShotConfig = Field(
        default=ZeroShotConfig(layers=(2,), degrees=(3,), rscin_k=(1,)),
        description="Image-level outliers only: the stride-16 layer on its 16² grid, one degree, no RsCIN "
        "(cheap enough for a few hundred training images).",
    )


def zeroshot_config(overrides: dict | None = None) -> ZeroShotConfig:
    """A validated ZeroShotConfig from field overrides; errors name the field."""
    try:
        return ZeroShotConfig.model_validate(overrides or {})
    except ValidationError as exc:
        lines = ["invalid zero-shot config"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ZeroShotError("\n".join(lines)) from exc
