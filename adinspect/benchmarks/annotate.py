"""`adinspect bench-annotate`: a scripted annotator drives the annotate HTTP API like a person.

For every defective image of the chosen half (the same seeded split as `evaluate-clicks`) it opens
the image (`GET /api/images/{id}`, image.png, heatmap.png: what the page loads), then places up
to `max_clicks` clicks with the RITM click simulator against the ground truth. Each click is one
`POST /api/segment` at the original size (what the page asks for; its round trip is the per-click
latency) followed by the same request at model resolution (a cache hit), whose model-input mask the
simulator reads, exactly as `evaluate-clicks` reads ADClick's probability > 0.49. Clicks are sent
in original pixels (`unscale_click`), so the server scales them back to the simulator's pixels.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adinspect.annotate.server import ServerThread
from adinspect.annotate.service import Annotator
from adinspect.benchmarks.inprocess import latency_stats
from adinspect.data.datasets import Sample
from adinspect.evaluation.evaluate import load_mask_at
from adinspect.imageio import decode_mask
from adinspect.runtime.clicks import unscale_click
from adinspect.train.clicks import click_metrics, iou, next_click


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def _mask(url: str) -> np.ndarray:
    return decode_mask(base64.b64decode(url.split(",", 1)[1]), name="segment response")


def _annotate_one(url: str, image_id: int, sample: Sample, size: tuple[int, int], max_clicks: int) -> dict:
    """One image: open it, click until the masks agree or max_clicks; IoUs and timings."""
    t0 = time.perf_counter()
    info = json.loads(_get(f"{url}/api/images/{image_id}"))
    _get(url + info["image_url"])
    _get(url + info["heatmap_url"])
    open_ms = (time.perf_counter() - t0) * 1e3
    shape = (info["height"], info["width"])
    gt = load_mask_at(sample, shape, size)
    pred, clicked = np.zeros_like(gt), np.zeros_like(gt)
    clicks: list[dict] = []
    ious, click_ms = [], []
    for _ in range(max_clicks):
        c = next_click(gt, pred, clicked)
        if c is None:
            break
        clicked[c.y, c.x] = True
        o = unscale_click(c, shape, size)
        clicks.append({"x": o.x, "y": o.y, "positive": o.positive})
        body = {"image": image_id, "defect_type": sample.defect_type, "clicks": clicks}
        t = time.perf_counter()
        _post(f"{url}/api/segment", body)
        click_ms.append((time.perf_counter() - t) * 1e3)
        r = _post(f"{url}/api/segment", {**body, "resolution": "model"})
        if r["clicks_scaled"][-1] != {"x": c.x, "y": c.y, "positive": c.positive}:
            raise RuntimeError(f"image {image_id}: click {c} came back scaled as {r['clicks_scaled'][-1]}")
        pred = _mask(r["mask"])
        ious.append(iou(gt, pred))
    return {"ious": ious, "open_ms": open_ms, "click_ms": click_ms}


def bench_annotate(
    model_dir: Path, data_dir: Path, subset: str = "eval", seed: int = 0, max_clicks: int = 20,
    threads: int | None = None, compare: Path | None = None, progress: bool = True,
) -> dict:  # fmt: skip
    """Run the scripted annotator; NoC@80/85/90, IoU@k, latency and waiting time per image."""
    from adinspect.train.interactive import defective_pool  # the evaluate-clicks split and skips

    with tempfile.TemporaryDirectory() as labels:
        annotator = Annotator(model_dir, data_dir, Path(labels), threads)
        ids = {it.path: it.id for it in annotator.queue}
        size = annotator.runtime.model_shape  # (H_in, W_in): the simulator clicks at the model input
        samples = defective_pool(Path(data_dir), size, seed).subset(subset)
        per_image = []
        with ServerThread(annotator) as url:
            for s in tqdm(samples, desc="scripted annotator", disable=not progress):
                r = _annotate_one(url, ids[Path(s.path).resolve()], s, size, max_clicks)
                per_image.append({"image": str(s.path), "defect_type": s.defect_type, **r})
    out = summarise(per_image, max_clicks)
    out.update(subset=subset, seed=seed, model=str(model_dir), data=str(data_dir))
    if compare is not None:
        out["vs_evaluate_clicks"] = compare_with(out, json.loads(Path(compare).read_text()))
    return out


def summarise(per_image: list[dict], max_clicks: int) -> dict:
    """Click metrics (as evaluate-clicks), latency p50/p95 and waiting time per image."""
    metrics = click_metrics([p["ious"] for p in per_image], max_clicks)
    ious: list[float] = metrics["iou_at_k"]  # type: ignore[assignment]
    all_clicks = [ms for p in per_image for ms in p["click_ms"]]
    noc85 = [next((k for k, v in enumerate(p["ious"], 1) if v >= 0.85), len(p["ious"])) for p in per_image]

    def wait(p: dict, k: int) -> float:
        return (p["open_ms"] + sum(p["click_ms"][:k])) / 1e3

    return {
        "n_images": len(per_image),
        **metrics,
        "iou_at_3": ious[2] if max_clicks >= 3 else None,
        "iou_at_5": ious[4] if max_clicks >= 5 else None,
        "click_latency_ms": latency_stats(all_clicks),
        "open_latency_ms": latency_stats([p["open_ms"] for p in per_image]),
        "wait_s_per_image": {
            "3_clicks": float(np.mean([wait(p, 3) for p in per_image])),
            "5_clicks": float(np.mean([wait(p, 5) for p in per_image])),
            "until_iou_85": float(np.mean([wait(p, k) for p, k in zip(per_image, noc85, strict=True)])),
        },
        "images": [{**p, "ious": [round(v, 4) for v in p["ious"]]} for p in per_image],
    }


def compare_with(ours: dict, reference: dict) -> dict:
    """Differences to an evaluate-clicks JSON: metrics and per-image IoU curves."""
    ref_images = {r["image"]: r["iou"] for r in reference.get("images", [])}
    diffs = [
        float(np.max(np.abs(np.subtract(p["ious"], ref_images[p["image"]]))))
        for p in ours["images"]
        if p["image"] in ref_images and len(ref_images[p["image"]]) == len(p["ious"])
    ]
    ref_ious = reference["iou_at_k"]
    return {
        "noc85": [ours["noc85"], reference["noc85"]],
        "iou_at_3": [ours["iou_at_3"], ref_ious[2] if len(ref_ious) >= 3 else None],
        "iou_at_5": [ours["iou_at_5"], ref_ious[4] if len(ref_ious) >= 5 else None],
        "images_compared": len(diffs),
        "images_with_other_click_count": len(ours["images"]) - len(diffs),
        "max_abs_iou_diff": max(diffs) if diffs else None,
    }


def format_table(out: dict) -> str:
    lat, op, wait = out["click_latency_ms"], out["open_latency_ms"], out["wait_s_per_image"]
    rows = [
        ("images", f"{out['n_images']} ({out['subset']} half)"),
        ("NoC@80 / @85 / @90", f"{out['noc80']:.2f} / {out['noc85']:.2f} / {out['noc90']:.2f}"),
        ("IoU after 3 / 5 clicks", f"{_num(out['iou_at_3'])} / {_num(out['iou_at_5'])}"),
        ("per-click latency p50 / p95 (ms)", f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f}"),
        ("open image p50 / p95 (ms)", f"{op['p50_ms']:.1f} / {op['p95_ms']:.1f}"),
        ("waiting per image, 3 / 5 clicks / to IoU 0.85 (s)",
         f"{wait['3_clicks']:.2f} / {wait['5_clicks']:.2f} / {wait['until_iou_85']:.2f}"),
    ]  # fmt: skip
    if "vs_evaluate_clicks" in out:
        v = out["vs_evaluate_clicks"]
        rows.append(("evaluate-clicks NoC@85, IoU@3, IoU@5",
                     f"{v['noc85'][1]:.2f}, {_num(v['iou_at_3'][1])}, {_num(v['iou_at_5'][1])}"))  # fmt: skip
        rows.append(("max |ΔIoU| per image vs evaluate-clicks", f"{v['max_abs_iou_diff']}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k:<{width}} | {v} |" for k, v in rows)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"
