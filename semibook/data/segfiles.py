"""File-based segmentation datasets and their per-sample transforms (PASCAL VOC 2012 and
Cityscapes), on ``torchvision.transforms.v2`` with ``tv_tensors.Image`` / ``tv_tensors.Mask``
pairs. Each sample is an image file and a mask file, read when it is asked for
(:class:`SegmentationFiles`), so augmentation is per sample:

- :func:`weak_transform`: random rescale by a factor, pad to the crop (image 0, mask 255),
  random crop, horizontal flip. Image and mask get the same geometry, so they stay aligned.
- :func:`strong_transform`: colour jitter, grayscale and Gaussian blur on the image only.

Finding the files, label maps and splits are in :mod:`semibook.data.segsets`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torchvision.transforms.v2 as v2
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..checks import ConfigError
from .segsets import Pair, apply_label_map, read_image, read_mask


class SegmentationFiles(Dataset):
    """(image, mask) pairs read from files when indexed.

    Returns the image as float (3, H, W) in [0, 1] and the mask as int64 (H, W). ``transform``
    is called as ``transform(image, mask)`` on a uint8 ``tv_tensors.Image`` and a uint8
    ``tv_tensors.Mask`` (see :func:`weak_transform`); it may return more than two items (for
    example a weak and a strong view and the mask), each converted the same way.
    ``label_map`` (see :func:`make_label_map`) turns stored values into labels and refuses
    unknown ones; without it the stored values are the labels.
    """

    def __init__(self, pairs: Sequence[Pair], transform: Callable | None = None, *,
                 label_map: np.ndarray | None = None):
        self.pairs = [(Path(i), Path(m)) for i, m in pairs]
        if not self.pairs:
            raise ConfigError("no image/mask pairs to read")
        self.transform = transform
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.pairs)

    def read(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """The sample as stored (uint8 image and labels), before any transform."""
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        mask = read_mask(mask_path)
        if image.shape[:2] != mask.shape[:2]:
            raise ConfigError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its "
                              f"image {image_path} is {image.shape[1]}x{image.shape[0]}")
        if self.label_map is not None:
            mask = apply_label_map(mask, self.label_map, mask_path)
        elif mask.min() < 0 or mask.max() > 255:
            raise ConfigError(f"{mask_path}: mask values outside 0..255")
        return (tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
                tv_tensors.Mask(torch.from_numpy(mask.astype(np.uint8))))

    def __getitem__(self, index: int):
        image, mask = self.read(index)
        out = (image, mask) if self.transform is None else self.transform(image, mask)
        return tuple(_to_output(t) for t in out)

    def __repr__(self) -> str:
        return f"SegmentationFiles({len(self)} samples, transform={self.transform})"


def fixed_size(files: "SegmentationFiles", size: int, workers: int = 8
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sample of ``files`` at one size, for the engine's in-memory batches: the shorter
    side resized to ``size`` (image bilinear, mask nearest), then the centre ``size`` x
    ``size`` crop. Returns uint8 images (N, 3, size, size) and int64 label maps (N, size,
    size). Files are read in ``workers`` threads (decoding releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int):
        image, mask = files.read(i)
        image, mask = TF.resize(image, size, antialias=True), TF.resize(mask, size)
        return TF.center_crop(image, [size, size]), TF.center_crop(mask, [size, size])
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pairs = list(pool.map(one, range(len(files))))
    x = torch.stack([p[0].as_subclass(torch.Tensor) for p in pairs])
    y = torch.stack([p[1].as_subclass(torch.Tensor) for p in pairs]).long()
    return x, y


def _to_output(t):
    if isinstance(t, tv_tensors.Mask):
        return t.as_subclass(torch.Tensor).long()
    if isinstance(t, torch.Tensor):
        t = t.as_subclass(torch.Tensor)
        return t.float().div_(255) if t.dtype == torch.uint8 else t.float()
    return t


# -- per-sample transforms ------------------------------------------------------------------------

class RandomScale(v2.Transform):
    """Resize image and mask by one factor drawn uniformly from ``scale`` (bilinear for the
    image, nearest for the mask)."""

    def __init__(self, scale: tuple[float, float] = (0.5, 2.0)):
        super().__init__()
        if not 0 < scale[0] <= scale[1]:
            raise ConfigError(f"scale range {scale} must satisfy 0 < low <= high")
        self.scale = (float(scale[0]), float(scale[1]))

    def make_params(self, flat_inputs):
        h, w = v2.query_size(flat_inputs)
        s = float(torch.empty(()).uniform_(*self.scale))
        return dict(size=[max(1, round(h * s)), max(1, round(w * s))], same=(h, w))

    def transform(self, inpt, params):
        if list(params["same"]) == params["size"]:
            return inpt
        return TF.resize(inpt, params["size"], interpolation=v2.InterpolationMode.BILINEAR,
                         antialias=True)


class PadTo(v2.Transform):
    """Pad on the bottom and right up to ``size`` (no change where already large enough):
    images with 0, masks with ``ignore_index``."""

    def __init__(self, size: tuple[int, int], ignore_index: int = 255):
        super().__init__()
        self.size, self.ignore_index = size, ignore_index

    def make_params(self, flat_inputs):
        h, w = v2.query_size(flat_inputs)
        return dict(padding=[0, 0, max(self.size[1] - w, 0), max(self.size[0] - h, 0)])

    def transform(self, inpt, params):
        if not any(params["padding"]):
            return inpt
        fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else 0
        return TF.pad(inpt, params["padding"], fill=fill)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h <= 0 or w <= 0:
        raise ConfigError(f"crop size {size} must be positive")
    return int(h), int(w)


def weak_transform(crop_size: int | Sequence[int], scale: tuple[float, float] = (0.5, 2.0),
                   flip: bool = True, ignore_index: int = 255) -> v2.Compose:
    """The weak (training) view of an image and its mask: random rescale, pad to the crop,
    random crop of ``crop_size`` (an int or (h, w)), random horizontal flip. Call it as
    ``transform(image, mask)`` with a ``tv_tensors.Image`` and a ``tv_tensors.Mask`` (by
    torchvision's rules a plain tensor next to an Image passes through untouched). Randomness
    comes from torch's global generator (seed it, or let the DataLoader seed each worker)."""
    size = _pair(crop_size)
    steps = [RandomScale(scale), PadTo(size, ignore_index), v2.RandomCrop(size)]
    if flip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    return v2.Compose(steps)


def strong_transform(jitter: float = 0.5, hue: float = 0.25, p_jitter: float = 0.8,
                     p_gray: float = 0.2, p_blur: float = 0.5,
                     sigma: tuple[float, float] = (0.1, 2.0)) -> v2.Compose:
    """The strong view's photometric part (as in UniMatch): colour jitter with ``p_jitter``,
    grayscale with ``p_gray``, Gaussian blur (sigma drawn from ``sigma``) with ``p_blur``.
    Photometric only: a ``tv_tensors.Mask`` passed with the image comes back unchanged."""
    kernel = 2 * math.ceil(3 * sigma[1]) + 1
    return v2.Compose([
        v2.RandomApply([v2.ColorJitter(jitter, jitter, jitter, hue)], p=p_jitter),
        v2.RandomGrayscale(p_gray),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma)], p=p_blur),
    ])
