"""ADClick (Eq. 1) and ADClick-Seg (Eq. 7) over the residual tensor R of the foundation model.

Shared encoder (`ResidualEncoder`): R (B, d_f, h, w) plus its per-cell norm ||r|| (the
training-free map, given explicitly so a light network need not rediscover it) is embedded by a
1x1 conv; previous mask and click discs (B, 3, H, W) get their own patch embedding (SimpleClick:
a conv with kernel = stride = H/h = W/w) added to it. Then `len(dims)` transformer stages (see
`blocks.py`), each followed by PWAM fusion with V_lang (LAVT), halving the grid between stages.

Image branch (optional, `image_stem` > 0): the paper's language-vision branch
sees the image, not only R. A small strided conv stem on the normalised image (B, 3, H, W), down
to the grid, is added to the embedded residual before the click embedding and the language
fusion, and the refinement convs run at full resolution H x W on the coarse logits, the clicks
and the image itself (`refine_full`), so a boundary can follow the pixels. Where R
lights up everywhere (a capture shift the good images do not cover), the clicks can still find a
defect's boundary in the image. Models without it (older packages) have no `image` input.

Feature prior (optional, `image_features`): the backbone's ImageNet features F of the image (the
tensor R was computed from), standardised and embedded by two 1x1 convs, added at the same place
(`priors.FeaturePrior`); click.onnx then takes `features`. Models without it have no such input.

ADClick head: SegFormer-style MLP decoder (per-stage linear → resize to the grid → concat → MLP)
→ pixel shuffle to (h·s, w·s) → a small conv refinement that also sees the previous mask and the
click maps area-pooled to that resolution → bilinear to H x W. Output: mask logits (B, 1, H, W)
at the input size (the cpu preset's head works at 128 x 128 for a 256 x 256 input).

Rectangular inputs (H ≠ W): the grid is (h, w) = (H/8, W/8) and each stage's attention windows are
the largest divisors of its sides up to `window` (a 20 x 8 stage gets 5 x 8 windows). Sizes of a
square model are written as ints, as before rectangular inputs; of a rectangular one as (h, w).

ADClick-Seg: the same encoder with an all-zero click map (implemented as adding the click
embedding's bias, which is exactly the conv of a zero map), the language-fused stage features
resized, concatenated, projected and added to the embedded residual, then the same MLP head
without the click refinement. It runs once per defect type and takes the pixel-wise max (Eq. 7).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from adinspect.models.blocks import Block, PatchMerging, resize, window_side
from adinspect.models.priors import FeaturePrior, ImageStem
from adinspect.models.pwam import PWAM

MODEL_VERSION = 1


@dataclass(frozen=True)
class ADClickConfig:
    """Sizes of ADClick / ADClick-Seg. `in_channels`, `lang_dim`, `grid` and `image_size` come from
    the fitted residual model and the language features; the rest are named presets."""

    in_channels: int  # d_f
    lang_dim: int  # Q
    grid: int | tuple[int, int]  # (h, w) of R; an int when square
    image_size: int | tuple[int, int]  # (H, W) of the input; an int S when square
    preset: str = "cpu"
    dims: tuple[int, ...] = (64, 128, 192)
    depths: tuple[int, ...] = (2, 2, 2)
    heads: tuple[int, ...] = (2, 4, 6)
    window: int = 8
    mlp_ratio: float = 2.0
    decoder_dim: int = 64
    out_scale: int = 4  # head resolution = grid * out_scale, then bilinear to the input size
    pwam_heads: int = 1
    image_stem: int = 0  # channels of the image branch's conv stem; 0 = residual only (older models)
    refine_full: bool = False  # the refinement runs at H x W (image branch: boundaries from pixels)
    image_features: bool = False  # the backbone's features F of the image as a prior (`priors.py`)

    def __post_init__(self) -> None:
        if not len(self.dims) == len(self.depths) == len(self.heads):
            raise ValueError(f"dims {self.dims}, depths {self.depths}, heads {self.heads} differ in length")
        levels = 2 ** (len(self.dims) - 1)
        if any(g % levels for g in self.grid_hw):
            raise ValueError(f"grid {self.grid_hw} must be divisible by {levels} (one halving per stage)")
        (gh, gw), (ih, iw) = self.grid_hw, self.image_hw
        if ih % (gh * self.out_scale) or iw % (gw * self.out_scale) or ih // gh != iw // gw:
            raise ValueError(
                f"input {ih}x{iw} is not the same multiple of grid x out_scale ({gh}x{gw} x "
                f"{self.out_scale}) along both axes"
            )

    @property
    def grid_hw(self) -> tuple[int, int]:
        """(h, w) of the residual grid."""
        return _pair(self.grid)

    @property
    def image_hw(self) -> tuple[int, int]:
        """(H, W) of the input, masks and clicks."""
        return _pair(self.image_size)

    @property
    def patch(self) -> int:
        """Input pixels per grid cell along each axis."""
        return self.image_hw[0] // self.grid_hw[0]

    def stage_grid(self, i: int) -> tuple[int, int]:
        return self.grid_hw[0] // 2**i, self.grid_hw[1] // 2**i

    def stage_window(self, i: int) -> tuple[int, int]:
        """Stage i's attention window (wh, ww): the largest divisors of its sides up to `window`."""
        h, w = self.stage_grid(i)
        return window_side(h, self.window), window_side(w, self.window)

    @property
    def head_hw(self) -> tuple[int, int]:
        """(h·s, w·s): the decoder head's resolution."""
        return self.grid_hw[0] * self.out_scale, self.grid_hw[1] * self.out_scale

    @classmethod
    def for_preset(
        cls,
        preset: str,
        in_channels: int,
        lang_dim: int,
        grid: int | tuple[int, int],
        image_size: int | tuple[int, int],
        image_branch: bool = False,
        image_features: bool = False,
    ) -> ADClickConfig:
        """Named sizes: 'cpu' trains on 2 cores in minutes; 'paper' is Swin-T sized (4 stages).
        `image_branch` adds the image stem (32 channels for cpu, 64 for paper) and moves the
        refinement to full resolution; `image_features` adds the backbone-feature prior."""
        if preset == "cpu":
            return cls(
                in_channels, lang_dim, grid, image_size, preset="cpu", image_stem=32 if image_branch else 0,
                refine_full=image_branch, image_features=image_features,
            )  # fmt: skip
        if preset == "paper":
            return cls(
                in_channels, lang_dim, grid, image_size, preset="paper", dims=(96, 192, 384, 768),
                depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), decoder_dim=256, out_scale=4, pwam_heads=1,
                image_stem=64 if image_branch else 0, refine_full=image_branch, image_features=image_features,
            )  # fmt: skip
        raise ValueError(f"unknown ADClick preset {preset!r}; known: cpu, paper")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ADClickConfig:
        d = dict(d)  # older dicts lack image_stem / refine_full / image_features: the defaults ran
        for k in ("dims", "depths", "heads"):
            d[k] = tuple(d[k])
        for k in ("grid", "image_size"):  # JSON lists of a rectangular model
            d[k] = d[k] if isinstance(d[k], int) else tuple(d[k])
        return cls(**d)


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def compact(shape: tuple[int, int]) -> int | tuple[int, int]:
    """(n, n) → n (how square sizes are written), anything else unchanged."""
    return shape[0] if shape[0] == shape[1] else (shape[0], shape[1])


class ResidualEncoder(nn.Module):
    """R (B, d_f, h, w) + masks/clicks (B, 3, H, W) + words → per-stage fused features."""

    residual_scale: torch.Tensor  # buffer

    def __init__(self, cfg: ADClickConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("residual_scale", torch.ones(()))  # set from training data statistics
        self.residual_embed = nn.Conv2d(cfg.in_channels + 1, cfg.dims[0], 1)
        self.click_embed = nn.Conv2d(3, cfg.dims[0], cfg.patch, stride=cfg.patch)
        self.stages = nn.ModuleList()
        self.merges = nn.ModuleList()
        self.fusions = nn.ModuleList()
        for i, (dim, depth, heads) in enumerate(zip(cfg.dims, cfg.depths, cfg.heads, strict=True)):
            self.merges.append(PatchMerging(cfg.dims[i - 1], dim) if i else nn.Identity())
            window = cfg.stage_window(i)
            self.stages.append(
                nn.Sequential(*(Block(dim, heads, window, cfg.mlp_ratio) for _ in range(depth)))
            )
            self.fusions.append(PWAM(dim, cfg.lang_dim, cfg.pwam_heads))

    def embed_residual(self, residual: torch.Tensor) -> torch.Tensor:
        """R (B, d_f, h, w) → (B, C_1, h, w); the norm channel is ||r|| per cell."""
        r = residual * self.residual_scale
        norm = torch.sqrt((r * r).sum(1, keepdim=True) + 1e-12)
        return self.residual_embed(torch.cat([r, norm], 1))

    def forward(
        self,
        embedded: torch.Tensor,
        maps: torch.Tensor | None,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        repeats: int = 1,
    ) -> list[torch.Tensor]:
        """embedded (B, C_1, h, w) from `embed_residual`; maps (B, 3, H, W) = [prev mask, pos, neg]
        or None for an all-zero click map; words (B·repeats, Z, Q); word_mask (B·repeats, Z).

        `repeats` > 1 runs several word sets (defect types) per sample: the first stage sees no
        words, so it runs once per sample and is copied (sample-major) before the first fusion.

        Returns: per-stage features (B·repeats, C_i, h/2^i, w/2^i).
        """
        if maps is None:
            bias = self.click_embed.bias
            assert bias is not None  # nn.Conv2d's default bias=True
            x = embedded + bias[None, :, None, None]
        else:
            x = embedded + self.click_embed(maps)
        x = x.permute(0, 2, 3, 1)  # (B, h, w, C)
        outs = []
        for i, (merge, stage, fusion) in enumerate(zip(self.merges, self.stages, self.fusions, strict=True)):
            x = stage(merge(x))
            if i == 0 and repeats > 1:
                x = x.repeat_interleave(repeats, dim=0)
            b, h, w, c = x.shape
            x = fusion(x.reshape(b, h * w, c), words, word_mask).reshape(b, h, w, c)
            outs.append(x.permute(0, 3, 1, 2))
        return outs


class MLPDecoder(nn.Module):
    """SegFormer-style head: per-stage 1x1 → resize to the grid → concat → fuse; then MLP → pixel shuffle."""

    def __init__(self, cfg: ADClickConfig) -> None:
        super().__init__()
        d = cfg.decoder_dim
        self.cfg, self.scale = cfg, cfg.out_scale
        self.lateral = nn.ModuleList(nn.Conv2d(c, d, 1) for c in cfg.dims)
        self.fuse = nn.Sequential(nn.Conv2d(d * len(cfg.dims), d, 1), nn.GELU())
        self.head = nn.Sequential(nn.Conv2d(d, d, 1), nn.GELU(), nn.Conv2d(d, cfg.out_scale**2, 1))

    def fused(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Stage features → (B, D, h, w)."""
        maps = [
            resize(lat(f), self.cfg.grid_hw, self.cfg.stage_grid(i))
            for i, (lat, f) in enumerate(zip(self.lateral, feats, strict=True))
        ]
        return self.fuse(torch.cat(maps, 1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) → logits (B, 1, h·s, w·s)."""
        return F.pixel_shuffle(self.head(x), self.scale)


class ADClick(nn.Module):
    """Φ(R, [I,] M_{t−1}, C_t, V_lang) → mask logits (B, 1, H, W) (Eq. 1)."""

    def __init__(self, cfg: ADClickConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ResidualEncoder(cfg)
        self.decoder = MLPDecoder(cfg)
        self.image_embed = ImageStem(cfg.image_stem, cfg.patch, cfg.dims[0]) if cfg.image_stem else None
        self.feature_embed = FeaturePrior(cfg.in_channels, cfg.dims[0]) if cfg.image_features else None
        refine_in = 4 + (3 if cfg.image_stem else 0)
        width = 16
        layers: list[nn.Module] = [nn.Conv2d(refine_in, width, 3, padding=1), nn.GELU()]
        if cfg.refine_full:  # at H x W one more layer widens the view to 7 px around a boundary
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.GELU()]
        self.refine = nn.Sequential(*layers, nn.Conv2d(width, 1, 3, padding=1))

    @property
    def takes_image(self) -> bool:
        return self.image_embed is not None

    @property
    def takes_features(self) -> bool:
        return self.feature_embed is not None

    def forward(
        self,
        residual: torch.Tensor,
        prev_mask: torch.Tensor,
        clicks: torch.Tensor,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        image: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """residual (B, d_f, h, w); prev_mask (B, 1, H, W) in [0, 1]; clicks (B, 2, H, W) positive and
        negative discs; words (B, Z, Q); word_mask (B, Z); image (B, 3, H, W) normalised, required
        when the model has the image branch; features (B, d_f, h, w), the backbone's F of the image,
        required when it has the feature prior (each ignored otherwise) → logits (B, 1, H, W)."""
        maps = torch.cat([prev_mask, clicks], 1)
        embedded = self.encoder.embed_residual(residual)
        side, size = self.cfg.head_hw, self.cfg.image_hw
        extra = maps
        if self.image_embed is not None:
            if image is None:
                raise ValueError("this ADClick has the image branch: pass the normalised image (B, 3, H, W)")
            embedded = embedded + self.image_embed(image)
            extra = torch.cat([maps, image], 1)
        if self.feature_embed is not None:
            if features is None:
                raise ValueError("this ADClick has the feature prior: pass the backbone's features F")
            embedded = embedded + self.feature_embed(features)
        feats = self.encoder(embedded, maps, words, word_mask)
        coarse = self.decoder.logits(self.decoder.fused(feats))  # (B, 1, h·s, w·s)
        if self.cfg.refine_full:  # thin defects (1-3 px) need the image's own pixels
            coarse = resize(coarse, size, side)
            return coarse + self.refine(torch.cat([coarse, extra], 1))
        small = F.avg_pool2d(extra, size[0] // side[0]) if side != size else extra
        return resize(coarse + self.refine(torch.cat([coarse, small], 1)), size, side)


class SegOutput(NamedTuple):
    """ADClick-Seg over all defect types (Eq. 7)."""

    anomaly_map: torch.Tensor  # (B, 1, H, W) probability, max over types
    score: torch.Tensor  # (B,) max of the map
    defect_type: torch.Tensor  # (B,) int64 index of the type holding the maximum
    type_scores: torch.Tensor  # (B, P) max probability per type


class ADClickSeg(nn.Module):
    """Segmentation without clicks: language-fused features added to the embedded residual."""

    def __init__(self, cfg: ADClickConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ResidualEncoder(cfg)
        self.decoder = MLPDecoder(cfg)
        self.residual_proj = nn.Conv2d(cfg.dims[0], cfg.decoder_dim, 1)

    def forward_type(
        self,
        residual: torch.Tensor,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        repeats: int = 1,
        maps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`repeats` defect types per sample: residual (B, d_f, h, w), words (B·repeats, Z, Q),
        word_mask (B·repeats, Z) → logits (B·repeats, 1, H, W), sample-major. `maps` (B, 3, H, W)
        are simulated clicks for IIS-manner training; serving passes None (an all-zero map)."""
        embedded = self.encoder.embed_residual(residual)
        feats = self.encoder(embedded, maps, words, word_mask, repeats)
        skip = self.residual_proj(embedded)
        if repeats > 1:
            skip = skip.repeat_interleave(repeats, dim=0)
        x = self.decoder.fused(feats) + skip
        return resize(self.decoder.logits(x), self.cfg.image_hw, self.cfg.head_hw)

    def forward(self, residual: torch.Tensor, v_lang: torch.Tensor, word_mask: torch.Tensor) -> SegOutput:
        """All P types: residual (B, d_f, h, w), v_lang (P, Z, Q), word_mask (P, Z) → `SegOutput`.

        Types are batched as B·P samples after the language-free first stage (P is fixed by the
        constants, so shapes stay static).
        """
        b, p = residual.shape[0], v_lang.shape[0]
        words = v_lang.repeat(b, 1, 1)  # (B·P, ...) ordered sample-major
        mask = word_mask.repeat(b, 1)
        logits = self.forward_type(residual, words, mask, repeats=p)  # (B·P, 1, H, W)
        h, w = self.cfg.image_hw
        probs = torch.sigmoid(logits).reshape(b, p, h, w)
        amap = probs.max(dim=1, keepdim=True).values
        type_scores = probs.amax(dim=(2, 3))
        return SegOutput(amap, amap.amax(dim=(1, 2, 3)), type_scores.argmax(dim=1), type_scores)
