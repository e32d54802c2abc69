"""Batched image augmentation on the training device, driven by an explicit generator.

MixMatch's CIFAR-10 augmentation: reflect-pad 4 pixels, random 32x32 crop, random horizontal
flip. Fashion-MNIST gets the same translation and flip at 28x28, but padded with its black
background: its items often touch the border, and reflection would mirror them into the pad. Every random draw comes from the ``torch.Generator`` passed in, so a batch is
a function of (seed, step) and a resumed run sees the very same augmentations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize(x: torch.Tensor, mean, std, scaled: bool = False) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [0, 1] (skipped when ``scaled``), standardised per
    channel."""
    x = x if scaled else x.float().div_(255)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def pad_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True,
                  mode: str = "reflect") -> torch.Tensor:
    """Pad by ``pad`` (``reflect``, or ``constant`` zeros), crop back to the input size at a
    random offset, flip half of the images horizontally."""
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad), mode=mode)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (n, h)
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (n, w)
        if flip:
            do_flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
            cols = torch.where(do_flip[:, None], cols.flip(1), cols)
        b = torch.arange(n, device=x.device)[:, None, None]
        x = xp.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    elif flip:
        do_flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        x = torch.where(do_flip[:, None, None, None], x.flip(3), x)
    return x.contiguous()


def gaussian_noise(x: torch.Tensor, gen: torch.Generator, std: float) -> torch.Tensor:
    """Additive input noise (Mean Teacher's 0.15 on standardised inputs)."""
    if std <= 0:
        return x
    return x + std * torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
