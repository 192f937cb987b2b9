"""The good images of several products for one InvAD: split, embedded once, served as batches.

Each product's good images are split (seeded) into training images and held-out images; the
held-out ones are never trained on and later calibrate that product's threshold. The training
images go through the frozen backbone once; their maps are written to a feature file on disk
(fp16, one fixed-size record per image) and each step reads only its batch back, so memory does
not grow with the data set and the backbone's cost is paid once instead of every epoch. The batch
order is a fixed function of (seed, epoch), so a resumed run sees exactly the batches an
uninterrupted run would have seen; the next batch is read on a worker thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from adinspect.config import check_product_name
from adinspect.data.datasets import DatasetError, open_dataset
from adinspect.geometry import PreprocessSpec, preprocess_batch
from adinspect.imageio import read_image


@dataclass(frozen=True)
class ProductImages:
    """One product's defect-free images (MVTec `train/good`, or every image of a plain folder)."""

    name: str
    root: Path
    train: tuple[Path, ...]
    holdout: tuple[Path, ...]  # never trained on: they calibrate the product's threshold


def split_goods(n: int, fraction: float, min_holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of n good images into (training indices, held-out indices), both sorted; the
    held-out share is max(min_holdout, round(fraction · n)) as for `adinspect fit`."""
    n_hold = max(min_holdout, int(round(fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def gather_products(
    roots: Sequence[Path], fraction: float = 0.1, min_holdout: int = 4, seed: int = 0
) -> list[ProductImages]:
    """Each root's good images, split into training and held-out images.

    Raises:
        DatasetError: no roots; a missing or empty folder; a folder name that cannot name a product
            (it becomes a Triton model name); two roots with the same name; too few images to hold
            some out and train on the rest. Each message names the folder.
    """
    if not roots:
        raise DatasetError("no data folders given; pass one or more product folders with --data")
    products: list[ProductImages] = []
    for root in map(Path, roots):
        dataset = open_dataset(root, require_masks=False)
        try:
            check_product_name(dataset.name)
        except ValueError as exc:
            raise DatasetError(f"{root}: {exc}; rename the folder") from exc
        if any(p.name == dataset.name for p in products):
            raise DatasetError(
                f"{root}: product name {dataset.name!r} is already used by another --data folder; "
                "rename one of the folders"
            )
        goods = dataset.train
        if not goods:
            raise DatasetError(
                f"{root}: no good training images ({dataset.layout} layout); add images to train/good/"
            )
        train, hold = split_goods(len(goods), fraction, min_holdout, seed)
        if len(train) < 1:
            raise DatasetError(
                f"{root}: {len(goods)} good images are too few: {len(hold)} are held out to calibrate its "
                f"threshold and at least one must be trained on; give at least {len(hold) + 1}"
            )
        products.append(
            ProductImages(dataset.name, root, tuple(goods[i] for i in train), tuple(goods[i] for i in hold))
        )
    return products


Shape = tuple[int, int, int]


class FeatureFile:
    """The backbone maps of N images on disk: fp16, one record per image, the scales one after
    another in each record. `read` returns float32 arrays of just the asked-for images."""

    def __init__(self, path: Path, shapes: Sequence[Shape], n: int) -> None:
        self.path, self.shapes, self.n = Path(path), [tuple(s) for s in shapes], n
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.record_bytes = 2 * sum(self.sizes)
        if self.path.stat().st_size != n * self.record_bytes:
            raise DatasetError(f"{self.path}: expected {n} feature records; delete it to embed again")
        self._fd = os.open(self.path, os.O_RDONLY)

    def read(self, indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        """Maps of images `indices`: per scale (B, c, h, w) float32."""
        records = [
            np.frombuffer(os.pread(self._fd, self.record_bytes, int(i) * self.record_bytes), np.float16)
            for i in indices
        ]
        out, start = [], 0
        for shape, size in zip(self.shapes, self.sizes, strict=True):
            out.append(np.stack([r[start : start + size] for r in records]).reshape(-1, *shape))
            start += size
        return [a.astype(np.float32) for a in out]

    def close(self) -> None:
        os.close(self._fd)

    @classmethod
    def build(
        cls,
        path: Path,
        paths: Sequence[Path],
        features: Callable[[torch.Tensor], list[torch.Tensor]],
        spec: PreprocessSpec,
        identity: dict,
        batch_size: int = 8,
        progress: bool = True,
    ) -> FeatureFile:
        """The feature file of `paths`, reused when `path` holds a complete one with this `identity`
        (backbone, input, images), else embedded again (written to a temporary name, then renamed)."""
        path = Path(path)
        stamp = path.with_name(path.name + ".json")
        if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == identity:
            return cls(path, [tuple(s) for s in identity["shapes"]], len(paths))
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            for start in tqdm(range(0, len(paths), batch_size), desc="embedding", disable=not progress):
                chunk = paths[start : start + batch_size]
                with torch.no_grad():
                    maps = features(torch.from_numpy(preprocess_batch([read_image(p) for p in chunk], spec)))
                flat = torch.cat([m.reshape(m.shape[0], -1) for m in maps], dim=1)
                fh.write(flat.half().numpy().tobytes())
        tmp.replace(path)
        stamp.write_text(json.dumps(identity) + "\n")
        return cls(path, [tuple(s) for s in identity["shapes"]], len(paths))


T = TypeVar("T")


class ShuffledBatches(Generic[T]):
    """Batches over n items: step t takes positions [t·B, (t+1)·B) of an endless sequence of epochs,
    each a permutation drawn from (seed, epoch); an epoch's tail that does not fill a batch is dropped
    (static batch size). `read(indices)` turns a batch's indices into its data."""

    def __init__(self, n: int, batch_size: int, seed: int, read: Callable[[np.ndarray], T]) -> None:
        if batch_size > n:
            raise DatasetError(
                f"batch size {batch_size} is larger than the {n} training images; "
                "lower --batch-size or add images"
            )
        self.n, self.batch_size, self.seed, self.read = n, batch_size, seed, read
        self.per_epoch = n // batch_size
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="adinspect-batches")
        self._pending: tuple[int, Future[T]] | None = None

    def indices(self, step: int) -> np.ndarray:
        """Item indices of step `step` (B,)."""
        epoch, within = divmod(step, self.per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return order[within * self.batch_size : (within + 1) * self.batch_size]

    def __call__(self, step: int) -> T:
        """The batch of `step`; starts reading the batch of `step + 1` in the background."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == step:
            batch = pending[1].result()
        else:
            batch = self.read(self.indices(step))
        self._pending = (step + 1, self._pool.submit(self.read, self.indices(step + 1)))
        return batch

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
