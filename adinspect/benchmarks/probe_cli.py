"""`adinspect probe`: its parser and handler (the suite itself is `adinspect.benchmarks.probe`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from adinspect.errors import InputError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `probe` to the adinspect command line."""
    p = subparsers.add_parser(
        "probe",
        help="reliability suite against a served product: decode bombs, malformed images, load, faults",
        description="Send a served product decode bombs, the malformed-image corpus and sustained load; "
        "with the deployment's serve process, also kill its tritonserver under load (--fault) and stop it "
        "with SIGTERM under load (--drain). Writes JSON and prints a table.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="gRPC HOST:PORT of a running `adinspect serve`")
    where.add_argument("--model", type=Path, help="instead: serve this package here (temporary repository)")
    p.add_argument(
        "--images", type=Path, nargs="+", required=True, help="image files or folders (real parts)"
    )
    p.add_argument("--json", type=Path, required=True, help="where the report goes")
    p.add_argument("--product", help="the served product (default: the only one served)")
    p.add_argument("--serve-pid", type=int, help="pid of the deployment's `adinspect serve` on this machine")
    p.add_argument("--bombs", type=int, default=20, help="decode bombs of each kind (default 20; 0 skips)")
    p.add_argument("--soak", type=float, default=60.0, help="seconds of load (default 60; 0 skips)")
    p.add_argument("--concurrency", type=int, default=16, help="closed-loop clients during load and faults")
    p.add_argument("--max-images", type=int, default=20, help="images used at most (default 20)")
    p.add_argument("--fault", action="store_true", help="kill -9 tritonserver under load (serve restarts it)")
    p.add_argument("--drain", action="store_true", help="finally SIGTERM serve under load (stops it)")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    from adinspect.benchmarks.probe import run_probe, serving_here, write_report
    from adinspect.evaluation.predict import expand_inputs

    paths = expand_inputs(args.images)[: args.max_images]
    if not paths:
        raise InputError(f"probe: no images in {' '.join(map(str, args.images))}")
    blobs = [path.read_bytes() for path in paths]
    options = dict(
        bombs_per_kind=args.bombs,
        soak_s=args.soak,
        concurrency=args.concurrency,
        fault=args.fault,
        drain=args.drain,
    )
    if args.model is not None:
        from adinspect.package import ModelPackage

        product = args.product or ModelPackage.load(args.model, verify=False).product
        log = args.json.with_suffix(".triton.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with serving_here(args.model, log) as (url, serve_pid):
            report = run_probe(url, product, blobs, serve_pid=serve_pid, **options)
    else:
        product = args.product or _only_product(args.url)
        report = run_probe(args.url, product, blobs, serve_pid=args.serve_pid, **options)
    print(write_report(report, args.json))
    print(f"wrote {args.json}")
    return 0


def _only_product(url: str) -> str:
    from adinspect.client import InspectionClient

    with InspectionClient(url, deadline_s=30) as client:
        products = client.products()
    if len(products) != 1:
        raise InputError(f"probe: {url} serves {products}; name one with --product")
    return products[0]
