"""Pixel-word attention (PWAM) and language gate, after LAVT (Yang et al., CVPR 2022).

Every visual token attends over the words of V_lang; the attended language feature is multiplied
element-wise with a projection of the visual feature, projected again, and added back to the
visual stream through a tanh gate (LAVT's "language pathway"). LAVT's 1x1 Conv1d layers are
written as `nn.Linear` over the channel axis (identical maths), and its InstanceNorm1d as an
explicit normalisation over the token axis, so the module exports to ONNX as plain MatMul /
ReduceMean ops with static shapes. Padded words are masked additively with -1e4 (not -inf) so
an all-masked row cannot produce NaN in exported graphs.
"""

from __future__ import annotations

import torch
from torch import nn


def instance_norm_tokens(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """InstanceNorm1d over tokens without affine: x (B, N, C) normalised per (B, C) over N."""
    mean = x.mean(dim=1, keepdim=True)
    var = (x - mean).pow(2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


class PixelWordAttention(nn.Module):
    """LAVT's SpatialImageLanguageAttention: tokens (B, N, C) attend to words (B, Z, Q)."""

    def __init__(self, dim: int, lang_dim: int, heads: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"PWAM width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(lang_dim, dim)
        self.value = nn.Linear(lang_dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """x (B, N, C), words (B, Z, Q), word_mask (B, Z) in {0, 1} -> (B, N, C)."""
        b, n, c = x.shape
        z = words.shape[1]
        d = c // self.heads
        m = word_mask[:, :, None]
        q = instance_norm_tokens(self.query(x)).reshape(b, n, self.heads, d).transpose(1, 2)  # (B, h, N, d)
        k = (self.key(words) * m).reshape(b, z, self.heads, d).permute(0, 2, 3, 1)  # (B, h, d, Z)
        v = (self.value(words) * m).reshape(b, z, self.heads, d).transpose(1, 2)  # (B, h, Z, d)
        att = (q @ k) * (c**-0.5) + (1e4 * word_mask[:, None, None, :] - 1e4)
        out = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        return instance_norm_tokens(self.out(out))


class PWAM(nn.Module):
    """Pixel-word attention module with LAVT's language gate.

    forward(x, words, mask) returns x + tanh_gate(f) * f where f = proj(vis(x) * attend(x, words)).
    """

    def __init__(self, dim: int, lang_dim: int, heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.vis_project = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.attend = PixelWordAttention(dim, lang_dim, heads)
        self.project_mm = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.gate = nn.Sequential(
            nn.Linear(dim, dim, bias=False), nn.ReLU(), nn.Linear(dim, dim, bias=False), nn.Tanh()
        )

    def forward(self, x: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """x (B, N, C), words (B, Z, Q), word_mask (B, Z) -> language-fused tokens (B, N, C)."""
        fused = self.project_mm(self.vis_project(x) * self.attend(x, words, word_mask))
        return x + self.gate(fused) * fused
