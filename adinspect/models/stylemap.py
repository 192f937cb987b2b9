"""Layers of InvAD's generator: equalised-lr convolutions and spatially modulated convolutions.

The InvAD reference (ADer `model/invad.py`) takes them from StyleMapGAN, itself StyleGAN2's
layer set with the style given as a *map*: `ModulatedConv` normalises its input over (C, H, W)
(LayerNorm without affine) and then scales and shifts every pixel by gamma/beta maps computed
from the style map with 3x3 convolutions (a SPADE-like modulation), before an ordinary
convolution. There is no StyleGAN2 weight demodulation and no noise injection.

Export notes: the reference runs every convolution as a grouped convolution over the batch
(`groups=batch`, weights repeated per sample) and its up/down-sampling through the CUDA op
`upfirdn2d`. The weights are the same for every sample, so here they are plain `conv2d` /
`conv_transpose2d` calls (the same numbers) and the FIR blur is a depthwise `conv2d` with fixed
padding: static shapes, any batch, no custom op. LayerNorm is written as mean/variance over
(C, H, W) so it exports as elementary ops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)  # the reference's blur_kernel for every up-sampling
_LAYERNORM_EPS = 1e-5  # nn.LayerNorm's default, as the reference's normalize_mode="LayerNorm"


def _blur_kernel(upsample_factor: int) -> torch.Tensor:
    taps = torch.tensor(BLUR_TAPS)
    kernel = taps[None, :] * taps[:, None]
    return kernel / kernel.sum() * upsample_factor**2


class Blur(nn.Module):
    """Fixed 4x4 FIR low-pass with symmetric zero padding p: (B, C, H, W) → (B, C, H + 2p − 3, ...).

    A depthwise conv2d with the padding in the convolution (a separate Pad op would come out of
    the exporter with a computed pads input and lose the static shapes). The kernel is symmetric,
    so correlation equals the reference's true convolution (`upfirdn2d` with up = down = 1).
    """

    kernel: torch.Tensor

    def __init__(self, channels: int, pad: int, upsample_factor: int = 1) -> None:
        super().__init__()
        self.pad = pad
        weight = _blur_kernel(upsample_factor)[None, None].repeat(channels, 1, 1, 1)
        self.register_buffer("kernel", weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=self.pad, groups=self.kernel.shape[0])


def _upsample_blur_pad(kernel_size: int) -> int:
    """Padding of the blur after a stride-2 transposed conv so that H → 2H exactly: the reference's
    (pad0, pad1) = ((p + 1) // 2 + 1, p // 2 + 1), p = 2 − (k − 1), which is symmetric for the
    odd kernels used here (k = 1: 2, k = 3: 1)."""
    p = (len(BLUR_TAPS) - 2) - (kernel_size - 1)
    if (p + 1) // 2 != p // 2:
        raise ValueError(f"up-sampling conv kernel {kernel_size}: expected an odd kernel size")
    return p // 2 + 1


class BiasLeakyReLU(nn.Module):
    """StyleGAN2's fused bias + leaky ReLU (slope 0.2) scaled by sqrt(2) to keep the variance."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2.0)


class EqualConv2d(nn.Module):
    """Convolution with the equalised learning rate: N(0, 1) weights scaled by 1/sqrt(fan_in) at
    run time, and `lr_mul` slowing a layer down (stored weight / lr_mul, applied weight x lr_mul).

    With `upsample` the convolution is transposed with stride 2 and followed by the FIR blur,
    (B, C_in, H, W) → (B, C_out, 2H, 2W); otherwise stride 1 with 'same' padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_channels * kernel_size**2)
        self.lr_mul = lr_mul
        self.upsample = upsample
        self.padding = 0 if upsample else kernel_size // 2
        self.blur = Blur(out_channels, _upsample_blur_pad(kernel_size), 2) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.scale
        if self.blur is not None:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.bias is not None:
            out = out + (self.bias * self.lr_mul).view(1, -1, 1, 1)
        return out


class ConvLayer(nn.Sequential):
    """EqualConv2d (+ blur when up-sampling) and, when `activate`, the biased leaky ReLU.

    As in the reference, an activated layer's bias lives in the activation, and `lr_mul` only
    applies to up-sampling layers.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        upsample: bool = False,
        activate: bool = True,
        bias: bool = True,
        lr_mul: float = 1.0,
    ) -> None:
        conv = EqualConv2d(
            in_channels,
            out_channels,
            kernel_size,
            bias=bias and not activate,
            lr_mul=lr_mul if upsample else 1.0,
            upsample=upsample,
        )
        super().__init__(conv, *([BiasLeakyReLU(out_channels)] if activate else []))


def layer_norm_chw(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) normalised per sample over (C, H, W), no affine (nn.LayerNorm(x.shape[1:]))."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + _LAYERNORM_EPS)


class ModulatedConv(nn.Module):
    """x (B, C_in, H, W), style (B, D, H, W) → (B, C_out, H', W'); H' = 2H when `upsample`.

    LayerNorm over (C, H, W), then (with `modulate`) x · gamma(style) + beta(style), gamma and
    beta being `style_kernel` x `style_kernel` equalised convolutions of the style map (3 in the
    reference; gamma's bias starts at 1), then a
    3x3 convolution (transposed stride 2 + blur when up-sampling), then the biased leaky ReLU.
    An up-sampling layer is not modulated in the reference (its style map has the old size).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        style_dim: int,
        *,
        upsample: bool,
        modulate: bool,
        style_kernel: int = 3,
    ) -> None:
        super().__init__()
        self.conv = EqualConv2d(in_channels, out_channels, 3, bias=False, upsample=upsample)
        k = style_kernel
        self.gamma = EqualConv2d(style_dim, in_channels, k, bias_init=1.0) if modulate else None
        self.beta = EqualConv2d(style_dim, in_channels, k, bias_init=0.0) if modulate else None
        self.act = BiasLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor:
        x = layer_norm_chw(x)
        if self.gamma is not None and self.beta is not None:
            if style is None:
                raise ValueError("a modulated layer needs its style map, got None")
            x = x * self.gamma(style) + self.beta(style)
        return self.act(self.conv(x))


class StyledResBlock(nn.Module):
    """Two modulated convs with a 1x1 skip, (out + skip) / sqrt(2); the first conv up-samples
    (unmodulated) when `upsample`. x (B, C_in, H, W), style (B, D, H', W') → (B, C_out, H', W')."""

    def __init__(
        self, in_channels: int, out_channels: int, style_dim: int, *, upsample: bool, style_kernel: int = 3
    ) -> None:
        super().__init__()
        k = style_kernel
        self.conv1 = ModulatedConv(
            in_channels, out_channels, style_dim, upsample=upsample, modulate=not upsample, style_kernel=k
        )
        self.conv2 = ModulatedConv(
            out_channels, out_channels, style_dim, upsample=False, modulate=True, style_kernel=k
        )
        self.skip = ConvLayer(in_channels, out_channels, 1, upsample=upsample, activate=False, bias=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x, style), style)
        return (out + self.skip(x)) / math.sqrt(2.0)
