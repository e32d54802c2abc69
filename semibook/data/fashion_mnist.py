"""Fashion-MNIST (Xiao et al. 2017): 60,000 train and 10,000 test images, 28x28 grey, 10 classes.

The embedded default dataset: Debian's ``dataset-fashion-mnist`` puts its four idx ``.gz`` files
in ``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..checks import ConfigError
from .sources import search

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
         "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
HOW_TO_GET = ("Install Debian's package: apt-get install dataset-fashion-mnist, or put the four "
              "idx files (train-images-idx3-ubyte.gz, ...) in a folder and pass it as the data "
              "root or in $SEMIBOOK_DATA.")


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): magic, dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ConfigError(f"{path}: cannot read idx file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ConfigError(f"{path}: not an idx file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise ConfigError(f"{path}: expected {expected} bytes of data for shape {dims}, "
                          f"found {len(raw) - offset} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for sub in ("", "FashionMNIST/raw", "fashion-mnist"):
        for name in (stem + ".gz", stem):
            p = folder / sub / name
            if p.is_file():
                return p
    return None


def _read(folder: Path):
    paths = {k: _find(folder, stem) for k, stem in FILES.items()}
    if any(p is None for p in paths.values()):
        return None
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for k in ("y_train", "y_test"):
        bad = arrays[k][arrays[k] >= len(FASHION_CLASSES)]
        if len(bad):
            raise ConfigError(f"{paths[k]}: {len(bad)} label values outside the "
                              f"{len(FASHION_CLASSES)} classes (0..{len(FASHION_CLASSES) - 1}; "
                              f"e.g. {int(bad[0])}): not Fashion-MNIST's labels; replace the "
                              f"file with the dataset's own")
    x_tr = torch.from_numpy(arrays["x_train"].copy()).unsqueeze(1)
    x_te = torch.from_numpy(arrays["x_test"].copy()).unsqueeze(1)
    y_tr = torch.from_numpy(arrays["y_train"].astype(np.int64))
    y_te = torch.from_numpy(arrays["y_test"].astype(np.int64))
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise ConfigError(f"{folder}: image and label files have different lengths")
    return x_tr, y_tr, x_te, y_te


def _download(target: Path) -> None:
    import torchvision
    torchvision.datasets.FashionMNIST(str(target), train=True, download=True)
    torchvision.datasets.FashionMNIST(str(target), train=False, download=True)


def load_fashion_mnist(root: str | None = None, download: bool | None = None):
    return search("Fashion-MNIST", root, [SYSTEM_DIR], _read, _download, download, HOW_TO_GET)
