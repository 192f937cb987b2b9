"""Normalized Focal Loss (RITM, Sofiiuk et al. 2021) and its masked form for pseudo labels (Eq. 10).

Per sample, with p_t the probability of the true class and valid pixels V:

    β_i = (1 − p_t,i)^γ,   β̂_i = β_i · |V| / Σ_{j∈V} β_j   (normaliser detached, as in RITM)
    L = (1/|V|) Σ_{i∈V} −α · β̂_i · log p_t,i

and the batch loss is the mean over samples. RITM's defaults: γ = 2, α = 0.5. The masked NFL
ignores pixels whose label is 0.5 (the "abandoned" band of the tri-valued pseudo labels, Eq. 9).
log p_t is computed as logsigmoid(±logit) for numerical stability.

`soft_iou_loss` (1 − soft IoU per sample, Rahman & Wang 2016) can be added to the NFL: it scores
the whole mask as the IoU metric does, so a thin defect traced at probabilities just under the
0.49 cut (IoU 0 after the cut) still costs most of its range.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_LABEL = 0.5


def normalized_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: float = 0.5,
    ignore_value: float | None = None,
    eps: float = 1e-12,
) -> torch.Tensor:
    """NFL of logits (B, 1, H, W) against binary targets (B, 1, H, W); returns a scalar.

    Args:
        ignore_value: label value whose pixels are excluded (e.g. 0.5); None uses all pixels.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    positive = target > 0.5
    valid = torch.ones_like(target) if ignore_value is None else (target != ignore_value).to(logits.dtype)
    log_pt = torch.where(positive, F.logsigmoid(logits), F.logsigmoid(-logits))
    beta = (1.0 - log_pt.exp()).pow(gamma) * valid
    dims = tuple(range(1, logits.dim()))
    n_valid = valid.sum(dim=dims, keepdim=True)
    mult = (n_valid / (beta.sum(dim=dims, keepdim=True) + eps)).detach()
    per_pixel = -alpha * beta * mult * log_pt * valid
    per_sample = per_pixel.sum(dim=dims) / (n_valid.reshape(-1) + eps)
    return per_sample.mean()


def masked_normalized_focal_loss(logits: torch.Tensor, target: torch.Tensor, **kwargs: float) -> torch.Tensor:
    """Eq. 10: NFL over pixels whose tri-valued pseudo label is 0 or 1; 0.5 is ignored."""
    return normalized_focal_loss(logits, target, ignore_value=IGNORE_LABEL, **kwargs)


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Mean over samples of 1 − Σ p·t / Σ (p + t − p·t) for logits and binary targets (B, 1, H, W);
    eps (one pixel) keeps empty targets finite."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    p, t = torch.sigmoid(logits), (target > 0.5).to(logits.dtype)
    dims = tuple(range(1, logits.dim()))
    inter = (p * t).sum(dim=dims)
    union = (p + t - p * t).sum(dim=dims)
    return (1.0 - (inter + eps) / (union + eps)).mean()
