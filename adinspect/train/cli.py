"""Command-line entry points of the training commands (wired into `adinspect` by `add_commands`).

    adinspect train-click     --model DIR --data DIR [--prompts FILE] [--encoder DIR] [--steps N] [--resume]
                              [--init OTHER_MODEL_DIR] [--foreground] [--image-branch] [--[no-]image-features]
                              [--capture-shift-aug FRACTION] [--thin-anomalies FRACTION] [--train-crop PIXELS]
                              [--whole-every N] [--snap auto|on|off] [--trace auto|on|off]
    adinspect choose-snap     --model DIR --data DIR [--snap auto|on|off] [--trace auto|on|off]
    adinspect label           --model DIR --data DIR (--clicks FILE | --simulate N) [--subset labelled]
    adinspect train-seg       --model DIR --data DIR [--pretrain-steps N] [--finetune-steps N] [--resume]
                              [--init OTHER_MODEL_DIR] [--foreground] [--fusion auto|geometric|none]
                              [--thin-anomalies FRACTION]
    adinspect evaluate-clicks, evaluate-seg: `train.evaluate_cli`

Each command imports torch lazily and returns an exit code; bad input raises `InputError`, which
`adinspect.cli.main` prints as one line (exit 2).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from adinspect.train.cli_common import common_options


def _init_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--init",
        type=Path,
        metavar="OTHER_MODEL_DIR",
        help="start from another package's trained weights (same backbone and preset; pre-training)",
    )


def _foreground_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--foreground",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="paint synthetic defects only on the object's foreground for object products (default: "
        "anywhere; confining them cost bottle's clicks NoC@85 12.4-12.5 against 10.65, see "
        "docs/weak-supervision.md)",
    )


def _finish_flags(p: argparse.ArgumentParser) -> None:
    for flag, what in (
        ("--snap", "snap click masks to the image (GrabCut)"),
        ("--trace", "trace the thin line between positive clicks (cracks, scratches)"),
    ):
        p.add_argument(
            flag,
            default="auto",
            choices=["auto", "on", "off"],
            help=f"{what}: auto = when it raises IoU after 5 simulated clicks on the labelled defective "
            "images (default), or force it on/off",
        )


def run_train_click(args: argparse.Namespace) -> int:
    from adinspect.train.click_trainer import ClickTrainSettings, train_click

    settings = ClickTrainSettings(seed=args.seed)
    for field in ("steps", "batch_size", "lr", "n_synthetic", "validation_images"):
        if getattr(args, field) is not None:
            settings = replace(settings, **{field: getattr(args, field)})
    settings = replace(settings, foreground=args.foreground, image_branch=args.image_branch)
    if args.image_features is not None:
        settings = replace(settings, image_features=args.image_features)
    if args.capture_shift_aug is not None:
        settings = replace(settings, capture_shift_aug=args.capture_shift_aug)
    if args.thin_anomalies is not None:
        settings = replace(settings, thin_anomalies=args.thin_anomalies)
    if args.iou_loss is not None:
        settings = replace(settings, iou_loss=args.iou_loss)
    if args.train_crop is not None:
        settings = replace(settings, crop=args.train_crop)
    if args.whole_every is not None:
        settings = replace(settings, whole_every=args.whole_every)
    report = train_click(
        args.model, args.data, settings, args.prompts, args.encoder, args.resume, not args.quiet, args.init
    )
    s, v = report["seconds"], report["validation"]
    batch, parity = report["settings"]["batch_size"], report["parity"]["mask_max_abs_diff"]
    print(f"ADClick trained: {report['steps']} steps of {batch}, data {s['data']:.0f} s, "
          f"training {s['train']:.0f} s; click.onnx parity max |Δ| {parity:.1e}")  # fmt: skip
    if v["n_images"]:
        k = v["clicks"]
        ap = v[f"ap_{k}"]
        print(f"on {v['n_images']} synthetic anomalies on the {v['holdout_images']} held-out good images: "
              f"IoU@1 {v['iou_at_k'][0]:.3f}  IoU@{k} {v['iou_at_k'][-1]:.3f}  AP@{k} {ap:.3f}")  # fmt: skip
    return run_choose_snap(args)


def run_choose_snap(args: argparse.Namespace) -> int:
    from adinspect.train.snap_choice import CLICKS, choose_snap

    decisions = choose_snap(args.model, args.data, args.snap, args.seed, not args.quiet, args.trace)
    for what, flag, doing in (("snap", args.snap, "snapped"), ("trace", args.trace, "traced")):
        d = decisions[what]
        m = d[f"mean_iou_at_{CLICKS}"]
        if flag != "auto":
            figures = f"forced by --{what} {flag}"
        elif m:
            figures = (f"auto; mean IoU@{CLICKS} on {d['n_labelled_images']} labelled images: "
                       f"{m['off']:.3f} as predicted, {m['on']:.3f} {doing}")  # fmt: skip
        else:
            figures = "auto; no labelled defective images to measure on"
        label = "snap to the image" if what == "snap" else "trace between positive clicks"
        print(f"{label}: {'on' if d['enabled'] else 'off'} ({figures})")
    return 0


def run_label(args: argparse.Namespace) -> int:
    from adinspect.train.labeling import label

    if (args.clicks is None) == (args.simulate is None):
        from adinspect.errors import InputError

        raise InputError("give exactly one of --clicks FILE or --simulate N_CLICKS")
    summary = label(
        args.model,
        args.data,
        args.clicks,
        args.simulate or 0,
        args.subset,
        args.seed,
        args.distance,
        not args.quiet,
    )
    iou, ranked = summary["mean_iou_vs_ground_truth"], summary["pixel_ap_vs_ground_truth"]
    print(f"wrote {summary['n_images']} pseudo labels to {args.model / 'labels'} ({summary['source']})"
          + (f"; mean IoU vs ground truth {iou:.3f}" if iou is not None else "")
          + (f", pixel AP {ranked:.3f}" if ranked is not None else "")
          + (f"; {summary['n_skipped']} skipped (no mask)" if summary["n_skipped"] else ""))  # fmt: skip
    return 0


def run_train_seg(args: argparse.Namespace) -> int:
    from adinspect.fitting.cli import parse_rate
    from adinspect.train.seg_serving import serving_line
    from adinspect.train.seg_trainer import SegTrainSettings, train_seg

    settings = SegTrainSettings(seed=args.seed)
    fields = (
        "pretrain_steps",
        "finetune_steps",
        "batch_size",
        "lr",
        "finetune_lr",
        "n_synthetic",
        "iis_clicks",
    )
    for field in fields:
        if getattr(args, field) is not None:
            settings = replace(settings, **{field: getattr(args, field)})
    if args.no_finetune:
        settings = replace(settings, finetune_steps=0)
    settings = replace(settings, foreground=args.foreground, fusion=args.fusion, serve=args.serve)
    if args.target_frr is not None:
        settings = replace(settings, target_frr=parse_rate(args.target_frr, "--target-frr", 0.0, 0.5))
    if args.thin_anomalies is not None:
        settings = replace(settings, thin_anomalies=args.thin_anomalies)
    report = train_seg(args.model, args.data, settings, args.resume, not args.quiet, args.init)
    s = report["seconds"]
    parity = report["parity"]["map_max_abs_diff"]
    cal = report["calibration"]
    print(f"seg threshold {cal['threshold']:.4g}: {cal['statement']}")
    if cal["expected_miss_rate"] is not None:
        print(f"pseudo-labelled defects passing it: {cal['pseudo_passed']} of {len(cal['pseudo_scores'])} "
              f"(95 % interval {cal['expected_miss_low_95']:.1%}-{cal['expected_miss_high_95']:.1%}; "
              "trained on them, so optimistic)")  # fmt: skip
    # the summary last: the labelling page shows a job's last line
    print(f"ADClick-Seg trained: {report['steps']}, {report['n_pseudo_labelled']} pseudo-labelled images, "
          f"training {s['train']:.0f} s; seg.onnx parity max |Δmap| {parity:.1e}; the package "
          f"{serving_line(report['serving'])}")  # fmt: skip
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register train-click, choose-snap, label, train-seg, evaluate-clicks, evaluate-seg and
    train-unified."""
    from adinspect.train import evaluate_cli, unified_cli

    _add_train_click(subparsers)
    _add_choose_snap(subparsers)
    _add_label(subparsers)
    _add_train_seg(subparsers)
    evaluate_cli.add_commands(subparsers)
    unified_cli.add_commands(subparsers)


# long: one add_argument per train-click option, in the order --help lists them
def _add_train_click(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-click", help="train ADClick on synthetic anomalies (writes click.onnx)")
    common_options(p)
    p.add_argument("--prompts", type=Path, help="YAML of defect types and prompts (default: templates)")
    p.add_argument("--encoder", help="local BERT directory (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--steps", type=int)
    p.add_argument(
        "--batch-size",
        type=int,
        help="samples a step (default: by the input's size, 8 at 256 x 256, 4 at 640 x 256: a step "
        "costs about the same on every product)",
    )
    p.add_argument("--lr", type=float)
    p.add_argument("--n-synthetic", type=int, help="synthetic anomalies to generate (cached)")
    p.add_argument(
        "--validation-images",
        type=int,
        metavar="N",
        help="at the end, click on N synthetic anomalies painted on the fit's held-out good images and "
        "record the figures in click_model.json (default 48; 0: skip)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument(
        "--image-branch",
        action="store_true",
        help="ADClick also sees the image (click.onnx gets an `image` input); off by default, see "
        "docs/weak-supervision.md",
    )
    p.add_argument(
        "--image-features",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ADClick also sees the backbone's ImageNet features of the image (click.onnx gets a "
        "`features` input; see docs/weak-supervision.md)",
    )
    p.add_argument(
        "--capture-shift-aug",
        type=float,
        metavar="FRACTION",
        help="this fraction of the synthetic anomalies under a random gain/illumination gradient and "
        "moved by up to 20 %% of the side (default 0)",
    )
    p.add_argument(
        "--thin-anomalies",
        type=float,
        metavar="FRACTION",
        help="this fraction of the synthetic anomalies are thin bent strokes, 1-3 px wide (scratches, "
        "cracks), instead of Perlin blobs (default 0)",
    )
    p.add_argument(
        "--iou-loss",
        type=float,
        metavar="WEIGHT",
        help="add WEIGHT x (1 - soft IoU) to the focal loss, so that thin defects are traced above the "
        "0.49 cut (default 0)",
    )
    p.add_argument(
        "--train-crop",
        type=int,
        metavar="PIXELS",
        help="train on crops of at most PIXELS x PIXELS of the input around each synthetic defect, so a "
        "large input trains in about the time of a small one; the model still runs on the whole input "
        "(default 0: train on the whole input; see docs/weak-supervision.md for what crops cost)",
    )
    p.add_argument(
        "--whole-every",
        type=int,
        metavar="N",
        help="with --train-crop, every N-th step trains on the whole input, so the model also learns to "
        "stay quiet away from the defect (default 3; 0: crops only)",
    )
    _finish_flags(p)
    _foreground_flag(p)
    _init_flag(p)
    p.set_defaults(func=run_train_click)


def _add_choose_snap(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "choose-snap", help="measure snapping click masks to the image on the labelled images; record it"
    )
    common_options(p)
    _finish_flags(p)
    p.set_defaults(func=run_choose_snap)


def _add_label(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("label", help="clicks (file or simulated) → ADClick masks → pseudo labels")
    common_options(p)
    p.add_argument("--clicks", type=Path, help="click JSON file (coordinates in original image pixels)")
    p.add_argument("--simulate", type=int, metavar="N_CLICKS", help="simulate N clicks from the ground truth")
    p.add_argument("--subset", default="labelled", choices=["all", "labelled", "eval"])
    p.add_argument(
        "--distance", type=float, help="Eq. 8 distance d in model pixels (default 2x click radius)"
    )
    p.set_defaults(func=run_label)


def _add_train_seg(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-seg", help="train ADClick-Seg (synthetic pre-training + pseudo labels)")
    common_options(p)
    p.add_argument("--pretrain-steps", type=int)
    p.add_argument("--finetune-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--finetune-lr", type=float)
    p.add_argument(
        "--n-synthetic", type=int, help="synthetic anomalies (same value as train-click reuses its cache)"
    )
    p.add_argument(
        "--no-finetune", action="store_true", help="synthetic pre-training only (no pseudo labels)"
    )
    p.add_argument(
        "--iis-clicks", type=int, help="IIS-manner training: up to N simulated clicks per sample (0: none; 3)"
    )
    p.add_argument(
        "--fusion",
        default="auto",
        choices=["auto", "geometric", "none"],
        help="served map: geometric mean of the seg probability and the training-free map over its "
        "threshold, or the seg probability alone; auto (default) chooses on the pseudo-labelled "
        "images (docs/weak-supervision.md)",
    )
    p.add_argument(
        "--serve",
        default="auto",
        choices=["auto", "seg"],
        help="seg takes over the package's verdict, map and regions: auto (default) unless it lets more "
        "of the pseudo-labelled defects pass than the training-free verdict does; seg: always",
    )
    p.add_argument(
        "--target-frr",
        metavar="RATE",
        help="target false-reject rate of the seg threshold, in (0, 0.5) (default: the package's)",
    )
    p.add_argument(
        "--thin-anomalies",
        type=float,
        metavar="FRACTION",
        help="this fraction of the synthetic anomalies are thin bent strokes (default: the fraction "
        "train-click used, so that its cached residuals serve both when their other settings agree)",
    )
    p.add_argument("--resume", action="store_true")
    _foreground_flag(p)
    _init_flag(p)
    p.set_defaults(func=run_train_seg)
