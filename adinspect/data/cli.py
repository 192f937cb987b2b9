"""`adinspect synth` (wired into `adinspect` by `add_commands`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from adinspect.errors import InputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `synth`."""
    p = sub.add_parser("synth", help="write a synthetic MVTec-layout dataset")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--kind", choices=["object", "texture"], default="object")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-test-defect", type=int, default=12, help="defective test images (cycling the types)")
    p.add_argument("--size", type=int, default=256, metavar="S", help="square images of S x S pixels (256)")
    p.add_argument("--height", type=int, metavar="H", help="rectangular images: height (with --width)")
    p.add_argument("--width", type=int, metavar="W", help="rectangular images: width (with --height)")
    p.add_argument(
        "--capture-shift",
        type=float,
        default=0.0,
        metavar="STRENGTH",
        help="photograph the defective test images with another gain and an illumination gradient "
        "(0.3: gain 1 ± 0.15-0.3, gradient ± 0.15-0.3); 0 = none",
    )
    p.add_argument(
        "--misalign",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="the defective test parts sit (0.5-1)·FRACTION of the side away from where the good "
        "parts sit (a fixture that did not hold them); their masks move with them; 0 = none",
    )
    p.add_argument(
        "--turned-from",
        type=Path,
        metavar="DIR",
        help="instead of drawing a product, copy the MVTec-layout product DIR with every image and "
        "mask turned by a seeded random angle (a part that lies at any rotation)",
    )
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from adinspect.data.synthetic import make_synthetic_dataset
    from adinspect.data.turned import write_turned_copy

    if args.turned_from is not None:
        try:
            root = write_turned_copy(args.turned_from, args.out, seed=args.seed)
        except FileExistsError as exc:
            raise InputError(str(exc)) from exc
        print(f"wrote {args.turned_from} turned at random angles to {root}")
        return 0

    if (args.height is None) != (args.width is None):
        raise InputError("--height and --width go together (a rectangular product); or give --size")
    size = args.size if args.height is None else (args.height, args.width)
    try:
        root = make_synthetic_dataset(
            args.out, kind=args.kind, seed=args.seed, n_test_defect=args.n_test_defect,
            capture_shift=args.capture_shift, misalign=args.misalign, size=size,
        )  # fmt: skip
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    print(f"wrote synthetic {args.kind} dataset to {root}")
    return 0
