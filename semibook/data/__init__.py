"""Datasets, splits, augmentation and mixing.

A classification dataset is held in memory as uint8 images (N, C, H, W) with int64 labels;
augmentation runs batched on the training device (see :mod:`semibook.data.transforms`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ConfigError, choose
from .cifar import load_cifar10
from .fashion_mnist import FASHION_CLASSES, load_fashion_mnist
from .sources import DataNotFoundError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    size: int
    train_size: int
    classes: tuple[str, ...]
    pad_mode: str  # how the augmentation pads before its random crop


CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")
_INFO = {
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, 28, 60000, FASHION_CLASSES, "constant"),
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, 50000, CIFAR_CLASSES, "reflect"),
}
DATASETS = tuple(_INFO)
_LOADERS = {"fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10}


@dataclass
class ImageSet:
    """Train and test images (uint8, N x C x H x W) and labels, with where they came from."""
    info: DatasetInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


def dataset_info(name: str) -> DatasetInfo:
    return _INFO[choose("dataset", name, DATASETS)]


def load_dataset(name: str, root: str | None = None, download: bool | None = None) -> ImageSet:
    """Load a classification dataset, searching ``root``, ``$SEMIBOOK_DATA``, the system folder
    and finally torchvision's download (see :func:`semibook.data.sources.search`)."""
    info = dataset_info(name)
    (x_tr, y_tr, x_te, y_te), source = _LOADERS[name](root, download)
    if x_tr.shape[1:] != (info.in_channels, info.size, info.size):
        raise ConfigError(f"{source}: images have shape {tuple(x_tr.shape[1:])}, expected "
                          f"{(info.in_channels, info.size, info.size)}")
    xf = x_tr.float().div_(255)
    mean = tuple(xf.mean(dim=(0, 2, 3)).tolist())
    std = tuple(xf.std(dim=(0, 2, 3)).tolist())
    return ImageSet(info, x_tr, y_tr, x_te, y_te, source, mean, std)


def available(name: str, root: str | None = None) -> bool:
    """True when the dataset's files are on this machine (no download is tried)."""
    try:
        _LOADERS[name](root, False)
        return True
    except DataNotFoundError:
        return False


__all__ = ["DATASETS", "DatasetInfo", "ImageSet", "DataNotFoundError", "dataset_info",
           "load_dataset", "available"]
