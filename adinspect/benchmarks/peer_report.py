"""The peer benchmark's outputs: peer.json (everything measured) and peer.md (a markdown table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METHOD_NAMES = {"adinspect": "adinspect (training-free)", "patchcore": "anomalib PatchCore"}
_COLUMNS = ("image_auroc", "pixel_auroc", "pixel_ap", "aupro")
_HEADER = (
    "| product | method | I-AUROC | P-AUROC | pixel AP | AUPRO | fit s "
    "| latency p50 ms, torch eager | latency p50 ms, ONNX Runtime |"
)


def write_peer(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write out_dir/peer.json and out_dir/peer.md; returns both paths.

    A metric that is not a finite number is an error (ValueError), not a `NaN` in the JSON.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "peer.json", out_dir / "peer.md"
    json_path.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    md_path.write_text(peer_table(results) + "\n")
    return json_path, md_path


def peer_table(results: dict[str, Any]) -> str:
    """A markdown table, one row per product and method, with the settings it was made with above it."""
    s = results["settings"]
    size = s["size"]
    shape = f"{size}x{size}" if s.get("square") else f"short side {size} (the package's input geometry)"
    lines = [
        f"Input {shape}; backbone {s.get('backbone', 'efficientnet_lite0')} for both; PatchCore layers "
        f"{' + '.join(s['layers'])}, coreset "
        f"{s['coreset']:.2%}; {s['threads']} thread(s); metrics by adinspect.metrics on maps at that input.",
        "",
        _HEADER,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for product in results["products"]:
        for key, method in product["methods"].items():
            metrics = [f"{method['metrics'][name]:.3f}" for name in _COLUMNS]
            latency = method["latency_ms"]
            timed = [_p50(latency.get(runtime)) for runtime in ("torch_eager", "onnxruntime")]
            cells = [product["name"], METHOD_NAMES.get(key, key), *metrics, f"{method['fit_seconds']:.1f}"]
            lines.append("| " + " | ".join(cells + timed) + " |")
    chosen = [_choice(p) for p in results["products"]]
    if any(chosen):
        said = "; ".join(filter(None, chosen))
        lines += ["", f"adinspect's choice (the default fit on PatchCore's backbone): {said}"]
    return "\n".join(lines)


def _choice(product: dict[str, Any]) -> str:
    choice = product["methods"].get("adinspect", {}).get("details", {}).get("choice")
    if not choice:
        return ""
    return f"{product['name']} " + ", ".join(f"{k} {v}" for k, v in choice.items() if k != "backbone")


def _p50(stats: dict[str, float] | None) -> str:
    return "-" if stats is None else f"{stats['p50_ms']:.1f}"
