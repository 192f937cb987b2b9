"""`adinspect annotate` (wired into `adinspect` by `add_commands`), and what `bench-annotate` needs.

    adinspect annotate       --model DIR --data DIR [--out LABELS_DIR] [--host 127.0.0.1] [--port 8765]
                             [--train [--pretrain-steps N] [--finetune-steps N] [--batch-size N]
                                      [--n-synthetic N]]
    adinspect bench-annotate --model DIR --data DIR --json OUT.json [--subset eval] [--max-clicks 20]

The web framework is imported only when a command runs; without the `annotate` extra the command
says how to install it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adinspect.errors import InputError


def need_web() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"the labelling tool needs the annotate extra ({exc}); pip install 'adinspect[annotate]'"
        ) from exc


def _labels_dir(args: argparse.Namespace) -> Path:
    return args.out if args.out is not None else args.model / "annotations"


def run_annotate(args: argparse.Namespace) -> int:
    if args.train:
        return _train(args)
    need_web()
    from adinspect.annotate.server import LOOPBACK, make_server
    from adinspect.annotate.service import Annotator

    annotator = Annotator(args.model, args.data, _labels_dir(args), args.threads)
    listing = annotator.listing()
    print(f"{len(annotator.queue)} images to label from {annotator.data_dir}")
    print(f"labels go to {annotator.store.root}")
    print("progress: " + ", ".join(f"{k} {v}" for k, v in listing["progress"].items()))
    if annotator.runtime.click is None:
        print(f"warning: {args.model} has no click model (run `adinspect train-click`); heat maps only")
    if args.host not in LOOPBACK:
        print(
            f"warning: serving on {args.host}: anyone who can reach it can read the images and write labels"
        )
    print(f"open http://{args.host}:{args.port}/ (Ctrl-C stops)")
    make_server(annotator, args.host, args.port).run()
    return 0


def _train(args: argparse.Namespace) -> int:
    """label → train-seg on the accepted labels in the foreground (the page's Train button, from a shell)."""
    from adinspect.annotate.jobs import TRAIN_LOG, TrainJob, train_commands
    from adinspect.annotate.store import LabelStore

    store = LabelStore(_labels_dir(args), args.data)
    if not any(d.state == "accepted" for d in store.load().images.values()):
        raise InputError(f"{store.root}: nothing accepted yet; label images with `adinspect annotate` first")
    options = {"pretrain-steps": args.pretrain_steps, "finetune-steps": args.finetune_steps,
               "batch-size": args.batch_size, "n-synthetic": args.n_synthetic}  # fmt: skip
    seg_args = [f"--{k}={v}" for k, v in options.items() if v is not None]
    job = TrainJob(train_commands(args.model, args.data, store.root, seg_args), store.root / TRAIN_LOG)
    last = ""
    while job.wait(1.0) == "running":
        line = job.status()["last_line"]
        if line != last:
            print(line, flush=True)
            last = line
    status = job.status()
    print(f"{status['state']}: {status['command']} after {status['seconds']} s; log {store.root / TRAIN_LOG}")
    return 0 if status["state"] == "done" else 1


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the annotate command."""
    p = subparsers.add_parser("annotate", help="label real defects in the browser with ADClick clicks")
    p.add_argument("--model", type=Path, required=True, help="fitted package with click.onnx (train-click)")
    p.add_argument("--data", type=Path, required=True, help="MVTec/KolektorSDD2 root or a folder of images")
    p.add_argument("--out", type=Path, help="labels directory (default MODEL_DIR/annotations)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default all cores)")
    p.add_argument(
        "--train", action="store_true", help="run label → train-seg on the accepted labels, then exit"
    )
    p.add_argument("--pretrain-steps", type=int, help="with --train: train-seg --pretrain-steps")
    p.add_argument("--finetune-steps", type=int, help="with --train: train-seg --finetune-steps")
    p.add_argument("--batch-size", type=int, help="with --train: train-seg --batch-size")
    p.add_argument("--n-synthetic", type=int, help="with --train: train-seg --n-synthetic")
    p.set_defaults(func=run_annotate)
