"""Mixing operations shared by the methods: MixMatch's MixUp and the interleaving trick.

(The segmentation chapters add CutMix boxes and ClassMix masks here.)
"""

from __future__ import annotations

import numpy as np
import torch


def mixup_weight(rng: np.random.Generator, alpha: float) -> float:
    """MixMatch's λ' = max(λ, 1-λ) with λ ~ Beta(α, α): the mix stays closer to its first input."""
    lam = float(rng.beta(alpha, alpha))
    return max(lam, 1.0 - lam)


def mixup(x1: torch.Tensor, y1: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor,
          lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix images and their (soft) labels with the same weight."""
    return lam * x1 + (1 - lam) * x2, lam * y1 + (1 - lam) * y2


def _chunks(n: int, parts: int) -> list[int]:
    """Boundaries that cut n rows into ``parts`` near-equal chunks (the later ones larger)."""
    sizes = [n // parts] * parts
    for i in range(n - sum(sizes)):
        sizes[-1 - i] += 1
    return np.concatenate([[0], np.cumsum(sizes)]).tolist()


def interleave(batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """Swap chunk i of batch 0 with chunk i of batch i (i >= 1).

    Afterwards batch 0 holds a share of every source (labeled and each unlabeled view), and batch
    i holds chunk 0 of the labeled batch besides its own rows. MixMatch updates batch norm's
    running statistics from batch 0 only, so they come from the whole mixed distribution rather
    than from the labeled batch alone. The swap is its own inverse:
    ``interleave(interleave(b)) == b``, which is how the outputs are put back in order.
    """
    n = batches[0].shape[0]
    if any(b.shape[0] != n for b in batches):
        raise ValueError("interleave needs batches of equal size")
    edges = _chunks(n, len(batches))
    parts = [[b[edges[i]:edges[i + 1]] for i in range(len(batches))] for b in batches]
    for i in range(1, len(batches)):
        parts[0][i], parts[i][i] = parts[i][i], parts[0][i]
    return [torch.cat(p) for p in parts]
