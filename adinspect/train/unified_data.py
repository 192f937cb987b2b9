"""The good images of several products, served as shuffled batches one step at a time.

Only paths are held: each batch is read, resized to the input side and normalised when it is
needed (the next batch is read on a worker thread while the current step computes), so memory
does not grow with the data set. The order is a fixed function of (seed, epoch), so a resumed
run sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adinspect.data.datasets import DatasetError, open_dataset
from adinspect.imageio import read_image
from adinspect.geometry import PreprocessSpec, preprocess


@dataclass(frozen=True)
class ProductImages:
    """One product's defect-free training images (MVTec `train/good`, or every image of a folder)."""

    name: str
    root: Path
    paths: tuple[Path, ...]


def gather_products(roots: list[Path]) -> list[ProductImages]:
    """Read each root's good training images.

    Raises:
        DatasetError: no roots, a missing or empty folder (named), or two roots with the same
            product name (the folder name), which per-product calibration could not tell apart.
    """
    if not roots:
        raise DatasetError("no data folders given; pass one or more product folders with --data")
    products: list[ProductImages] = []
    for root in roots:
        dataset = open_dataset(Path(root), require_masks=False)
        if not dataset.train:
            raise DatasetError(
                f"{root}: no good training images ({dataset.layout} layout); add images to train/good/"
            )
        if any(p.name == dataset.name for p in products):
            raise DatasetError(
                f"{root}: product name {dataset.name!r} is already used by another --data folder; "
                "rename one of the folders"
            )
        products.append(ProductImages(dataset.name, Path(root), tuple(dataset.train)))
    return products


class ShuffledBatches:
    """Batches of normalised images (B, 3, S, S) float32 over all products' images together.

    Step t of a run takes positions [t·B, (t+1)·B) of an endless sequence of epochs, each a
    permutation of all images drawn from (seed, epoch); an epoch's tail that does not fill a
    batch is dropped (static batch size).
    """

    def __init__(self, paths: list[Path], spec: PreprocessSpec, batch_size: int, seed: int) -> None:
        if batch_size > len(paths):
            raise DatasetError(
                f"batch size {batch_size} is larger than the {len(paths)} training images; "
                "lower --batch-size or add images"
            )
        self.paths, self.spec, self.batch_size, self.seed = paths, spec, batch_size, seed
        self.per_epoch = len(paths) // batch_size
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="adinspect-batches")
        self._pending: tuple[int, Future[np.ndarray]] | None = None

    def indices(self, step: int) -> np.ndarray:
        """Image indices of step `step` (B,)."""
        epoch, within = divmod(step, self.per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.paths))
        return order[within * self.batch_size : (within + 1) * self.batch_size]

    def _read(self, step: int) -> np.ndarray:
        return np.stack([preprocess(read_image(self.paths[i]), self.spec) for i in self.indices(step)])

    def __call__(self, step: int) -> np.ndarray:
        """The batch of `step`; starts reading the batch of `step + 1` in the background."""
        pending, self._pending = self._pending, None
        batch = pending[1].result() if pending is not None and pending[0] == step else self._read(step)
        self._pending = (step + 1, self._pool.submit(self._read, step + 1))
        return batch

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
