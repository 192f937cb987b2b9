"""One InvAD for several products: data checks, the feature file, batches, the package, resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from adinspect.data.datasets import DatasetError
from adinspect.errors import InputError
from adinspect.geometry import PreprocessSpec
from adinspect.imageio import write_png
from adinspect.package import ModelPackage
from adinspect.runtime.click import ClickRuntime
from adinspect.runtime.inspector import Inspector
from adinspect.train.checkpoint import CheckpointError, read_meta
from adinspect.train.unified import CHECKPOINT, FEATURES, UnifiedSettings, train_unified, work_dir_of
from adinspect.train.unified_data import FeatureFile, ShuffledBatches, gather_products
from adinspect.train.unified_package import load_unified_graph

SETTINGS = UnifiedSettings(image_size=64, steps=3, batch_size=2, checkpoint_every=2, pad=16)


def _product(root: Path, n: int, shape: tuple[int, ...], seed: int) -> Path:
    """A plain folder of n random images (any size or channel count)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_png(root / f"{i}.png", rng.integers(0, 256, size=shape, dtype=np.uint8))
    return root


def test_products_of_different_sizes_and_channels_make_one_package_and_resume(tmp_path: Path) -> None:
    roots = [
        _product(tmp_path / "gray", 6, (40, 90), seed=0),  # one channel, wide
        _product(tmp_path / "rgb", 7, (70, 70, 3), seed=1),
    ]
    out = tmp_path / "line"
    result = train_unified(roots, out, SETTINGS, keep_work=True, progress=False)
    assert result.start_step == 0 and result.final_loss is not None and result.peak_rss_bytes > 0
    assert [(p.name, len(p.train), len(p.holdout)) for p in result.products] == [
        ("gray", 2, 4),
        ("rgb", 3, 4),
    ]
    package = ModelPackage.load(out)
    assert package.is_unified and package.products == ["gray", "rgb"] and package.product == "line"
    for name, threshold in result.package.thresholds.items():
        assert package.threshold_for(name) == threshold
        held = json.loads((out / "calibration.json").read_text())[name]["holdout_scores"]
        assert threshold >= max(held) and len(held) == 4  # no held-out good image is rejected
    assert result.package.parity["score_max_abs_diff"] < 1e-4
    work = work_dir_of(out)
    assert read_meta(work / CHECKPOINT)["step"] == 3 and (work / FEATURES).is_file()

    # in-process: the product picks the threshold; the model is the same for both
    image = np.random.default_rng(2).integers(0, 256, (70, 70, 3), dtype=np.uint8)
    gray, rgb = Inspector(out, threads=1, product="gray"), Inspector(out, threads=1, product="rgb")
    a, b = gray.inspect(image).result, rgb.inspect(image).result
    assert a.score == b.score and (a.product, a.threshold) == ("gray", package.threshold_for("gray"))
    graph = load_unified_graph(out)
    with torch.no_grad():
        batch = np.random.default_rng(3).normal(size=(2, 3, 64, 64)).astype(np.float32)
        torch_map, torch_score = graph(torch.from_numpy(batch))
    ort_map, ort_score = gray.run(batch)
    np.testing.assert_allclose(ort_map, torch_map[:, 0].numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ort_score, torch_score.numpy(), rtol=1e-5, atol=1e-4)

    with pytest.raises(CheckpointError, match="already exists"):
        train_unified(roots, out, SETTINGS, progress=False)
    again = train_unified(roots, out, SETTINGS, overwrite=True, progress=False)  # resumes, complete
    assert again.start_step == 3 and again.final_loss is None and not work.exists()
    train_unified(roots, out, SETTINGS, overwrite=True, keep_work=True, progress=False)
    with pytest.raises(CheckpointError, match="steps"):
        train_unified(roots, out, SETTINGS.model_copy(update={"steps": 5}), overwrite=True, progress=False)


def test_unified_package_needs_a_product_it_was_calibrated_for(unified_package: Path) -> None:
    package = ModelPackage.load(unified_package)
    with pytest.raises(InputError, match=r"inspects products \['widget', 'cloth'\], got no product"):
        Inspector(unified_package)
    with pytest.raises(InputError, match="got product 'bottle'.*not trained on has no threshold"):
        Inspector(unified_package, product="bottle")
    with pytest.raises(InputError, match="each has its own threshold"):
        _ = package.threshold
    with pytest.raises(InputError, match="no reference bank"):
        _ = package.config
    with pytest.raises(InputError, match="no reference bank"):  # the labelling tool's runtime
        ClickRuntime(unified_package)
    assert package.product_for_data(None, "cloth") == "cloth" and package.product_for_data(None, "x") is None


def test_bad_product_folders_are_refused_by_name(tmp_path: Path) -> None:
    good = _product(tmp_path / "a" / "widget", 6, (32, 32, 3), seed=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=f"no images found in {re.escape(str(empty))}"):
        gather_products([good, empty])
    twin = _product(tmp_path / "b" / "widget", 6, (32, 32, 3), seed=1)
    with pytest.raises(DatasetError, match="widget.*already used"):
        gather_products([good, twin])
    upper = _product(tmp_path / "Widget-2", 6, (32, 32, 3), seed=1)
    with pytest.raises(DatasetError, match=f"{re.escape(str(upper))}: product name 'Widget-2'.*rename"):
        gather_products([upper])
    few = _product(tmp_path / "few", 4, (32, 32, 3), seed=1)
    with pytest.raises(DatasetError, match="few: 4 good images are too few: 4 are held out"):
        gather_products([few])
    with pytest.raises(DatasetError, match="no data folders"):
        gather_products([])
    (product,) = gather_products([good])
    assert (
        len(product.train) == 2
        and len(product.holdout) == 4
        and not set(product.train) & set(product.holdout)
    )


def test_feature_file_round_trips_and_is_reused_only_for_the_same_run(tmp_path: Path) -> None:
    paths = sorted(_product(tmp_path / "p", 5, (16, 16, 3), seed=0).glob("*.png"))
    spec = PreprocessSpec(image_size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    calls = []

    def features(x: torch.Tensor) -> list[torch.Tensor]:
        calls.append(len(x))
        return [x[:, :2], x[:, :, ::2, ::2]]  # two "scales": (2, 8, 8) and (3, 4, 4)

    stamp = {"shapes": [[2, 8, 8], [3, 4, 4]], "images": [str(p) for p in paths]}
    store = FeatureFile.build(tmp_path / "f.f16", paths, features, spec, stamp, batch_size=2, progress=False)
    first, second = store.read([4, 1])
    assert first.shape == (2, 2, 8, 8) and second.shape == (2, 3, 4, 4) and calls == [2, 2, 1]
    from adinspect.geometry import preprocess_batch
    from adinspect.imageio import read_image

    x = preprocess_batch([read_image(paths[4]), read_image(paths[1])], spec)
    np.testing.assert_allclose(first, x[:, :2], atol=2e-3)  # fp16 on disk
    np.testing.assert_allclose(second, x[:, :, ::2, ::2], atol=2e-3)
    store.close()
    FeatureFile.build(tmp_path / "f.f16", paths, features, spec, stamp, progress=False).close()
    assert calls == [2, 2, 1]  # reused
    FeatureFile.build(tmp_path / "f.f16", paths[:4], features, spec, {**stamp, "images": []}, progress=False)
    assert calls == [2, 2, 1, 4]  # another run: embedded again


def test_batches_are_reproducible_epochs_of_every_image() -> None:
    a = ShuffledBatches(7, 3, seed=4, read=lambda idx: idx * 10)
    b = ShuffledBatches(7, 3, seed=4, read=lambda idx: idx * 10)
    try:
        assert a.per_epoch == 2  # 7 images: two full batches, the seventh waits for the next epoch
        assert len(set(np.concatenate([a.indices(0), a.indices(1)]).tolist())) == 6
        assert [b.indices(s).tolist() for s in range(5)] == [a.indices(s).tolist() for s in range(5)]
        a(1)
        np.testing.assert_array_equal(a(2), b(2))  # prefetched (a) or read now (b): the same batch
        np.testing.assert_array_equal(a(2), a.indices(2) * 10)
    finally:
        a.close()
        b.close()
    with pytest.raises(DatasetError, match="batch size 8"):
        ShuffledBatches(7, 8, seed=0, read=lambda idx: idx)
