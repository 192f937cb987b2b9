"""The `adinspect` command line. Each command imports what it needs, so `predict` never loads torch."""

# Every room adds its own commands (`<room>.cli.add_commands(subparsers)`); this module puts them together.

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from adinspect.errors import InputError

EXIT_BAD_INPUT = 2


def cmd_demo(args: argparse.Namespace) -> int:
    from adinspect.demo import run_demo

    run_demo(args.out, data=args.data, preset=args.preset, serve=not args.no_serve)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from adinspect.annotate import cli as annotate
    from adinspect.benchmarks import cli as benchmarks
    from adinspect.client import cli as client
    from adinspect.data import cli as data
    from adinspect.evaluation import cli as evaluation
    from adinspect.features import cli as features
    from adinspect.fitting import cli as fitting
    from adinspect.server import cli as server
    from adinspect.train import cli as train
    from adinspect.zeroshot import cli as zeroshot

    parser = argparse.ArgumentParser(prog="adinspect", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for room in (fitting, evaluation, benchmarks, features, data):
        room.add_commands(sub)
    p = sub.add_parser("demo", help="fit, evaluate, predict, bench (and serve on Triton) in one go")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--data", type=Path, help="dataset root (default: the shared bottle data, else synthetic)")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--no-serve", action="store_true", help="skip the Triton steps")
    p.set_defaults(func=cmd_demo)

    for room in (server, client, train, annotate, zeroshot):
        room.add_commands(sub)
    return parser


# PyTorch's CPU allocator backs large tensors with transparent huge pages when this is set; it reads
# it once, at its first allocation, so it is set before any command imports torch. fit and training
# allocate hundreds of MB per batch, and faulting them in 4 KB pages was 30 % of fit's CPU time.
HUGE_PAGES = ("THP_MEM_ALLOC_ENABLE", "1")


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault(*HUGE_PAGES)  # a user's own setting (0 turns it off) is kept
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
