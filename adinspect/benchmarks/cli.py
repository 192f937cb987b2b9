"""Benchmark commands of `adinspect`: `bench` (in-process, or `--serving` against Triton, `--soak`,
`--fault`), `bench-scale` and `bench-annotate` (wired into `adinspect` by `add_commands`).
Every handler imports what it needs."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from adinspect.errors import InputError
from adinspect.fitting.cli import positive_int


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `bench`, `bench-scale`, `bench-annotate`, `bench-peer` and `probe`."""
    from adinspect.benchmarks import peer_cli, probe_cli

    peer_cli.add_commands(sub)
    probe_cli.add_commands(sub)
    _add_bench(sub)

    p = sub.add_parser("bench-scale", help="fit time, memory, package size and latency against bank size")
    p.add_argument("--data", type=Path, required=True, help="a dataset with good training and test images")
    p.add_argument(
        "--out", type=Path, required=True, help="folder for scale.json/.md/.png, subsets, packages"
    )
    p.add_argument("--presets", nargs="+", default=["cpu", "paper"])
    p.add_argument("--sizes", nargs="+", type=positive_int("--sizes"), default=[25, 50, 100, 200, 400])
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="random backbone weights where none are offline (the paper preset's WRN50); labelled so",
    )
    p.add_argument("--images", type=int, default=10, help="test images timed per point")
    p.add_argument(
        "--generated-features",
        nargs="*",
        default=[],
        metavar="PRESET",
        help="presets whose fit skips the backbone: features generated at the preset's shapes",
    )
    p.add_argument(
        "--subset-fractions",
        nargs="+",
        type=float,
        metavar="F",
        help="instead: image AUROC/AUPRO of k-center banks at these fractions of the references "
        "(first of --presets; the images are embedded once)",
    )
    p.set_defaults(func=cmd_bench_scale)

    p = sub.add_parser("bench-annotate", help="a scripted annotator drives the annotate API (NoC, latency)")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--subset", default="eval", help="all, labelled or eval (as evaluate-clicks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--threads", type=int)
    p.add_argument("--compare", type=Path, help="an evaluate-clicks JSON of the same model to check against")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_bench_annotate)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    """Add `bench`."""
    p = sub.add_parser("bench", help="latency of the in-process inspector vs the torch eager reference")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--no-eager", action="store_true", help="skip the torch reference (no torch needed)")
    p.add_argument(
        "--product", help="a unified package's product (default: the data folder's name, else its first)"
    )
    add_bench_serving_arguments(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.serving:
        return run_bench_serving(args)
    from adinspect.benchmarks.inprocess import bench_inprocess, write_bench

    results = bench_inprocess(
        args.model,
        args.data,
        n_images=args.images,
        warmup=args.warmup,
        threads=args.threads,
        eager=not args.no_eager,
        product=args.product,
    )
    print(write_bench(results, args.json))
    return 0


def cmd_bench_scale(args: argparse.Namespace) -> int:
    from adinspect.benchmarks.scale import run_scale_bench, scale_table, subset_quality

    if args.subset_fractions:
        subset_quality(args.data, args.out, args.presets[0], args.subset_fractions)
        print(f"wrote {args.out}/subsets.json")
        return 0
    results = run_scale_bench(
        args.data,
        args.out,
        presets=args.presets,
        sizes=args.sizes,
        random_weights=args.random_weights,
        n_images=args.images,
        generated=args.generated_features,
    )
    print(scale_table(results))
    print(f"wrote {args.out}/scale.json, scale.md and scale.png")
    return 0


def run_bench_annotate(args: argparse.Namespace) -> int:
    from adinspect.annotate.cli import need_web

    need_web()
    from adinspect.benchmarks.annotate import bench_annotate, format_table

    out = bench_annotate(args.model, args.data, args.subset, args.seed, args.max_clicks, args.threads,
                         compare=args.compare, progress=not args.quiet)  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(format_table(out))
    return 0


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
    from adinspect.benchmarks.serving import format_table, run_serving_bench
    from adinspect.data.datasets import open_dataset
    from adinspect.package import ModelPackage

    dataset = open_dataset(Path(args.data))
    images = ([s.path for s in dataset.test] or list(dataset.train))[: args.images]
    levels = [int(v) for v in str(args.concurrency).split(",") if v.strip()]
    package = ModelPackage.load(Path(args.model), verify=False)
    product = package.product_for_data(args.product, dataset.name) or package.products[0]
    if args.soak is not None:
        return _run_soak(args, images, max(levels), product)
    options = dict(
        concurrency=levels,
        requests_per_level=args.requests,
        warmup=args.warmup,
        threads=args.threads,
        perf_analyzer=not args.no_perf_analyzer,
        product=product,
    )
    if args.url:
        results = run_serving_bench(args.model, images, args.url, args.json, **options)
    else:
        from adinspect.repository.build import build_repository
        from adinspect.server.launch import TritonServer

        with tempfile.TemporaryDirectory(prefix="adinspect-bench-") as tmp:
            repo = Path(tmp) / "model_repository"
            build_repository([args.model], "cpu", repo)
            with TritonServer(repo, log_file=Path(args.json).with_suffix(".triton.log")) as server:
                results = run_serving_bench(args.model, images, server.grpc_url, args.json, **options)
    print(format_table(results))
    print(f"wrote {args.json} and {Path(args.json).with_suffix('.png')}")
    return 0


def _run_soak(args: argparse.Namespace, images: list[Path], concurrency: int, product: str) -> int:
    """`bench --serving --soak SECONDS [--fault]`: see adinspect.benchmarks.soak."""
    from adinspect.benchmarks.soak import format_reliability_table, run_reliability_bench

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
        product=product,
    )
    print(format_reliability_table(results))
    print(f"wrote {args.json}")
    return 0
