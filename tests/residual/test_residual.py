"""The static-shape residual model against a brute-force reference, and its ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from adinspect.config import preset_config  # noqa: E402
from adinspect.fitting.export import export_residual  # noqa: E402
from adinspect.residual.bank import fit_bank, fit_pca  # noqa: E402
from adinspect.residual.model import ResidualModel, disc_offsets  # noqa: E402


def _method(**kw):
    return preset_config(
        "cpu", "p", method={"image_size": 64, "k_neighbors": 3, "sigma": 1.5, "pca_dim": 4, **kw}
    ).method


def _bank_and_query(seed=0, n=6, d=5, grid=8, c1=8, g=4):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, d, grid, grid, generator=gen).half().float()  # bank is stored in fp16
    gmaps = torch.randn(n, c1, g, g, generator=gen)
    query = torch.randn(2, d, grid, grid, generator=gen)
    qmaps = torch.randn(2, c1, g, g, generator=gen)
    return feats, gmaps, query, qmaps


def brute_force_match(query: np.ndarray, refs: np.ndarray, radius: float) -> np.ndarray:
    """For each cell, the nearest feature among refs' cells within `radius`: (d, h, w), (K, d, h, w)."""
    d, h, w = query.shape
    out = np.zeros_like(query)
    for y in range(h):
        for x in range(w):
            best, best_d = None, np.inf
            for k in range(refs.shape[0]):
                for yy in range(h):
                    for xx in range(w):
                        if (yy - y) ** 2 + (xx - x) ** 2 <= radius**2:
                            dist = float(((refs[k, :, yy, xx] - query[:, y, x]) ** 2).sum())
                            if dist < best_d:
                                best, best_d = refs[k, :, yy, xx], dist
            out[:, y, x] = best
    return out


def test_disc_offsets_cover_the_disc():
    assert disc_offsets(0.0) == [(0, 0)]
    assert len(disc_offsets(1.0)) == 5
    assert len(disc_offsets(2.0)) == 13
    assert len(disc_offsets(3.2)) == 37  # the paper's σ
    assert disc_offsets(2.0)[0] == (0, 0)


def test_match_equals_brute_force_nearest_within_radius():
    feats, gmaps, query, qmaps = _bank_and_query()
    method = _method()
    model = ResidualModel(fit_bank(feats, gmaps, method), method).eval()
    with torch.no_grad():
        neighbours = model.retrieve(qmaps)
        matched = model.match(query, neighbours).numpy()
    for b in range(query.shape[0]):
        refs = feats[neighbours[b]].numpy()
        expected = brute_force_match(query[b].numpy(), refs, method.sigma)
        np.testing.assert_allclose(matched[b], expected, atol=1e-6)


def test_retrieval_is_mean_of_lowest_window_distances():
    feats, gmaps, _, qmaps = _bank_and_query(seed=1)
    method = _method(keep_fraction=0.5, window=2)
    model = ResidualModel(fit_bank(feats, gmaps, method), method).eval()
    mean, comps = fit_pca(gmaps, method.pca_dim)
    proj = lambda m: ((m.permute(1, 2, 0) - mean) @ comps).numpy()  # noqa: E731  (H, W, p)
    q = proj(qmaps[0])
    dists = []
    for i in range(feats.shape[0]):
        r = proj(gmaps[i])
        per_window = [
            ((q[y : y + 2, x : x + 2] - r[y : y + 2, x : x + 2]) ** 2).sum() for y in (0, 2) for x in (0, 2)
        ]
        dists.append(np.mean(sorted(per_window)[:2]))
    expected = set(np.argsort(dists)[: method.k_neighbors].tolist())
    with torch.no_grad():
        assert set(model.retrieve(qmaps[:1])[0].tolist()) == expected


def test_identical_image_has_zero_residual():
    feats, gmaps, _, _ = _bank_and_query()
    method = _method()
    model = ResidualModel(fit_bank(feats, gmaps, method), method).eval()
    with torch.no_grad():
        residual, amap, score = model(feats[:2], gmaps[:2])
    assert float(residual.abs().max()) == 0.0
    assert float(score.max()) == 0.0
    assert amap.shape == (2, 1, 64, 64)


def test_local_defect_raises_score_where_it_is():
    feats, gmaps, _, _ = _bank_and_query()
    method = _method()
    model = ResidualModel(fit_bank(feats, gmaps, method), method).eval()
    query = feats[:1].clone()
    query[0, :, 2, 5] += 6.0
    with torch.no_grad():
        _, amap, score = model(query, gmaps[:1])
    peak = np.unravel_index(int(amap[0, 0].argmax()), amap.shape[-2:])
    assert abs(peak[0] // 8 - 2) <= 1 and abs(peak[1] // 8 - 5) <= 1
    assert float(score[0]) > 1.0


def test_onnx_export_matches_torch_for_any_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    feats, gmaps, query, qmaps = _bank_and_query()
    method = _method()
    model = ResidualModel(fit_bank(feats, gmaps, method), method).eval()
    path = tmp_path / "residual.onnx"
    export_residual(model, query, qmaps, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 2):
        with torch.no_grad():
            r, m, s = model(query[:batch], qmaps[:batch])
        out = session.run(None, {"features": query[:batch].numpy(), "global_map": qmaps[:batch].numpy()})
        np.testing.assert_allclose(out[0], r.numpy(), atol=1e-4)
        np.testing.assert_allclose(out[1], m.numpy(), atol=1e-4)
        np.testing.assert_allclose(out[2], s.numpy(), atol=1e-4)
