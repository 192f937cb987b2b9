"""The `adinspect` command line. Each command imports what it needs, so `predict` never loads torch."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from adinspect.errors import InputError

EXIT_BAD_INPUT = 2


def _print_json(obj: object, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2) + "\n")


def cmd_fit(args: argparse.Namespace) -> int:
    from adinspect.config import load_config, preset_config, validate_config
    from adinspect.fit import fit_product

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
    if scale:
        raw = json.loads(config.model_dump_json())
        config = validate_config({**raw, "scale": {**raw["scale"], **scale}}, source="fit's command line")
    clean = None
    if args.clean:
        from adinspect.config import ConfigError
        from adinspect.zeroshot.config import CleanConfig

        if not args.clean_z > 0:
            raise ConfigError(f"--clean-z: expected a positive z-score limit, got {args.clean_z}")
        clean = CleanConfig(z_max=args.clean_z)
    report = fit_product(
        args.data, config, args.out, overwrite=args.overwrite, progress=not args.quiet, clean=clean
    )
    print(
        f"wrote {report.out_dir}: {report.n_references} references, {report.n_holdout} held out, "
        f"threshold {report.threshold:.4g}"
    )
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
    return 0


def _json_arg(text: str, flag: str) -> dict:
    from adinspect.config import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag}: not valid JSON ({exc}); e.g. {flag} '{{\"k_neighbors\": 8}}'") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{flag}: expected a JSON object, got {text!r}")
    return value


def _positive_int(flag: str) -> Callable[[str], int]:
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


def cmd_predict(args: argparse.Namespace) -> int:
    from adinspect.predict import predict

    summary = predict(
        args.model, args.images, args.out, overlays=not args.no_overlays, max_pixels=args.max_pixels
    )
    for r in summary["results"]:
        why = f"  ({r['reason']})" if r["reason"] and r["verdict"] == "fail" and not r["regions"] else ""
        print(
            f"{r['verdict'].upper():4}  score {r['score']:.4g} (threshold {r['threshold']:.4g})  "
            f"regions {len(r['regions'])}  {r['image']}{why}"
        )
    for e in summary["errors"]:
        print(f"SKIP  {e['error']}", file=sys.stderr)
    print(f"wrote {args.out}/results.csv, results.json and overlays/")
    return 1 if summary["errors"] and not summary["results"] else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from adinspect.evaluation import evaluate_package

    metrics = evaluate_package(args.model, args.data, plots_dir=args.plots, progress=not args.quiet)
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if metrics.get("n_pseudo_labelled"):
        print(
            f"note: ADClick-Seg was trained on pseudo labels of {metrics['n_pseudo_labelled']} of these "
            "images; `adinspect evaluate-seg` scores the held-out half only"
        )
    _print_json(metrics, args.json)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.serving:
        from adinspect.serving.cli import run_bench_serving

        return run_bench_serving(args)
    from adinspect.bench import bench_inprocess, write_bench

    results = bench_inprocess(
        args.model,
        args.data,
        n_images=args.images,
        warmup=args.warmup,
        threads=args.threads,
        eager=not args.no_eager,
    )
    print(write_bench(results, args.json))
    return 0


def cmd_bench_scale(args: argparse.Namespace) -> int:
    from adinspect.scale_bench import run_scale_bench, scale_table, subset_quality

    if args.subset_fractions:
        subset_quality(args.data, args.out, args.presets[0], args.subset_fractions)
        print(f"wrote {args.out}/subsets.json")
        return 0
    results = run_scale_bench(
        args.data,
        args.out,
        presets=args.presets,
        sizes=args.sizes,
        random_weights=args.random_weights,
        n_images=args.images,
        generated=args.generated_features,
    )
    print(scale_table(results))
    print(f"wrote {args.out}/scale.json, scale.md and scale.png")
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from adinspect.features.backbones import backbone_spec, list_backbones

    for name in list_backbones():
        spec = backbone_spec(name)
        print(f"{name:<20} channels {spec.channels} strides {spec.strides}  {spec.licence}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from adinspect.data.synthetic import make_synthetic_dataset

    try:
        root = make_synthetic_dataset(
            args.out, kind=args.kind, seed=args.seed, n_test_defect=args.n_test_defect,
            capture_shift=args.capture_shift, misalign=args.misalign,
        )  # fmt: skip
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    print(f"wrote synthetic {args.kind} dataset to {root}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from adinspect.demo import run_demo

    run_demo(args.out, data=args.data, preset=args.preset, serve=not args.no_serve)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adinspect", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--memory-budget",
        type=_positive_int("--memory-budget"),
        metavar="MB",
        help="peak memory fit may plan for (default: 70%% of the available RAM); checked before any work",
    )
    p.add_argument(
        "--max-references",
        type=_positive_int("--max-references"),
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
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="inspect images in-process; write overlays and results")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("images", type=Path, nargs="+", help="image files or folders")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--no-overlays", action="store_true")
    p.add_argument(
        "--max-pixels", type=int, default=40_000_000, help="skip larger images (checked before decoding)"
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="metrics of a package on a labelled test set")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--json", type=Path)
    p.add_argument("--plots", type=Path, help="folder for ROC/PR curves and an overlay grid")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="latency of the in-process inspector vs the torch eager reference")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--no-eager", action="store_true", help="skip the torch reference (no torch needed)")
    from adinspect.serving.cli import add_bench_serving_arguments

    add_bench_serving_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-scale", help="fit time, memory, package size and latency against bank size")
    p.add_argument("--data", type=Path, required=True, help="a dataset with good training and test images")
    p.add_argument(
        "--out", type=Path, required=True, help="folder for scale.json/.md/.png, subsets, packages"
    )
    p.add_argument("--presets", nargs="+", default=["cpu", "paper"])
    p.add_argument("--sizes", nargs="+", type=_positive_int("--sizes"), default=[25, 50, 100, 200, 400])
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="random backbone weights where none are offline (the paper preset's WRN50); labelled so",
    )
    p.add_argument("--images", type=int, default=10, help="test images timed per point")
    p.add_argument(
        "--generated-features",
        nargs="*",
        default=[],
        metavar="PRESET",
        help="presets whose fit skips the backbone: features generated at the preset's shapes",
    )
    p.add_argument(
        "--subset-fractions",
        nargs="+",
        type=float,
        metavar="F",
        help="instead: image AUROC/AUPRO of k-center banks at these fractions of the references "
        "(first of --presets; the images are embedded once)",
    )
    p.set_defaults(func=cmd_bench_scale)

    p = sub.add_parser("backbones", help="list registered backbones")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("synth", help="write a synthetic MVTec-layout dataset")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--kind", choices=["object", "texture"], default="object")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-test-defect", type=int, default=12, help="defective test images (cycling the types)")
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
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("demo", help="fit, evaluate, predict, bench (and serve on Triton) in one go")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--data", type=Path, help="dataset root (default: the shared bottle data, else synthetic)")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--no-serve", action="store_true", help="skip the Triton steps")
    p.set_defaults(func=cmd_demo)

    for register in _plugin_parsers():
        register(sub)
    return parser


def _plugin_parsers() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Sub-command groups owned by other modules (serving, training); each adds its own parsers."""
    from adinspect.annotate.cli import register as register_annotate
    from adinspect.serving.cli import register as register_serving
    from adinspect.train.cli import add_parser as register_training
    from adinspect.zeroshot.cli import register as register_zeroshot

    return [register_serving, register_training, register_annotate, register_zeroshot]


def main(argv: Sequence[str] | None = None) -> int:
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
