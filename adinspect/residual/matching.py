"""Global matching: each query feature's nearest neighbour among ALL grid cells of the K retrieved
references (σ = ∞ within Θ_knn), for textures, crops and parts that are not fixtured.

Written for export (DESIGN.md §1, STYLE.md 4): a static Python loop over the K references (K is a
constant of the fitted model), one MatMul per reference for ‖c‖² − 2 f·c (‖f‖² is shared by all
candidates of a query cell, so it cannot change the arg-min; no cdist), a running minimum with
`where`, and one gather of the winning reference feature per reference. With a coreset
(`method.global_coreset`) each reference offers only its m kept cells, gathered from the same
bank constant. The working set per image is one (h·w) x m distance plane at a time, whatever K is.
"""

from __future__ import annotations

import torch


def match_global(
    features: torch.Tensor,
    bank_cells: torch.Tensor,
    bank_sqnorm: torch.Tensor,
    neighbours: torch.Tensor,
    coreset: torch.Tensor | None = None,
) -> torch.Tensor:
    """f*: the nearest reference feature over all cells (or the coreset) of each image's K references.

    Args:
        features: (B, d, h, w) query features.
        bank_cells: (h·w, N, d) the bank, cell-major (as `ResidualModel` holds it).
        bank_sqnorm: (h·w, N) squared norms of the bank's cells.
        neighbours: (B, K) indices of the retrieved references.
        coreset: (m, N) the cells searched of each reference (`cell_coreset`); None: all h·w.

    Returns:
        (B, d, h, w): for every query cell, the reference cell feature at the smallest L2 distance.
    """
    b, d, h, w = features.shape
    query = features.flatten(2).transpose(1, 2).contiguous()  # (B, h·w, d)
    n = bank_cells.shape[1]
    flat_cells, flat_sqnorm = bank_cells.reshape(-1, d), bank_sqnorm.reshape(-1)  # row = cell · N + image
    best_dist: torch.Tensor | None = None
    best_feat: torch.Tensor | None = None
    for k in range(neighbours.shape[1]):  # K is a constant of the model: unrolled at export
        index = neighbours[:, k]
        if coreset is None:
            refs = bank_cells[:, index].transpose(0, 1).float()  # (B, h·w, d)
            sqnorm = bank_sqnorm[:, index].transpose(0, 1)  # (B, h·w)
        else:  # one Gather of the m kept cells of each retrieved reference
            rows = (coreset[:, index] * n + index).transpose(0, 1)  # (B, m)
            refs, sqnorm = flat_cells[rows].float(), flat_sqnorm[rows]  # (B, m, d), (B, m)
        # ‖c‖² − 2 f·c in one fused op (MatMul, Mul, Add in ONNX): (B, hw_q, hw_r)
        dist = torch.baddbmm(sqnorm[:, None, :], query, refs.transpose(1, 2), alpha=-2.0)
        value, cell = dist.min(dim=2)  # (B, h·w)
        feat = torch.gather(refs, 1, cell[..., None].expand(b, h * w, d))  # (B, h·w, d)
        if best_dist is None or best_feat is None:
            best_dist, best_feat = value, feat
            continue
        better = value < best_dist  # ties keep the earlier (more similar) reference
        best_dist = torch.where(better, value, best_dist)
        best_feat = torch.where(better[..., None], feat, best_feat)
    if best_feat is None:
        raise ValueError("no references retrieved (K = 0)")
    return best_feat.transpose(1, 2).reshape(b, d, h, w)
