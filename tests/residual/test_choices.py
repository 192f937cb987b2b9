"""Global matching and the per-position map normalisation: against direct computations, and their
ONNX export; retrieval that leaves images out (out-of-fold scoring)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from adinspect.config import preset_config  # noqa: E402
from adinspect.fitting.export import export_residual  # noqa: E402
from adinspect.residual.bank import fit_bank, load_bank, save_bank  # noqa: E402
from adinspect.residual.model import ResidualModel  # noqa: E402
from adinspect.residual.position import MapMoments, PositionNorm  # noqa: E402


def _method(**kw):
    base = {"image_size": 64, "k_neighbors": 3, "sigma": 1.5, "pca_dim": 4}
    return preset_config("cpu", "p", method={**base, **kw}).method


def _data(seed=0, n=6, d=5, grid=8, c1=8, g=4):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, d, grid, grid, generator=gen).half().float()  # the bank is fp16
    gmaps = torch.randn(n, c1, g, g, generator=gen)
    query = torch.randn(2, d, grid, grid, generator=gen)
    qmaps = torch.randn(2, c1, g, g, generator=gen)
    return feats, gmaps, query, qmaps


def _with_position(model: ResidualModel, seed: int = 3) -> ResidualModel:
    gen = torch.Generator().manual_seed(seed)
    mean = torch.rand(64, 64, generator=gen)
    model.position = PositionNorm(mean, 0.5 + torch.rand(64, 64, generator=gen))
    return model


@pytest.mark.parametrize("share", [None, 0.25])
def test_global_matching_is_the_nearest_searched_cell_of_any_retrieved_reference(share) -> None:
    feats, gmaps, query, qmaps = _data()
    method = _method(matching="global", global_coreset=share)
    model = ResidualModel(fit_bank(feats, gmaps, method), method).eval()
    with torch.no_grad():
        neighbours = model.retrieve(qmaps)
        residual = model.residual(query, neighbours).numpy()
    grid = feats.flatten(2).transpose(1, 2)  # (N, 64 cells, 5)
    kept = torch.arange(64)[:, None].expand(64, 6) if share is None else model.global_cells
    assert tuple(kept.shape) == ((64 if share is None else 16), 6)
    for b in range(2):
        cells = torch.cat([grid[n, kept[:, n]] for n in neighbours[b]]).numpy()  # searched cells of K refs
        q = query[b].permute(1, 2, 0).reshape(-1, 5).numpy()
        dist = ((q[:, None, :] - cells[None]) ** 2).sum(-1)  # brute force, no shortcut
        nearest = cells[dist.argmin(1)].reshape(8, 8, 5).transpose(2, 0, 1)
        np.testing.assert_allclose(residual[b], nearest - query[b].numpy(), atol=1e-5)


def test_global_matching_finds_a_part_that_moved_where_local_matching_cannot() -> None:
    feats, gmaps, _, _ = _data(n=4)
    shifted = torch.roll(feats[:1], shifts=(3, 3), dims=(2, 3))  # the part 3 cells away
    scores = {}
    for matching in ("local", "global"):
        method = _method(matching=matching, k_neighbors=1, global_coreset=None)  # every cell: exact
        model = ResidualModel(fit_bank(feats, gmaps, method), method).eval()
        with torch.no_grad():
            exclude = torch.tensor([[False, True, True, True]])  # retrieve the image it came from
            norms = model.residual(shifted, model.retrieve(gmaps[:1], exclude)).norm(dim=1)
        scores[matching] = float(norms.mean())
    assert scores["global"] == pytest.approx(0.0, abs=1e-5) and scores["local"] > 1.0


def test_excluded_references_are_never_retrieved() -> None:
    feats, gmaps, _, _ = _data()
    method = _method(k_neighbors=3)
    model = ResidualModel(fit_bank(feats, gmaps, method), method).eval()
    with torch.no_grad():
        own = model.retrieve(gmaps[:2])
        exclude = torch.zeros(2, 6, dtype=torch.bool)
        exclude[0, 0] = exclude[1, 1] = True
        loo = model.retrieve(gmaps[:2], exclude)
        in_bank = model(feats[:2], gmaps[:2])[2]
        out_of_fold = model.score(model.anomaly_map(model.residual(feats[:2], loo)))
    assert own[0, 0] == 0 and own[1, 0] == 1  # an image in the bank retrieves itself first ...
    assert 0 not in loo[0].tolist() and 1 not in loo[1].tolist()  # ... unless it is left out
    assert float(in_bank.max()) == 0.0 and float(out_of_fold.min()) > 1.0
    with pytest.raises(ValueError, match="every reference is excluded"):
        model.retrieve(gmaps[:1], torch.ones(1, 6, dtype=torch.bool))


def test_cell_coreset_is_k_center_greedy_and_keeps_an_odd_cell() -> None:
    from adinspect.residual.subset import cell_coreset

    gen = torch.Generator().manual_seed(0)
    feats = 0.01 * torch.randn(3, 4, 6, 6, generator=gen)  # three near-uniform references ...
    feats[1, :, 2, 3] += 5.0  # ... one with a single odd cell
    kept = cell_coreset(feats, 0.25)
    assert tuple(kept.shape) == (9, 3) and bool((kept[1:] > kept[:-1]).all())  # sorted, distinct
    assert 2 * 6 + 3 in kept[:, 1].tolist()  # the odd cell is never dropped
    x = feats[0].flatten(1).T.double()  # brute-force k-center greedy on reference 0
    picked = [int(((x - x.mean(0)) ** 2).sum(1).argmin())]
    for _ in range(8):
        nearest = torch.cdist(x, x[picked]).min(1).values
        picked.append(int(nearest.argmax()))
    assert kept[:, 0].tolist() == sorted(picked)
    assert torch.equal(cell_coreset(feats, 0.25), kept)  # deterministic


def test_map_moments_equal_a_direct_computation_and_leave_maps_out() -> None:
    rng = np.random.default_rng(0)
    maps = rng.gamma(2.0, 1.0, size=(20, 16, 12))
    maps[:, 0, :] += rng.normal(0, 5, size=(20, 12))  # a border row where good images vary a lot
    moments = MapMoments.zeros((16, 12))
    for chunk in np.array_split(maps, 3):
        moments.add(torch.from_numpy(chunk))
    mean, scale = moments.stats()
    std = maps.std(0)
    np.testing.assert_allclose(mean.numpy(), maps.mean(0), rtol=1e-5)
    np.testing.assert_allclose(scale.numpy(), np.maximum(std, np.median(std)), rtol=1e-5)
    assert float(scale[0].min()) > float(np.median(std))  # the varying row keeps its own std
    rest_mean, rest_scale = moments.without(torch.from_numpy(maps[:4])).stats()
    rest_std = maps[4:].std(0)
    np.testing.assert_allclose(rest_mean.numpy(), maps[4:].mean(0), rtol=1e-5)
    np.testing.assert_allclose(rest_scale.numpy(), np.maximum(rest_std, np.median(rest_std)), rtol=1e-5)


def test_zscore_and_coreset_need_their_tensors_and_they_survive_the_bank_file(tmp_path) -> None:
    feats, gmaps, _, _ = _data()
    method = _method(position_norm="zscore", matching="global")
    bank = fit_bank(feats, gmaps, method)
    with pytest.raises(ValueError, match="position_mean"):
        ResidualModel(bank, method)
    bank.position_mean, bank.position_scale = torch.zeros(64, 64), torch.full((64, 64), 2.0)
    save_bank(bank, tmp_path / "bank.safetensors", {})
    model = ResidualModel(bank, method).eval()
    export_residual(model, feats[:2], gmaps[:2], tmp_path / "residual.onnx")
    again = load_bank(tmp_path / "bank.safetensors")
    assert torch.equal(again.position_scale, bank.position_scale)
    assert bank.global_cells is not None and torch.equal(again.global_cells, bank.global_cells)
    assert load_bank(tmp_path / "bank.safetensors").global_cells.shape == (16, 6)
    with torch.no_grad():
        raw = ResidualModel(bank, _method(matching="global")).eval()
        query = feats[:2] + 0.5
        assert torch.allclose(model(query, gmaps[:2])[1], raw(query, gmaps[:2])[1] / 2.0)


@pytest.mark.parametrize(("matching", "zscore"), [("global", False), ("local", True), ("global", True)])
def test_onnx_export_matches_torch(tmp_path, matching: str, zscore: bool) -> None:
    ort = pytest.importorskip("onnxruntime")
    feats, gmaps, query, qmaps = _data()
    method = _method(matching=matching)
    model = ResidualModel(fit_bank(feats, gmaps, method), method).eval()
    if zscore:
        _with_position(model)
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
