"""ADClick / ADClick-Seg / PWAM: shapes, gradient flow, language and the max over types (Eq. 7)."""

from __future__ import annotations

import json

import pytest
import torch

from adinspect.models.adclick import ADClick, ADClickConfig, ADClickSeg
from adinspect.models.pwam import PWAM

D_F, Q, GRID, S = 24, 16, 16, 64


@pytest.fixture(scope="module")
def cfg() -> ADClickConfig:
    return ADClickConfig(
        D_F, Q, GRID, S, dims=(16, 32), depths=(1, 1), heads=(2, 2), window=8, decoder_dim=16
    )


def _inputs(b: int, z: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, D_F, GRID, GRID, generator=g),
        torch.rand(b, 1, S, S, generator=g),
        (torch.rand(b, 2, S, S, generator=g) > 0.98).float(),
        torch.randn(b, z, Q, generator=g),
        torch.ones(b, z),
    )


def test_adclick_output_shape_and_gradient_reaches_every_parameter(cfg: ADClickConfig) -> None:
    torch.manual_seed(0)
    model = ADClick(cfg)
    logits = model(*_inputs(2))
    assert logits.shape == (2, 1, S, S)
    logits.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_clicks_and_language_change_the_output(cfg: ADClickConfig) -> None:
    torch.manual_seed(0)
    model = ADClick(cfg).eval()
    r, m, c, w, wm = _inputs(1)
    with torch.no_grad():
        base = model(r, m, c, w, wm)
        clicked = c.clone()
        clicked[:, 0, 20:26, 20:26] = 1
        assert not torch.allclose(base, model(r, m, clicked, w, wm))
        assert not torch.allclose(base, model(r, m, c, torch.randn_like(w), wm))


def test_masked_words_are_ignored() -> None:
    torch.manual_seed(0)
    pwam = PWAM(8, Q, heads=2).eval()
    x, words = torch.randn(2, 10, 8), torch.randn(2, 4, Q)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)
    changed = words.clone()
    changed[0, 2:] = 100.0
    changed[1, 3] = -50.0
    with torch.no_grad():
        torch.testing.assert_close(pwam(x, words, mask), pwam(x, changed, mask))


def test_seg_max_over_types_matches_per_type_runs(cfg: ADClickConfig) -> None:
    torch.manual_seed(0)
    model = ADClickSeg(cfg).eval()
    r = torch.randn(2, D_F, GRID, GRID)
    v_lang, mask = torch.randn(3, 5, Q), torch.ones(3, 5)
    mask[1, 3:] = 0
    with torch.no_grad():
        out = model(r, v_lang, mask)
        per_type = torch.stack(
            [
                torch.sigmoid(model.forward_type(r, v_lang[p].expand(2, -1, -1), mask[p].expand(2, -1)))
                for p in range(3)
            ],
            1,
        )[:, :, 0]  # (B, P, S, S)
    assert out.anomaly_map.shape == (2, 1, S, S) and out.score.shape == (2,)
    torch.testing.assert_close(out.anomaly_map[:, 0], per_type.max(1).values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.type_scores, per_type.amax(dim=(2, 3)), atol=1e-5, rtol=1e-5)
    assert out.defect_type.tolist() == per_type.amax(dim=(2, 3)).argmax(1).tolist()
    torch.testing.assert_close(out.score, out.anomaly_map.amax(dim=(1, 2, 3)))


def test_seg_batch_samples_are_independent(cfg: ADClickConfig) -> None:
    torch.manual_seed(0)
    model = ADClickSeg(cfg).eval()
    r = torch.randn(3, D_F, GRID, GRID)
    v_lang, mask = torch.randn(2, 5, Q), torch.ones(2, 5)
    with torch.no_grad():
        together = model(r, v_lang, mask).anomaly_map
        alone = torch.cat([model(r[i : i + 1], v_lang, mask).anomaly_map for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_seg_gradient_flows(cfg: ADClickConfig) -> None:
    torch.manual_seed(0)
    model = ADClickSeg(cfg)
    logits = model.forward_type(torch.randn(2, D_F, GRID, GRID), torch.randn(2, 5, Q), torch.ones(2, 5))
    logits.mean().backward()
    assert model.residual_proj.weight.grad.abs().sum() > 0
    assert model.encoder.fusions[-1].attend.key.weight.grad.abs().sum() > 0


def test_seg_loads_adclick_encoder_weights(cfg: ADClickConfig) -> None:
    click, seg = ADClick(cfg), ADClickSeg(cfg)
    missing, unexpected = seg.load_state_dict(click.state_dict(), strict=False)
    assert set(missing) == {"residual_proj.weight", "residual_proj.bias"}
    assert all(k.startswith("refine.") for k in unexpected)


def test_windows_fit_any_grid_and_grids_that_cannot_halve_are_refused() -> None:
    """A stage's window is the largest divisor of its side up to `window` (a 20-cell side gets 5);
    a grid that cannot halve once per stage is refused."""
    small = ADClickConfig(
        D_F, Q, grid=20, image_size=160, dims=(16, 32), depths=(1, 1), heads=(2, 2), window=8
    )
    assert [small.stage_window(i) for i in range(2)] == [(5, 5), (5, 5)]
    with pytest.raises(ValueError, match="halving"):
        ADClickConfig(
            D_F, Q, grid=(21, 16), image_size=(168, 128), dims=(16, 32), depths=(1, 1), heads=(2, 2)
        )
    with pytest.raises(ValueError, match="same multiple"):
        ADClickConfig(D_F, Q, grid=(16, 8), image_size=(128, 128), dims=(16, 32), depths=(1, 1), heads=(2, 2))
    cpu = ADClickConfig.for_preset("cpu", 176, 384, (80, 32), (640, 256))  # KolektorSDD's 640 x 256
    assert [cpu.stage_window(i) for i in range(3)] == [(8, 8), (8, 8), (5, 8)]
    assert ADClickConfig.from_dict(json.loads(json.dumps(cpu.to_dict()))) == cpu
    cfg = ADClickConfig.for_preset("cpu", 176, 384, 32, 256)
    assert ADClickConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ADClick preset"):
        ADClickConfig.for_preset("gpu", 176, 384, 32, 256)


def test_rectangular_models_keep_their_shape_and_square_ones_their_windows(cfg: ADClickConfig) -> None:
    """A tall input (H = 2W) runs end to end at (H, W); a square model's stages keep min(window, side)."""
    assert [cfg.stage_window(i) for i in range(2)] == [(8, 8), (8, 8)]
    tall = ADClickConfig.from_dict({**cfg.to_dict(), "grid": [2 * GRID, GRID], "image_size": [2 * S, S],
                                    "image_stem": 8, "refine_full": True})  # fmt: skip
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    residual = torch.randn(1, D_F, 2 * GRID, GRID, generator=g)
    prev, clicks = torch.zeros(1, 1, 2 * S, S), torch.zeros(1, 2, 2 * S, S)
    clicks[0, 0, S + 10 : S + 14, 20:24] = 1  # a click in the lower half
    words, mask = torch.randn(1, 5, Q, generator=g), torch.ones(1, 5)
    with torch.no_grad():
        logits = ADClick(tall).eval()(residual, prev, clicks, words, mask, torch.randn(1, 3, 2 * S, S))
        seg = ADClickSeg(tall).eval()(residual, torch.randn(2, 5, Q), torch.ones(2, 5))
    assert logits.shape == (1, 1, 2 * S, S) and seg.anomaly_map.shape == (1, 1, 2 * S, S)


def test_paper_sizes_build_and_run() -> None:
    cfg = ADClickConfig.for_preset("paper", in_channels=512, lang_dim=384, grid=64, image_size=512)
    assert cfg.dims == (96, 192, 384, 768) and cfg.out_scale == 4
    model = ADClickSeg(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 512, 64, 64), torch.randn(2, 6, 384), torch.ones(2, 6))
    assert out.anomaly_map.shape == (1, 1, 512, 512) and out.type_scores.shape == (1, 2)


def _with_image(cfg: ADClickConfig) -> ADClickConfig:
    return ADClickConfig.from_dict({**cfg.to_dict(), "image_stem": 8})


def test_image_branch_shape_gradient_and_the_image_matters(cfg: ADClickConfig) -> None:
    torch.manual_seed(0)
    model = ADClick(_with_image(cfg))
    assert model.takes_image and model.image_embed is not None
    image = torch.randn(2, 3, S, S)
    assert model.image_embed(image).shape == (2, cfg.dims[0], GRID, GRID)
    logits = model(*_inputs(2), image=image)
    assert logits.shape == (2, 1, S, S)
    logits.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []
    model.eval()
    with torch.no_grad():
        a = model(*_inputs(1), image=image[:1])
        b = model(*_inputs(1), image=image[1:])
    assert (a - b).abs().max() > 1e-4  # same residual, clicks and words; another image
    with pytest.raises(ValueError, match="image branch"):
        model(*_inputs(1))


def test_residual_only_model_ignores_an_image_and_old_configs_load_as_residual_only(
    cfg: ADClickConfig,
) -> None:
    old = {k: v for k, v in cfg.to_dict().items() if k != "image_stem"}  # written before the branch
    loaded = ADClickConfig.from_dict(old)
    assert loaded == cfg and loaded.image_stem == 0
    torch.manual_seed(0)
    model = ADClick(loaded).eval()
    assert not model.takes_image and model.image_embed is None
    with torch.no_grad():
        assert torch.equal(model(*_inputs(1)), model(*_inputs(1), image=torch.randn(1, 3, S, S)))


def test_cpu_preset_image_branch_reaches_the_grid() -> None:
    cfg = ADClickConfig.for_preset("cpu", 32, 16, 32, 256, image_branch=True)
    assert cfg.image_stem == 32
    model = ADClick(cfg)
    assert model.image_embed is not None
    assert model.image_embed(torch.zeros(1, 3, 256, 256)).shape == (1, 64, 32, 32)


def test_full_resolution_refinement_follows_a_one_pixel_edge_of_the_image(cfg: ADClickConfig) -> None:
    """With `refine_full` the output can change at single pixels of the image; the head-resolution
    refinement (older image-branch models, loaded from dicts without the field) cannot."""
    full = ADClickConfig.from_dict({**cfg.to_dict(), "image_stem": 8, "refine_full": True})
    old = {k: v for k, v in full.to_dict().items() if k != "refine_full"}
    assert ADClickConfig.from_dict(old).refine_full is False
    torch.manual_seed(0)
    model = ADClick(full).eval()
    image = torch.zeros(1, 3, S, S)
    poked = image.clone()
    poked[0, :, S // 2, S // 2 + 1] = 3.0  # one pixel
    with torch.no_grad():
        diff = (model(*_inputs(1), image=image) - model(*_inputs(1), image=poked)).abs()[0, 0]
    assert diff[S // 2, S // 2 + 1] > 0
    assert diff[S // 2, S // 2 + 1] >= diff.max() * 0.5  # the change is at the pixel, not smeared
    assert diff[S // 2 + 4 :, :].max() < diff.max() * 0.5  # beyond the refinement's 3 px reach: small


def _with_features(cfg: ADClickConfig) -> ADClickConfig:
    return ADClickConfig.from_dict({**cfg.to_dict(), "image_features": True})


def test_feature_prior_starts_as_the_residual_only_model_and_then_learns_from_the_features(
    cfg: ADClickConfig,
) -> None:
    """Zero-initialised, the prior adds nothing (training starts from residual-only behaviour); after
    two optimiser steps each of its parameters has moved and other features give another mask."""
    torch.manual_seed(0)
    model = ADClick(_with_features(cfg))
    assert model.takes_features and not model.takes_image
    plain = ADClick(cfg)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("feature_embed")})
    features = torch.randn(2, D_F, GRID, GRID) * 5 + 3
    model.feature_embed.set_statistics(features)
    with torch.no_grad():
        torch.testing.assert_close(model(*_inputs(2), features=features), plain(*_inputs(2)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # the first step moves the zeroed conv, the second the one before it
        optimizer.zero_grad()
        model(*_inputs(2), features=features).square().mean().backward()
        optimizer.step()
    prior = [n for n, _ in model.named_parameters() if n.startswith("feature_embed.")]
    assert len(prior) == 3  # two convs' weights and the first one's bias
    assert [n for n, p in model.named_parameters() if n in prior and torch.equal(p, before[n])] == []
    model.eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.feature_embed.net[-1].weight)  # as a trained prior: not near zero
        a = model(*_inputs(1), features=features[:1])
        b = model(*_inputs(1), features=features[1:])
    assert (a - b).abs().max() > 1e-3  # same residual, clicks and words; other features
    with pytest.raises(ValueError, match="feature prior"):
        model(*_inputs(1))


def test_feature_statistics_standardise_each_channel(cfg: ADClickConfig) -> None:
    prior = ADClick(_with_features(cfg)).feature_embed
    assert prior is not None
    scales = torch.logspace(-3, 3, D_F)[None, :, None, None]  # channels 6 orders of magnitude apart
    features = (torch.randn(40, D_F, GRID, GRID) * scales + 7 * scales).half()
    prior.set_statistics(features, chunk=7)
    x = (features.float() - prior.mean[None, :, None, None]) * prior.inv_std[None, :, None, None]
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(D_F), atol=1e-3, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3)), torch.ones(D_F), atol=1e-2, rtol=0)


def test_configs_written_before_the_feature_prior_load_without_it(cfg: ADClickConfig) -> None:
    old = {k: v for k, v in cfg.to_dict().items() if k != "image_features"}
    assert ADClickConfig.from_dict(old).image_features is False
    both = ADClickConfig.for_preset("cpu", 32, 16, 32, 256, image_branch=True, image_features=True)
    model = ADClick(both)
    assert model.takes_image and model.takes_features
    assert not ADClick(ADClickConfig.for_preset("cpu", 32, 16, 32, 256)).takes_features
