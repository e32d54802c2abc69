"""CIFAR-10 in torchvision's layout: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}``.

The user's data: it is read when present and never required.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError
from .sources import search

FOLDER = "cifar-10-batches-py"
HOW_TO_GET = ("Put torchvision's CIFAR-10 folder (cifar-10-batches-py) in the data root or in "
              "$SEMIBOOK_DATA, or run where torchvision can download it.")


def _batch(path: Path):
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as e:
        raise ConfigError(f"{path}: not a CIFAR-10 batch file ({type(e).__name__}: {e})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ConfigError(f"{path}: expected N x 3072 images and N labels, got {data.shape} and "
                          f"{labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _read(folder: Path):
    base = folder / FOLDER
    names = [f"data_batch_{i}" for i in range(1, 6)]
    if not all((base / n).is_file() for n in names + ["test_batch"]):
        return None
    parts = [_batch(base / n) for n in names]
    x_te, y_te = _batch(base / "test_batch")
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    return (torch.from_numpy(x_tr.copy()), torch.from_numpy(y_tr), torch.from_numpy(x_te.copy()),
            torch.from_numpy(y_te))


def _download(target: Path) -> None:
    import torchvision
    torchvision.datasets.CIFAR10(str(target), train=True, download=True)


def load_cifar10(root: str | None = None, download: bool | None = None):
    return search("CIFAR-10", root, [], _read, _download, download, HOW_TO_GET)
