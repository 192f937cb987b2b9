"""Global retrieval + location-aware residuals + anomaly map: the exported `residual_<product>` model.

Static-shape formulation of DESIGN.md §1 (Eq. 3–4): every loop below runs over constants
(disc offsets), never over data, so the graph exports to ONNX/TensorRT without dynamic shapes.
The reference bank is held as buffers and becomes constants of the exported graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adinspect.config import MethodConfig
from adinspect.geometry import as_shape
from adinspect.residual.matching import match_global
from adinspect.residual.position import PositionNorm

_OUT_OF_BOUNDS = 1e10  # added to distances of candidates shifted outside the grid: never chosen


@dataclass
class BankTensors:
    """What fitting produces (DESIGN.md §1), all for N reference images.

    pca_mean: (c_1,); pca_components: (c_1, p); descriptors: (N, n_windows, window² · p);
    features: (N, d_f, h_f, w_f), stored in fp16; with `method.position_norm = "zscore"` the good
    images' per-pixel map mean and floored std, position_mean / position_scale (H, W); with
    `method.global_coreset` below 1, global_cells (m, N): the cells of each reference that global
    matching searches (`cell_coreset`).
    """

    pca_mean: torch.Tensor
    pca_components: torch.Tensor
    descriptors: torch.Tensor
    features: torch.Tensor
    position_mean: torch.Tensor | None = None
    position_scale: torch.Tensor | None = None
    global_cells: torch.Tensor | None = None


def disc_offsets(radius: float) -> list[tuple[int, int]]:
    """Integer grid offsets (dy, dx) with dy² + dx² ≤ radius², (0, 0) first."""
    r = int(math.floor(radius))
    offsets = [
        (dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= radius * radius
    ]
    offsets.sort(key=lambda o: (o[0] ** 2 + o[1] ** 2, o))
    return offsets


def window_descriptors(
    global_map: torch.Tensor, mean: torch.Tensor, components: torch.Tensor, window: int
) -> torch.Tensor:
    """(B, c_1, H, W) → PCA → (B, (H/w)·(W/w), w·w·p) descriptors of non-overlapping windows."""
    b, _, h, w = global_map.shape
    x = global_map.permute(0, 2, 3, 1) - mean  # (B, H, W, c_1)
    x = x @ components  # (B, H, W, p)
    p = components.shape[1]
    x = x.reshape(b, h // window, window, w // window, window, p).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // window) * (w // window), window * window * p)


class ResidualModel(nn.Module):
    """features (B, d_f, h, w), global_map (B, c_1, h_g, w_g) → residual, map (B, 1, H, W), score (B,).

    1. Global similarity (CPR): squared L2 between window descriptors at the same position, mean of
       the lowest `keep_fraction`, the K smallest references are Θ_knn.
    2. For every disc offset, shift the K reference maps, keep the running minimum distance and the
       matching reference feature: f* = nearest candidate within radius σ (Eq. 3); with
       `matching = "global"`, the nearest over all cells of the K references, or over each one's
       coreset of cells (`method.global_coreset`; `match_global`).
    3. r = f* − f (Eq. 4); map = ‖r‖₂ upsampled to the input (H, W) and Gaussian-blurred, with
       `position_norm = "zscore"` then normalised per pixel (`PositionNorm`); score = max (or top-k mean).

    Distances are plain differences squared and summed (exact, and static-shape for export).
    """

    # buffers (constants of the exported graph)
    pca_mean: torch.Tensor
    pca_components: torch.Tensor
    bank_descriptors: torch.Tensor
    bank_features: torch.Tensor
    bank_sqnorm: torch.Tensor
    offset_dy: torch.Tensor
    offset_dx: torch.Tensor
    offset_penalty: torch.Tensor
    blur_kernel: torch.Tensor
    global_cells: torch.Tensor | None

    def __init__(self, bank: BankTensors, method: MethodConfig) -> None:
        super().__init__()
        n_refs = bank.features.shape[0]
        if n_refs < 1:
            raise ValueError("the reference bank is empty; fit on at least one good image")
        self.k = min(method.k_neighbors, n_refs)
        self.keep = max(1, int(round(method.keep_fraction * bank.descriptors.shape[1])))
        self.window = method.window
        self.input_shape = method.shape
        self.score_topk = method.score_topk if method.score == "topk_mean" else 1
        self.matching: str = method.matching
        self.rotations = method.rotations  # the bank holds n_refs / rotations images, turn-major
        if n_refs % self.rotations:
            raise ValueError(
                f"a bank of {n_refs} references cannot hold {self.rotations} turns of each image"
            )
        self.offsets = disc_offsets(method.sigma)
        self.pad = max(max(abs(dy), abs(dx)) for dy, dx in self.offsets)
        self.register_buffer("pca_mean", bank.pca_mean.float())
        self.register_buffer("pca_components", bank.pca_components.float())
        self.register_buffer("bank_descriptors", bank.descriptors.float())
        # cell-major (h*w, N, d_f): gathering K references yields the MatMul layout directly
        n, d, h, w = bank.features.shape
        cells = bank.features.half().permute(2, 3, 0, 1).reshape(h * w, n, d).contiguous()
        self.register_buffer("bank_features", cells)
        self.register_buffer("bank_sqnorm", (cells.float() ** 2).sum(-1))  # (h*w, N)
        # (m, N) the cells global matching searches; None: every cell
        self.register_buffer("global_cells", None if bank.global_cells is None else bank.global_cells.long())
        self.register_buffer("offset_dy", torch.tensor([dy for dy, _ in self.offsets]))
        self.register_buffer("offset_dx", torch.tensor([dx for _, dx in self.offsets]))
        self.register_buffer("offset_penalty", self._offset_penalty(h, w))
        self.register_buffer("blur_kernel", gaussian_kernel(method.blur_sigma))
        self.position: nn.Module = nn.Identity()
        if method.position_norm == "zscore":
            if bank.position_mean is None or bank.position_scale is None:
                raise ValueError(
                    "method.position_norm = 'zscore' needs the good images' map statistics in the bank "
                    "(position_mean, position_scale); re-run `adinspect fit`"
                )
            self.position = PositionNorm(bank.position_mean, bank.position_scale)

    def _offset_penalty(self, h: int, w: int) -> torch.Tensor:
        """(n_offsets, h, w): 0 where the shifted candidate lies on the grid, a huge value where not."""
        penalty = torch.zeros(len(self.offsets), h, w)
        for i, (dy, dx) in enumerate(self.offsets):
            ys = torch.arange(h)[:, None] + dy
            xs = torch.arange(w)[None, :] + dx
            inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            penalty[i] = (~inside).float() * _OUT_OF_BOUNDS
        return penalty

    def retrieve(self, global_map: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """(B, c_1, H, W) → (B, K) indices of the most similar references (Θ_knn).

        `exclude` (B, N) bool, torch only (out-of-fold scoring, never exported): references that an
        image may not retrieve (itself, its fold, and their turns); at least K must remain for every
        image.
        """
        desc = window_descriptors(global_map, self.pca_mean, self.pca_components, self.window)
        dist = ((desc[:, None] - self.bank_descriptors[None]) ** 2).sum(-1)  # (B, N, n_windows)
        lowest = torch.topk(dist, self.keep, dim=-1, largest=False).values.mean(-1)  # (B, N)
        if exclude is None:
            return torch.topk(lowest, self.k, dim=-1, largest=False).indices
        exclude = self.with_turns(exclude)
        k = min(self.k, int((~exclude).sum(1).min()))
        if k < 1:
            raise ValueError("every reference is excluded for some image: nothing left to match against")
        return torch.topk(lowest.masked_fill(exclude, float("inf")), k, dim=-1, largest=False).indices

    def with_turns(self, exclude: torch.Tensor) -> torch.Tensor:
        """`exclude` (B, N) widened so that an excluded reference excludes every turn of its image
        (`method.rotations`): an image left out must not find itself turned."""
        if self.rotations == 1:
            return exclude
        b, n = exclude.shape
        return exclude.reshape(b, self.rotations, n // self.rotations).any(1).repeat(1, self.rotations)

    def residual(self, features: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        """r = f* − f (B, d_f, h, w) against the references `neighbours` (B, K), by `matching`."""
        if self.matching == "global":
            bank = self.bank_features, self.bank_sqnorm
            matched = match_global(features, *bank, neighbours, self.global_cells)
        else:
            matched = self.match(features, neighbours)
        return matched - features

    def match(self, features: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        """(B, d_f, h, w), (B, K) → f*: (B, d_f, h, w), the nearest reference feature within the disc.

        Formulated for export speed (ONNX Runtime is memory-bound here): the distance is
        ‖c‖² − 2 f·c (‖f‖² is shared by all candidates of a cell, so it cannot change the arg-min).
        The *query* is shifted (it is K times smaller than the references) and all offsets'
        dot products come from one batched MatMul that reads the K reference maps once, on the
        reference grid; the small (K x offsets) score planes are then shifted back to the query
        grid. One arg-min over all candidates, one gather at the end.
        """
        b, d, h, w = features.shape
        p, k, n_off = self.pad, neighbours.shape[1], len(self.offsets)
        refs = self.bank_features[:, neighbours].float()  # (h*w, B, K, d), no transpose of the big tensor
        sqnorm = self.bank_sqnorm[:, neighbours]  # (h*w, B, K)
        padded = F.pad(features, (p, p, p, p)).permute(2, 3, 0, 1)  # (h+2p, w+2p, B, d)
        shifted = [padded[p - dy : p - dy + h, p - dx : p - dx + w] for dy, dx in self.offsets]
        queries = torch.stack(shifted, dim=3).reshape(h * w, b, n_off, d)
        # on reference cell j': ‖r_k(j')‖² − 2 r_k(j')·f(j' − o) for every offset o
        at_ref = sqnorm[..., None] - 2.0 * torch.matmul(refs, queries.transpose(2, 3))  # (h*w, B, K, n_off)
        at_ref = at_ref.permute(1, 3, 2, 0).reshape(b, n_off * k, h, w)
        at_ref = F.pad(at_ref, (p, p, p, p)).reshape(b, n_off, k, h + 2 * p, w + 2 * p)
        dists = [
            at_ref[:, i, :, p + dy : p + dy + h, p + dx : p + dx + w] + self.offset_penalty[i]
            for i, (dy, dx) in enumerate(self.offsets)
        ]  # query cell j sees candidate (k, o) at reference cell j + o
        best = torch.cat(dists, dim=1).argmin(dim=1)  # (B, h, w), offset-major
        offset, ref = best // k, best % k
        rows = torch.arange(h, device=features.device)[:, None] + self.offset_dy[offset]
        cols = torch.arange(w, device=features.device)[None, :] + self.offset_dx[offset]
        batch = torch.arange(b, device=features.device)[:, None, None]
        flat = (((rows * w + cols) * b + batch) * k + ref).reshape(b * h * w, 1).expand(b * h * w, d)
        picked = torch.gather(refs.reshape(h * w * b * k, d), 0, flat)  # (B*h*w, d)
        return picked.reshape(b, h, w, d).permute(0, 3, 1, 2)

    def anomaly_map(self, residual: torch.Tensor) -> torch.Tensor:
        """(B, d_f, h, w) → (B, 1, H, W): `residual_norm_map` at the package's input shape and blur,
        then the position normalisation (identity unless `position_norm = "zscore"`)."""
        return self.position(residual_norm_map(residual, self.input_shape, self.blur_kernel))

    def raw_map(self, norms: torch.Tensor) -> torch.Tensor:
        """Cell norms ‖r‖ (B, h, w) → the map before position normalisation (B, H, W)."""
        return norm_map(norms[:, None], self.input_shape, self.blur_kernel)[:, 0]

    def score(self, amap: torch.Tensor) -> torch.Tensor:
        flat = amap.flatten(1)
        if self.score_topk == 1:
            return flat.max(dim=1).values
        return torch.topk(flat, self.score_topk, dim=1).values.mean(1)

    def forward(
        self, features: torch.Tensor, global_map: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        residual = self.residual(features, self.retrieve(global_map))
        amap = self.anomaly_map(residual)
        return residual, amap, self.score(amap)


def residual_norm_map(
    residual: torch.Tensor, shape: int | tuple[int, int], kernel: torch.Tensor
) -> torch.Tensor:
    """The training-free anomaly map: (B, d_f, h, w) → (B, 1, H, W) at `shape` ((H, W), or S for
    S x S), ‖r‖₂ upsampled bilinearly and Gaussian-blurred with `kernel`."""
    return norm_map(torch.sqrt((residual**2).sum(1, keepdim=True)), shape, kernel)


def norm_map(norm: torch.Tensor, shape: int | tuple[int, int], kernel: torch.Tensor) -> torch.Tensor:
    """Cell norms (B, 1, h, w) → (B, 1, H, W), upsampled bilinearly and blurred with `kernel`."""
    amap = F.interpolate(norm, size=as_shape(shape), mode="bilinear", align_corners=False)
    return gaussian_blur(amap, kernel)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D normalised Gaussian with radius 4σ (as scipy's default truncate=4), (2r+1,); (1,) for σ ≤ 0."""
    if sigma <= 0:
        return torch.ones(1)
    radius = int(4 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(amap: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) → same shape: separable blur with `kernel` (k,), reflect padding (static shapes)."""
    k = kernel.shape[-1]
    if k == 1:
        return amap
    amap = F.conv2d(F.pad(amap, (k // 2, k // 2, 0, 0), mode="reflect"), kernel.view(1, 1, 1, k))
    return F.conv2d(F.pad(amap, (0, 0, k // 2, k // 2), mode="reflect"), kernel.view(1, 1, k, 1))
