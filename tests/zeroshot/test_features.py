"""LNAMD features: worker threads and channels-last change nothing but the speed."""

from __future__ import annotations

import numpy as np
import torch

from adinspect.zeroshot import ZeroShotConfig
from adinspect.zeroshot.features import embed_images, load_backbone


def test_threads_and_batches_give_the_same_features():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (96 + 8 * i, 80, 3), dtype=np.uint8) for i in range(5)]
    one = ZeroShotConfig(image_size=64, workers=1, batch_size=5, degrees=(1, 3))
    two = one.model_copy(update={"workers": 2, "batch_size": 2})  # three batches, the last of one image
    backbone = load_backbone(one)
    spec = backbone.spec
    a, b = embed_images(images, backbone, one), embed_images(images, backbone, two)
    assert set(a.patches) == {(1, 1), (1, 3), (2, 1), (2, 3)} and a.grids == b.grids == {1: 8, 2: 4}
    for key, z in a.patches.items():
        assert z.shape == (5, a.grids[key[0]] ** 2, spec.channels[key[0]])
        torch.testing.assert_close(b.patches[key], z, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(z.shape[:2]))
    torch.testing.assert_close(b.image_features, a.image_features, atol=1e-4, rtol=1e-4)


def test_rscin_descriptor_is_the_classifiers_embedding_unless_asked_otherwise():
    images = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(3)]
    for config, width in [
        (ZeroShotConfig(image_size=64, degrees=(1,)), 1280),  # pre-logits of the ImageNet classifier
        (ZeroShotConfig(image_size=64, degrees=(1,), rscin_feature="pooled_map"), 112),
        (ZeroShotConfig(image_size=64, degrees=(1,), rscin_k=(1,)), 112),  # RsCIN off: no head is built
    ]:
        backbone = load_backbone(config)
        assert (backbone.head is None) == (width == 112)
        features = embed_images(images, backbone, config)
        assert features.image_features.shape == (3, width)
        torch.testing.assert_close(features.image_features.norm(dim=1), torch.ones(3))
