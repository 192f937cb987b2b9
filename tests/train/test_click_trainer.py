"""Pieces of the click trainer and the package file staging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from adinspect.models.adclick import ADClick, ADClickConfig
from adinspect.package import MANIFEST, sha256_of
from adinspect.train.click_trainer import initial_clicks, render, target_subset
from adinspect.train.common import commit_files, set_lr, staging
from adinspect.train.crops import crop_around, crop_config, on_whole_input, set_input


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


def test_augment_turns_images_with_the_residual_and_masks() -> None:
    from adinspect.train.batches import augment

    residual = torch.zeros(1, 1, 4, 4)
    residual[0, 0, 0, 1] = 1
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, 0:4, 4:8] = True
    images = torch.zeros(1, 3, 16, 16)
    images[0, :, 0:4, 4:8] = 1
    for seed in range(8):
        r, m, im = augment(residual, masks, np.random.default_rng(seed), images)
        assert im is not None and torch.equal(im[0, 0] > 0, m[0]) and torch.equal(im[0, 1], im[0, 2])
        big = torch.nn.functional.interpolate(r, scale_factor=4)[0, 0] > 0
        assert torch.equal(big, m[0])
    r2, m2, none = augment(residual, masks, np.random.default_rng(0))
    assert none is None and r2.shape == residual.shape


def test_normalise_images_is_the_served_preprocess() -> None:
    from adinspect.geometry import PreprocessSpec, preprocess
    from adinspect.train.batches import normalise_images

    spec = PreprocessSpec(image_size=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    got = normalise_images(torch.from_numpy(image)[None], spec)[0].numpy()
    np.testing.assert_allclose(got, preprocess(image, spec), atol=1e-6)


def test_capture_shift_augmentation_moves_the_part_and_its_mask_together() -> None:
    """`--capture-shift-aug`: another light and the part moved; the mask follows the defect."""
    from adinspect.train.residual_data import _shifted

    rng = np.random.default_rng(0)
    image = np.zeros((64, 64, 3), np.uint8)
    image[20:30, 20:30] = 200  # the defect, and nothing else is bright
    mask = np.zeros((64, 64), bool)
    mask[20:30, 20:30] = True
    moved = 0
    for _ in range(20):
        shown, target = _shifted(image, mask, 1.0, rng)
        assert target.sum() > 0 and np.all(shown[target].mean(1) > 50)  # the mask is on the defect
        assert not np.any(shown[~target].mean(1) > 50)
        moved += not np.array_equal(target, mask)
    assert moved >= 15  # up to 20 % of the side, in a random direction
    same, target = _shifted(image, mask, 0.0, rng)
    assert same is image and target is mask


def _tall_config() -> ADClickConfig:
    return ADClickConfig.for_preset("cpu", 12, 16, (80, 32), (640, 256))


def test_a_large_input_trains_on_crops_with_weights_the_whole_input_loads() -> None:
    cfg = _tall_config()
    crop = crop_config(cfg, 256)
    assert crop.image_hw == (256, 256) and crop.grid_hw == (32, 32)
    assert crop_config(cfg, 0) is cfg and crop_config(cfg, 640) is cfg
    assert crop_config(cfg, 100).image_hw == (128, 128)  # whole cells of the deepest stage (32 px)
    square = ADClickConfig.for_preset("cpu", 12, 16, 32, 256)
    assert crop_config(square, 256) is square
    trained, whole = ADClick(crop), ADClick(cfg)
    whole.load_state_dict(trained.state_dict())  # strict: every weight is size-independent
    z = torch.zeros
    out = whole(
        z(1, 12, 80, 32),
        z(1, 1, 640, 256),
        z(1, 2, 640, 256),
        z(1, 3, 16),
        torch.ones(1, 3, dtype=torch.bool),
    )
    assert out.shape == (1, 1, 640, 256) and torch.isfinite(out).all()


def _random_inputs(cfg: ADClickConfig, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    (gh, gw), (ih, iw) = cfg.grid_hw, cfg.image_hw
    r = torch.randn(2, cfg.in_channels, gh, gw, generator=g)
    prev = torch.rand(2, 1, ih, iw, generator=g)
    clicks = (torch.rand(2, 2, ih, iw, generator=g) > 0.99).float()
    return r, prev, clicks, torch.randn(2, 3, cfg.lang_dim, generator=g), torch.ones(2, 3, dtype=torch.bool)


def test_one_network_switches_between_crops_and_the_whole_input_in_place() -> None:
    """Training alternates crops and the whole input on the same parameters: after `set_input` the
    network computes exactly what one built for that input computes with the same weights."""
    cfg = _tall_config()
    crop = crop_config(cfg, 256)
    torch.manual_seed(0)
    switched = ADClick(crop).eval()
    params = [id(p) for p in switched.parameters()]
    whole = ADClick(cfg).eval()
    whole.load_state_dict(switched.state_dict())
    set_input(switched, cfg)
    assert [id(p) for p in switched.parameters()] == params  # the optimizer's tensors, untouched
    windows = [[b.attn.window for b in stage] for stage in switched.encoder.stages]
    assert windows == [[b.attn.window for b in stage] for stage in whole.encoder.stages]
    assert windows != [[b.attn.window for b in stage] for stage in ADClick(crop).encoder.stages]
    with torch.no_grad():
        torch.testing.assert_close(switched(*_random_inputs(cfg, 1)), whole(*_random_inputs(cfg, 1)))
        set_input(switched, crop)
        cropped = ADClick(crop).eval()
        cropped.load_state_dict(switched.state_dict())
        torch.testing.assert_close(switched(*_random_inputs(crop, 2)), cropped(*_random_inputs(crop, 2)))
    assert [on_whole_input(s, 3) for s in range(7)] == [False, False, True, False, False, True, False]
    assert not any(on_whole_input(s, 0) for s in range(7))


def test_crops_hold_a_defect_pixel_and_cut_residual_masks_and_images_alike() -> None:
    crop = crop_config(_tall_config(), 256)
    rng = np.random.default_rng(0)
    b, h, w, p = 6, 80, 32, 8
    cells = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w).expand(b, 1, h, w)
    masks = torch.zeros(b, h * p, w * p, dtype=torch.bool)
    for i in range(b):  # one small defect per sample, near the top, middle or bottom
        y = [20, 300, 620][i % 3]
        masks[i, y : y + 4, 100:104] = True
    pixel_cells = torch.arange(h * w, dtype=torch.float32).reshape(h, w).repeat_interleave(p, 0)
    images = pixel_cells.repeat_interleave(p, 1).expand(b, 3, h * p, w * p)
    r, m, im = crop_around(cells, masks, images, crop, rng)
    assert r.shape == (b, 1, 32, 32) and m.shape == (b, 256, 256) and im is not None
    assert im.shape == (b, 3, 256, 256)
    for i in range(b):
        assert m[i].sum() == 16  # the whole defect inside the crop
        # the residual's cells and the image's pixels come from the same place
        assert torch.equal(r[i, 0].repeat_interleave(p, 0).repeat_interleave(p, 1), im[i, 0])


def test_a_larger_input_trains_fewer_samples_a_step_within_bounds() -> None:
    import pytest

    from adinspect.errors import InputError
    from adinspect.train.click_trainer import MAX_BATCH, MIN_BATCH, ClickTrainSettings, batch_for

    assert batch_for((256, 256)) == 8  # the recipe's batch where it was set
    assert batch_for((640, 256)) == 4  # a strip of 2.5 times the pixels
    assert batch_for((320, 320)) == 5
    assert batch_for((1024, 1024)) == MIN_BATCH and batch_for((64, 64)) == MAX_BATCH
    assert ClickTrainSettings().batch_size is None  # resolved by train_click from the input
    with pytest.raises(InputError, match="batch_size"):
        ClickTrainSettings(batch_size=0)
