"""Result schemas shared by the in-process inspector, the Triton client and the CLI (no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["pass", "fail"]


class Region(BaseModel):
    """One connected defect region, in original-image pixel coordinates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    x: int = Field(description="Left edge of the bounding box.")
    y: int = Field(description="Top edge of the bounding box.")
    width: int
    height: int
    area: int = Field(description="Pixels above the threshold inside the region.")
    peak_score: float


class InspectionResult(BaseModel):
    """What one image gets back: score, verdict, the threshold that decided it, and regions."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="File name or request id of the image.")
    product: str
    score: float
    threshold: float
    verdict: Verdict
    reason: str = Field(default="", description="Why it failed ('' for a pass); fail-closed cases say so.")
    regions: list[Region] = Field(default_factory=list)
    defect_type: str | None = Field(default=None, description="Highest-scoring defect type (ADClick-Seg).")
    random_weights: bool = Field(default=False, description="Made with a randomly initialised backbone.")
