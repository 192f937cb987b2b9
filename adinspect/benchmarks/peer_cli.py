"""`adinspect bench-peer`: its parser and handler. Light to import: the benchmark loads on use."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_bench_peer(args: argparse.Namespace) -> int:
    from adinspect.benchmarks.patchcore import check_layers, require_anomalib
    from adinspect.benchmarks.peer import peer_settings, run_peer_bench
    from adinspect.benchmarks.peer_report import peer_table

    layers = {"layers": tuple(args.layers)} if args.layers else {}
    settings = peer_settings(
        size=args.size,
        square=args.square,
        backbone=args.backbone,
        coreset=args.coreset,
        seed=args.seed,
        threads=args.threads,
        latency_images=args.latency_images,
        **layers,
    )
    check_layers(settings.layers)
    require_anomalib()  # bad flags or a missing extra: one `error:` line before any data is read
    results = run_peer_bench(args.data, args.out, settings, progress=not args.quiet)
    print(peer_table(results))
    print(f"wrote {args.out}/peer.json, peer.md and packages/")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `bench-peer` to the adinspect command line."""
    p = subparsers.add_parser(
        "bench-peer",
        help="adinspect vs anomalib PatchCore (same backbone weights, input and data), side by side",
        description="Fit adinspect's training-free package (the default fit, backbone held at PatchCore's) "
        "and anomalib's PatchCore (EfficientNet-Lite ImageNet weights, Lite0 unless --backbone) on each "
        "product's good images; report I-AUROC, P-AUROC, pixel AP, AUPRO (same metric code, same map "
        "size), fit time and per-image latency. Needs the `peer` extra (anomalib).",
    )
    p.add_argument(
        "--data", type=Path, nargs="+", required=True, metavar="DIR", help="MVTec-layout product folders"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for peer.json, peer.md and packages/")
    p.add_argument(
        "--backbone",
        default="efficientnet_lite0",
        help="both methods' backbone, with its packaged ImageNet weights: efficientnet_lite0 (default), "
        "efficientnet_lite1 or efficientnet_lite2",
    )
    p.add_argument("--coreset", type=float, default=0.01, help="PatchCore's coreset fraction (default 0.01)")
    p.add_argument("--size", type=int, default=256, help="input side of both methods (default 256)")
    p.add_argument(
        "--square",
        action="store_true",
        help="S x S for both, whatever the images' aspect (default: adinspect's input geometry; a 640 x 256 "
        "strip gives PatchCore 2.5 times the patches and its coreset several times the time)",
    )
    p.add_argument(
        "--layers",
        nargs="+",
        metavar="LAYER",
        help="PatchCore's tf_efficientnet_lite0 layers (default blocks.2 blocks.4: strides 8 and 16)",
    )
    p.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: all cores)")
    p.add_argument("--latency-images", type=int, default=20, help="test images timed per method")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_bench_peer)
