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
