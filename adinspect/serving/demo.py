"""The Triton part of `adinspect demo`: build the repository, serve on loopback, inspect, bench."""

from __future__ import annotations

from pathlib import Path

from adinspect.data.datasets import open_dataset
from adinspect.package import ModelPackage


def serve_demo(model: Path, data: Path, out: Path) -> dict:
    """Serve one package through the cpu-flavour ensemble; returns what it measured."""
    from adinspect.client import InspectionClient
    from adinspect.serving.bench import format_table, run_serving_bench
    from adinspect.serving.repository import build_repository
    from adinspect.serving.server import TritonServer

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
                r = client.inspect(path.read_bytes(), product, name=path.name)
                print(f"  {r.verdict.upper():4} {r.score:8.3f}  {len(r.regions)} regions  {r.image}")
        print("== bench: in-process vs Triton at concurrency 1, 2, 4, 8, and perf_analyzer")
        results = run_serving_bench(model, images, server.grpc_url, out / "bench_serving.json")
    print(format_table(results))
    return {"repository": str(repo), "bench": str(out / "bench_serving.json")}
