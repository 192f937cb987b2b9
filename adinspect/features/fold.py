"""Batch norms folded into the convolutions before them, for a frozen backbone in eval mode.

In eval mode a batch norm is a per-channel affine map, so it can live in the preceding
convolution's weights and bias: y = s·(W∗x + b − μ) + β with s = γ / √(σ² + ε) (torch's
`fuse_conv_bn_weights`). On a CPU the
separate pass over every activation map costs about a quarter of EfficientNet-Lite's forward time
at 640 x 256 (memory-bound, like the activations after it); ONNX Runtime folds the same way when
it loads the exported graph, so this changes what the torch side costs, not what it computes
(differences at float rounding).

Which batch norm follows which convolution is read from one forward pass, not from module
names: a batch norm is folded when its input is exactly a convolution's output, and the folded copy
is kept only when it computes what the original does on an example, so an architecture this does
not understand keeps its batch norms.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


@torch.no_grad()
def fold_batchnorms(model: nn.Module, example: torch.Tensor, tolerance: float = 1e-4) -> nn.Module:
    """A copy of `model` (eval mode) with every batch norm that directly follows a convolution folded
    into it (the batch norm becomes what it did after normalising: timm's BatchNormAct2d its dropout
    and activation, a plain BatchNorm2d nothing). Checked on `example`: when the copy's outputs
    differ from `model`'s by more than `tolerance` of their scale (a convolution's output read
    elsewhere too) or are not finite, `model` itself is returned, unfolded."""
    if model.training:
        raise ValueError("batch norms are folded only in eval mode: training still needs their statistics")
    reference = _flat(model(example))
    folded = copy.deepcopy(model).eval()  # a copied fx GraphModule's submodules come back in train mode
    pairs = _conv_bn_pairs(folded, example)
    if not pairs:
        return model
    modules = dict(folded.named_modules())
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        conv.weight, conv.bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        parent, _, attr = bn_name.rpartition(".")
        after = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
        setattr(modules[parent] if parent else folded, attr, nn.Sequential(*after))
    out = _flat(folded(example))
    scale = max(float(reference.abs().max()), 1e-6)
    # written as "every value close" so a NaN anywhere (in either output) keeps the original
    close = out.shape == reference.shape and bool(((out - reference).abs() <= tolerance * scale).all())
    return folded if close else model


def _flat(output: torch.Tensor | list | tuple) -> torch.Tensor:
    """A model's output (a tensor or a list of feature maps) as one flat tensor."""
    if isinstance(output, torch.Tensor):
        return output.flatten()
    return torch.cat([o.flatten() for o in output])


def _conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(convolution, batch norm) names where the batch norm's input is the convolution's output."""
    outputs: dict[int, tuple[str, torch.Tensor]] = {}  # the tensors are kept so no id is reused
    pairs: list[tuple[str, str]] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(_record(outputs, name)))
        elif isinstance(module, nn.BatchNorm2d) and module.track_running_stats and module.affine:
            hooks.append(module.register_forward_pre_hook(_pair(outputs, pairs, name)))
    try:
        model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return pairs


def _record(outputs: dict[int, tuple[str, torch.Tensor]], name: str):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        outputs[id(output)] = (name, output)

    return hook


def _pair(outputs: dict[int, tuple[str, torch.Tensor]], pairs: list[tuple[str, str]], name: str):
    def hook(module: nn.Module, args: tuple) -> None:
        conv = outputs.pop(id(args[0]), None)
        if conv is not None:
            pairs.append((conv[0], name))

    return hook
