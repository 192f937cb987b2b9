"""`adinspect demo`: the whole path on real data when present, else on generated images.

fit → evaluate (metrics, curves, overlays) → predict → bench, then the Triton steps when the
serving extra is installed. Every artifact lands under --out; nothing is written elsewhere.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from adinspect.config import preset_config

DEFAULT_REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mvtec_ad" / "bottle"


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def run_demo(out: Path, data: Path | None = None, preset: str = "cpu", serve: bool = True) -> dict:
    """Run the demo; returns a summary dict (also written to out/summary.json)."""
    from adinspect.benchmarks.inprocess import bench_inprocess, write_bench
    from adinspect.data.datasets import open_dataset
    from adinspect.data.synthetic import make_synthetic_dataset
    from adinspect.evaluation.evaluate import evaluate_package
    from adinspect.evaluation.predict import predict
    from adinspect.fitting.fit import fit_product

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        if (DEFAULT_REAL / "train" / "good").is_dir():
            data = DEFAULT_REAL
        else:
            data = out / "data" / "widget"
            if not (data / "train").is_dir():
                print(f"no real data at {DEFAULT_REAL}; generating a synthetic product in {data}")
                make_synthetic_dataset(data, kind="object", seed=0)
    product = open_dataset(data).name.lower().replace("-", "_")
    summary: dict = {"data": str(data), "product": product, "preset": preset}

    t = _step(f"fit {product} ({preset} preset) on {data}")
    model = out / "models" / product
    report = fit_product(data, preset_config(preset, product), model, overwrite=True, auto=True)  # as `fit`
    summary["fit_seconds"] = round(time.perf_counter() - t, 1)
    summary["threshold"] = report.threshold
    print(f"fitted in {summary['fit_seconds']} s, threshold {report.threshold:.4g}")

    _step("evaluate on the labelled test split")
    metrics = evaluate_package(model, data, plots_dir=out / "plots")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    summary["metrics"] = metrics
    for key, value in metrics.items():
        print(f"  {key:<18} {value:.4f}" if isinstance(value, float) else f"  {key:<18} {value}")

    _step("predict: overlays and results for a few test images")
    test = open_dataset(data).test
    picks = [s.path for s in test[:: max(1, len(test) // 8)]][:8]
    predicted = predict(model, picks, out / "predict")
    for r in predicted["results"]:
        print(
            f"  {r['verdict'].upper():4} {r['score']:8.3f}  {len(r['regions'])} regions  "
            f"{Path(r['image']).name}"
        )

    _step("bench: ONNX Runtime inspector vs torch eager")
    bench = bench_inprocess(model, data, n_images=20)
    print(write_bench(bench, out / "bench.json"))
    summary["bench"] = json.loads((out / "bench.json").read_text())

    if serve:
        summary["serving"] = _serve(model, data, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nall artifacts in {out} (summary.json, metrics.json, plots/, predict/, bench.json)")
    return summary


def _serve(model: Path, data: Path, out: Path) -> dict:
    """Build a Triton repository, serve it on loopback, inspect over gRPC, bench (needs the serving extra)."""
    try:
        from adinspect.benchmarks.serving import format_table, run_serving_bench
        from adinspect.client import InspectionClient
        from adinspect.repository.build import build_repository
        from adinspect.server.launch import TritonServer
    except ImportError as exc:
        print(f"\n(skipping the Triton steps: {exc}; install the serving extra)")
        return {"skipped": str(exc)}
    from adinspect.data.datasets import open_dataset
    from adinspect.package import ModelPackage

    product = ModelPackage.load(model, verify=False).product
    repo = out / "model_repository"
    print(f"\n== build the Triton repository (cpu flavour) in {repo}")
    build_repository([model], "cpu", repo)
    test = open_dataset(data).test
    images = [s.path for s in test[:: max(1, len(test) // 20)]][:20]
    with TritonServer(repo, log_file=out / "triton.log") as server:
        print(
            f"== tritonserver ready on {server.grpc_url} (gRPC, loopback only); log in {out / 'triton.log'}"
        )
        with InspectionClient(server.grpc_url) as client:
            for path in images[:6]:
                name = path.relative_to(data).as_posix() if path.is_relative_to(data) else str(path)
                r = client.inspect(path.read_bytes(), product, name=name)  # test/<type>/000.png: unique
                why = f"  ({r.reason})" if r.verdict == "fail" else ""
                print(f"  {r.verdict.upper():4} {r.score:8.3f}  {len(r.regions)} regions  {r.image}{why}")
        print("== bench: in-process vs Triton at concurrency 1, 2, 4, 8, and perf_analyzer")
        results = run_serving_bench(model, images, server.grpc_url, out / "bench_serving.json")
    print(format_table(results))
    return {"repository": str(repo), "bench": str(out / "bench_serving.json")}
