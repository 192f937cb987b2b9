"""`adinspect predict`: inspect image files in-process, write overlays and a results table.

Each image's row is written to results.csv as soon as it is inspected, so an interruption loses
nothing already done; an unreadable file is reported and skipped, the rest are still inspected.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import cv2

from adinspect.imageio import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageReadError, read_image, write_png
from adinspect.runtime.inspector import Inspection, Inspector

CSV_FIELDS = ["image", "product", "score", "threshold", "verdict", "reason", "n_regions", "regions"]


def expand_inputs(inputs: Iterable[Path], skipped: list[Path] | None = None) -> list[Path]:
    """Files as given; directories expanded to their images (sorted, recursive). The other files found
    in the directories (no image extension, or hidden) are appended to `skipped` when it is given."""
    out: list[Path] = []
    for p in map(Path, inputs):
        if not p.is_dir():
            out.append(p)
            continue
        for q in sorted(q for q in p.rglob("*") if q.is_file()):
            if q.suffix.lower() in IMAGE_EXTENSIONS and not q.name.startswith("."):
                out.append(q)
            elif skipped is not None:
                skipped.append(q)
    return out


def skipped_line(skipped: list[Path]) -> str:
    """One line saying which files a folder held that are not inspected."""
    return (
        f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''} without an image extension "
        f"({', '.join(IMAGE_EXTENSIONS)}) or hidden, e.g. {skipped[0]}"
    )


def overlay_name(path: Path, used: set[str]) -> str:
    """A unique overlay file name: the image's stem, prefixed by its folders when stems repeat
    (MVTec's test/broken_large/000.png and test/contamination/000.png)."""
    name, parent = path.stem, path.parent
    while name in used and parent.name:
        name, parent = f"{parent.name}_{name}", parent.parent
    used.add(name)
    return f"{name}.png"


def overlay(inspection: Inspection, image) -> cv2.typing.MatLike:
    from adinspect.evaluation.plots import draw_regions, overlay_heatmap

    threshold = inspection.result.threshold
    drawn = overlay_heatmap(image, inspection.anomaly_map, vmin=0.0, vmax=2.0 * threshold)
    return draw_regions(drawn, inspection.result.regions, color=(255, 255, 255))


def predict(
    model_dir: Path,
    inputs: Iterable[Path],
    out_dir: Path,
    overlays: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    product: str | None = None,
) -> dict:
    """Inspect every input; returns {"results": [...], "errors": [...], "skipped": [...]} (also written
    to results.json); "skipped" lists the files in the given folders that are not images.

    `product`: whose threshold decides; required for a unified package, optional otherwise."""
    inspector = Inspector(model_dir, product=product)
    out_dir = Path(out_dir)
    (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    results, errors = [], []
    skipped: list[Path] = []
    paths = expand_inputs(inputs, skipped)
    used_names: set[str] = set()
    with open(out_dir / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for path in paths:
            try:
                image = read_image(path, max_pixels=max_pixels)
                inspection = inspector.inspect(image, name=str(path))
            except (ImageReadError, ValueError) as exc:  # this file is bad; the others still run
                errors.append({"image": str(path), "error": str(exc)})
                continue
            r = inspection.result
            writer.writerow(
                {
                    "image": r.image,
                    "product": r.product,
                    "score": f"{r.score:.6g}",
                    "threshold": f"{r.threshold:.6g}",
                    "verdict": r.verdict,
                    "reason": r.reason,
                    "n_regions": len(r.regions),
                    "regions": json.dumps([reg.model_dump() for reg in r.regions]),
                }
            )
            fh.flush()
            name = overlay_name(path, used_names)
            if overlays:
                write_png(out_dir / "overlays" / name, overlay(inspection, image))
            results.append({**r.model_dump(), "overlay": f"overlays/{name}" if overlays else None})
    summary = {
        "model": str(model_dir),
        "results": results,
        "errors": errors,
        "skipped": list(map(str, skipped)),
    }
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
