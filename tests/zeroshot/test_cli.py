"""`adinspect zero-shot` from a temporary working directory: outputs, metrics and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from adinspect.cli import main
from adinspect.imageio import read_image, write_png


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_zero_shot_on_a_labelled_dataset_writes_everything(in_tmp, synthetic_root, capsys):
    code = main(["zero-shot", "--images", str(synthetic_root), "--out", "zs", "--json", "zs/metrics.json"])
    assert code == 0
    summary = json.loads(Path("zs/results.json").read_text())
    n = summary["n_images"]
    assert n == 20 and not summary["errors"]
    maps = np.load("zs/maps.npy")
    assert maps.shape == (n, 256, 256) and np.isfinite(maps).all()
    assert len(Path("zs/scores.csv").read_text().splitlines()) == n + 1
    assert all(Path("zs", row["overlay"]).is_file() for row in summary["images"])
    assert Path("zs/roc_pr.png").is_file()
    metrics = json.loads(Path("zs/metrics.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro", "pixel_ap", "seconds"):
        assert key in metrics
    assert metrics["image_auroc"] >= 0.9
    assert [r["label"] for r in summary["images"]].count(1) == 12


def test_mixed_sizes_and_an_unreadable_file_are_handled(in_tmp, synthetic_root, capsys):
    folder = Path("batch")
    folder.mkdir()
    goods = sorted((synthetic_root / "train" / "good").glob("*.png"))[:4]
    for i, src in enumerate(goods):
        image = read_image(src)
        if i % 2:  # half of them at another, non-square size
            image = cv2.resize(image, (300, 200))
        write_png(folder / f"{i}.png", image)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    assert main(["zero-shot", "--images", str(folder), "--out", "zs", "--no-overlays"]) == 0
    summary = json.loads(Path("zs/results.json").read_text())
    assert summary["n_images"] == 4 and "metrics" not in summary
    assert [Path(e["image"]).name for e in summary["errors"]] == ["broken.png"]
    assert "SKIP" in capsys.readouterr().err
    assert np.load("zs/maps.npy").shape == (4, 256, 256)


def test_fewer_than_three_images_is_a_clear_error(in_tmp, synthetic_root, capsys):
    folder = Path("two")
    folder.mkdir()
    for src in sorted((synthetic_root / "train" / "good").glob("*.png"))[:2]:
        shutil.copy(src, folder / src.name)
    (folder / "bad.png").write_bytes(b"junk")
    assert main(["zero-shot", "--images", str(folder), "--out", "zs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "at least 3" in err and "got 2" in err
    assert not Path("zs").exists()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ('{"degrees": [2]}', "degrees must be odd"),
        ('{"layres": [1]}', "layres"),
        ('{"layers": [7]}', "layers (7,)"),
        ("[1]", "expected a JSON object"),
    ],
)
def test_bad_options_name_the_field(in_tmp, synthetic_root, capsys, options, fragment):
    argv = ["zero-shot", "--images", str(synthetic_root), "--out", "zs", "--options", options]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err, err


def test_python_api_rejects_a_small_batch():
    from adinspect.zeroshot import ZeroShotError, score_images

    with pytest.raises(ZeroShotError, match="at least 3"):
        score_images([np.zeros((32, 32, 3), np.uint8)] * 2)
