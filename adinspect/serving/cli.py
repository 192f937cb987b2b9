"""Serving sub-commands of `adinspect`: `repo build|verify`, `serve`, `inspect`, `bench --serving`.

Wired into `adinspect.cli` by `register(subparsers)` (adds the three commands) and, for the
existing `bench` command, `add_bench_serving_arguments(parser)` + `run_bench_serving(args)`.
Every handler imports what it needs, so none of them loads torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from adinspect.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `repo`, `serve` and `inspect` to the `adinspect` command line."""
    repo = subparsers.add_parser("repo", help="Triton model repository")
    repo_sub = repo.add_subparsers(dest="repo_command", required=True)
    p = repo_sub.add_parser("build", help="write a Triton repository serving fitted packages")
    p.add_argument("--models", type=Path, nargs="+", required=True, help="model packages (one per product)")
    p.add_argument("--flavor", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--out", type=Path, required=True, help="repository directory, e.g. model_repository/")
    p.add_argument("--engines", type=Path, help="gpu: directory of <model>.plan from export/build_trt.py")
    # defaults (None) are RepositorySettings' own, so the CLI and the Python API build the same repository
    p.add_argument("--max-batch-size", type=int, help="largest dynamic batch (default 8)")
    p.add_argument("--max-queue-delay-us", type=int, help="dynamic batcher delay (default 0)")
    p.add_argument(
        "--python-instances",
        type=int,
        help="instances of each inspect_<product> (cpu) or of preprocess/postprocess (gpu); default 2",
    )
    p.add_argument("--threads", type=int, help="cpu: ONNX Runtime threads per instance (default 0 = all)")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument(
        "--precision",
        action="append",
        metavar="[MODEL=]fp32|fp16",
        help="gpu: TensorRT precision of backbone and seg (default fp32), or of one model "
        "(repeat it); residual models stay fp32. Run `repo verify` before serving fp16",
    )
    p.add_argument(
        "--trt-cache-dir", help="gpu: writable engine cache in the server (/var/cache/adinspect-trt)"
    )
    p.set_defaults(func=run_repo_build)
    p = repo_sub.add_parser("update", help="put refitted packages live on a running server (no restart)")
    p.add_argument("--repo", type=Path, required=True, help="the repository the server was started on")
    p.add_argument("--url", default="127.0.0.1:8001", help="the server's gRPC address HOST:PORT")
    p.add_argument(
        "--models", type=Path, nargs="+", required=True, help="refitted packages (served products)"
    )
    p.set_defaults(func=run_repo_update)

    p = repo_sub.add_parser(
        "verify",
        help="check a served repository against the packages' held-out images (exit 1 if any differ)",
    )
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address HOST:PORT")
    p.add_argument("--models", type=Path, nargs="+", required=True, help="the packages the repository serves")
    p.add_argument(
        "--data", type=Path, help="the folder each package was fitted on (default: recorded paths)"
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="largest |served - in-process| score difference, as a fraction of the threshold (0.01)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="deadline per request, seconds")
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.set_defaults(func=run_repo_verify)

    p = subparsers.add_parser("serve", help="run tritonserver (nvidia-pytriton wheel) over a repository")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1", help="address every endpoint binds to (0.0.0.0 exposes it)")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--log-file", type=Path, help="keep Triton's log here too")
    p.add_argument("--quiet", action="store_true", help="do not stream Triton's log to stdout")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument(
        "--restart",
        choices=["no", "on-failure"],
        default="no",
        help="on-failure: start tritonserver again (same ports, shared memory cleaned) when it dies",
    )
    p.add_argument("--max-restarts", type=int, default=5, help="give up after this many restarts in a row")
    p.add_argument(
        "--unverified",
        action="store_true",
        help="serve a repository that has no adinspect manifest (not written by `repo build`)",
    )
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: passed to tritonserver verbatim")
    p.set_defaults(func=run_serve)

    p = subparsers.add_parser("inspect", help="inspect images through a running Triton (gRPC)")
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address HOST:PORT")
    p.add_argument("--product", required=True)
    p.add_argument("images", type=Path, nargs="+", help="image files or folders")
    p.add_argument("--json", type=Path, help="write all results as JSON")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline per request, seconds")
    p.set_defaults(func=run_inspect)


def run_repo_build(args: argparse.Namespace) -> int:
    from adinspect.serving.configs import RepositorySettings
    from adinspect.serving.repository import build_repository

    flags = {
        "max_batch_size": "--max-batch-size",
        "max_queue_delay_us": "--max-queue-delay-us",
        "python_instances": "--python-instances",
        "intra_op_threads": "--threads",
    }
    given = {field: getattr(args, flag[2:].replace("-", "_")) for field, flag in flags.items()}
    given.update(_precision_fields(args.precision or []), trt_cache_dir=args.trt_cache_dir)
    flags.update(precision="--precision", model_precision="--precision", trt_cache_dir="--trt-cache-dir")
    try:
        settings = RepositorySettings(
            **{k: v for k, v in given.items() if v is not None}, warmup=not args.no_warmup
        )
    except ValidationError as exc:
        problems = "; ".join(f"{flags.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors())
        raise InputError(f"repo build: {problems}") from exc
    report = build_repository(args.models, args.flavor, args.out, settings=settings, engines_dir=args.engines)
    print(f"wrote {report.out_dir} ({report.flavor}): models {', '.join(report.models)}")
    print("serve it with: adinspect serve --repo " + str(report.out_dir))
    return 0


def run_repo_update(args: argparse.Namespace) -> int:
    from adinspect.client import _grpc
    from adinspect.serving.reload import update_product

    grpcclient = _grpc()
    client = grpcclient.InferenceServerClient(url=args.url)
    try:
        for model_dir in args.models:
            try:
                report = update_product(args.repo, client, model_dir)
            except grpcclient.InferenceServerException as exc:
                raise InputError(
                    f"repo update: the server at {args.url} refused: {exc.message()} (is it running "
                    "`adinspect serve` on this repository?)"
                ) from exc
            print(
                f"{report.product}: version {report.old_version} → {report.new_version} live "
                f"({', '.join(report.models)})"
            )
    finally:
        client.close()
    return 0


def _precision_fields(values: list[str]) -> dict[str, object]:
    """`--precision fp16 --precision backbone=fp32` → precision / model_precision fields."""
    fields: dict[str, object] = {}
    per_model: dict[str, str] = {}
    for value in values:
        model, _, precision = value.rpartition("=")
        if model:
            per_model[model] = precision
        else:
            fields["precision"] = precision
    if per_model:
        fields["model_precision"] = per_model
    return fields


def run_repo_verify(args: argparse.Namespace) -> int:
    from adinspect.serving.verify import format_table, verify

    report = verify(args.url, args.models, args.data, args.tolerance, timeout_s=args.timeout)
    print(format_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report.model_dump_json(indent=2) + "\n")
    return 0 if report.passed else 1


def run_serve(args: argparse.Namespace) -> int:
    from adinspect.serving.server import ServerStartError, TritonServer

    extra = [a for a in args.extra if a != "--"]
    server = TritonServer(
        args.repo,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        log_file=args.log_file,
        echo=None if args.quiet else sys.stdout,
        extra_args=extra,
        startup_timeout=args.startup_timeout,
        require_manifest=not args.unverified,
    )
    try:
        server.start()
    except ServerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(
            f"Triton ready: grpc {server.grpc_url}, http {server.http_url}, metrics {server.metrics_url} "
            "(Ctrl-C stops it)",
            file=sys.stderr,
        )
        code = server.serve_forever(restart=args.restart, max_restarts=args.max_restarts)
    except KeyboardInterrupt:  # Ctrl-C before serve_forever installed its handler: same stop
        code = 0
    finally:
        server.stop()
    print("Triton stopped", file=sys.stderr)
    return code


def _image_paths(items: list[Path]) -> list[Path]:
    from adinspect.imageio import IMAGE_EXTENSIONS

    paths: list[Path] = []
    for item in items:
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            paths.append(item)
    return paths


def run_inspect(args: argparse.Namespace) -> int:
    from adinspect.client import InspectionClient, InspectionError

    results, failures = [], 0
    with InspectionClient(args.url, deadline_s=args.timeout) as client:
        for path in _image_paths(args.images):
            try:
                r = client.inspect(path, args.product)
            except (InspectionError, OSError) as exc:
                failures += 1
                print(f"SKIP  {path}: {exc}", file=sys.stderr)
                continue
            results.append(r.model_dump())
            print(
                f"{r.verdict.upper():4}  score {r.score:.4g} (threshold {r.threshold:.4g})  "
                f"regions {len(r.regions)}  {r.image}"
            )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failures and not results else 0


# ------------------------------------------------------------------------------ bench --serving


def add_bench_serving_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `adinspect bench` for the Triton comparison (used when --serving is given)."""
    group = parser.add_argument_group("serving (with --serving)")
    group.add_argument("--serving", action="store_true", help="compare in-process vs the Triton ensemble")
    group.add_argument("--url", help="an already running Triton (gRPC HOST:PORT); default: start one here")
    group.add_argument("--concurrency", default="1,2,4,8", help="comma-separated concurrency levels")
    group.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    group.add_argument("--no-perf-analyzer", action="store_true")
    group.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="reliability run instead: SECONDS of load at the highest --concurrency, then malformed images",
    )
    group.add_argument(
        "--fault", action="store_true", help="with --soak: also kill the server mid-load and restart it"
    )


def run_bench_serving(args: argparse.Namespace) -> int:
    """`adinspect bench --serving --model DIR --data DIR --json OUT [--url HOST:PORT]`."""
    from adinspect.data.datasets import open_dataset
    from adinspect.serving.bench import format_table, run_serving_bench

    dataset = open_dataset(Path(args.data))
    images = ([s.path for s in dataset.test] or list(dataset.train))[: args.images]
    levels = [int(v) for v in str(args.concurrency).split(",") if v.strip()]
    if args.soak is not None:
        return _run_soak(args, images, max(levels))
    options = dict(
        concurrency=levels,
        requests_per_level=args.requests,
        warmup=args.warmup,
        threads=args.threads,
        perf_analyzer=not args.no_perf_analyzer,
    )
    if args.url:
        results = run_serving_bench(args.model, images, args.url, args.json, **options)
    else:
        from adinspect.serving.repository import build_repository
        from adinspect.serving.server import TritonServer

        with tempfile.TemporaryDirectory(prefix="adinspect-bench-") as tmp:
            repo = Path(tmp) / "model_repository"
            build_repository([args.model], "cpu", repo)
            with TritonServer(repo, log_file=Path(args.json).with_suffix(".triton.log")) as server:
                results = run_serving_bench(args.model, images, server.grpc_url, args.json, **options)
    print(format_table(results))
    print(f"wrote {args.json} and {Path(args.json).with_suffix('.png')}")
    return 0


def _run_soak(args: argparse.Namespace, images: list[Path], concurrency: int) -> int:
    """`bench --serving --soak SECONDS [--fault]`: see adinspect.serving.soak."""
    from adinspect.serving.soak import format_reliability_table, run_reliability_bench

    if args.soak <= 0:
        raise InputError(f"--soak must be a positive number of seconds, got {args.soak}")
    results = run_reliability_bench(
        args.model,
        images,
        args.json,
        seconds=args.soak,
        concurrency=concurrency,
        url=args.url,
        fault=args.fault,
    )
    print(format_reliability_table(results))
    print(f"wrote {args.json}")
    return 0
