"""Batch norms folded into convolutions: same outputs, no batch norm left, and the guard that keeps
a model whose convolution output is read elsewhere too."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adinspect.features.backbones import create_backbone
from adinspect.features.efficientnet import LITE_VARIANTS, lite_extractor
from adinspect.features.fold import fold_batchnorms


def _with_statistics(bn: nn.BatchNorm2d, seed: int) -> nn.BatchNorm2d:
    gen = torch.Generator().manual_seed(seed)
    n = bn.num_features
    bn.running_mean.copy_(torch.randn(n, generator=gen))
    bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    bn.weight.data.copy_(torch.randn(n, generator=gen))
    bn.bias.data.copy_(torch.randn(n, generator=gen))
    return bn


class _SkipReadsTheConvolution(nn.Module):
    """conv → bn, and the convolution's own output added back: folding would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = _with_statistics(nn.BatchNorm2d(3), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def _count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_a_folded_stack_computes_the_same_without_batch_norms() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), _with_statistics(nn.BatchNorm2d(8), 0), nn.ReLU6(),
        nn.Conv2d(8, 4, 1), _with_statistics(nn.BatchNorm2d(4), 2),
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 20, 12)
    folded = fold_batchnorms(model, torch.randn(1, 3, 16, 16))
    assert folded is not model and _count_bn(folded) == 0 and _count_bn(model) == 2  # the original kept
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_convolution_read_elsewhere_keeps_its_batch_norm() -> None:
    model = _SkipReadsTheConvolution().eval()
    assert fold_batchnorms(model, torch.randn(1, 3, 8, 8)) is model


def test_folding_refuses_a_model_in_training_mode() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorms(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)), torch.randn(1, 3, 4, 4))


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_the_packaged_lite_comes_folded_and_computes_what_timm_does(name: str) -> None:
    extractor, _, _ = create_backbone(name)
    unfolded, _ = lite_extractor(LITE_VARIANTS[name], None, False)
    assert _count_bn(extractor) == 0 and _count_bn(unfolded) > 0
    x = torch.rand(2, 3, 256, 96)  # a non-square input, larger than the example it was checked on
    with torch.no_grad():
        for got, want in zip(extractor(x), unfolded.eval()(x), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_a_fold_that_does_not_stay_finite_keeps_the_original() -> None:
    bn = _with_statistics(nn.BatchNorm2d(3), 3)
    bn.running_var.fill_(-1.0)  # sqrt of a negative variance: NaN in the fold (and in the original)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), bn).eval()
    assert fold_batchnorms(model, torch.randn(1, 3, 8, 8)) is model
