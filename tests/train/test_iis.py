"""IIS-manner training inputs for ADClick-Seg: clicks on the target, none at serving."""

from __future__ import annotations

import numpy as np
import torch

from adinspect.models.adclick import ADClickConfig, ADClickSeg
from adinspect.train.iis import iis_maps, sample_clicks


def test_clicks_fall_on_the_target_or_around_it() -> None:
    gt = np.zeros((64, 64), bool)
    gt[20:30, 20:40] = True
    rng = np.random.default_rng(0)
    for _ in range(20):
        clicks = sample_clicks(gt, 3, rng)
        assert len(clicks) == 3 and clicks[0].positive
        for c in clicks:
            assert gt[c.y, c.x] == c.positive
            assert c.positive or (13 <= c.y < 37 and 13 <= c.x < 47)  # the 15 px band around it
    empty = sample_clicks(np.zeros((64, 64), bool), 2, rng)
    assert len(empty) == 2 and not any(c.positive for c in empty)


def test_maps_share_and_none_when_disabled() -> None:
    target = torch.zeros(16, 1, 64, 64)
    target[:, :, 10:20, 10:20] = 1.0
    rng = np.random.default_rng(0)
    assert iis_maps(target, rng, max_clicks=0, fraction=1.0, radius=2) is None
    assert iis_maps(target, rng, max_clicks=3, fraction=0.0, radius=2) is None
    maps = iis_maps(target, rng, max_clicks=3, fraction=0.5, radius=2)
    assert maps is not None and maps.shape == (16, 3, 64, 64) and not maps[:, 0].any()
    clicked = maps[:, 1:].flatten(1).any(1)
    assert 2 <= int(clicked.sum()) <= 14
    assert not maps[:, 1, :8].any() and not maps[:, 1, 22:].any()  # positive discs (radius 2) on the square
    assert not maps[:, 1, :, :8].any() and not maps[:, 1, :, 22:].any()


def test_an_all_zero_click_map_is_the_served_path() -> None:
    torch.manual_seed(0)
    cfg = ADClickConfig(
        in_channels=8, lang_dim=16, grid=8, image_size=32, dims=(16,), depths=(1,), heads=(2,)
    )
    model = ADClickSeg(cfg).eval()
    residual, words, mask = torch.randn(2, 8, 8, 8), torch.randn(2, 5, 16), torch.ones(2, 5)
    with torch.no_grad():
        served = model.forward_type(residual, words, mask)
        zero = model.forward_type(residual, words, mask, maps=torch.zeros(2, 3, 32, 32))
        clicked = torch.zeros(2, 3, 32, 32)
        clicked[:, 1, 4:8, 4:8] = 1
        with_click = model.forward_type(residual, words, mask, maps=clicked)
    torch.testing.assert_close(served, zero)
    assert not torch.allclose(served, with_click)
