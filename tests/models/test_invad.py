"""InvAD: shapes, the image graph (reflection, crops), learning on a toy product (a pasted patch
does not reconstruct), ONNX export with static shapes and parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adinspect.contracts import UNIFIED
from adinspect.features.backbones import IMAGENET_MEAN, IMAGENET_STD, create_backbone
from adinspect.models.invad import InvAD, InvADConfig, reconstruction_loss
from adinspect.models.invad_graph import (
    GaussianBlur,
    InvADGraph,
    ReflectPad,
    cosine_distance,
    distance_map,
    export_invad,
)
from adinspect.residual.model import gaussian_blur, gaussian_kernel

LITE0 = dict(channels=(24, 40, 112), strides=(4, 8, 16))
S = 64


def _maps(batch: int, cfg: InvADConfig, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, n, n, generator=g) for c, n in zip(cfg.channels, cfg.grids, strict=True)]


def test_reconstructions_have_the_shapes_of_the_backbone_maps() -> None:
    torch.manual_seed(0)
    cfg = InvADConfig(**LITE0, image_size=S)
    assert cfg.grids == (16, 8, 4) and cfg.style_widths == (24, 40, 64)
    model = InvAD(cfg).eval()
    for batch in (1, 3):
        features = _maps(batch, cfg)
        with torch.no_grad():
            out = model(*features)
        assert [o.shape for o in out] == [f.shape for f in features]
        assert float(reconstruction_loss(features, out)) > 0
    amap, score = InvADGraph(nn.Identity(), model).eval().score_features(features)
    assert amap.shape == (3, 1, S, S) and score.shape == (3,)
    torch.testing.assert_close(score, amap.amax(dim=(1, 2, 3)))


def test_distance_map_is_zero_for_a_perfect_reconstruction_and_positive_elsewhere() -> None:
    cfg = InvADConfig(**LITE0, image_size=S)
    features = _maps(2, cfg)
    blur = GaussianBlur(cfg.blur_sigma, S)
    assert float(distance_map(features, features, cfg.strides).abs().max()) < 1e-5
    flipped = [f.clone() for f in features]
    flipped[0][:, :, :4, :4] *= -1  # opposite directions in one corner of the shallow map: cos = −1
    amap = blur(distance_map(features, flipped, cfg.strides))
    assert amap[0, 0, :16, :16].mean() > 0.2 > amap[0, 0, 40:, 40:].max()
    torch.testing.assert_close(cosine_distance(features[1], -features[1]), torch.full((2, 1, 8, 8), 2.0))


def test_blur_equals_the_training_free_maps_blur() -> None:
    amap = torch.rand(2, 1, S, S)
    for sigma in (0.0, 2.0, 4.0):
        torch.testing.assert_close(GaussianBlur(sigma, S)(amap), gaussian_blur(amap, gaussian_kernel(sigma)))
    with pytest.raises(ValueError, match="radius"):
        GaussianBlur(20.0, S)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"strides": (4, 8, 32)}, "twice the previous stride"),
        ({"image_size": 72}, "multiple of stride"),
        ({"channels": (24, 40)}, "one stride per map"),
        ({"style_width": 30}, "multiple of 4"),
        ({"pad": 8}, "pad 8"),
    ],
)
def test_inconsistent_sizes_are_refused(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        InvADConfig(**{**LITE0, "image_size": S, **overrides})


def test_config_round_trips_through_json_values_and_refuses_unknown_keys() -> None:
    cfg = InvADConfig(**LITE0, image_size=S, blocks_per_scale=1)
    raw = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.to_dict().items()}
    assert InvADConfig.from_dict(raw) == cfg
    with pytest.raises(ValueError, match="unknown InvAD config keys"):
        InvADConfig.from_dict({**raw, "depth": 3})


# --- learning on a toy product ----------------------------------------------------------------------


def _good(rng: np.random.Generator) -> np.ndarray:
    """A 64x64 striped part: horizontal stripes, random phase and brightness, sensor noise."""
    y = np.arange(S, dtype=np.float32)[:, None, None]
    base = 0.5 + 0.25 * np.sin(2 * np.pi * y / 8 + rng.uniform(0, 2 * np.pi))
    image = base * rng.uniform(0.9, 1.1) * np.array([0.9, 0.7, 0.5], np.float32)
    return np.clip(np.broadcast_to(image, (S, S, 3)) + rng.normal(0, 0.02, (S, S, 3)), 0, 1)


def _with_patch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """A 16x16 patch of vertical stripes in another colour pasted at a random place."""
    out = image.copy()
    top, left = (int(v) for v in rng.integers(8, S - 24, size=2))
    x = np.arange(16, dtype=np.float32)[None, :, None]
    out[top : top + 16, left : left + 16] = (0.5 + 0.4 * np.sin(2 * np.pi * x / 4)) * np.array(
        [0.2, 0.5, 0.9]
    )
    return out, (top, left)


def _batch(images: list[np.ndarray]) -> torch.Tensor:
    x = (np.stack(images) - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))


@pytest.mark.slow  # 60 training steps through the backbone
def test_a_pasted_patch_reconstructs_worse_than_the_good_parts_after_a_few_steps() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    extractor, spec, _ = create_backbone("efficientnet_lite0")
    model = InvAD(InvADConfig(spec.channels, spec.strides, S, blocks_per_scale=1)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.0, 0.99))
    losses = []
    for _ in range(60):
        with torch.no_grad():
            features = extractor(_batch([_good(rng) for _ in range(8)]))
        loss = reconstruction_loss(features, model(*features))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    goods = [_good(rng) for _ in range(4)]
    patched, corners = zip(*(_with_patch(g, rng) for g in goods), strict=True)
    graph = InvADGraph(extractor, model.eval()).eval()
    with torch.no_grad():
        good_map, good_score = graph(_batch(goods))
        bad_map, bad_score = graph(_batch(list(patched)))
    assert float(bad_score.min()) > float(good_score.max()) + 0.1  # untrained: the two overlap
    inside = [float(bad_map[i, 0, t : t + 16, x : x + 16].mean()) for i, (t, x) in enumerate(corners)]
    assert min(inside) > float(good_map.mean()) * 2


# --- the image graph and its export ---------------------------------------------------------------


def test_invad_reconstructs_the_mirrored_image_and_the_map_is_cropped_back() -> None:
    x = torch.randn(2, 3, S, S)
    mirrored = F.pad(x, (16, 16, 16, 16), mode="reflect")
    torch.testing.assert_close(ReflectPad(S, 16)(x), mirrored)
    torch.manual_seed(0)
    extractor, spec, _ = create_backbone("efficientnet_lite0")
    cfg = InvADConfig(spec.channels, spec.strides, S, blocks_per_scale=1, pad=16)
    assert cfg.grids == (24, 12, 6)  # of the 96 px mirrored image
    graph = InvADGraph(extractor, InvAD(cfg)).eval()
    with torch.no_grad():
        maps = graph.features(x)
        amap, score = graph(x)
        distance = distance_map(maps, graph.model(*maps), cfg.strides)
    for f, full in zip(maps, extractor(mirrored), strict=True):
        torch.testing.assert_close(f, full)
    assert distance.shape == (2, 1, 96, 96) and amap.shape == (2, 1, S, S)
    blurred = GaussianBlur(cfg.blur_sigma, S)(distance[:, :, 16:80, 16:80])
    torch.testing.assert_close(amap, blurred)
    torch.testing.assert_close(score, amap.amax(dim=(1, 2, 3)))
    # standardised per position; the scale is floored at a tenth of its median
    mean, std = torch.rand(S, S), torch.rand(S, S) + 0.5
    std[0, 0] = 0.0
    graph.set_position_statistics(mean, std)
    with torch.no_grad():
        standard, _ = graph(x)
    scale = std.clone()
    scale[0, 0] = 0.1 * float(std.median())
    torch.testing.assert_close(standard, (blurred - mean) / scale)
    with pytest.raises(ValueError, match="expected \\(64, 64\\)"):
        graph.set_position_statistics(mean[:8], std)


class _FromFeatures(nn.Module):
    """The graph after the backbone (maps → map, score), to export InvAD and the map on their own."""

    def __init__(self, graph: InvADGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.graph.score_features(features)


def test_invad_and_its_map_export_with_static_shapes(tmp_path: Path) -> None:
    """Only the batch is free from the backbone's maps on (inside the backbone, TF "same" padding
    computes its pads from the input's shape, as in the training-free backbone.onnx)."""
    torch.manual_seed(0)
    cfg = InvADConfig(**LITE0, image_size=S)
    path, names = tmp_path / "maps.onnx", [f"feature_{i}" for i in range(3)]
    outputs = [UNIFIED.anomaly_map, UNIFIED.score]
    torch.onnx.export(
        _FromFeatures(InvADGraph(nn.Identity(), InvAD(cfg))).eval(), tuple(_maps(2, cfg)), str(path),
        input_names=names, output_names=outputs, dynamic_axes={n: {0: "batch"} for n in names + outputs},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    assert all(v.type.tensor_type.shape.dim[0].dim_param == "batch" for v in [*graph.input, *graph.output])
    for value in [*graph.input, *graph.output, *graph.value_info]:
        dims = value.type.tensor_type.shape.dim
        assert all(d.HasField("dim_value") for d in dims[1:]), f"{value.name} has a dynamic dimension"


def test_the_image_graph_exports_and_matches_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    extractor, spec, _ = create_backbone("efficientnet_lite0")
    graph = InvADGraph(extractor, InvAD(InvADConfig(spec.channels, spec.strides, S, pad=16))).eval()
    path = tmp_path / "invad.onnx"
    export_invad(graph, path)
    proto = onnx.load(str(path)).graph
    assert [i.name for i in proto.input] == [UNIFIED.image]
    assert [o.name for o in proto.output] == [UNIFIED.anomaly_map, UNIFIED.score]
    dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.output]
    assert dims == [["batch", 1, S, S], ["batch"]]
    images = torch.randn(3, 3, S, S, generator=torch.Generator().manual_seed(1))  # not the export's batch
    got = ort.InferenceSession(str(path)).run(None, {UNIFIED.image: images.numpy()})
    with torch.no_grad():
        amap, score = graph(images)
    np.testing.assert_allclose(got[0], amap.numpy(), atol=1e-4)
    np.testing.assert_allclose(got[1], score.numpy(), atol=1e-4)
