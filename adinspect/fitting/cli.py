"""`adinspect fit` (wired into `adinspect` by `add_commands`). Imports what it needs when it runs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adinspect.config import PipelineConfig


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `fit`."""
    p = sub.add_parser("fit", help="fit a product on good images and write its model package")
    p.add_argument(
        "--data", type=Path, required=True, help="MVTec/KolektorSDD2 root or a folder of good images"
    )
    p.add_argument("--out", type=Path, required=True, help="model package directory to write")
    p.add_argument("--preset", default="cpu", help="named defaults: cpu or paper")
    p.add_argument("--config", type=Path, help="a full config (JSON/YAML) instead of --preset")
    p.add_argument("--product", help="product name (default: the data folder's name)")
    p.add_argument("--backbone", help="override the preset's backbone")
    p.add_argument("--weights", type=Path, help="backbone weights file")
    p.add_argument(
        "--random-weights", action="store_true", help="allow a random backbone (results labelled so)"
    )
    p.add_argument("--method", help="JSON overrides of method fields, e.g. '{\"k_neighbors\": 8}'")
    _add_input_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--target-frr",
        metavar="RATE",
        help="target false-reject rate of good parts, in (0, 0.5) (default 0.01): the threshold is set "
        "from every good image's out-of-fold score",
    )
    p.add_argument(
        "--memory-budget",
        type=positive_int("--memory-budget"),
        metavar="MB",
        help="peak memory fit may plan for (default: 70%% of the available RAM); checked before any work",
    )
    p.add_argument(
        "--max-references",
        type=positive_int("--max-references"),
        metavar="N",
        help="keep at most N references: a k-center greedy subset in the retrieval space",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing package (only once the new one is complete)",
    )
    p.add_argument(
        "--clean",
        action="store_true",
        help="drop good images whose zero-shot mutual score stands out before fitting (robust z-score)",
    )
    p.add_argument("--clean-z", type=float, default=3.0, help="--clean drops images with z above this")
    p.add_argument(
        "--auto",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="(default) choose the backbone (EfficientNet-Lite0/1/2 unless --backbone/--weights/--config "
        "name one), the matching (local/global), the map normalisation (none/zscore), turns of the bank "
        "and, where the images are large enough and time allows, a larger input (unless --image-size or "
        "--input-shape fix it) from the good images and synthetic anomalies painted on them; the choice "
        "and its evidence go into the model "
        "card. --no-auto: the preset's settings as they are (faster)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_fit)


def _add_input_options(p: argparse.ArgumentParser) -> None:
    """The network input's size and shape."""
    p.add_argument(
        "--image-size",
        type=positive_int("--image-size"),
        metavar="S",
        help="short side of the network input (default: the preset's, 256 for cpu); larger keeps more "
        "detail of high-resolution images at more time and memory",
    )
    p.add_argument(
        "--input-shape",
        metavar="HxW",
        help="network input, height x width, e.g. 640x256 (default: from the training images: S x S when "
        "they are within 1.15 of square, else short side S and the long side following their aspect)",
    )


def cmd_fit(args: argparse.Namespace) -> int:
    from adinspect.fitting.fit import fit_product

    config = config_from_args(args)  # every bad value is an `error:` line before any work
    clean = None
    if args.clean:
        from adinspect.config import ConfigError
        from adinspect.zeroshot.config import CleanConfig

        if not args.clean_z > 0:
            raise ConfigError(f"--clean-z: expected a positive z-score limit, got {args.clean_z}")
        clean = CleanConfig(z_max=args.clean_z)
    if args.image_size is not None and args.input_shape is None:
        from adinspect.data.datasets import open_dataset
        from adinspect.fitting.input_shape import check_asked_size

        check_asked_size(config, open_dataset(args.data).train)  # before any work
    fixed = args.config is not None or args.backbone or args.weights or args.random_weights
    report = fit_product(
        args.data,
        config,
        args.out,
        overwrite=args.overwrite,
        progress=not args.quiet,
        clean=clean,
        auto=args.auto,
        backbones=[config.backbone.name] if fixed else None,
        sizes=not fixed and args.image_size is None and args.input_shape is None,
    )
    _print_report(report)
    return 0


def config_from_args(args: argparse.Namespace):
    """The PipelineConfig `fit`'s options describe: --config, or the preset with the overrides."""
    from adinspect.config import load_config, preset_config, validate_config

    if args.config is not None:
        config = load_config(args.config)
    else:
        backbone: dict = {}
        if args.backbone:
            backbone["name"] = args.backbone
        if args.weights:
            backbone["weights"] = str(args.weights)
        if args.random_weights:
            backbone["allow_random"] = True
        method = _json_arg(args.method, "--method") if args.method else {}
        config = preset_config(
            args.preset,
            args.product or _product_name(args.data),
            backbone=backbone,
            method=method,
            seed=args.seed,
        )
    scale = {
        key: value
        for key, value in (("memory_budget_mb", args.memory_budget), ("max_references", args.max_references))
        if value is not None
    }
    calibration = {}
    if args.target_frr is not None:
        calibration["target_frr"] = parse_rate(args.target_frr, "--target-frr", 0.0, 0.5)
    if scale or calibration:
        raw = json.loads(config.model_dump_json())
        raw["scale"].update(scale)
        raw["calibration"].update(calibration)
        config = validate_config(raw, source="fit's command line")
    return _with_input(config, args.image_size, args.input_shape)


def _print_report(report) -> None:
    print(
        f"wrote {report.out_dir}: {report.n_references} references, {report.n_scored} good images scored "
        f"out of fold, threshold {report.threshold:.4g}"
    )
    if report.statement:
        print(f"threshold: {report.statement}")
    if report.choice:
        print("fit --auto chose " + ", ".join(f"{k} {v}" for k, v in report.choice.items()))
    print("fit time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report.seconds.items()))
    print(
        f"parity ONNX Runtime vs torch: max |Δmap| {report.parity['map_max_abs_diff']:.2e}, "
        f"max |Δscore| {report.parity['score_max_abs_diff']:.2e}"
    )
    m = report.memory
    print(
        f"memory: peak resident {m['peak_rss_mb']:.0f} MB (estimate {m['estimate_mb']:.0f} MB, "
        f"budget {m['budget_mb']:.0f} MB, bank {m['bank_mb']:.0f} MB)"
    )


def _with_input(config: PipelineConfig, image_size: int | None, input_shape: str | None) -> PipelineConfig:
    """The config with `--image-size` and `--input-shape` applied; a bad value is one ConfigError line."""
    from adinspect.config import ConfigError, check_input_shape, validate_config
    from adinspect.fitting.input_shape import parse_input_shape

    if image_size is None and input_shape is None:
        return config
    method: dict = {}
    step = config.method.side_multiple
    if image_size is not None and (image_size % step or not 64 <= image_size <= 2048):
        raise ConfigError(
            f"--image-size: S must be a multiple of {step} between 64 and 2048, got {image_size}"
        )
    if input_shape is not None:
        shape = parse_input_shape(input_shape)
        if image_size is not None and image_size != min(shape):
            raise ConfigError(
                f"--image-size {image_size} and --input-shape {input_shape} disagree: the short side of the "
                "input is S; give one of them"
            )
        try:
            check_input_shape(
                config.method.model_copy(update={"input_shape": shape, "image_size": min(shape)})
            )
        except ValueError as exc:
            raise ConfigError(str(exc).replace("method.input_shape", "--input-shape")) from exc
        method.update(input_shape=list(shape), image_size=min(shape))
    else:
        method.update(image_size=image_size, input_shape=None)
    raw = json.loads(config.model_dump_json())
    return validate_config({**raw, "method": {**raw["method"], **method}}, source="fit's command line")


def _json_arg(text: str, flag: str) -> dict:
    from adinspect.config import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag}: not valid JSON ({exc}); e.g. {flag} '{{\"k_neighbors\": 8}}'") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{flag}: expected a JSON object, got {text!r}")
    return value


def parse_rate(text: str, flag: str, low: float, high: float) -> float:
    """A number strictly between `low` and `high`, else a ConfigError (one `error:` line, exit 2).

    Parsed in the command rather than by argparse, whose errors print the usage too."""
    from adinspect.config import ConfigError

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low < value < high:  # NaN fails too
        raise ConfigError(
            f"{flag}: expected a rate strictly between {low:g} and {high:g}, e.g. 0.01, got {text!r}"
        )
    return value


def positive_int(flag: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} expects a positive integer, got {text!r}")
        return value

    return parse


def _product_name(data: Path) -> str:
    import re

    name = re.sub(r"[^a-z0-9_]", "_", Path(data).resolve().name.lower()).strip("_") or "product"
    return name if name[0].isalpha() else f"p_{name}"
