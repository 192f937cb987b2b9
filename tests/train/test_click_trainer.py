"""Pieces of the click trainer and the package file staging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from adinspect.package import MANIFEST, sha256_of
from adinspect.train.click_trainer import initial_clicks, render, target_subset
from adinspect.train.common import commit_files, set_lr, staging


def _two_blobs() -> np.ndarray:
    gt = np.zeros((64, 64), bool)
    gt[5:20, 5:20] = True
    gt[40:60, 30:50] = True
    return gt


def test_initial_clicks_start_with_a_positive_inside_the_defect() -> None:
    gt = _two_blobs()
    rng = np.random.default_rng(0)
    for _ in range(50):
        clicks = initial_clicks(gt, rng)
        assert clicks[0].positive and gt[clicks[0].y, clicks[0].x]
        assert all(gt[c.y, c.x] == c.positive for c in clicks)


def test_target_subset_keeps_some_but_not_all_regions() -> None:
    gt = _two_blobs()
    rng = np.random.default_rng(1)
    for _ in range(10):
        sub = target_subset(gt, rng)
        assert sub.any() and (sub <= gt).all() and sub.sum() < gt.sum()
    single = np.zeros((8, 8), bool)
    single[2:5, 2:5] = True
    assert (target_subset(single, rng) == single).all()


def test_render_makes_positive_and_negative_channels() -> None:
    rng = np.random.default_rng(0)
    maps = render([initial_clicks(_two_blobs(), rng)], 64, 2.0)
    assert maps.shape == (1, 2, 64, 64) and maps[0, 0].sum() > 0


def test_schedule_warms_up_then_decays() -> None:
    import torch

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    rates = [set_lr(opt, s, 100, 1.0, 10) for s in range(100)]
    assert rates[0] == 0.1 and rates[9] == 1.0 and rates[-1] < 0.05
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))


def test_commit_files_moves_staged_files_and_registers_them(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    manifest = {
        "format_version": 1, "adinspect_version": "0", "product": "p",
        "preprocess": {"image_size": 64, "mean": [0, 0, 0], "std": [1, 1, 1]},
        "backbone": {"name": "b", "weights_source": "w", "weights_sha256": None, "random_weights": False,
                     "feature_dim": 1, "feature_grid": 8, "global_channels": 1, "global_grid": 4},
        "threshold": 1.0, "threshold_rule": "r", "n_references": 1,
        "files": {"config.json": sha256_of(tmp_path / "config.json")},
    }  # fmt: skip
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    staged = {"seg.onnx": staging(tmp_path, "seg.onnx")}
    staged["seg.onnx"].write_bytes(b"onnx")
    commit_files(tmp_path, staged, optional_models=["seg"])
    written = json.loads((tmp_path / MANIFEST).read_text())
    assert written["files"]["seg.onnx"] == sha256_of(tmp_path / "seg.onnx")
    assert written["optional_models"] == ["seg"] and not staged["seg.onnx"].exists()
