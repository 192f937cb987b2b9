"""ONNX export of ADClick-Seg / ADClick: parity with torch, dynamic batch, language as constants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from adinspect.contracts import SEG
from adinspect.models.adclick import ADClick, ADClickConfig, ADClickSeg
from adinspect.models.export import CLICK, ClickGraph, SegGraph, export_click, export_seg

ort = pytest.importorskip("onnxruntime")

D_F, Q, GRID, S, P, Z = 24, 16, 16, 64, 3, 5


def _cfg() -> ADClickConfig:
    return ADClickConfig(
        D_F, Q, GRID, S, dims=(16, 32), depths=(1, 1), heads=(2, 2), window=8, decoder_dim=16
    )


def test_seg_export_matches_torch_for_any_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    graph = SegGraph(ADClickSeg(_cfg()).eval(), torch.randn(P, Z, Q), torch.ones(P, Z))
    parity = export_seg(graph, torch.randn(2, D_F, GRID, GRID), tmp_path / "seg.onnx")
    assert parity["map_max_abs_diff"] < 1e-4 and parity["defect_type_agreement"] == 1.0
    model = onnx.load(str(tmp_path / "seg.onnx"))
    assert [i.name for i in model.graph.input] == [SEG.residual]  # language tensors are constants
    assert [o.name for o in model.graph.output] == list(SEG[1:])
    x = torch.randn(3, D_F, GRID, GRID)
    got = ort.InferenceSession(str(tmp_path / "seg.onnx")).run(None, {SEG.residual: x.numpy()})
    with torch.no_grad():
        ref = graph(x)
    np.testing.assert_allclose(got[0], ref[0].numpy(), atol=1e-4)
    assert got[2].tolist() == ref[2].tolist() and got[3].shape == (3, P)


def test_click_export_selects_the_language_of_the_defect_type(tmp_path: Path) -> None:
    torch.manual_seed(0)
    v_lang = torch.randn(P, Z, Q)
    model = ADClick(_cfg()).eval()
    graph = ClickGraph(model, v_lang, torch.ones(P, Z))
    residual, prev = torch.randn(2, D_F, GRID, GRID), torch.rand(2, 1, S, S)
    clicks = torch.zeros(2, 2, S, S)
    clicks[:, 0, 30:34, 30:34] = 1
    types = torch.tensor([0, 2])
    parity = export_click(graph, (residual, prev, clicks, types), tmp_path / "click.onnx")
    assert parity["mask_max_abs_diff"] < 1e-4
    feeds = {CLICK.residual: residual.numpy(), CLICK.prev_mask: prev.numpy(), CLICK.clicks: clicks.numpy(),
             CLICK.defect_type: np.array([2, 1])}  # fmt: skip
    got = ort.InferenceSession(str(tmp_path / "click.onnx")).run(None, feeds)[0]
    with torch.no_grad():
        ref = torch.sigmoid(model(residual, prev, clicks, v_lang[[2, 1]], torch.ones(2, Z)))
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-4)


def test_seg_graph_blurs_the_max_map_like_the_training_free_map(tmp_path: Path) -> None:
    from adinspect.residual.model import gaussian_kernel

    k = gaussian_kernel(2.0)
    assert k.shape == (17,) and abs(float(k.sum()) - 1) < 1e-6 and gaussian_kernel(0).tolist() == [1.0]
    torch.manual_seed(0)
    model = ADClickSeg(_cfg()).eval()
    v_lang, mask = torch.randn(P, Z, Q), torch.ones(P, Z)
    sharp, blurred = SegGraph(model, v_lang, mask), SegGraph(model, v_lang, mask, blur_sigma=2.0)
    x = torch.randn(2, D_F, GRID, GRID)
    with torch.no_grad():
        a, b = sharp(x), blurred(x)
    assert b[0].shape == a[0].shape and b[0].std() < a[0].std()
    torch.testing.assert_close(b[1], b[0].amax(dim=(1, 2, 3)))
    assert b[2].tolist() == a[2].tolist()  # the winning type is decided before the blur
    parity = export_seg(blurred, x, tmp_path / "seg.onnx")
    assert parity["map_max_abs_diff"] < 1e-4


def test_fused_seg_map_is_the_geometric_mean_with_the_training_free_map(tmp_path: Path) -> None:
    from adinspect.residual.model import gaussian_kernel, residual_norm_map

    torch.manual_seed(0)
    model = ADClickSeg(_cfg()).eval()
    v_lang, mask = torch.randn(P, Z, Q), torch.ones(P, Z)
    t = 20.0  # about 4 times the plain residual norm (sqrt(D_F)), under the corner's
    plain, fused = SegGraph(model, v_lang, mask, 2.0), SegGraph(model, v_lang, mask, 2.0, free_threshold=t)
    x = torch.randn(2, D_F, GRID, GRID)
    x[1, :, :4, :4] *= 6  # a strong residual in one corner of the second image
    with torch.no_grad():
        p, f = plain(x), fused(x)
    free = residual_norm_map(x, S, gaussian_kernel(2.0))
    torch.testing.assert_close(f[0], torch.sqrt(p[0] * free / t))
    torch.testing.assert_close(fused.fuse(p[0], x), f[0])  # what train-seg's choice computes from p
    with pytest.raises(ValueError, match="no free_threshold"):
        plain.fuse(p[0], x)
    torch.testing.assert_close(f[1], f[0].amax(dim=(1, 2, 3)))
    assert f[2].tolist() == p[2].tolist()  # the defect type is the seg model's alone
    # where the residual is strong the fused map rises over the seg probability, where weak it falls
    corner = f[0][1, 0, :8, :8].mean() / p[0][1, 0, :8, :8].mean()
    assert corner > 1 > f[0][1, 0, 32, 32] / p[0][1, 0, 32, 32]
    parity = export_seg(fused, x, tmp_path / "seg.onnx")
    assert parity["map_max_abs_diff"] < 1e-4
    bad = x.clone()
    bad[0, 0, 5, 5] = float("nan")
    got = ort.InferenceSession(str(tmp_path / "seg.onnx")).run(None, {SEG.residual: bad.numpy()})
    assert np.isnan(got[1][0]) and np.isfinite(got[1][1])  # a NaN residual gives a NaN score: fails closed
    for wrong in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="free_threshold"):
            SegGraph(model, v_lang, mask, free_threshold=wrong)


def test_click_export_with_the_image_branch_adds_only_the_image_input(tmp_path: Path) -> None:
    from adinspect.contracts import BACKBONE

    torch.manual_seed(0)
    v_lang = torch.randn(P, Z, Q)
    cfg = ADClickConfig.from_dict({**_cfg().to_dict(), "image_stem": 8})
    model = ADClick(cfg).eval()
    graph = ClickGraph(model, v_lang, torch.ones(P, Z))
    residual, prev = torch.randn(2, D_F, GRID, GRID), torch.rand(2, 1, S, S)
    clicks = torch.zeros(2, 2, S, S)
    clicks[:, 0, 30:34, 30:34] = 1
    image = torch.randn(2, 3, S, S)
    parity = export_click(
        graph, (residual, prev, clicks, torch.tensor([0, 2]), image), tmp_path / "click.onnx"
    )
    assert parity["mask_max_abs_diff"] < 1e-4
    names = [i.name for i in onnx.load(str(tmp_path / "click.onnx")).graph.input]
    assert names == [CLICK.residual, CLICK.prev_mask, CLICK.clicks, CLICK.defect_type, BACKBONE.image]
    session = ort.InferenceSession(str(tmp_path / "click.onnx"))
    other = torch.randn(3, 3, S, S)  # another batch size and other images
    r3, p3, c3 = torch.randn(3, D_F, GRID, GRID), torch.rand(3, 1, S, S), clicks[:1].repeat(3, 1, 1, 1)
    feeds = {CLICK.residual: r3.numpy(), CLICK.prev_mask: p3.numpy(), CLICK.clicks: c3.numpy(),
             CLICK.defect_type: np.array([2, 1, 0]), BACKBONE.image: other.numpy()}  # fmt: skip
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        ref = torch.sigmoid(model(r3, p3, c3, v_lang[[2, 1, 0]], torch.ones(3, Z), other))
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="takes"):
        export_click(graph, (residual, prev, clicks, torch.tensor([0, 2])), tmp_path / "short.onnx")


@pytest.mark.parametrize("with_image", [False, True])
def test_click_export_with_the_feature_prior_adds_the_features_input(
    tmp_path: Path, with_image: bool
) -> None:
    """click.onnx takes `features` (after `image` when both priors are on); ONNX Runtime matches torch
    for another batch size, and the features change the mask."""
    from adinspect.contracts import BACKBONE

    torch.manual_seed(0)
    v_lang = torch.randn(P, Z, Q)
    cfg = ADClickConfig.from_dict({**_cfg().to_dict(), "image_features": True, "image_stem": 8 * with_image})
    model = ADClick(cfg).eval()
    assert model.feature_embed is not None
    torch.nn.init.normal_(model.feature_embed.net[-1].weight)  # trained, not the zero start
    graph = ClickGraph(model, v_lang, torch.ones(P, Z))
    residual, prev = torch.randn(2, D_F, GRID, GRID), torch.rand(2, 1, S, S)
    clicks = torch.zeros(2, 2, S, S)
    clicks[:, 0, 30:34, 30:34] = 1
    image = [torch.randn(2, 3, S, S)] if with_image else []
    example = (residual, prev, clicks, torch.tensor([0, 2]), *image, torch.randn(2, D_F, GRID, GRID))
    assert export_click(graph, example, tmp_path / "click.onnx")["mask_max_abs_diff"] < 1e-4
    names = [i.name for i in onnx.load(str(tmp_path / "click.onnx")).graph.input]
    assert names == [*CLICK[:4], *([CLICK.image] if with_image else []), CLICK.features]
    assert (CLICK.image, CLICK.features) == (BACKBONE.image, BACKBONE.features)  # fed the backbone's own
    session = ort.InferenceSession(str(tmp_path / "click.onnx"))
    r3, p3, c3 = torch.randn(3, D_F, GRID, GRID), torch.rand(3, 1, S, S), clicks[:1].repeat(3, 1, 1, 1)
    image3 = torch.randn(3, 3, S, S) if with_image else None
    features = torch.randn(3, D_F, GRID, GRID)
    feeds = {CLICK.residual: r3.numpy(), CLICK.prev_mask: p3.numpy(), CLICK.clicks: c3.numpy(),
             CLICK.defect_type: np.array([2, 1, 0]), CLICK.features: features.numpy()}  # fmt: skip
    if image3 is not None:
        feeds[CLICK.image] = image3.numpy()
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        ref = torch.sigmoid(model(r3, p3, c3, v_lang[[2, 1, 0]], torch.ones(3, Z), image3, features))
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-4)
    other = session.run(None, {**feeds, CLICK.features: np.zeros_like(feeds[CLICK.features])})[0]
    assert np.abs(other - got).max() > 1e-3
    with pytest.raises(ValueError, match="takes"):
        export_click(graph, example[:4], tmp_path / "short.onnx")
