"""The feature embedder runs channels-last on CPU; its outputs and its ONNX export do not change."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from adinspect.config import preset_config  # noqa: E402
from adinspect.features.backbones import create_backbone  # noqa: E402
from adinspect.features.embedder import FeatureEmbedder  # noqa: E402
from adinspect.fitting.export import export_backbone  # noqa: E402


def test_channels_last_embedder_gives_the_same_features_and_the_same_onnx(tmp_path: Path) -> None:
    method = preset_config("cpu").method.model_copy(update={"input_shape": (96, 64)})
    extractor, spec, _ = create_backbone("efficientnet_lite0")
    embedder = FeatureEmbedder(extractor, spec, method).eval()
    conv = next(m for m in embedder.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain = FeatureEmbedder(*create_backbone("efficientnet_lite0")[:2], method).eval()
    plain.to(memory_format=torch.contiguous_format)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # a separate network
    image = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        fast, slow = embedder(image), plain(image)
    for a, b in zip(fast, slow, strict=True):
        assert a.is_contiguous()  # callers flatten and view: NCHW as before
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    export_backbone(embedder, (96, 64), tmp_path / "fast.onnx")
    export_backbone(plain, (96, 64), tmp_path / "plain.onnx")
    assert (tmp_path / "fast.onnx").read_bytes() == (tmp_path / "plain.onnx").read_bytes()
