"""Loss pieces shared by the methods (each lives here once)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sharpen(p: torch.Tensor, T: float) -> torch.Tensor:
    """MixMatch's sharpening: p_i^(1/T) / sum_j p_j^(1/T). T < 1 lowers the entropy."""
    p = p.pow(1.0 / T)
    return p / p.sum(dim=1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (rows summing to 1), averaged over the batch."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def softmax_mse(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared error between softmax(logits) and target probabilities, averaged over classes
    and samples (MixMatch's L_u, Mean Teacher's consistency)."""
    return (F.softmax(logits.float(), dim=1) - targets.float()).pow(2).mean()


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the pixels (or samples) where ``mask`` is true; 0 if none."""
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    m = mask.float()
    return (ce * m).sum() / m.sum().clamp_min(1.0)


def masked_bce_with_logits(logits: torch.Tensor, target: float,
                           mask: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of logits against a constant target (1: real, 0: fake), averaged
    over the pixels where ``mask`` is true (all when None)."""
    t = torch.full_like(logits, target, dtype=torch.float32)
    bce = F.binary_cross_entropy_with_logits(logits.float(), t, reduction="none")
    if mask is None:
        return bce.mean()
    m = mask.float().expand_as(bce)
    return (bce * m).sum() / m.sum().clamp_min(1.0)


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int,
                       thresh: float, min_kept: int) -> torch.Tensor:
    """Cross-entropy on the hard pixels only (online hard example mining, the supervised loss of
    TorchSemiSeg's Cityscapes runs). A labeled pixel is hard when the predicted probability of
    its label is at most ``thresh``; when fewer than ``min_kept`` pixels are that hard, the bar
    rises to the ``min_kept``-th smallest such probability, so that at least ``min_kept`` pixels
    count. With fewer labeled pixels than ``min_kept`` every labeled pixel counts. The mean is
    over the counted pixels."""
    with torch.no_grad():
        valid = target != ignore_index
        n_valid = int(valid.sum())
        keep = valid
        if 0 < n_valid and min_kept <= n_valid:
            p = F.softmax(logits.float(), 1).gather(1, target.clamp(0, logits.shape[1] - 1)
                                                    .unsqueeze(1))[:, 0]
            bar = thresh
            if min_kept > 0:
                bar = max(bar, p[valid].kthvalue(min_kept).values.item())
            keep = valid & (p <= bar)
    return F.cross_entropy(logits.float(), target.masked_fill(~keep, ignore_index),
                           ignore_index=ignore_index)
