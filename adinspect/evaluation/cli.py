"""`adinspect predict` and `adinspect evaluate` (wired into `adinspect` by `add_commands`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `predict` and `evaluate`."""
    p = sub.add_parser("predict", help="inspect images in-process; write overlays and results")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("images", type=Path, nargs="+", help="image files or folders")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--no-overlays", action="store_true")
    p.add_argument("--product", help="a unified package's product whose threshold decides (required there)")
    p.add_argument(
        "--max-pixels", type=int, default=40_000_000, help="skip larger images (checked before decoding)"
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="metrics of a package on a labelled test set")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--json", type=Path)
    p.add_argument("--plots", type=Path, help="folder for ROC/PR curves and an overlay grid")
    p.add_argument(
        "--product",
        help="a unified package's product whose threshold decides (default: the data folder's name)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)


def _print_json(obj: object, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2) + "\n")


def cmd_predict(args: argparse.Namespace) -> int:
    from adinspect.evaluation.predict import predict, skipped_line

    summary = predict(
        args.model,
        args.images,
        args.out,
        overlays=not args.no_overlays,
        max_pixels=args.max_pixels,
        product=args.product,
    )
    for r in summary["results"]:
        why = f"  ({r['reason']})" if r["reason"] and r["verdict"] == "fail" and not r["regions"] else ""
        print(
            f"{r['verdict'].upper():4}  score {r['score']:.4g} (threshold {r['threshold']:.4g})  "
            f"regions {len(r['regions'])}  {r['image']}{why}"
        )
    for e in summary["errors"]:
        print(f"SKIP  {e['error']}", file=sys.stderr)
    if summary["skipped"]:
        print(skipped_line(summary["skipped"]), file=sys.stderr)
    print(f"wrote {args.out}/results.csv, results.json and overlays/")
    return 1 if summary["errors"] and not summary["results"] else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from adinspect.evaluation.evaluate import evaluate_package

    metrics = evaluate_package(
        args.model, args.data, plots_dir=args.plots, progress=not args.quiet, product=args.product
    )
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if metrics.get("n_pseudo_labelled"):
        print(
            f"note: ADClick-Seg was trained on pseudo labels of {metrics['n_pseudo_labelled']} of these "
            "images; `adinspect evaluate-seg` scores the held-out half only"
        )
    _print_json(metrics, args.json)
    return 0
