"""Settings of `adinspect train-unified` (one InvAD model for several products)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UnifiedSettings(BaseModel):
    """Settings of `train_unified`; model sizes as `InvADConfig` (reference values there)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: str = "efficientnet_lite0"
    image_size: int = Field(default=256, ge=64, le=1024)
    pad: int = Field(default=16, ge=0, description="reflection (px per side) before the backbone")
    steps: int = Field(default=2000, ge=1)
    batch_size: int = Field(default=16, ge=2)
    lr: float | None = Field(default=None, gt=0, description="None: the reference's 0.001 · batch / 8.")
    decay_at: float = Field(default=0.8, gt=0, le=1, description="Fraction of steps after which lr / 10.")
    ema_decay: float = Field(default=0.995, ge=0, lt=1)
    seed: int = 0
    checkpoint_every: int = Field(default=100, ge=1)
    style_width: int = 64
    latent_channels: int = 16
    blocks_per_scale: int = Field(default=1, ge=1, description="StyledResBlocks per scale (reference: 2)")
    style_kernel: int = 3
    blur_sigma: float = 4.0
    holdout_fraction: float = Field(default=0.1, gt=0.0, lt=0.5, description="per product, never trained on")
    min_holdout: int = Field(default=4, ge=2)
    target_frr: float = Field(
        default=0.01, gt=0.0, lt=0.5, description="each product's threshold: target false-reject rate"
    )

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else 0.001 * self.batch_size / 8
