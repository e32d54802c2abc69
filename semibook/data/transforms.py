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


class Whitening:
    """Global contrast normalisation and ZCA whitening, fitted on a training set: the input of
    the Mean Teacher CIFAR-10 runs (CuriousAI/mean-teacher's ``Cifar10ZCA`` data, made by its
    ``preprocess_cifar10.py``). Each image, flattened, has its own mean removed and is scaled to
    an L2 norm of ``scale`` (GCN); then x -> (x - mean) W with W = E (D + bias)^-1/2 E^T from the
    eigen-decomposition of the training set's covariance (ZCA, ``filter_bias`` added to the
    eigenvalues). The official code whitens the stored images once, before any augmentation; as
    each image's whitening depends on that image only, doing it per batch before the
    augmentation gives the same inputs."""

    def __init__(self, x_train: torch.Tensor, scale: float = 55.0, filter_bias: float = 0.1,
                 chunk: int = 4096):
        self.scale = scale
        d = x_train[0].numel()
        s = torch.zeros(d, dtype=torch.float64)
        ss = torch.zeros(d, d, dtype=torch.float64)
        for i in range(0, len(x_train), chunk):  # in chunks: no float copy of the whole set
            g = self.gcn(x_train[i:i + chunk]).double()
            s += g.sum(0)
            ss += g.T @ g
        n = len(x_train)
        mean = s / n
        cov = (ss - n * torch.outer(mean, mean)) / (n - 1)  # numpy.cov's (unbiased)
        evals, evecs = torch.linalg.eigh(cov + filter_bias * torch.eye(d, dtype=torch.float64))
        self.mean = mean.float()
        self.W = (evecs * evals.rsqrt()) @ evecs.T
        self.W = self.W.float()

    def gcn(self, x: torch.Tensor, min_divisor: float = 1e-8) -> torch.Tensor:
        """(N, ...) images -> (N, D) float, each with mean 0 and L2 norm ``scale``."""
        g = x.reshape(len(x), -1).float()
        g = g - g.mean(1, keepdim=True)
        norm = g.pow(2).sum(1, keepdim=True).sqrt() / self.scale
        return g / torch.where(norm < min_divisor, torch.ones_like(norm), norm)

    def to(self, device: torch.device) -> "Whitening":
        self.mean, self.W = self.mean.to(device), self.W.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or float (N, C, H, W) images -> whitened float images of the same shape."""
        return ((self.gcn(x) - self.mean) @ self.W).view(x.shape)


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


# -- segmentation: paired geometric views and photometric strong views ---------------------------

def paired_scale_crop_flip(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
                           scale: tuple[float, float] = (0.5, 2.0), flip: bool = True,
                           ignore_index: int = 255, crop: int = 0
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The weak view of a segmentation batch: random rescale (factor drawn from ``scale``),
    random crop of ``crop`` x ``crop`` pixels (0: the input's size), random horizontal flip,
    applied to the images (bilinear) and their label maps (nearest) with one sampling grid
    each, so the two stay aligned. Where a zoomed-out image does not cover the crop, the image
    is 0 and the label ``ignore_index``. ``x``: float (n, c, h, w); ``y``: integer (n, h, w), or (n, k, h, w) for k label maps per
    image (a label map and a weak-label map), each moved like a single one."""
    n, c, h, w = x.shape
    ch, cw = (crop, crop) if crop else (h, w)
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=gen)
    # the crop's half-extent in the input's normalised coordinates, and how far it can move
    rx, ry = cw / w / s, ch / h / s
    tx = (2 * torch.rand(n, generator=gen) - 1) * (1 - rx).abs()
    ty = (2 * torch.rand(n, generator=gen) - 1) * (1 - ry).abs()
    fx = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = fx * rx, tx
    theta[:, 1, 1], theta[:, 1, 2] = ry, ty
    grid = F.affine_grid(theta.to(x.device, x.dtype), [n, c, ch, cw], align_corners=False)
    x_out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    maps = y.dim() == 4  # several label maps per image (n, k, h, w): one grid for all
    shifted = y.to(x.dtype) + 1  # 0 after sampling = outside the image
    y_out = F.grid_sample(shifted if maps else shifted[:, None], grid, mode="nearest",
                          padding_mode="zeros", align_corners=False).round().long() - 1
    y_out = y_out if maps else y_out[:, 0]
    y_out[y_out < 0] = ignore_index
    return x_out, y_out


def _gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _per_sample(gen: torch.Generator, n: int, lo: float, hi: float, like: torch.Tensor):
    return (lo + (hi - lo) * torch.rand(n, generator=gen)).to(like.device, like.dtype).view(
        n, 1, 1, 1)


def strong_photometric(x: torch.Tensor, gen: torch.Generator, jitter: float = 0.5,
                       hue: float = 0.25, p_jitter: float = 0.8, p_gray: float = 0.2,
                       p_blur: float = 0.5, sigma: tuple[float, float] = (0.1, 2.0)) -> torch.Tensor:
    """The strong view's photometric part, on RGB images in [0, 1] (n, 3, h, w), batched:
    colour jitter (brightness, contrast, saturation by up to ``jitter``, hue by up to ``hue``
    turns, in that fixed order) with probability ``p_jitter``, grayscale with ``p_gray``,
    Gaussian blur with ``p_blur``. Geometry is untouched, so labels need no change."""
    n = x.shape[0]
    on = lambda p: (torch.rand(n, generator=gen) < p).to(x.device).view(n, 1, 1, 1)
    j = on(p_jitter)
    b = _per_sample(gen, n, 1 - jitter, 1 + jitter, x)
    c = _per_sample(gen, n, 1 - jitter, 1 + jitter, x)
    s = _per_sample(gen, n, 1 - jitter, 1 + jitter, x)
    h = _per_sample(gen, n, -hue, hue, x) * 2 * torch.pi
    out = (x * b).clamp(0, 1)
    out = ((out - _gray(out).mean(dim=(2, 3), keepdim=True)) * c
           + _gray(out).mean(dim=(2, 3), keepdim=True)).clamp(0, 1)
    out = (_gray(out) + (out - _gray(out)) * s).clamp(0, 1)
    # hue: rotate the chroma plane of YIQ
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                           [0.211, -0.523, 0.312]], device=x.device, dtype=x.dtype)
    yiq = torch.einsum("ij,njhw->nihw", to_yiq, out)
    cos, sin = h.cos()[:, 0], h.sin()[:, 0]
    i_, q_ = yiq[:, 1:2], yiq[:, 2:3]
    yiq = torch.cat([yiq[:, :1], cos[:, None] * i_ - sin[:, None] * q_,
                     sin[:, None] * i_ + cos[:, None] * q_], 1)
    out = torch.einsum("ij,njhw->nihw", torch.linalg.inv(to_yiq), yiq).clamp(0, 1)
    out = torch.where(j, out, x)
    out = torch.where(on(p_gray), _gray(out).expand_as(out), out)
    # Gaussian blur with a per-sample sigma: one separable depthwise convolution
    sig = sigma[0] + (sigma[1] - sigma[0]) * torch.rand(n, generator=gen)
    r = int(3 * sigma[1])
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t[None] ** 2) / (2 * sig[:, None].to(x.dtype) ** 2))
    k = (k / k.sum(1, keepdim=True)).to(x.device)  # (n, 2r+1)
    c_ = out.shape[1]
    kh = k.repeat_interleave(c_, 0).view(n * c_, 1, 1, -1)
    flat = out.reshape(1, n * c_, *out.shape[2:])
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="reflect"), kh, groups=n * c_)
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="reflect"), kh.transpose(2, 3), groups=n * c_)
    return torch.where(on(p_blur), flat.view_as(out), out)
