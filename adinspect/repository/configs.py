"""config.pbtxt contents of the served pipeline (DESIGN.md §6), as dicts for `pbtxt.to_pbtxt`.

For every product `p` the repository serves `inspect_<p>`, with the same inputs and outputs in
both flavours. The steps behind it are always

    preprocess → backbone → residual_<p> → [seg_<p>] → postprocess

where `residual_<p>` holds the product's bank and, baked in at build time, its calibrated threshold
and product id, and `seg_<p>` (ADClick-Seg, when the package has it) has its calibrated threshold and
defect-type names baked in; it replaces the residual's map, score and threshold and adds the type.

- `gpu`: an ensemble of models. `backbone` is shared by all products of one input shape (they must
  use the same backbone, weights and input spec; a repository serving several input shapes has one
  `preprocess_<H>x<W>`, `backbone_<H>x<W>` and `postprocess_<H>x<W>` per shape, `packages.backbone_groups`)
  and runs, like residual and seg, in `onnxruntime_onnx` with the
  TensorRT accelerator, or `tensorrt_plan` where an engine built by `export/build_trt.py` is given;
  preprocess and postprocess are Python-backend models. The ensemble is generated from a list of
  `Step`s, where the segmentation step slots in between residual and postprocess.
- `cpu` (the tritonserver of the `nvidia-pytriton` wheel has only the Python backend): one
  Python-backend model per product running all the steps (`steps.ProductPipeline`) on ONNX Runtime.
  Each Python-backend hop is a stub round trip with its tensors copied through shared memory; as
  an ensemble of four such hops the served p50 was 1.37x the in-process one (`bench --serving`).
  The price: each product loads its own copy of the backbone (EfficientNet-Lite0: 14 MB).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from adinspect.contracts import (
    BACKBONE,
    BACKBONE_MODEL,
    INSPECT_IN,
    INSPECT_OUT,
    POSTPROCESS_IN,
    POSTPROCESS_MODEL,
    PREPROCESS_MODEL,
    PREPROCESS_OUT,
    RESIDUAL,
    RESIDUAL_OUT,
    SEG,
    SEG_OUT,
    ensemble_model,
    residual_model,
    seg_model,
    shared_model,
)
from adinspect.repository.gpu import tensorrt_accelerator
from adinspect.repository.pbtxt import Enum, parameters
from adinspect.repository.settings import RepositorySettings
from adinspect.repository.tensors import ensemble_io, tensor


@dataclass(frozen=True)
class Step:
    """One ensemble step: model input name → ensemble tensor, model output name → ensemble tensor."""

    model: str
    inputs: dict[str, str]
    outputs: dict[str, str]


def seg_step(product: str) -> Step:
    """`seg_<product>`: residual → the map, score, threshold and defect type postprocess reads."""
    return Step(
        seg_model(product),
        {SEG.residual: "residual"},
        {
            SEG_OUT.anomaly_map: "map",
            SEG_OUT.score: "raw_score",
            SEG_OUT.threshold: "product_threshold",
            SEG_OUT.defect_name: "defect_name",
        },
    )


def ensemble_steps(
    product: str, segmentation: Step | None = None, shared: str = "", raw: bool = False
) -> list[Step]:
    """The steps of `inspect_<product>`; a segmentation step replaces the residual's map and score.
    `shared` is the suffix of the shared models the product runs on ("" or "<H>x<W>").

    With `segmentation`, it reads the ensemble tensor "residual" and must write "map",
    "raw_score" and "product_threshold" (its own calibrated threshold: its score is on another
    scale); postprocess then reads those, and "defect_name" when the step writes it. `raw`: the
    ensemble has an image_raw input (`RepositorySettings.raw_size`).
    """
    residual_outputs = {
        RESIDUAL_OUT.anomaly_map: "map",
        RESIDUAL_OUT.score: "raw_score",
        RESIDUAL_OUT.threshold: "product_threshold",
    }
    if segmentation is not None:
        residual_outputs = {RESIDUAL_OUT.residual: "residual"}
    residual_outputs[RESIDUAL_OUT.product_id] = "product_id"  # metrics only (repository/monitoring.py)
    steps = [
        Step(
            shared_model(PREPROCESS_MODEL, shared),
            {name: name for name in (INSPECT_IN.image_bytes, *([INSPECT_IN.image_raw] if raw else []))},
            {PREPROCESS_OUT.image: "image", PREPROCESS_OUT.original_size: "original_size"},
        ),
        Step(
            shared_model(BACKBONE_MODEL, shared),
            {BACKBONE.image: "image"},
            {BACKBONE.features: "features", BACKBONE.global_map: "global_map"},
        ),
        Step(
            residual_model(product),
            {RESIDUAL.features: "features", RESIDUAL.global_map: "global_map"},
            residual_outputs,
        ),
    ]
    post_inputs = {
        POSTPROCESS_IN.anomaly_map: "map",
        POSTPROCESS_IN.score: "raw_score",
        POSTPROCESS_IN.threshold: "product_threshold",
        POSTPROCESS_IN.original_size: "original_size",
        POSTPROCESS_IN.map_format: INSPECT_IN.map_format,
        POSTPROCESS_IN.product_id: "product_id",
    }
    if segmentation is not None:
        steps.append(segmentation)
        if "defect_name" in segmentation.outputs.values():
            post_inputs[POSTPROCESS_IN.defect_type] = "defect_name"
    post = shared_model(POSTPROCESS_MODEL, shared)
    steps.append(Step(post, post_inputs, {name: name for name in INSPECT_OUT}))
    return steps


# ------------------------------------------------------------------------------- tensor configs


def preprocess_model(
    settings: RepositorySettings,
    preprocess_spec_json: str,
    input_shape: tuple[int, int],
    name: str = PREPROCESS_MODEL,
) -> dict[str, Any]:
    """gpu: `preprocess`; it warms up in `initialize` (a black image through the decoder), as the
    cpu flavour's `inspect_<product>` does."""
    inputs = [t for t in ensemble_io(settings.raw_size)[0] if t["name"] != INSPECT_IN.map_format]
    outputs = [
        tensor(PREPROCESS_OUT.image, "TYPE_FP32", [3, *input_shape]),
        tensor(PREPROCESS_OUT.original_size, "TYPE_INT32", [2]),
    ]
    params = {
        "preprocess_spec": preprocess_spec_json,
        **limits(settings),
        "warmup": json.dumps(settings.warmup),
    }
    return python_model(name, settings, inputs, outputs, params)


def limits(settings: RepositorySettings) -> dict[str, str]:
    """What the decoding models refuse before decoding: the pixel limit and the decode budget."""
    return {"max_pixels": str(settings.max_pixels), "max_decode_bytes": str(settings.decode_budget_bytes)}


def product_model(
    product: str, settings: RepositorySettings, params: dict[str, Any], preprocess_spec_json: str
) -> dict[str, Any]:
    """`inspect_<product>` of the cpu flavour: one Python model, the ensemble's inputs and outputs.

    `params` are the ensemble's (for clients); the model itself reads the input spec, the pixel
    limit, its ONNX Runtime threads and whether to warm up. It warms up in `initialize`, not with
    Triton's `model_warmup`, whose requests it could not tell from a camera's in its metrics.
    """
    inputs, outputs = ensemble_io(settings.raw_size)
    own = {
        "preprocess_spec": preprocess_spec_json,
        **limits(settings),
        "intra_op_threads": str(settings.intra_op_threads),
        "warmup": json.dumps(settings.warmup),
    }
    return python_model(ensemble_model(product), settings, inputs, outputs, {**params, **own})


def postprocess_model(
    settings: RepositorySettings, input_shape: tuple[int, int], name: str = POSTPROCESS_MODEL
) -> dict[str, Any]:
    inputs = [
        tensor(POSTPROCESS_IN.anomaly_map, "TYPE_FP32", [1, *input_shape]),
        tensor(POSTPROCESS_IN.score, "TYPE_FP32", [1]),
        tensor(POSTPROCESS_IN.threshold, "TYPE_FP32", [1]),
        tensor(POSTPROCESS_IN.original_size, "TYPE_INT32", [2]),
        tensor(POSTPROCESS_IN.map_format, "TYPE_STRING", [1], optional=True),
        tensor(POSTPROCESS_IN.defect_type, "TYPE_STRING", [1], optional=True),
        tensor(POSTPROCESS_IN.product_id, "TYPE_INT32", [1], optional=True),
    ]
    return python_model(name, settings, inputs, ensemble_io()[1], {})


# ------------------------------------------------------------------------------- model configs


def _batching(settings: RepositorySettings) -> dict[str, Any]:
    return {
        "max_batch_size": settings.max_batch_size,
        "dynamic_batching": {
            "max_queue_delay_microseconds": settings.max_queue_delay_us,
            "default_queue_policy": {
                "timeout_action": Enum("REJECT"),
                "default_timeout_microseconds": settings.queue_timeout_ms * 1000,
                "allow_timeout_override": True,
                "max_queue_size": settings.max_queue_size,
            },
        },
    }


def python_model(
    name: str, settings: RepositorySettings, inputs, outputs, params: dict[str, Any]
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name,
        "backend": "python",
        **_batching(settings),
        "input": inputs,
        "output": outputs,
        "instance_group": [{"kind": Enum("KIND_CPU"), "count": settings.python_instances}],
    }
    if params:
        config["parameters"] = parameters(params)
    return config


def _zero_warmup(inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": "zeros",
            "batch_size": 1,
            "inputs": [
                {
                    "key": t["name"],
                    "value": {"data_type": t["data_type"], "dims": t["dims"], "zero_data": True},
                }
                for t in inputs
            ],
        }
    ]


def onnx_model(
    name: str,
    settings: RepositorySettings,
    io: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    has_engine: bool,
    onnx_sha256: str = "",
) -> dict[str, Any]:
    """backbone / residual_<p> / seg_<p> of the gpu flavour: tensorrt_plan, or ONNX Runtime with
    the TensorRT accelerator. `onnx_sha256` (of the served ONNX) keys ORT's engine cache."""
    inputs, outputs = io
    config: dict[str, Any] = {
        "name": name,
        "platform": "tensorrt_plan" if has_engine else "onnxruntime_onnx",
        **_batching(settings),
        "input": inputs,
        "output": outputs,
        "instance_group": [{"kind": Enum("KIND_GPU"), "count": settings.gpu_instances}],
    }
    if not has_engine:
        accelerator = tensorrt_accelerator(
            name,
            inputs,
            settings.precision_of(name),
            settings.max_batch_size,
            settings.trt_opt_batch,
            settings.trt_cache_dir,
            onnx_sha256,
        )
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [accelerator]}}
    if settings.warmup:
        config["model_warmup"] = _zero_warmup(inputs)
    return config


def ensemble(
    product: str,
    steps: list[Step],
    params: dict[str, Any],
    versions: dict[str, int] | None = None,
    raw_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """`inspect_<product>`: configuration only; `params` (threshold, versions) are for clients.

    `versions` pins the product's own steps to one model version, so that `repo update` switches a
    product's residual and seg models together, by reloading this ensemble; shared steps use -1.
    """
    versions = versions or {}
    inputs, outputs = ensemble_io(raw_size)
    return {
        "name": ensemble_model(product),
        "platform": "ensemble",
        "max_batch_size": 1,  # one image per request; the steps batch concurrent requests
        "input": inputs,
        "output": outputs,
        "parameters": parameters(params),
        "ensemble_scheduling": {
            "step": [
                {
                    "model_name": step.model,
                    "model_version": versions.get(step.model, -1),
                    "input_map": [{"key": k, "value": v} for k, v in step.inputs.items()],
                    "output_map": [{"key": k, "value": v} for k, v in step.outputs.items()],
                }
                for step in steps
            ]
        },
    }
