"""Light transformer stages for the residual grid (a Swin-style hierarchy, cheaper).

Each block: conditional positional encoding (3x3 depthwise conv, CPVT) → window self-attention
→ MLP, pre-LayerNorm. Windows do not shift: the depthwise conv already mixes neighbouring
windows, and the last stage of the default sizes is a single window (global attention). All
reshapes use sizes fixed at construction, so the graph has static shapes for export.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows of (wh, ww) cells of a (B, H, W, C) map."""

    def __init__(self, dim: int, heads: int, window: int | tuple[int, int]) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.window = (window, window) if isinstance(window, int) else tuple(window)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) -> (B, H, W, C); H and W must be multiples of the window's sides."""
        b, h, w, c = x.shape
        sh, sw = self.window
        n = sh * sw
        t = x.reshape(b, h // sh, sh, w // sw, sw, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, c)
        qkv = self.qkv(t).reshape(t.shape[0], n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        att = (qkv[0] @ qkv[1].transpose(-1, -2)) * (c // self.heads) ** -0.5
        out = (att.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(-1, n, c)
        out = self.proj(out).reshape(b, h // sh, w // sw, sh, sw, c).permute(0, 1, 3, 2, 4, 5)
        return out.reshape(b, h, w, c)


def window_side(side: int, window: int) -> int:
    """The largest divisor of a grid side that is at most `window`: the window along that axis (the
    side itself when it is smaller; a rectangular grid such as 20 x 8 gets 5 x 8 windows)."""
    return next(d for d in range(min(window, side), 0, -1) if side % d == 0)


class Block(nn.Module):
    """CPE + window attention + MLP over a (B, H, W, C) token map."""

    def __init__(self, dim: int, heads: int, window: int | tuple[int, int], mlp_ratio: float) -> None:
        super().__init__()
        self.cpe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) -> (B, H, W, C)."""
        x = x + self.cpe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Swin patch merging: 2x2 neighbours concatenated and projected, (B, H, W, C) -> (B, H/2, W/2, C')."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return self.reduction(self.norm(x))


def resize(x: torch.Tensor, size: tuple[int, int], src: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, *src) to (B, C, *size); identity when src == size.

    `src` is the static input (h, w) (Python ints from the config), so tracing for export never
    branches on a tensor shape.
    """
    if tuple(src) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
