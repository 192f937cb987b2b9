"""Tests for adinspect.data.datasets: MVTec AD, KolektorSDD2 and folder layouts, layout errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from adinspect.data import (
    DatasetError,
    Sample,
    detect_layout,
    list_images,
    load_folder,
    load_ksdd2,
    load_mvtec,
    open_dataset,
)
from adinspect.data.synthetic import make_synthetic_dataset
from adinspect.imageio import encode_png, read_image, read_mask, write_mask, write_png

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mvtec_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic MVTec category: 5 train, 2 good + 6 defective test images, 64 px."""
    root = tmp_path_factory.mktemp("mvtec") / "widget"
    return make_synthetic_dataset(root, n_train=5, n_test_good=2, n_test_defect=6, size=64, seed=3)


@pytest.fixture
def mvtec(mvtec_template: Path, tmp_path: Path) -> Path:
    """A private copy of the template that a test may modify."""
    return Path(shutil.copytree(mvtec_template, tmp_path / "widget"))


def _image(value: int = 128) -> np.ndarray:
    return np.full((10, 16, 3), value, np.uint8)


def _ksdd2_tree(root: Path) -> Path:
    """Hand-made KolektorSDD2 tree: train 3 good + 1 defective, test 1 good + 2 defective."""
    defective = np.zeros((10, 16), bool)
    defective[2:5, 3:9] = True
    for split, labels in (("train", [0, 0, 1, 0]), ("test", [1, 0, 1])):
        for i, label in enumerate(labels):
            write_png(root / split / f"{10000 + i}.png", _image(40 * i))
            write_mask(root / split / f"{10000 + i}_GT.png", defective if label else np.zeros((10, 16), bool))
    return root


# --------------------------------------------------------------------------- MVTec AD


def test_load_mvtec_parses_the_generated_tree(mvtec_template: Path) -> None:
    ds = load_mvtec(mvtec_template)
    assert (ds.name, ds.layout, ds.root) == ("widget", "mvtec", mvtec_template)
    assert [p.name for p in ds.train] == [f"{i:03d}.png" for i in range(5)]
    assert all(p.parent == mvtec_template / "train" / "good" for p in ds.train)
    assert len(ds.test) == 8 and sum(s.label for s in ds.test) == 6
    assert ds.defect_types == ["crack", "scratch", "spot"]
    assert ds.train_defective == []
    assert ds.summary() == "widget (mvtec): 5 train, 8 test (6 defective)"
    for sample in ds.test:
        if sample.label == 0:
            assert sample.defect_type == "good" and sample.mask_path is None
            assert sample.path.parent.name == "good"
        else:
            assert sample.defect_type == sample.path.parent.name
            expected = mvtec_template / "ground_truth" / sample.defect_type / f"{sample.path.stem}_mask.png"
            assert sample.mask_path == expected
            shape = read_image(sample.path).shape[:2]
            assert read_mask(sample.mask_path, expected_shape=shape).any()


def test_listing_is_sorted_and_deterministic(mvtec_template: Path) -> None:
    first, second = load_mvtec(mvtec_template), load_mvtec(mvtec_template)
    assert first == second
    folders = [s.path.parent.name for s in first.test]
    assert folders == sorted(folders)  # defect folders in order, files in order within each
    assert [s.path for s in first.test if s.defect_type == "spot"] == sorted(
        s.path for s in first.test if s.defect_type == "spot"
    )


def test_open_dataset_detects_mvtec(mvtec_template: Path) -> None:
    assert detect_layout(mvtec_template) == "mvtec"
    assert open_dataset(mvtec_template) == load_mvtec(mvtec_template)


def test_missing_ground_truth_names_image_and_expected_mask(mvtec: Path) -> None:
    mask = mvtec / "ground_truth" / "spot" / "001_mask.png"
    mask.unlink()
    with pytest.raises(DatasetError) as info:
        load_mvtec(mvtec)
    message = str(info.value)
    assert str(mvtec / "test" / "spot" / "001.png") in message and str(mask) in message
    assert "require_masks=False" in message
    with pytest.raises(DatasetError):
        open_dataset(mvtec)
    relaxed = load_mvtec(mvtec, require_masks=False)
    by_path = {s.path.relative_to(mvtec).as_posix(): s for s in relaxed.test}
    assert by_path["test/spot/001.png"].mask_path is None and by_path["test/spot/001.png"].label == 1
    assert by_path["test/spot/000.png"].mask_path is not None


def test_missing_ground_truth_folder_is_an_error_too(mvtec: Path) -> None:
    shutil.rmtree(mvtec / "ground_truth")
    with pytest.raises(DatasetError, match="has no ground-truth mask"):
        load_mvtec(mvtec)
    assert all(s.mask_path is None for s in load_mvtec(mvtec, require_masks=False).test)


def test_mvtec_without_test_split_and_hidden_files(mvtec: Path) -> None:
    shutil.rmtree(mvtec / "test")
    (mvtec / "train" / "good" / ".DS_Store").write_bytes(b"junk")
    write_png(mvtec / "train" / "good" / "._000.png", _image())
    (mvtec / "train" / "good" / "notes.txt").write_text("not an image")
    ds = load_mvtec(mvtec)
    assert ds.test == [] and len(ds.train) == 5


def test_mvtec_stray_test_image_is_an_error(mvtec: Path) -> None:
    write_png(mvtec / "test" / "loose.png", _image())
    with pytest.raises(DatasetError, match="lies directly in"):
        load_mvtec(mvtec)


def test_mvtec_errors_for_missing_train(tmp_path: Path, mvtec: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_mvtec(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="is not an MVTec AD category") as info:
        load_mvtec(mvtec / "test")
    assert str(mvtec / "test" / "train" / "good") in str(info.value)
    for f in (mvtec / "train" / "good").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="no images found in"):
        load_mvtec(mvtec)


def test_mvtec_root_with_categories_asks_for_one(mvtec_template: Path, tmp_path: Path) -> None:
    root = tmp_path / "mvtec_ad"
    for name in ("bottle", "cable"):
        shutil.copytree(mvtec_template, root / name)
    with pytest.raises(DatasetError, match="several MVTec AD categories") as info:
        open_dataset(root)
    assert str(root / "bottle") in str(info.value)


# --------------------------------------------------------------------------- KolektorSDD2


def test_load_ksdd2(tmp_path: Path) -> None:
    root = _ksdd2_tree(tmp_path / "ksdd2")
    ds = load_ksdd2(root)
    assert ds.layout == "ksdd2" and ds.name == "ksdd2"
    assert [p.name for p in ds.train] == ["10000.png", "10001.png", "10003.png"]
    assert [(s.path.name, s.label, s.defect_type) for s in ds.train_defective] == [("10002.png", 1, "defect")]
    assert ds.train_defective[0].mask_path == root / "train" / "10002_GT.png"
    assert [(s.path.name, s.label) for s in ds.test] == [("10000.png", 1), ("10001.png", 0), ("10002.png", 1)]
    assert ds.test[1].mask_path is None and ds.test[1].defect_type == "good"
    assert ds.test[0].mask_path == root / "test" / "10000_GT.png"
    assert ds.defect_types == ["defect"]
    assert detect_layout(root) == "ksdd2"
    assert open_dataset(root) == ds


def test_ksdd2_image_without_mask_is_an_error(tmp_path: Path) -> None:
    root = _ksdd2_tree(tmp_path / "ksdd2")
    (root / "test" / "10001_GT.png").unlink()
    with pytest.raises(DatasetError) as info:
        load_ksdd2(root)
    assert str(root / "test" / "10001.png") in str(info.value)
    assert str(root / "test" / "10001_GT.png") in str(info.value)


# --------------------------------------------------------------------------- plain folders


def test_load_folder_recursive_sorted_hidden_ignored(tmp_path: Path) -> None:
    root = tmp_path / "line3"
    for rel in ("img10.png", "img2.png", "img1.jpg", "b/x.PNG", "a/y.bmp", "a/z.tiff"):
        write_png(root / rel, _image())  # content is PNG whatever the name: only listing is tested
    write_png(root / ".cache" / "hidden.png", _image())
    write_png(root / ".hidden.png", _image())
    (root / "readme.txt").write_text("not an image")
    ds = load_folder(root)
    rel = [p.relative_to(root).as_posix() for p in ds.train]
    assert rel == ["a/y.bmp", "a/z.tiff", "b/x.PNG", "img1.jpg", "img2.png", "img10.png"]
    assert (ds.layout, ds.name, ds.test) == ("folder", "line3", [])
    assert detect_layout(root) == "folder"
    assert open_dataset(root) == ds
    assert list_images(root) == [root / "img1.jpg", root / "img2.png", root / "img10.png"]


def test_empty_folder_error_lists_extensions_and_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "notes.txt").write_text("nothing")
    with pytest.raises(DatasetError) as info:
        open_dataset(root)
    message = str(info.value)
    assert f"no images found in {root}" in message
    assert "(looked for .png .jpg .jpeg .bmp .tif .tiff)" in message
    assert "point --data at" in message


def test_missing_folder_and_file_path_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as info:
        open_dataset(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    single = tmp_path / "one.png"
    single.write_bytes(encode_png(_image()))
    with pytest.raises(DatasetError, match="is a file, expected a folder"):
        open_dataset(single)


def test_dataset_error_is_a_value_error() -> None:
    assert issubclass(DatasetError, ValueError)


def test_sample_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="label must be 0"):
        Sample(Path("a.png"), 2, "scratch", None)
    with pytest.raises(ValueError, match="does not match defect_type"):
        Sample(Path("a.png"), 0, "scratch", None)
    with pytest.raises(ValueError, match="does not match defect_type"):
        Sample(Path("a.png"), 1, "good", None)


# --------------------------------------------------------------------------- real data


def _real_bottle() -> Path:
    data = Path(os.environ.get("ADINSPECT_DATA", REPO.parent / "shared" / "data"))
    return data / "mvtec_ad" / "bottle"


@pytest.mark.real_data
@pytest.mark.skipif(
    not (_real_bottle() / "train" / "good").is_dir(),
    reason=f"real MVTec AD bottle absent at {_real_bottle()} (set ADINSPECT_DATA to the dir with mvtec_ad/)",
)
def test_load_real_mvtec_bottle() -> None:
    ds = open_dataset(_real_bottle())
    assert (ds.layout, ds.name) == ("mvtec", "bottle")
    assert len(ds.train) == 209 and len(ds.test) == 83
    assert sum(s.mask_path is not None for s in ds.test) == 63 == sum(s.label for s in ds.test)
    assert ds.defect_types == ["broken_large", "broken_small", "contamination"]
    sample = next(s for s in ds.test if s.label == 1)
    assert sample.mask_path is not None
    assert read_mask(sample.mask_path, expected_shape=read_image(sample.path).shape[:2]).any()


def test_ksdd2_image_without_mask_is_unlabelled_when_masks_are_optional(tmp_path: Path) -> None:
    root = _ksdd2_tree(tmp_path / "ksdd2")
    (root / "test" / "10001_GT.png").unlink()
    ds = open_dataset(root, require_masks=False)
    assert ds.unlabelled == [root / "test" / "10001.png"]
    assert root / "test" / "10001.png" not in [s.path for s in ds.test] + ds.train


def test_unlabelled_ksdd2_images_join_the_labelling_queue_after_the_defective_ones(tmp_path: Path) -> None:
    """An image without `_GT` cannot train or evaluate anything; a person can say what it is."""
    from adinspect.annotate.queue import build_queue

    root = _ksdd2_tree(tmp_path / "ksdd2")
    (root / "test" / "10001_GT.png").unlink()
    queue = build_queue(root)
    assert [(it.rel, it.folder_type) for it in queue][-1] == ("test/10001.png", None)
    assert [it.id for it in queue] == list(range(len(queue)))
    assert sum(it.folder_type is not None for it in queue) == 3  # 1 defective train + 2 defective test
