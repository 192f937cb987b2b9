"""`adinspect train-unified`: one InvAD model for several products (wired in by `train.cli`).

adinspect train-unified --data DIR [DIR ...] --out MODEL_DIR [--steps N] [--batch-size N]
                        [--pad PX] [--threads N] [--overwrite] [--keep-work] [--quiet]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adinspect.fitting.cli import positive_int

# command-line flag → UnifiedSettings field
_SETTINGS = {
    "steps": "steps",
    "batch_size": "batch_size",
    "image_size": "image_size",
    "pad": "pad",
    "holdout_fraction": "holdout_fraction",
    "seed": "seed",
    "blocks_per_scale": "blocks_per_scale",
    "checkpoint_every": "checkpoint_every",
}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register train-unified."""
    p = subparsers.add_parser(
        "train-unified",
        help="train one InvAD model on the good images of several products (one package for all)",
    )
    p.add_argument(
        "--data", type=Path, nargs="+", required=True, help="product folders (MVTec layout or plain images); "
        "each folder's name names its product",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="the package to write; its name names the model")
    p.add_argument("--steps", type=positive_int("--steps"), help="training steps (default 2000)")
    p.add_argument("--batch-size", type=positive_int("--batch-size"), help="images per step (default 16)")
    p.add_argument("--image-size", type=positive_int("--image-size"), help="input side S (default 256)")
    p.add_argument(
        "--pad", type=int, help="reflection before the backbone, px per side (default 16; 0: none)"
    )
    p.add_argument("--holdout-fraction", type=float, help="good images held out per product (default 0.1)")
    p.add_argument("--blocks-per-scale", type=positive_int("--blocks-per-scale"), help="generator depth")
    p.add_argument("--checkpoint-every", type=positive_int("--checkpoint-every"), help="steps (default 100)")
    p.add_argument("--seed", type=int)
    p.add_argument("--settings", type=Path, help="JSON file of further UnifiedSettings fields")
    p.add_argument("--threads", type=positive_int("--threads"), help="torch threads (default: torch's)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing package once the new one is done"
    )
    p.add_argument("--keep-work", action="store_true", help="keep <out>.work (checkpoint, feature file)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train_unified)


def _settings(args: argparse.Namespace):
    from pydantic import ValidationError

    from adinspect.errors import InputError
    from adinspect.train.unified_settings import UnifiedSettings

    fields: dict = {}
    if args.settings is not None:
        try:
            fields = json.loads(Path(args.settings).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"--settings {args.settings}: not a readable JSON file ({exc})") from exc
    fields.update({f: getattr(args, a) for a, f in _SETTINGS.items() if getattr(args, a) is not None})
    try:
        return UnifiedSettings(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise InputError(
            f"train-unified setting {where}: {first['msg']} (got {first.get('input')!r})"
        ) from exc


def run_train_unified(args: argparse.Namespace) -> int:
    import torch

    from adinspect.train.unified import train_unified

    settings = _settings(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = train_unified(
        args.data,
        args.out,
        settings,
        overwrite=args.overwrite,
        keep_work=args.keep_work,
        progress=not args.quiet,
    )
    s = result.seconds
    print(
        f"InvAD trained on {len(result.products)} products: {settings.steps} steps (from step "
        f"{result.start_step}), embedding {s['embed']:.0f} s, training {s['train']:.0f} s, package "
        f"{s['package']:.0f} s; peak memory {result.peak_rss_bytes / 2**30:.2f} GB"
    )
    for product in result.products:
        threshold = result.package.thresholds[product.name]
        print(f"  {product.name}: {len(product.train)} trained on, {len(product.holdout)} held out, "
              f"threshold {threshold:.4g}")  # fmt: skip
    parity = result.package.parity
    print(f"invad.onnx parity max |Δscore| {parity['score_max_abs_diff']:.1e}; wrote {args.out}")
    return 0
