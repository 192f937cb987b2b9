"""Settings of a built repository: batching, instances, limits and TensorRT precision, written into
the generated config.pbtxt files (`repo build` flags, RepositorySettings' defaults)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from adinspect.imageio import DEFAULT_DECODE_BUDGET, DEFAULT_MAX_PIXELS
from adinspect.repository.gpu import Precision, check_requested, fixed_precision

Flavor = Literal["cpu", "gpu"]


class RepositorySettings(BaseModel):
    """Batching, instances and limits written into the generated config.pbtxt files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch_size: int = Field(default=8, ge=1, description="Largest batch the dynamic batcher forms.")
    # 0: requests that queue while an instance is busy are still batched, and an idle server adds
    # no wait. On 2 CPU cores 0, 500 and 2000 us gave the same throughput at concurrency 4 and 8,
    # and 0 the lowest latency at concurrency 1. A GPU host may trade a little latency for batches.
    max_queue_delay_us: int = Field(default=0, ge=0, description="How long a request may wait for a batch.")
    python_instances: int = Field(
        default=2,
        ge=1,
        description="Python-backend instances: each inspect_<product> (cpu), preprocess/postprocess (gpu).",
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime threads per instance; 0 = all cores."
    )
    gpu_instances: int = Field(
        default=1, ge=1, description="backbone/residual instances per GPU (gpu flavour)."
    )
    # Overload fails fast (DESIGN.md §7): a step whose queue is full, or where a request waited
    # longer than the timeout, answers UNAVAILABLE at once instead of letting latency grow without
    # bound; the client retries within its deadline. 32 queued per step keeps concurrency 16 (two
    # requests per camera for eight cameras) from ever being refused.
    max_queue_size: int = Field(default=32, ge=1, description="Requests a step may queue before refusing.")
    queue_timeout_ms: int = Field(
        default=5000, ge=1, description="Longest wait in a step's queue before the request is refused."
    )
    # gpu flavour (adinspect.repository.gpu): residual models are FP32 whatever these say
    precision: Precision = Field(default="fp32", description="TensorRT precision of backbone and seg.")
    model_precision: dict[str, Precision] = Field(
        default_factory=dict, description="Per-model precision, e.g. {'backbone': 'fp16'}."
    )
    trt_opt_batch: int | None = Field(default=None, ge=1, description="Batch TensorRT tunes for.")
    trt_cache_dir: str = Field(
        default="/var/cache/adinspect-trt", description="Writable, persistent engine cache in the server."
    )
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=64, description="Largest image accepted, H*W.")
    decode_budget_mib: int = Field(
        default=DEFAULT_DECODE_BUDGET // 2**20,
        ge=1,
        description="Most memory one image may take to decode (MiB), known from its header before decoding.",
    )
    # Raw pixels (image_raw) reach the Python backend through its shared-memory region, which grows
    # to fit the largest request and never shrinks; only a fixed shape lets Triton refuse any other
    # before the copy. Encoded bytes (image_bytes) are what a camera sends, sized from the header.
    raw_size: tuple[int, int] | None = Field(
        default=None, description="Accept image_raw of exactly this (height, width); None: no raw input."
    )
    warmup: bool = True

    @field_validator("raw_size")
    @classmethod
    def _raw_size_fits(cls, value: tuple[int, int] | None, info: ValidationInfo) -> tuple[int, int] | None:
        limit = info.data.get("max_pixels", DEFAULT_MAX_PIXELS)
        if value is not None and (min(value) < 8 or value[0] * value[1] > limit):
            raise ValueError(
                f"must be at least 8 x 8 and at most {limit} pixels in all, got {value[0]} x {value[1]}"
            )
        return value

    @property
    def decode_budget_bytes(self) -> int:
        return self.decode_budget_mib * 2**20

    @field_validator("model_precision")
    @classmethod
    def _residual_stays_fp32(cls, value: dict[str, Precision]) -> dict[str, Precision]:
        for model, precision in value.items():
            check_requested(model, precision)
        return value

    def precision_of(self, model: str) -> Precision:
        """What `model` runs at under TensorRT: fixed FP32 for residual models, else as asked."""
        return fixed_precision(model) or self.model_precision.get(model, self.precision)
