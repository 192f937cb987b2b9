"""Build a TensorRT engine (`<model>.plan` + `<model>.plan.json`) from a repository's ONNX model.

    python export/build_trt.py model_repository/backbone/1/model.onnx --out engines/backbone.plan \
        --max-batch 8 --precision fp16 --timing-cache engines/timing.cache

Run it on the GPU host (same GPU model and TensorRT version as the serving container: an engine
is specific to both). It checks the ONNX first (no TensorRT needed): seg models are refused (their
defect-name output is a string, which TensorRT has no type for) and residual models only build in
fp32 (their ||c||^2 - 2 f.c distances and 1e10 off-grid penalty do not survive fp16). Then it
parses the ONNX, sets one optimisation profile over the dynamic batch axis (min 1, opt
--opt-batch, max --max-batch; other dimensions fixed from the ONNX file), enables FP16 only for
`--precision fp16`, reuses and updates a timing cache, writes the serialized engine and, beside
it, a record of the ONNX's SHA-256, the precision and batch range. `adinspect repo build --flavor
gpu --engines engines/` serves `<model>.plan` with the `tensorrt_plan` platform only when that
SHA-256 matches the ONNX it would serve; a plan built before a refit is refused as stale.
TensorRT is imported only when the checks pass.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from adinspect.contracts import RESIDUAL
from adinspect.repository.gpu import PRECISIONS, PlanRecord, default_opt_batch, record_path, write_record

EXIT_BAD_INPUT = 2


class TensorRTUnavailableError(RuntimeError):
    """TensorRT's Python package cannot be imported here."""


def import_tensorrt():
    """Import TensorRT lazily; raise a clear error where it is absent (every CPU host)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailableError(
            "TensorRT's Python API is not installed: build engines on the GPU host inside the NGC "
            "TensorRT/Triton container, or `pip install tensorrt` there (it needs an NVIDIA GPU and driver)"
        ) from exc
    return trt


class NotBuildableError(ValueError):
    """This ONNX model must not become a TensorRT plan (at this precision)."""


def check_buildable(onnx_path: Path, precision: str) -> None:
    """Refuse what TensorRT must not serve: string tensors (seg), residual models in fp16."""
    try:
        import onnx
    except ImportError as exc:
        raise NotBuildableError("checking the model needs the `onnx` package: pip install onnx") from exc
    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a file that is no model
        raise NotBuildableError(f"{onnx_path}: not an ONNX model ({exc})") from exc
    strings = [
        t.name
        for t in [*graph.input, *graph.output]
        if t.type.tensor_type.elem_type == onnx.TensorProto.STRING
    ]
    if strings:
        raise NotBuildableError(
            f"{onnx_path}: tensors {strings} are strings, which TensorRT cannot produce (a seg model?); "
            "serve it as ONNX (the gpu flavour runs it on ONNX Runtime with TensorRT where it can)"
        )
    inputs = {t.name for t in graph.input} - {t.name for t in graph.initializer}
    if precision != "fp32" and {RESIDUAL.features, RESIDUAL.global_map} <= inputs:
        raise NotBuildableError(
            f"{onnx_path} is a residual model: it builds only with --precision fp32 (its ||c||^2 - 2 f.c "
            "distances and 1e10 off-grid penalty do not survive fp16)"
        )


def build_engine(
    onnx_path: Path,
    out_path: Path,
    *,
    max_batch: int = 8,
    opt_batch: int | None = None,
    precision: str = "fp32",
    timing_cache: Path | None = None,
    workspace_gib: float = 2.0,
) -> Path:
    """Check and parse `onnx_path`, build an engine for batch 1..max_batch, write it to `out_path`
    and its PlanRecord beside it.

    Raises:
        NotBuildableError: a seg model, or a residual model with precision fp16.
        TensorRTUnavailableError: TensorRT is not installed.
        ValueError: the ONNX file does not parse, or an input has a dynamic axis other than batch.
        RuntimeError: TensorRT failed to build the engine.
    """
    check_buildable(onnx_path, precision)
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            print("build_trt: this GPU has no fast FP16; building anyway", file=sys.stderr)
        config.set_flag(trt.BuilderFlag.FP16)

    opt = opt_batch or default_opt_batch(max_batch)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        dims = list(tensor.shape)
        if any(d < 0 for d in dims[1:]):
            raise ValueError(
                f"{onnx_path}: input {tensor.name!r} has shape {dims}; only the batch axis may be dynamic"
            )
        rest = dims[1:]
        profile.set_shape(tensor.name, [1, *rest], [opt, *rest], [max_batch, *rest])
    config.add_optimization_profile(profile)

    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (see the log above)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(bytes(serialized))
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    record = PlanRecord(
        onnx_sha256=hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        precision=precision,  # type: ignore[arg-type]  # checked by argparse choices
        min_batch=1,
        opt_batch=opt,
        max_batch=max_batch,
        tensorrt_version=str(trt.__version__),
    )
    write_record(out_path, record)
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("onnx", type=Path, help="an ONNX model, e.g. model_repository/backbone/1/model.onnx")
    parser.add_argument(
        "--out", type=Path, required=True, help="engine file to write, e.g. engines/backbone.plan"
    )
    parser.add_argument(
        "--max-batch", type=int, default=8, help="largest batch (the repository's max_batch_size)"
    )
    parser.add_argument("--opt-batch", type=int, help="batch TensorRT tunes for (default: max/2)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp16 lets TensorRT use FP16 kernels (not residual)",
    )
    parser.add_argument("--timing-cache", type=Path, help="timing cache file to reuse and update")
    parser.add_argument("--workspace-gib", type=float, default=2.0)
    args = parser.parse_args(argv)
    if not args.onnx.is_file():
        print(f"build_trt: {args.onnx}: no such ONNX file", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not 1 <= (args.opt_batch or 1) <= args.max_batch:
        print(f"build_trt: --opt-batch must be in 1..{args.max_batch}, got {args.opt_batch}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        out = build_engine(
            args.onnx,
            args.out,
            max_batch=args.max_batch,
            opt_batch=args.opt_batch,
            precision=args.precision,
            timing_cache=args.timing_cache,
            workspace_gib=args.workspace_gib,
        )
    except (TensorRTUnavailableError, ValueError) as exc:  # NotBuildableError is a ValueError
        print(f"build_trt: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {out} and {record_path(out)} (the SHA-256 of the ONNX it was built from)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
