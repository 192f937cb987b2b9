"""Training one InvAD on several products: data checks, batches, weights, resume."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from adinspect.data.datasets import DatasetError
from adinspect.imageio import write_png
from adinspect.geometry import PreprocessSpec
from adinspect.train.checkpoint import CheckpointError, read_meta
from adinspect.train.unified import (
    CHECKPOINT,
    SUMMARY,
    WEIGHTS,
    UnifiedSettings,
    load_invad,
    train_unified,
)
from adinspect.train.unified_data import ShuffledBatches, gather_products

SETTINGS = UnifiedSettings(image_size=64, steps=3, batch_size=2, checkpoint_every=2, blocks_per_scale=1)


def _product(root: Path, n: int, shape: tuple[int, ...], seed: int) -> Path:
    """A plain folder of n random images (any size or channel count)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_png(root / f"{i}.png", rng.integers(0, 256, size=shape, dtype=np.uint8))
    return root


def test_one_model_trains_on_products_of_different_sizes_and_resumes(tmp_path: Path) -> None:
    roots = [
        _product(tmp_path / "gray", 3, (40, 90), seed=0),
        _product(tmp_path / "rgb", 4, (70, 70, 3), seed=1),
    ]
    out = tmp_path / "model"
    result = train_unified(roots, out, SETTINGS, progress=False)
    assert result.start_step == 0 and result.final_loss is not None and result.peak_rss_bytes > 0
    assert {p.name for p in result.products} == {"gray", "rgb"}
    assert (out / WEIGHTS).is_file() and (out / CHECKPOINT).is_file() and (out / SUMMARY).is_file()
    model, meta = load_invad(out / WEIGHTS)
    assert meta["products"] == [["gray", 3], ["rgb", 4]] and model.cfg.image_size == 64
    assert read_meta(out / CHECKPOINT)["step"] == 3

    again = train_unified(roots, out, SETTINGS, progress=False)  # the checkpoint is complete
    assert again.start_step == 3 and again.final_loss is None
    with pytest.raises(CheckpointError, match="steps"):
        train_unified(roots, out, SETTINGS.model_copy(update={"steps": 5}), progress=False)


def test_empty_and_duplicate_product_folders_are_refused_by_name(tmp_path: Path) -> None:
    good = _product(tmp_path / "a" / "widget", 2, (32, 32, 3), seed=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=f"no images found in {re.escape(str(empty))}"):
        gather_products([good, empty])
    twin = _product(tmp_path / "b" / "widget", 2, (32, 32, 3), seed=1)
    with pytest.raises(DatasetError, match="widget.*already used"):
        gather_products([good, twin])
    with pytest.raises(DatasetError, match="no data folders"):
        gather_products([])


def test_batches_are_reproducible_epochs_of_every_image(tmp_path: Path) -> None:
    paths = sorted(_product(tmp_path / "p", 7, (16, 16, 3), seed=0).glob("*.png"))
    spec = PreprocessSpec(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    a, b = ShuffledBatches(paths, spec, 3, seed=4), ShuffledBatches(paths, spec, 3, seed=4)
    try:
        assert a.per_epoch == 2  # 7 images: two full batches, the seventh waits for the next epoch
        epoch = np.concatenate([a.indices(0), a.indices(1)])
        assert len(set(epoch.tolist())) == 6
        assert [b.indices(s).tolist() for s in range(5)] == [a.indices(s).tolist() for s in range(5)]
        batch = a(1)
        assert batch.shape == (3, 3, 32, 32) and batch.dtype == np.float32
        np.testing.assert_array_equal(a(2), b(2))  # prefetched (a) or read now (b): the same batch
    finally:
        a.close()
        b.close()
    with pytest.raises(DatasetError, match="batch size 8"):
        ShuffledBatches(paths, spec, 8, seed=0)
