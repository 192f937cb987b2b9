"""The `gpu` flavour's TensorRT parts: precision rules, ORT's TensorRT accelerator, and plans.

ONNX models run on Triton's onnxruntime backend with the TensorRT execution accelerator; its
parameters (names as parsed by the backend's src/onnxruntime.cc, r24.10 = Triton 2.51, and
listed in the onnxruntime_backend README, "TensorRT Execution Provider" parameter table) are
`precision_mode`, `max_workspace_size_bytes`, `trt_engine_cache_enable`, `trt_engine_cache_path`
and `trt_profile_min_shapes` / `_opt_shapes` / `_max_shapes` ("input:1x3x256x256,..."; Triton
24.04 and later: 24.03 rejected them as unknown).

`export/build_trt.py` writes `<model>.plan` and, beside it, `<model>.plan.json` (a `PlanRecord`):
the SHA-256 of the ONNX bytes it was built from, its precision and batch range. `repo build
--engines DIR` serves a plan only when that SHA-256 equals the ONNX it would otherwise serve (the
package's backbone.onnx, or the residual model with the product's threshold baked in), so a plan
built before a refit is refused, not silently served with an old bank or threshold.

Precision rules (DESIGN.md §7: thresholds are calibrated in FP32):
- `residual_<product>` is always FP32: its distances are ||c||^2 - 2 f.c of features whose squared
  norms are large, so FP16 loses the small differences that decide the nearest reference, and its
  1e10 off-grid penalty is beyond FP16's range (max 65504) and would become inf.
- `seg_<product>` has no plan at all: it outputs the defect type's name as a string tensor, which
  TensorRT has no type for; it is served by ONNX Runtime (TensorRT takes the subgraphs it can).
- `backbone` follows `--precision` (default fp32); fp16 must pass `adinspect repo verify`.
Imports pydantic only (no torch, no TensorRT).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adinspect.errors import InputError

Precision = Literal["fp32", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16")
PLAN_SUFFIX = ".plan"
RECORD_SUFFIX = ".plan.json"
RESIDUAL_PREFIX = "residual_"
SEG_PREFIX = "seg_"


class EngineError(InputError):
    """A TensorRT plan that must not be served (stale, wrong precision, seg, no record)."""


class PlanRecord(BaseModel):
    """`<model>.plan.json`: what a plan was built from and for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    onnx_sha256: str = Field(description="SHA-256 of the ONNX file the plan was built from.")
    precision: Precision
    min_batch: int = Field(ge=1)
    opt_batch: int = Field(ge=1)
    max_batch: int = Field(ge=1)
    tensorrt_version: str


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_path(plan: Path) -> Path:
    return plan.with_name(plan.name.removesuffix(PLAN_SUFFIX) + RECORD_SUFFIX)


def write_record(plan: Path, record: PlanRecord) -> Path:
    path = record_path(plan)
    path.write_text(record.model_dump_json(indent=2) + "\n")
    return path


def read_record(plan: Path) -> PlanRecord:
    path = record_path(plan)
    if not path.is_file():
        raise EngineError(
            f"{plan} has no {path.name} recording the ONNX it was built from; rebuild it with "
            "export/build_trt.py (it writes both files)"
        )
    try:
        return PlanRecord.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise EngineError(f"{path}: not a plan record ({exc.errors()[0]['msg']}); rebuild the plan") from exc


def default_opt_batch(max_batch: int) -> int:
    """The batch TensorRT tunes for (also export/build_trt.py's default)."""
    return max(1, max_batch // 2)


def _shapes(inputs: list[dict[str, Any]], batch: int) -> str:
    return ",".join(f"{t['name']}:" + "x".join(str(d) for d in [batch, *t["dims"]]) for t in inputs)


def tensorrt_accelerator(
    model: str,
    inputs: list[dict[str, Any]],
    precision: Precision,
    max_batch: int,
    opt_batch: int | None,
    cache_dir: str,
    onnx_sha256: str,
) -> dict[str, Any]:
    """The `gpu_execution_accelerator` entry of an onnxruntime_onnx model.

    One explicit profile over batch 1..max_batch (other dimensions are fixed), so ORT builds one
    engine at load time instead of rebuilding whenever a larger batch arrives. Engines are cached
    under `<cache_dir>/<model>/<first 16 hex of the ONNX's SHA-256>`: ORT's engine file names do
    not change with the weights (its TensorRT EP docs ask to clear the cache when the model
    changes), so a refitted bank gets a new directory instead of a stale engine.
    """
    check_requested(model, precision)
    opt = opt_batch or default_opt_batch(max_batch)
    if not 1 <= opt <= max_batch:
        raise EngineError(f"TensorRT opt batch must be in 1..{max_batch}, got {opt}")
    params = {
        "precision_mode": precision.upper(),
        "max_workspace_size_bytes": str(1 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": f"{cache_dir.rstrip('/')}/{model}/{onnx_sha256[:16]}",
        "trt_profile_min_shapes": _shapes(inputs, 1),
        "trt_profile_opt_shapes": _shapes(inputs, opt),
        "trt_profile_max_shapes": _shapes(inputs, max_batch),
    }
    return {"name": "tensorrt", "parameters": [{"key": k, "value": v} for k, v in params.items()]}


def fixed_precision(model: str) -> Precision | None:
    """The precision a model must have whatever `--precision` says (None: the user chooses)."""
    return "fp32" if model.startswith(RESIDUAL_PREFIX) else None


def check_requested(model: str, precision: Precision) -> None:
    """Refuse fp16 for a residual model, with the reason."""
    fixed = fixed_precision(model)
    if fixed is not None and precision != fixed:
        raise EngineError(
            f"--precision {model}={precision}: residual models stay {fixed} (their ||c||^2 - 2 f.c "
            "distances and 1e10 off-grid penalty do not survive fp16); drop this override"
        )


def select_plan(
    engines_dir: Path | None, model: str, onnx_bytes: bytes, precision: Precision, max_batch: int
) -> Path | None:
    """The plan to serve for `model`, or None (serve the ONNX); refuse plans that do not match.

    Args:
        engines_dir: `--engines DIR` of `repo build` (None: no plans).
        model: the repository model name, e.g. "backbone" or "residual_bottle".
        onnx_bytes: the ONNX the repository would serve for this model without a plan.
        precision: the precision this model is to run at.
        max_batch: the repository's max_batch_size, which the plan's profile must cover.
    """
    if engines_dir is None:
        return None
    plan = Path(engines_dir) / f"{model}{PLAN_SUFFIX}"
    if not plan.is_file():
        return None
    if model.startswith(SEG_PREFIX):
        raise EngineError(
            f"{plan}: seg models are not served as TensorRT plans (their defect-name output is a "
            "string, which TensorRT cannot produce); remove the file, ONNX Runtime serves seg"
        )
    record = read_record(plan)
    digest = sha256_bytes(onnx_bytes)
    if record.onnx_sha256 != digest:
        raise EngineError(
            f"{plan} is stale: built from ONNX {record.onnx_sha256[:12]}, the repository's {model} is "
            f"{digest[:12]}; rebuild it from the model.onnx of a repository built without --engines"
        )
    check_requested(model, record.precision)  # a residual plan built fp16 (with the reason)
    if record.precision != precision:
        raise EngineError(
            f"{plan} was built {record.precision}, but {model} is to run {precision}; rebuild it "
            f"or pass --precision {model}={record.precision}"
        )
    if record.min_batch > 1 or record.max_batch < max_batch:
        raise EngineError(
            f"{plan} covers batches {record.min_batch}..{record.max_batch}, the repository needs "
            f"1..{max_batch}; rebuild it with --max-batch {max_batch} or lower --max-batch-size"
        )
    return plan
