"""Checkpoints (safetensors + JSON, no pickle), EMA and preset checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from adinspect.train.checkpoint import (
    EMA,
    CheckpointError,
    check_same_settings,
    load_checkpoint,
    load_weights,
    read_meta,
    save_checkpoint,
    save_weights,
)


def _trained(seed: int = 0) -> tuple[nn.Module, EMA, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    ema = EMA(model, decay=0.9)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(3):
        loss = model(torch.randn(5, 4)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model, step)
    return model, ema, opt


def test_round_trip_restores_model_ema_optimizer_and_step(tmp_path: Path) -> None:
    model, ema, opt = _trained()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, ema, opt, step=3, meta={"kind": "click", "preset": "cpu"})
    m2, e2, o2 = _trained(seed=1)
    state = load_checkpoint(path, m2, e2, o2, expected={"kind": "click", "preset": "cpu"})
    assert state.step == 3
    for a, b in zip(model.state_dict().values(), m2.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(ema.model.state_dict().values(), e2.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    s1, s2 = opt.state_dict()["state"], o2.state_dict()["state"]
    torch.testing.assert_close(s1[0]["exp_avg"], s2[0]["exp_avg"])
    assert float(s2[0]["step"]) == 3.0
    assert not path.read_bytes().startswith(b"\x80")  # not a pickle


def test_preset_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    model, ema, opt = _trained()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, ema, opt, step=1, meta={"kind": "click", "preset": "paper"})
    with pytest.raises(CheckpointError, match="preset is 'paper', this run needs 'cpu'"):
        load_checkpoint(path, model, ema, opt, expected={"kind": "click", "preset": "cpu"})
    save_weights(tmp_path / "w.safetensors", model, {"kind": "seg", "preset": "paper"})
    with pytest.raises(CheckpointError, match="kind"):
        load_weights(tmp_path / "w.safetensors", model, {"kind": "click"})


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_meta(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_meta(bad)


def test_ema_moves_towards_the_weights() -> None:
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=100)
    assert ema.model.weight.flatten().tolist() == [0.5, 0.5]


def test_a_resume_may_change_only_the_free_settings(tmp_path: Path) -> None:
    recorded = {"steps": 2000, "batch_size": 8, "lr": 5e-4, "checkpoint_every": 100}
    path = tmp_path / "click.ckpt.safetensors"
    longer = {**recorded, "steps": 3000, "checkpoint_every": 50}
    check_same_settings(recorded, longer, ("steps", "checkpoint_every"), path)  # no error
    with pytest.raises(CheckpointError, match=r"batch_size = 8, this run asks for 4"):
        check_same_settings(recorded, {**recorded, "batch_size": 4}, ("steps",), path)
    with pytest.raises(CheckpointError, match=r"iou_loss = 'absent', this run asks for 0.5"):
        check_same_settings(recorded, {**recorded, "iou_loss": 0.5}, (), path)  # a setting it lacks
    with pytest.raises(CheckpointError, match="does not record its training settings"):
        check_same_settings(None, recorded, (), path)
