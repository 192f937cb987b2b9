"""`adinspect inspect`: images through a running Triton over gRPC (wired into `adinspect` by
`add_commands`; no torch)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `inspect`."""
    p = subparsers.add_parser("inspect", help="inspect images through a running Triton (gRPC)")
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address HOST:PORT")
    p.add_argument("--product", required=True)
    p.add_argument("images", type=Path, nargs="+", help="image files or folders")
    p.add_argument("--json", type=Path, help="write all results as JSON")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline per request, seconds")
    p.set_defaults(func=run_inspect)


def _image_paths(items: list[Path]) -> list[tuple[Path, str]]:
    """(path, name) of every image: a file as given, a folder's images named by their path relative
    to the folder (two `000.png` in different sub-folders stay two names)."""
    from adinspect.imageio import IMAGE_EXTENSIONS

    paths: list[tuple[Path, str]] = []
    for item in items:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            paths += [(p, p.relative_to(item).as_posix()) for p in found]
        else:
            paths.append((item, str(item)))
    return paths


def run_inspect(args: argparse.Namespace) -> int:
    from adinspect.client import InspectionClient, InspectionError

    results, failures = [], 0
    with InspectionClient(args.url, deadline_s=args.timeout) as client:
        for path, name in _image_paths(args.images):
            try:
                r = client.inspect(path, args.product, name=name)
            except (InspectionError, OSError) as exc:
                failures += 1
                print(f"SKIP  {name}: {exc}", file=sys.stderr)
                continue
            results.append(r.model_dump())
            kind = f", defect type {r.defect_type}" if r.defect_type else ""
            why = f"  ({r.reason}{kind})" if r.verdict == "fail" else ""
            print(
                f"{r.verdict.upper():4}  score {r.score:.4g} (threshold {r.threshold:.4g})  "
                f"regions {len(r.regions)}  {r.image}{why}"
            )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failures and not results else 0
