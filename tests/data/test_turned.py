"""A turned copy of a product: every image and its mask turned by the same recorded angle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adinspect.data.datasets import DatasetError, open_dataset
from adinspect.data.synthetic import make_synthetic_dataset
from adinspect.data.turned import MARKER, turn_by, write_turned_copy
from adinspect.imageio import read_image, read_mask, write_png


@pytest.fixture(scope="module")
def upright(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("upright") / "parts"
    return make_synthetic_dataset(root, n_train=4, n_test_good=2, n_test_defect=3, size=96, seed=3)


def test_every_image_and_mask_is_turned_by_its_recorded_angle(upright: Path, tmp_path: Path) -> None:
    out = write_turned_copy(upright, tmp_path / "turned", seed=1)
    before, after = open_dataset(upright), open_dataset(out)
    assert len(after.train) == len(before.train) and after.defect_types == before.defect_types
    names = {str(s.path.relative_to(upright)): s for s in before.test}
    assert sorted(str(s.path.relative_to(out)) for s in after.test) == sorted(names)
    degrees = json.loads((out / MARKER).read_text())["degrees"]
    assert len(degrees) == len(before.train) + len(before.test) and len(set(degrees.values())) == len(degrees)

    yy, xx = np.mgrid[:96, :96]
    centre = (yy - 47.5) ** 2 + (xx - 47.5) ** 2 < 30**2  # stays in view at every angle
    for sample in (s for s in after.test if s.label == 1):
        relative = str(sample.path.relative_to(out))
        original, angle = names[relative], degrees[relative]
        expected = turn_by(read_image(original.path), angle)
        assert np.array_equal(read_image(sample.path), expected)
        assert sample.mask_path is not None and original.mask_path is not None
        mask, original_mask = read_mask(sample.mask_path) > 0, read_mask(original.mask_path) > 0
        expected_mask = turn_by(original_mask.astype(np.uint8) * 255, angle, mask=True) > 0
        assert mask.any() and np.array_equal(mask, expected_mask)
        back = turn_by(read_image(sample.path), -angle)  # turning back restores the middle of the image
        assert np.abs(back.astype(int) - read_image(original.path).astype(int))[centre].mean() < 6

    again = write_turned_copy(upright, tmp_path / "again", seed=1)
    assert json.loads((again / MARKER).read_text())["degrees"] == degrees  # seeded


def test_a_mask_never_gains_defect_from_the_border() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[:, :3] = 255  # a defect along the left edge
    turned = turn_by(mask, 45.0, mask=True)
    assert set(np.unique(turned)) <= {0, 255} and (turned > 0).sum() < (mask > 0).sum()


def test_bad_destinations_and_layouts_are_refused(upright: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    write_png(taken / "x.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FileExistsError, match="not empty"):
        write_turned_copy(upright, taken)
    folder = tmp_path / "plain"
    for i in range(2):
        write_png(folder / f"{i}.png", np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(DatasetError, match="MVTec layout"):
        write_turned_copy(folder, tmp_path / "out")


def test_the_synth_command_writes_a_turned_copy_and_refuses_a_full_folder(
    upright: Path, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "adinspect.cli", "synth", "--turned-from", str(upright)]
    command += ["--out", str(tmp_path / "t")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert open_dataset(tmp_path / "t").defect_types == open_dataset(upright).defect_types
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.strip().startswith("error:") and "not empty" in again.stderr
