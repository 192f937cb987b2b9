"""`adinspect evaluate-clicks` and `evaluate-seg`: ADClick and ADClick-Seg on held-out defects
(wired in by `train.cli`).

    adinspect evaluate-clicks --model DIR --data DIR --json OUT.json [--subset all|labelled|eval]
                              [--panels DIR] [--snap package|on|off] [--trace package|on|off]
    adinspect evaluate-seg    --model DIR --data DIR --json OUT.json [--subset eval]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adinspect.train.cli_common import common_options, write_json_out


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register evaluate-clicks and evaluate-seg."""
    _add_evaluate_clicks(subparsers)
    _add_evaluate_seg(subparsers)


def run_evaluate_clicks(args: argparse.Namespace) -> int:
    from adinspect.train.interactive import evaluate_clicks

    snap = None if args.snap == "package" else args.snap == "on"
    trace = None if args.trace == "package" else args.trace == "on"
    out = evaluate_clicks(
        args.model, args.data, args.subset, args.seed, args.max_clicks, not args.quiet, args.panels,
        snap, trace,
    )  # fmt: skip
    ious = out["iou_at_k"]
    print(
        f"{out['n_images']} images ({out['subset']}, snap {'on' if out['snap'] else 'off'}, "
        f"trace {'on' if out['trace'] else 'off'}): "
        f"NoC@80 {out['noc80']:.2f}  NoC@85 {out['noc85']:.2f}  "
        f"NoC@90 {out['noc90']:.2f}  IoU@1 {ious[0]:.3f}  IoU@{len(ious)} {ious[-1]:.3f}"
        + (f"; {out['n_skipped']} skipped (no usable mask)" if out["n_skipped"] else "")
    )
    for k in (3, 5):
        print(f"after {k} clicks: pixel AP {out[f'ap_{k}']:.3f}  pixel AUROC {out[f'pixel_auroc_{k}']:.3f}  "
              f"AUPRO {out[f'aupro_{k}']:.3f}")  # fmt: skip
    write_json_out(out, args.json)
    return 0


def run_evaluate_seg(args: argparse.Namespace) -> int:
    from adinspect.train.seg_eval import evaluate_seg

    out = evaluate_seg(args.model, args.data, args.subset, args.seed, not args.quiet)
    keys = ["image_auroc", "pixel_auroc", "pixel_ap", "aupro", "pixel_f1_max"]
    print(f"{out['n_images']} images ({out['n_defective']} defective, subset {out['subset']})")
    print(f"{'':16}" + "".join(f"{k:>14}" for k in keys))
    for name in ("training_free", "adclick_seg"):
        print(f"{name:16}" + "".join(f"{out[name][k]:>14.4f}" for k in keys))
    v, t = out["verdicts"], out["threshold"]
    print(f"at the seg threshold {t['value']:.3f}: {v['good_rejected']} of {v['n_good']} good rejected, "
          f"{v['defective_passed']} of {v['n_defective']} defective passed ({t['rule']})")  # fmt: skip
    f = out["training_free_verdicts"]
    print(f"at the training-free threshold {f['threshold']:.3f}: "
          f"{f['good_rejected']} of {f['n_good']} good rejected, "
          f"{f['defective_passed']} of {f['n_defective']} defective passed")  # fmt: skip
    served = "seg's verdict" if out["served"] == "seg" else "the training-free verdict (seg is not served)"
    print(f"the package serves {served}")
    if "statement" in t:
        print(f"stated: {t['statement']}")
    if t.get("expected_miss_rate") is not None:
        low, high = t["expected_miss_low_95"], t["expected_miss_high_95"]
        print(f"stated miss rate from the pseudo-labelled defects: {t['expected_miss_rate']:.1%} "
              f"(95 % {low:.1%}-{high:.1%}; trained on them)")  # fmt: skip
    write_json_out(out, args.json)
    return 0


def _add_evaluate_clicks(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate-clicks", help="NoC@80/85/90, IoU@k; pixel AP/AUROC/AUPRO after 3 and 5 simulated clicks"
    )
    common_options(p)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--subset", default="all", choices=["all", "labelled", "eval"])
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument(
        "--panels",
        type=Path,
        metavar="DIR",
        help="draw each session: image | ground truth | mask after the last click and the clicks | "
        "probability",
    )
    p.add_argument(
        "--snap",
        default="package",
        choices=["package", "on", "off"],
        help="snap each prediction to the image (GrabCut): as the package says (default), or force it",
    )
    p.add_argument(
        "--trace",
        default="package",
        choices=["package", "on", "off"],
        help="trace the thin line between positive clicks: as the package says (default), or force it",
    )
    p.set_defaults(func=run_evaluate_clicks)


def _add_evaluate_seg(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate-seg", help="ADClick-Seg vs the training-free map on held-out images")
    common_options(p)
    p.add_argument("--json", type=Path)
    p.add_argument("--subset", default="eval", choices=["all", "labelled", "eval"])
    p.set_defaults(func=run_evaluate_seg)
