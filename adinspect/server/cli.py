"""Server sub-commands of `adinspect`: `repo build|update|verify` and `serve`.

Wired into `adinspect.cli` by `add_commands(subparsers)`. Every handler imports what it needs, so
none of them loads torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from adinspect.errors import InputError

if TYPE_CHECKING:
    from adinspect.server.launch import TritonServer


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `repo` and `serve` to the `adinspect` command line."""
    repo = subparsers.add_parser("repo", help="Triton model repository")
    repo_commands(repo.add_subparsers(dest="repo_command", required=True))
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
        "--restart-backoff",
        type=float,
        default=1.0,
        help="seconds before the first restart; doubled for each further one in a row, at most 30",
    )
    p.add_argument(
        "--healthy-reset",
        type=float,
        default=600.0,
        help="seconds ready after which a server that dies has all its restarts again (default 600)",
    )
    p.add_argument(
        "--unverified",
        action="store_true",
        help="serve a repository that has no adinspect manifest (not written by `repo build`)",
    )
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: passed to tritonserver verbatim")
    p.set_defaults(func=run_serve)


def repo_commands(repo_sub: argparse._SubParsersAction) -> None:
    """`repo build`, `repo update` and `repo verify`."""
    _add_build(repo_sub)
    _add_update(repo_sub)
    _add_verify(repo_sub)


def _add_build(repo_sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--decode-budget-mib", type=int, help="most memory one image may take to decode, MiB (default 512)"
    )
    p.add_argument(
        "--raw-size",
        metavar="HxW",
        help="also accept raw uint8 pixels (image_raw) of exactly this size; default: encoded images only",
    )
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


def _add_update(repo_sub: argparse._SubParsersAction) -> None:
    p = repo_sub.add_parser("update", help="put refitted packages live on a running server (no restart)")
    p.add_argument("--repo", type=Path, required=True, help="the repository the server was started on")
    p.add_argument("--url", default="127.0.0.1:8001", help="the server's gRPC address HOST:PORT")
    p.add_argument(
        "--models", type=Path, nargs="+", required=True, help="refitted packages (served products)"
    )
    p.set_defaults(func=run_repo_update)


def _add_verify(repo_sub: argparse._SubParsersAction) -> None:
    p = repo_sub.add_parser(
        "verify",
        help="check a served repository against the packages' held-out images (exit 1 if any differ)",
    )
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address HOST:PORT")
    p.add_argument("--models", type=Path, nargs="+", required=True, help="the packages the repository serves")
    p.add_argument(
        "--data",
        type=Path,
        help="the folder each package was fitted on, or holding a unified package's product folders "
        "(default: recorded paths)",
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


def run_repo_build(args: argparse.Namespace) -> int:
    from adinspect.repository.build import build_repository
    from adinspect.repository.settings import RepositorySettings

    flags = {
        "max_batch_size": "--max-batch-size",
        "max_queue_delay_us": "--max-queue-delay-us",
        "python_instances": "--python-instances",
        "intra_op_threads": "--threads",
        "decode_budget_mib": "--decode-budget-mib",
    }
    given = {field: getattr(args, flag[2:].replace("-", "_")) for field, flag in flags.items()}
    given["raw_size"] = _raw_size(args.raw_size)
    flags["raw_size"] = "--raw-size"
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
    from adinspect.client.grpc import tritonclient_grpc
    from adinspect.server.reload import update_product

    grpcclient = tritonclient_grpc()
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


def _raw_size(text: str | None) -> tuple[int, int] | None:
    """`--raw-size 1080x1920` → (1080, 1920)."""
    if text is None:
        return None
    height, _, width = text.lower().partition("x")
    if not (height.isdigit() and width.isdigit()):
        raise InputError(
            f"repo build: --raw-size must be HEIGHTxWIDTH in pixels, e.g. 1080x1920, got {text!r}"
        )
    return int(height), int(width)


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
    from adinspect.repository.verify import format_table, verify

    report = verify(args.url, args.models, args.data, args.tolerance, timeout_s=args.timeout)
    print(format_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report.model_dump_json(indent=2) + "\n")
    return 0 if report.passed else 1


def run_serve(args: argparse.Namespace) -> int:
    from adinspect.server.launch import ServerStartError, TritonNotFoundError, TritonServer
    from adinspect.server.supervise import RestartPolicy, StopRequest, Supervisor, stop_on_signals

    try:
        policy = RestartPolicy(
            args.restart, args.max_restarts, args.restart_backoff, budget_reset_s=args.healthy_reset
        )
    except ValueError as exc:
        raise InputError(f"serve: {exc}") from exc
    server = TritonServer(
        args.repo,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        log_file=args.log_file,
        echo=None if args.quiet else sys.stdout,
        extra_args=[a for a in args.extra if a != "--"],
        startup_timeout=args.startup_timeout,
        require_manifest=not args.unverified,
    )
    stop = StopRequest()  # SIGTERM/SIGINT from here on: one clean stop, however many arrive
    with stop_on_signals(stop):
        try:
            code = Supervisor(server, policy, stop, sys.stderr, on_ready=lambda: _announce(server)).run()
        except (ServerStartError, TritonNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 1 if isinstance(exc, ServerStartError) else 2
        finally:
            if stop.is_set():
                print("adinspect serve: stopping: draining, then stopping tritonserver", file=sys.stderr)
            server.stop()
    print("Triton stopped" + (f" ({', '.join(stop.signals)})" if stop.signals else ""), file=sys.stderr)
    return code


def _announce(server: TritonServer) -> None:
    print(
        f"Triton ready: grpc {server.grpc_url}, http {server.http_url}, metrics {server.metrics_url} "
        "(Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
