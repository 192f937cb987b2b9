"""A product that lies at any rotation, made from one that is photographed upright.

Parts that are not fixtured (a screw on a belt, a stamped part dropped in a tray) are photographed at
any angle. `write_turned_copy` writes an MVTec-layout copy of a product in which every image, good
and defective, training and test, is turned about its centre by its own seeded random angle, and
every defect mask with it, so such a line can be measured from real images (`adinspect synth
--turned-from`). The corners that come into view repeat the image's border (the background, for a
part photographed with a margin); a turned mask keeps its defect wherever it stays in view.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from adinspect.data.datasets import DatasetError, open_dataset
from adinspect.geometry import turned_in_frame
from adinspect.imageio import read_image, read_mask, write_png

MARKER = "turned.json"


def turn_by(image: np.ndarray, degrees: float, mask: bool = False) -> np.ndarray:
    """`image` (H, W[, C]) turned counter-clockwise by `degrees` about its centre, in its own frame:
    bilinear with the border repeated, or, for a `mask`, nearest with no defect coming into view."""
    if mask:
        return turned_in_frame(image, degrees, cv2.BORDER_CONSTANT, cv2.INTER_NEAREST)
    return turned_in_frame(image, degrees, cv2.BORDER_REPLICATE)


def write_turned_copy(source: str | os.PathLike[str], out: str | os.PathLike[str], seed: int = 0) -> Path:
    """Copy the MVTec-layout product `source` to `out` with every image and mask turned by a random
    angle in [0°, 360°) (seeded: the same seed gives the same copy). Returns `out`.

    Raises:
        FileExistsError: `out` exists and is not empty.
        DatasetError: `source` is not a readable product (names what is missing).
    """
    dataset = open_dataset(source)
    if dataset.layout != "mvtec":
        raise DatasetError(
            f"{source}: a turned copy needs the MVTec layout (train/good, test/<type>, ground_truth/<type>), "
            f"found the {dataset.layout} layout"
        )
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not empty; choose a new folder for the turned copy")
    rng = np.random.default_rng(seed)
    angles: dict[str, float] = {}

    def copy(path: Path, folder: Path, mask: Path | None = None) -> None:
        degrees = float(rng.uniform(0.0, 360.0))
        relative = folder / f"{path.stem}.png"
        angles[str(relative)] = degrees
        write_png(root / relative, turn_by(read_image(path), degrees))
        if mask is not None:
            turned_mask = turn_by((read_mask(mask) > 0).astype(np.uint8) * 255, degrees, mask=True)
            write_png(root / "ground_truth" / folder.name / f"{path.stem}_mask.png", turned_mask)

    for path in dataset.train:
        copy(path, Path("train/good"))
    for sample in dataset.test:
        kind = "good" if sample.label == 0 else sample.path.parent.name
        copy(sample.path, Path("test") / kind, sample.mask_path if sample.label == 1 else None)
    record = {"source": str(Path(source).resolve()), "seed": seed, "degrees": angles}
    (root / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    return root
