"""Which defective images clicks are simulated on: messy masks skipped, KSDD2's weak protocol."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from adinspect.data.synthetic import make_synthetic_dataset
from adinspect.errors import InputError
from adinspect.imageio import read_image, read_mask, write_mask, write_png
from adinspect.train.interactive import defective_pool

SMALL = {"n_train": 6, "n_test_good": 3, "n_test_defect": 6, "size": 64}


def ksdd2_layout(mvtec: Path, out: Path, n_train_defective: int) -> Path:
    """A KolektorSDD2-layout copy of a synthetic MVTec dataset: train/ holds the good training
    images (black masks) plus the first `n_train_defective` defective test images; test/ the rest."""
    defective = sorted((mvtec / "test").glob("[!g]*/*.png"))
    goods = sorted((mvtec / "train" / "good").glob("*.png"))
    test_goods = sorted((mvtec / "test" / "good").glob("*.png"))
    n = 0

    def put(split: str, image: Path, mask: np.ndarray) -> None:
        nonlocal n
        write_png(out / split / f"{n:05d}.png", read_image(image))
        write_mask(out / split / f"{n:05d}_GT.png", mask)
        n += 1

    for image in goods + test_goods:
        put("train" if image in goods else "test", image, np.zeros(read_image(image).shape[:2], bool))
    for i, image in enumerate(defective):
        mask = read_mask(mvtec / "ground_truth" / image.parent.name / f"{image.stem}_mask.png")
        put("train" if i < n_train_defective else "test", image, mask)
    return out


@pytest.fixture
def mvtec(tmp_path: Path) -> Path:
    return make_synthetic_dataset(tmp_path / "widget", **SMALL)


def test_empty_and_missing_masks_are_skipped_with_one_warning(
    mvtec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = mvtec / "ground_truth" / "crack" / "000_mask.png"
    write_mask(empty, np.zeros(read_mask(empty).shape, bool))
    (mvtec / "ground_truth" / "spot" / "001_mask.png").unlink()

    pool = defective_pool(mvtec, size=64)

    reasons = {Path(s["image"]).relative_to(mvtec).as_posix(): s["reason"] for s in pool.skipped}
    assert reasons == {
        "test/crack/000.png": "empty ground-truth mask",
        "test/spot/001.png": "no ground-truth mask",
    }
    kept = pool.subset("all")
    assert len(kept) == 4 and all(s.mask_path is not None for s in kept)
    assert sorted(pool.labelled + pool.evaluation, key=str) == sorted(kept, key=str)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: skipped 2 defective image(s)")


def test_a_mask_that_vanishes_at_model_size_is_skipped(mvtec: Path) -> None:
    mask = mvtec / "ground_truth" / "crack" / "000_mask.png"
    tiny = np.zeros(read_mask(mask).shape, bool)
    tiny[1, 1] = True  # one pixel at 64 px, gone after nearest-neighbour resizing to 8 px
    write_mask(mask, tiny)
    assert defective_pool(mvtec, size=64).skipped == []
    skipped = {s["image"]: s["reason"] for s in defective_pool(mvtec, size=8).skipped}
    assert skipped[str(mvtec / "test" / "crack" / "000.png")] == "empty ground-truth mask"


def test_no_usable_defect_is_a_clear_error(mvtec: Path) -> None:
    shutil.rmtree(mvtec / "ground_truth")
    with pytest.raises(InputError, match="no defective images with a non-empty ground-truth mask"):
        defective_pool(mvtec, size=64)


def test_halves_are_disjoint_and_seeded(mvtec: Path) -> None:
    pool = defective_pool(mvtec, size=64, seed=0)
    assert not pool.weak and len(pool.labelled) == 3 and len(pool.evaluation) == 3
    assert not set(pool.labelled) & set(pool.evaluation)
    assert defective_pool(mvtec, size=64, seed=0).labelled == pool.labelled


def test_ksdd2_labels_the_defective_training_images(mvtec: Path, tmp_path: Path) -> None:
    root = ksdd2_layout(mvtec, tmp_path / "ksdd2", n_train_defective=2)
    pool = defective_pool(root, size=64)
    assert pool.weak
    assert [s.path.parent.name for s in pool.subset("labelled")] == ["train", "train"]
    assert len(pool.subset("eval")) == 4 and pool.subset("all") == pool.subset("eval")
    assert all(s.path.parent.name == "test" for s in pool.subset("eval"))


def test_ksdd2_image_without_its_gt_mask_is_skipped_not_fatal(
    mvtec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real KSDD2 copies lose a `_GT` file now and then: its label is unknown, so the image is in no
    split (not even good) and one warning names it; the rest of the run goes on."""
    root = ksdd2_layout(mvtec, tmp_path / "ksdd2", n_train_defective=2)
    lost = sorted((root / "test").glob("*_GT.png"))[-1]  # a defective test image's mask
    lost.unlink()
    image = lost.with_name(lost.name.replace("_GT", ""))
    pool = defective_pool(root, size=64)
    assert {s["image"]: s["reason"] for s in pool.skipped} == {str(image): "no _GT mask: label unknown"}
    assert image not in [s.path for s in pool.subset("all")] and len(pool.subset("eval")) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(image) in err[0] and err[0].startswith("warning: skipped 1")
