"""`adinspect zero-shot` and `bench-zero-shot`: parsers and handlers (wired in by `add_commands`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adinspect.zeroshot.config import ZeroShotConfig, ZeroShotError, zeroshot_config


def load_zeroshot_options(config_file: Path | None, options: str | None) -> ZeroShotConfig:
    """Fields from a JSON/YAML file, then JSON overrides from the command line; errors name the field."""
    import yaml

    raw: dict = {}
    if config_file is not None:
        try:
            text = Path(config_file).read_text()
            loaded = (
                yaml.safe_load(text) if Path(config_file).suffix in {".yaml", ".yml"} else json.loads(text)
            )
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ZeroShotError(f"{config_file}: cannot read a zero-shot config ({exc})") from exc
        if not isinstance(loaded, dict):
            raise ZeroShotError(f"{config_file}: expected a mapping of ZeroShotConfig fields")
        raw.update(loaded)
    if options:
        try:
            extra = json.loads(options)
        except json.JSONDecodeError as exc:
            raise ZeroShotError(
                f"--options: not valid JSON ({exc}); e.g. --options '{{\"layers\": [1, 2]}}'"
            ) from exc
        if not isinstance(extra, dict):
            raise ZeroShotError(f"--options: expected a JSON object, got {options!r}")
        raw.update(extra)
    return zeroshot_config(raw)


def cmd_zero_shot(args: argparse.Namespace) -> int:
    from adinspect.zeroshot.run import run_zero_shot

    config = load_zeroshot_options(args.config, args.options)
    summary = run_zero_shot(args.images, args.out, config, overlays=not args.no_overlays)
    for row in summary["images"]:
        print(f"score {row['score']:.4f}  raw {row['raw_score']:.4f}  {row['image']}")
    for err in summary["errors"]:
        print(f"SKIP  {err['error']}", file=sys.stderr)
    print("time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["seconds"].items()))
    metrics = summary.get("metrics")
    if metrics:
        width = max(len(k) for k in metrics)
        for key, value in metrics.items():
            print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**(metrics or {}), "seconds": summary["seconds"]}, indent=2) + "\n")
    print(f"wrote {args.out}/maps.npy, scores.csv, results.json and overlays/")
    return 0


def cmd_bench_zero_shot(args: argparse.Namespace) -> int:
    from adinspect.zeroshot.bench import bench_batches, format_table

    config = load_zeroshot_options(args.config, args.options)
    results = bench_batches(args.data, args.sizes, config)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    return 0


def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="ZeroShotConfig fields as JSON/YAML")
    p.add_argument("--options", help='JSON overrides, e.g. \'{"layers": [1, 2], "degrees": [1, 3, 5]}\'')


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "zero-shot", help="score an unlabelled batch against itself (MuSc); metrics on a labelled dataset"
    )
    p.add_argument(
        "--images",
        type=Path,
        nargs="+",
        required=True,
        help="image files/folders, or one MVTec/KolektorSDD2 folder (its test split, with metrics)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", type=Path, help="write the metrics and timings here")
    p.add_argument("--no-overlays", action="store_true")
    _add_config_arguments(p)
    p.set_defaults(func=cmd_zero_shot)

    p = sub.add_parser("bench-zero-shot", help="time and peak memory of zero-shot batches of several sizes")
    p.add_argument("--data", type=Path, required=True, help="a dataset root or folder; images are cycled")
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 83, 200])
    p.add_argument("--json", type=Path, required=True)
    _add_config_arguments(p)
    p.set_defaults(func=cmd_bench_zero_shot)
