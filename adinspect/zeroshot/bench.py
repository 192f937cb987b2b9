"""`adinspect bench-zero-shot`: wall time, CPU time and peak memory of zero-shot batches of several sizes.

Each batch size runs in a fresh process (spawn), so its peak resident memory (ru_maxrss) is its
own. Mutual scoring is quadratic in the batch size N; the memory that grows with N is the
(N, N, P) table of nearest distances of one (layer, degree) at a time plus the patch features,
so `estimate_bytes` extrapolates to batches nobody wants to wait for (e.g. 1000).
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from pathlib import Path

from adinspect.zeroshot.config import ZeroShotConfig


def dataset_images(data: Path) -> list[Path]:
    """All images of a dataset (training, then test) or of a folder, in a fixed order."""
    from adinspect.data.datasets import open_dataset

    dataset = open_dataset(Path(data), require_masks=False)
    return list(dataset.train) + [s.path for s in dataset.test]


def estimate_bytes(
    n: int, config: ZeroShotConfig, channels: tuple[int, ...], strides: tuple[int, ...]
) -> dict:
    """Memory that grows with the batch: patch features of every (layer, degree) and one distance table."""
    from adinspect.zeroshot.parallel import worker_count  # imports torch: only when estimating

    grids = {layer: min(config.image_size // strides[layer], config.max_grid) for layer in config.layers}
    features = sum(
        4 * n * grids[layer] ** 2 * (config.feature_dim or channels[layer]) * len(config.degrees)
        for layer in config.layers
    )
    table = 4 * n * n * max(grids.values()) ** 2
    blocks = config.block_kb * 1024 * worker_count(config)  # one similarity block per worker
    return {"features": features, "distance_table": table, "block": blocks}


def _run_one(paths: list[str], config_json: str, queue) -> None:
    from adinspect.imageio import read_image
    from adinspect.zeroshot.api import score_images

    config = ZeroShotConfig.model_validate_json(config_json)
    images = [read_image(p) for p in paths]
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = score_images(images, config)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    queue.put(
        {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": after.ru_maxrss / 1024, "stages_s": result.seconds}
    )


def _result_of(proc, queue, n: int) -> dict:
    """The child's row; a child that died (e.g. out of memory) is an error, not a hang."""
    import queue as queue_module

    while True:
        try:
            return queue.get(timeout=5.0)
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"zero-shot batch of {n} failed (exit code {proc.exitcode})") from None


def bench_batches(data: Path, sizes: list[int], config: ZeroShotConfig) -> dict:
    """Run each batch size once in its own process; images are the dataset's, cycled if too few."""
    from adinspect.features.backbones import backbone_spec

    spec = backbone_spec(config.backbone)
    images = [str(p) for p in dataset_images(data)]
    ctx = mp.get_context("spawn")
    runs = []
    for n in sizes:
        queue = ctx.Queue()
        proc = ctx.Process(
            target=_run_one,
            args=([images[i % len(images)] for i in range(n)], config.model_dump_json(), queue),
        )
        proc.start()
        row = _result_of(proc, queue, n)
        proc.join()
        est = estimate_bytes(n, config, spec.channels, spec.strides)
        runs.append({"n_images": n, **row, "estimated_growing_mb": sum(est.values()) / 2**20})
    est_1000 = estimate_bytes(1000, config, spec.channels, spec.strides)
    base = min(r["peak_rss_mb"] - r["estimated_growing_mb"] for r in runs)
    return {
        "config": config.model_dump(mode="json"),
        "data": str(data),
        "runs": runs,
        "estimate_1000": {
            **{f"{k}_mb": v / 2**20 for k, v in est_1000.items()},
            "fixed_mb": base,
            "peak_mb": base + sum(est_1000.values()) / 2**20,
            "wall_s_quadratic": runs[-1]["wall_s"] * (1000 / runs[-1]["n_images"]) ** 2,
        },
    }


def format_table(results: dict) -> str:
    lines = [
        "| images | wall s | CPU s | peak RSS MB | growing part (estimate) MB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['n_images']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['estimated_growing_mb']:.0f} |"
        )
    e = results["estimate_1000"]
    lines.append(
        f"| 1000 (estimate) | ~{e['wall_s_quadratic']:.0f} | | ~{e['peak_mb']:.0f} | "
        f"{e['distance_table_mb'] + e['features_mb'] + e['block_mb']:.0f} |"
    )
    return "\n".join(lines)
