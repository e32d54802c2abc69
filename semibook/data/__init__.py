"""Datasets, splits, augmentation and mixing.

A dataset is held in memory as uint8 images (N, C, H, W) with int64 labels (class ids, or label
maps for segmentation); augmentation runs batched on the training device (see
:mod:`semibook.data.transforms`). PASCAL VOC and Cityscapes live on disk as files of varying
size; for the engine they are read once at a fixed size (:func:`segfiles.fixed_size`: shorter
side resized, centre crop), which costs memory: VOC's 10,582 training images at 321 x 321 take
about 3.3 GB of uint8 images and 8.7 GB of int64 label maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import torch

from ..checks import ConfigError, choose
from . import cityscapes, voc
from .cifar import load_cifar10
from .fashion_mnist import FASHION_CLASSES, load_fashion_mnist
from .scenes import (TRAIN_SCENES, VAL_SCENES, V1, V2, Variant, box_label_map, image_tags,
                     load_scene_boxes, load_scenes)
from .sources import DataNotFoundError, cache_dir


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    size: int
    train_size: int
    classes: tuple[str, ...]
    pad_mode: str  # how the augmentation pads before its random crop
    task: str = "classification"  # or "segmentation": labels are then H x W maps
    ignore_index: int = 255  # segmentation: label of pixels that are not scored


CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")
_INFO = {
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, 28, 60000, FASHION_CLASSES, "constant"),
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, 50000, CIFAR_CLASSES, "reflect"),
    # file-based: the size is the side of the fixed-size copy the engine trains on
    "voc": DatasetInfo("voc", voc.NUM_CLASSES, 3, 321, voc.TRAIN_AUG_SIZE, voc.VOC_CLASSES,
                       "constant", task="segmentation", ignore_index=voc.IGNORE_INDEX),
    "cityscapes": DatasetInfo("cityscapes", cityscapes.NUM_CLASSES, 3, 512, cityscapes.TRAIN_SIZE,
                              cityscapes.CITYSCAPES_CLASSES, "constant", task="segmentation",
                              ignore_index=cityscapes.IGNORE_INDEX),
}


def _load_scenes(variant: Variant, root: str | None, download: bool | None):
    if download is False:  # availability check: the scenes need only Fashion-MNIST
        load_fashion_mnist(root, False)
    x_tr, y_tr = load_scenes("train", TRAIN_SCENES, root=root, variant=variant)
    x_te, y_te = load_scenes("val", VAL_SCENES, root=root, variant=variant)
    return (x_tr, y_tr.long(), x_te, y_te.long()), f"generated from Fashion-MNIST ({cache_dir()})"


def _file_loader(name: str, module):
    """A loader of a file-based segmentation dataset (``voc``, ``cityscapes``): its train and
    val splits at the dataset's fixed size."""
    def load(root: str | None, download: bool | None):
        folder = module.find_root(root)  # one clear error when it is not there
        if download is False:  # availability check only
            return None, str(folder)
        from .segfiles import fixed_size  # torchvision: imported where files are read
        size = _INFO[name].size
        x_tr, y_tr = fixed_size(module.load(folder, "train"), size)
        x_te, y_te = fixed_size(module.load(folder, "val"), size)
        return (x_tr, y_tr, x_te, y_te), str(folder)
    return load


_LOADERS = {"fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10,
            "voc": _file_loader("voc", voc), "cityscapes": _file_loader("cityscapes", cityscapes)}


@dataclass(frozen=True)
class WeakLabels:
    """Weak labels of the training images (chapter 7): ``maps`` uint8 (N, H, W), a coarse
    label map from each image's boxes (:func:`semibook.data.scenes.box_label_map`), and
    ``tags`` bool (N, num_classes), the classes each image holds (the background included)."""
    maps: torch.Tensor
    tags: torch.Tensor


def _scene_weak_labels(variant: Variant, root: str | None, n: int) -> WeakLabels:
    """The weak labels of training scenes 0..n-1 (the scenes :func:`load_scenes` gave)."""
    boxes = load_scene_boxes("train", n, root=root, variant=variant).numpy()
    maps = np.stack([box_label_map(b, SCENE_SIZE) for b in boxes])
    return WeakLabels(torch.from_numpy(maps),
                      torch.from_numpy(image_tags(boxes, variant.num_classes)))


_WEAK: dict[str, Callable] = {}
SCENE_SIZE = 64


def add_scenes(name: str, variant: Variant) -> None:
    """Make a family of fashion-scenes a dataset: its info, loader and weak labels."""
    global DATASETS
    _INFO[name] = DatasetInfo(name, variant.num_classes, 3, SCENE_SIZE, TRAIN_SCENES,
                              variant.classes, "constant", task="segmentation")
    _LOADERS[name] = partial(_load_scenes, variant)
    _WEAK[name] = partial(_scene_weak_labels, variant)
    DATASETS = tuple(_INFO)


# the book's scenes, and the first ones (their results are archived in results/scenes-v1/)
add_scenes("fashion-scenes", V2)
add_scenes("fashion-scenes-v1", V1)
DATASETS = tuple(_INFO)


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
    weak: Callable[[], WeakLabels] | None = None  # loads the weak labels, where there are any


def dataset_info(name: str) -> DatasetInfo:
    return _INFO[choose("dataset", name, DATASETS)]


def load_dataset(name: str, root: str | None = None, download: bool | None = None) -> ImageSet:
    """Load a dataset (labels are class ids, or label maps for segmentation), searching ``root``, ``$SEMIBOOK_DATA``, the system folder
    and finally torchvision's download (see :func:`semibook.data.sources.search`)."""
    info = dataset_info(name)
    (x_tr, y_tr, x_te, y_te), source = _LOADERS[name](root, download)
    if x_tr.shape[1:] != (info.in_channels, info.size, info.size):
        raise ConfigError(f"{source}: images have shape {tuple(x_tr.shape[1:])}, expected "
                          f"{(info.in_channels, info.size, info.size)}")
    if info.task == "classification":
        for part, y in (("training", y_tr), ("test", y_te)):
            if len(y) and not (0 <= int(y.min()) and int(y.max()) < info.num_classes):
                raise ConfigError(f"{source}: {part} labels outside the {info.num_classes} "
                                  f"classes (0..{info.num_classes - 1}); replace the files "
                                  f"with the dataset's own")
    mean, std = channel_stats(x_tr)
    if not min(std) > 1e-6:  # every pixel the same (up to rounding): standardising divides
        # by zero
        raise ConfigError(f"{source}: the training images have no pixel variance (every pixel "
                          f"of a channel has one value), so they are not {name}'s images; "
                          f"replace the files with the dataset's own")
    weak = partial(_WEAK[name], root, len(x_tr)) if name in _WEAK else None
    return ImageSet(info, x_tr, y_tr, x_te, y_te, source, mean, std, weak)


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], ...]:
    """Per-channel mean and standard deviation of uint8 images, scaled to [0, 1]; in chunks,
    so large sets never exist as one float copy."""
    s = torch.zeros(x.shape[1], dtype=torch.float64)
    s2 = torch.zeros_like(s)
    for i in range(0, len(x), chunk):
        xf = x[i:i + chunk].double().div_(255)
        s += xf.sum(dim=(0, 2, 3))
        s2 += xf.pow(2).sum(dim=(0, 2, 3))
    n = x.numel() / x.shape[1]
    mean = s / n
    std = ((s2 / n - mean ** 2) * n / (n - 1)).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def available(name: str, root: str | None = None) -> bool:
    """True when the dataset's files are on this machine (no download is tried)."""
    try:
        _LOADERS[name](root, False)
        return True
    except DataNotFoundError:
        return False


__all__ = ["DATASETS", "DatasetInfo", "ImageSet", "WeakLabels", "DataNotFoundError", "dataset_info",
           "load_dataset", "available"]
