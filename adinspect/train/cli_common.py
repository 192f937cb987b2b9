"""Options and output shared by the training and evaluation commands' entry points."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="fitted model package (from `adinspect fit`)")
    p.add_argument(
        "--data", type=Path, required=True, help="dataset root (MVTec layout) used for the package"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def write_json_out(obj: dict, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2) + "\n")
