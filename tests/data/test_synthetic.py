"""Tests for adinspect.data.synthetic: layout, determinism, exact masks, detectability."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from adinspect.data import load_mvtec
from adinspect.data.capture import misalign, random_offset
from adinspect.data.synthetic import (
    DEFECT_TYPES,
    draw_defect,
    finish_image,
    main,
    make_synthetic_dataset,
    render_good,
)
from adinspect.imageio import read_image, read_mask

SMALL = {"n_train": 6, "n_test_good": 3, "n_test_defect": 6, "size": 64}


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Mann-Whitney AUROC (no ties expected)."""
    ranks = np.concatenate([negatives, positives]).argsort().argsort() + 1
    pos_ranks = ranks[len(negatives) :].sum() - len(positives) * (len(positives) + 1) / 2
    return float(pos_ranks / (len(negatives) * len(positives)))


@pytest.mark.parametrize("kind", ["object", "texture"])
def test_writes_the_mvtec_layout(tmp_path: Path, kind: str) -> None:
    root = make_synthetic_dataset(tmp_path / "widget", kind=kind, **SMALL)
    assert root == tmp_path / "widget"
    assert sorted(p.name for p in (root / "test").iterdir()) == ["crack", "good", "scratch", "spot"]
    assert sorted(p.name for p in (root / "ground_truth").iterdir()) == ["crack", "scratch", "spot"]
    assert sorted(p.name for p in (root / "test" / "spot").iterdir()) == ["000.png", "001.png"]
    assert sorted(p.name for p in (root / "ground_truth" / "spot").iterdir()) == [
        "000_mask.png",
        "001_mask.png",
    ]
    ds = load_mvtec(root)
    assert len(ds.train) == 6 and len(ds.test) == 9
    assert read_image(ds.train[0]).shape == (64, 64, 3)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    first = _tree_bytes(make_synthetic_dataset(tmp_path / "a", seed=7, **SMALL))
    second = _tree_bytes(make_synthetic_dataset(tmp_path / "b", seed=7, **SMALL))
    other = _tree_bytes(make_synthetic_dataset(tmp_path / "c", seed=8, **SMALL))
    assert first == second
    assert first.keys() == other.keys()
    assert all(first[k] != other[k] for k in first if k.endswith(".png"))


def test_test_images_do_not_depend_on_train_count(tmp_path: Path) -> None:
    a = _tree_bytes(make_synthetic_dataset(tmp_path / "a", **SMALL))
    b = _tree_bytes(make_synthetic_dataset(tmp_path / "b", **{**SMALL, "n_train": 2}))
    assert {k: v for k, v in a.items() if k.startswith("test/")} == {
        k: v for k, v in b.items() if k.startswith("test/")
    }


def test_good_images_vary_but_only_mildly(tmp_path: Path) -> None:
    ds = load_mvtec(make_synthetic_dataset(tmp_path / "w", **SMALL))
    images = np.stack([read_image(p).astype(np.float32) for p in ds.train])
    assert len({im.tobytes() for im in images}) == len(images)
    assert np.abs(images - images.mean(axis=0)).mean() < 12  # pose, brightness and noise jitter only


@pytest.mark.parametrize("kind", ["object", "texture"])
def test_masks_are_binary_and_nonempty_and_good_images_have_none(tmp_path: Path, kind: str) -> None:
    root = make_synthetic_dataset(tmp_path / "w", kind=kind, **SMALL)
    ds = load_mvtec(root)
    for sample in ds.test:
        if sample.label == 0:
            assert sample.mask_path is None
            assert not (root / "ground_truth" / "good").exists()
            continue
        stored = cv2.imread(str(sample.mask_path), cv2.IMREAD_UNCHANGED)
        assert stored.ndim == 2 and stored.dtype == np.uint8
        assert set(np.unique(stored).tolist()) == {0, 255}
        mask = read_mask(sample.mask_path, expected_shape=(64, 64))
        assert 0 < mask.sum() < 0.2 * mask.size


@pytest.mark.parametrize("kind", ["object", "texture"])
@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_draw_defect_changes_exactly_the_mask(kind: str, defect: str) -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        clean = render_good(kind, 128, rng)
        before = clean.copy()
        defective, mask = draw_defect(clean, defect, kind, rng)
        np.testing.assert_array_equal(clean, before)  # input untouched
        changed = np.abs(defective - clean).max(axis=2) > 1e-3
        assert mask.any()
        np.testing.assert_array_equal(changed, mask)
        assert np.abs(defective - clean).max(axis=2)[mask].mean() > 25  # clearly visible change


def test_spot_sizes_vary_within_the_stated_range() -> None:
    side = 256
    radii = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        _, mask = draw_defect(render_good("texture", side, rng), "spot", "texture", rng)
        radii.append(np.sqrt(mask.sum() / np.pi) / side)
    assert 0.015 < min(radii) and max(radii) < 0.10
    assert max(radii) > 2 * min(radii)


def test_defects_lie_on_the_bottle() -> None:
    for seed in range(10):
        rng = np.random.default_rng(seed)
        _, mask = draw_defect(render_good("object", 128, rng), "spot", "object", rng)
        ys, xs = np.nonzero(mask)
        assert np.hypot(ys.mean() - 64, xs.mean() - 64) < 0.40 * 128


@pytest.mark.parametrize("kind", ["object", "texture"])
def test_a_simple_detector_separates_defects_and_brightness_alone_does_not(tmp_path: Path, kind: str) -> None:
    counts = {"n_train": 16, "n_test_good": 8, "n_test_defect": 12}
    root = make_synthetic_dataset(tmp_path / "w", kind=kind, size=128, seed=1, **counts)
    ds = load_mvtec(root)

    def smooth(path: Path) -> np.ndarray:
        return cv2.GaussianBlur(read_image(path).astype(np.float32), (0, 0), 1.0)

    train = np.stack([smooth(p) for p in ds.train])
    mean, std = train.mean(axis=0), train.std(axis=0) + 3.0
    scores, brightness, labels = [], [], []
    for sample in ds.test:
        image = smooth(sample.path)
        scores.append((np.abs(image - mean) / std).max())
        brightness.append(abs(image.mean() - mean.mean()))
        labels.append(sample.label)
    scores_a, bright_a, labels_a = np.array(scores), np.array(brightness), np.array(labels)
    assert _auroc(scores_a[labels_a == 0], scores_a[labels_a == 1]) == 1.0
    assert _auroc(bright_a[labels_a == 0], bright_a[labels_a == 1]) < 0.9


def test_finish_image_rounds_and_clips() -> None:
    rng = np.random.default_rng(0)
    out = finish_image(np.full((8, 8, 3), 300.0, np.float32), rng)
    assert out.dtype == np.uint8 and (out == 255).all()


def test_bad_arguments_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        make_synthetic_dataset(tmp_path / "a", kind="metal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_train"):
        make_synthetic_dataset(tmp_path / "b", n_train=0)
    with pytest.raises(ValueError, match="size must be at least 32"):
        make_synthetic_dataset(tmp_path / "c", size=16)
    with pytest.raises(ValueError, match="unknown defect type 'dent'"):
        draw_defect(np.zeros((64, 64, 3), np.float32), "dent", "object", np.random.default_rng(0))


def test_refuses_non_empty_folder_and_overwrites_only_its_own(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not empty"):
            make_synthetic_dataset(foreign, overwrite=overwrite, **SMALL)
    assert (foreign / "keep.txt").read_text() == "user data"

    root = make_synthetic_dataset(tmp_path / "mine", **{**SMALL, "n_train": 8})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_synthetic_dataset(root, **SMALL)
    make_synthetic_dataset(root, overwrite=True, **SMALL)
    assert len(load_mvtec(root).train) == 6  # stale files from the larger run are gone


def test_command_line_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fabric"
    args = [str(out), "--kind", "texture", "--n-train", "3", "--n-test-good", "1", "--n-test-defect", "3"]
    assert main([*args, "--size", "48", "--seed", "2"]) == 0
    assert "wrote synthetic texture dataset" in capsys.readouterr().out
    ds = load_mvtec(out)
    assert len(ds.train) == 3 and len(ds.test) == 4
    with pytest.raises(SystemExit):
        main([str(out)])  # non-empty folder without --overwrite: argparse error, exit code 2


def test_capture_shift_changes_only_the_defective_images(tmp_path: Path) -> None:
    plain = _tree_bytes(make_synthetic_dataset(tmp_path / "plain", seed=3, **SMALL))
    shifted_root = make_synthetic_dataset(tmp_path / "shifted", seed=3, capture_shift=0.3, **SMALL)
    shifted = _tree_bytes(shifted_root)
    same = {k for k in plain if k != "synthetic.json" and plain[k] == shifted.get(k)}
    changed = {k for k in plain if k != "synthetic.json"} - same
    assert changed and all(k.startswith("test/") and "/good/" not in k for k in changed)
    assert all(k.startswith(("train/", "test/good/", "ground_truth/")) for k in same)  # masks unchanged
    ratios = []
    for k in sorted(changed):
        a, b = read_image(tmp_path / "plain" / k).astype(float), read_image(shifted_root / k).astype(float)
        ratios.append(b.mean() / a.mean())
        ratio = b / np.maximum(a, 1)
        halves = np.array_split(ratio, 2, axis=0) + np.array_split(ratio, 2, axis=1)
        assert max(h.mean() for h in halves) - min(h.mean() for h in halves) > 0.04  # a gradient
    assert min(abs(r - 1) for r in ratios) > 0.08  # another gain, every image
    assert json.loads((shifted_root / "synthetic.json").read_text())["capture_shift"] == 0.3
    with pytest.raises(ValueError, match="capture_shift"):
        make_synthetic_dataset(tmp_path / "bad", capture_shift=1.5, **SMALL)


def test_capture_shift_function_is_gain_times_gradient() -> None:
    from adinspect.data.capture import capture_shift, random_capture_shift

    flat = np.full((8, 8, 3), 100, np.uint8)
    assert np.array_equal(capture_shift(flat, 1.2, 0.0, 0.0), np.full((8, 8, 3), 120, np.uint8))
    ramp = capture_shift(flat.astype(np.float32), 1.0, 0.5, 0.0)  # along x
    np.testing.assert_allclose(ramp[:, 0], 50, atol=1e-4)
    np.testing.assert_allclose(ramp[:, -1], 150, atol=1e-4)
    rng = np.random.default_rng(0)
    assert random_capture_shift(flat, 0.0, rng) is flat and rng.random() == np.random.default_rng(0).random()


def test_misalign_moves_the_defective_parts_and_their_masks_together(tmp_path: Path) -> None:
    plain_root = make_synthetic_dataset(tmp_path / "plain", seed=3, **SMALL)
    moved_root = make_synthetic_dataset(tmp_path / "moved", seed=3, misalign=0.2, **SMALL)
    plain, moved = _tree_bytes(plain_root), _tree_bytes(moved_root)
    changed = {k for k in plain if k != "synthetic.json" and plain[k] != moved.get(k)}
    assert all(k.startswith(("test/", "ground_truth/")) and "/good/" not in k for k in changed)
    masks = sorted(k for k in changed if k.startswith("ground_truth/"))
    assert masks and len(masks) == len([k for k in plain if k.startswith("ground_truth/")])
    for k in masks:
        a = read_image(plain_root / k)[..., 0] > 127
        b = read_image(moved_root / k)[..., 0] > 127
        reach = range(-14, 15)  # 0.2 x 64 px, rounded up
        offsets = [(dy, dx) for dy in reach for dx in reach if np.array_equal(misalign(a, (dy, dx)), b)]
        assert offsets, f"{k}: the moved mask is not the plain one moved by whole pixels"
        assert any(0.1 * 64 - 1 <= np.hypot(*o) <= 0.2 * 64 + 1 for o in offsets)  # (0.5-1) x 0.2
    assert json.loads((moved_root / "synthetic.json").read_text())["misalign"] == 0.2
    with pytest.raises(ValueError, match="misalign"):
        make_synthetic_dataset(tmp_path / "bad", misalign=0.7, **SMALL)


def test_misalign_repeats_the_border_into_view_and_keeps_masks_inside_the_frame() -> None:
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    moved = misalign(image, (1, -2))
    assert np.array_equal(moved[1:, :2], image[:3, 2:]) and np.array_equal(moved[0], moved[1])
    mask = np.zeros((4, 4), bool)
    mask[0, 3] = True
    assert not misalign(mask, (0, 1)).any()  # pushed out of the frame: gone, not smeared
    assert misalign(image, (0, 0)) is image
    rng = np.random.default_rng(0)
    assert random_offset(0.0, 64, rng) == (0, 0) and rng.random() == np.random.default_rng(0).random()
