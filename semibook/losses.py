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
