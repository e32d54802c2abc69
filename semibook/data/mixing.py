"""Mixing operations shared by the methods: MixMatch's MixUp and the interleaving trick.

(The segmentation chapters add CutMix boxes and ClassMix masks here.)
"""

from __future__ import annotations

import numpy as np
import torch


def mixup_weight(rng: np.random.Generator, alpha: float, n: int | None = None):
    """MixMatch's λ' = max(λ, 1-λ) with λ ~ Beta(α, α): the mix stays closer to its first input.

    One float, or with ``n`` one weight per example (an array of n), as MixMatch's Algorithm 1
    and its official code draw it (a Beta sample of shape [batch, 1, 1, 1])."""
    lam = rng.beta(alpha, alpha, size=n)
    lam = np.maximum(lam, 1.0 - lam)
    return float(lam) if n is None else lam


def mixup(x1: torch.Tensor, y1: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor,
          lam) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix images and their (soft) labels with the same weight: a float for the whole batch, or
    one weight per example (n values), each applied to its own row of images and labels."""
    if not isinstance(lam, float):
        lam = torch.as_tensor(lam, dtype=torch.float32, device=x1.device)
        lx = lam.view(-1, *[1] * (x1.ndim - 1)).to(x1.dtype)
        ly = lam.view(-1, *[1] * (y1.ndim - 1)).to(y1.dtype)
        return lx * x1 + (1 - lx) * x2, ly * y1 + (1 - ly) * y2
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


def cutmix_boxes(n: int, h: int, w: int, gen: torch.Generator, area: tuple[float, float] = (0.25, 0.5),
                 aspect: tuple[float, float] = (0.3, 1 / 0.3)) -> torch.Tensor:
    """One random box per sample: a float mask (n, 1, h, w), 1 inside the box.

    The box covers a share of the image drawn uniformly from ``area``, with an aspect ratio
    drawn log-uniformly from ``aspect``, and lies fully inside the image.
    """
    a = area[0] + (area[1] - area[0]) * torch.rand(n, generator=gen)
    log_r = torch.empty(n).uniform_(float(np.log(aspect[0])), float(np.log(aspect[1])),
                                    generator=gen)
    r = log_r.exp()
    bh = (a * h * w * r).sqrt().round().clamp(1, h).long()
    bw = (a * h * w / r).sqrt().round().clamp(1, w).long()
    y0 = (torch.rand(n, generator=gen) * (h - bh + 1)).floor().long()
    x0 = (torch.rand(n, generator=gen) * (w - bw + 1)).floor().long()
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    in_r = (rows >= y0[:, None]) & (rows < (y0 + bh)[:, None])
    in_c = (cols >= x0[:, None]) & (cols < (x0 + bw)[:, None])
    return (in_r[:, :, None] & in_c[:, None, :]).float()[:, None]


def box_masks(n: int, h: int, w: int, gen: torch.Generator, prop: tuple[float, float] = (0.25, 0.5),
              n_boxes: int = 3) -> torch.Tensor:
    """The CutMix mask that CPS's official code draws (the box-mask generator of French et al.,
    2020): a float mask (n, 1, h, w) made of ``n_boxes`` boxes combined by XOR.

    Per box a proportion p is drawn uniformly from ``prop`` (as the official code does, one per
    mask and box); the box gets p / n_boxes of the image's area, with a random aspect ratio
    (height share p^u with u ~ U(0, 1), width share p / that, both scaled by sqrt(1 / n_boxes)),
    placed fully inside the image. Each box flips the mask inside it, so where boxes overlap the
    mask returns to 0: the mixed share is at most the mean of the boxes' p, about 0.25 on
    average with the defaults (chapter 4 measures it)."""
    g = dict(generator=gen, dtype=torch.float64)
    p = prop[0] + (prop[1] - prop[0]) * torch.rand(n, n_boxes, **g)
    y_share = p ** torch.rand(n, n_boxes, **g)
    x_share = p / y_share
    fac = (1.0 / n_boxes) ** 0.5
    bh = (y_share * fac * h).round()
    bw = (x_share * fac * w).round()
    y0 = ((h - bh) * torch.rand(n, n_boxes, **g)).round()
    x0 = ((w - bw) * torch.rand(n, n_boxes, **g)).round()
    rows = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w)
    inside = ((rows >= y0[..., None, None]) & (rows < (y0 + bh)[..., None, None])
              & (cols >= x0[..., None, None]) & (cols < (x0 + bw)[..., None, None]))
    return (inside.sum(1, keepdim=True) % 2).float()


def classmix_masks(labels: torch.Tensor, gen: torch.Generator,
                   ignore_index: int | None = 255, round_up: bool = False) -> torch.Tensor:
    """ClassMix (Olsson et al. 2021): for each label map (n, h, w), pick half of the classes
    present at random; the mask (n, 1, h, w) is 1 on their pixels. Half is rounded down, as the
    ClassMix and Dual Teacher code do ((n - n % 2) / 2 classes); ``round_up`` takes the other
    half when n is odd."""
    masks = torch.zeros(labels.shape[0], 1, *labels.shape[1:])
    for i, lab in enumerate(labels):
        present = lab.unique()
        if ignore_index is not None:
            present = present[present != ignore_index]
        k = (len(present) + 1) // 2 if round_up else len(present) // 2
        chosen = present[torch.randperm(len(present), generator=gen)[:k].to(present.device)]
        masks[i, 0] = torch.isin(lab, chosen).float().cpu()
    return masks.to(labels.device)


def mix_with_mask(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Take ``a`` where mask is 1 and ``b`` elsewhere: images (n, c, h, w), label maps (n, h, w)
    or probability maps, with one (n, 1, h, w) mask, so image and label stay aligned."""
    m = mask if a.ndim == 4 else mask[:, 0]
    return torch.where(m.bool(), a, b)
