"""CIFAR-10 in torchvision's layout: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}``.

The user's data: it is read when present and never required. The batches are pickles; they are
read by :class:`BatchUnpickler`, which builds only what the format holds (dicts, lists, bytes,
strings, numbers and numpy arrays), so a crafted file cannot run code.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path

import numpy as np
import torch

from ..checks import ConfigError
from .sources import search

FOLDER = "cifar-10-batches-py"
HOW_TO_GET = ("Put torchvision's CIFAR-10 folder (cifar-10-batches-py) in the data root or in "
              "$SEMIBOOK_DATA, or run where torchvision can download it.")


def _latin1(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as pickle protocol 2 uses it for bytes, and for nothing else."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused: _codecs.encode with {encoding!r}")
    return codecs.encode(text, "latin1", errors)


def _frombuffer(buf, dtype, shape, order):
    """numpy's reconstructor of arrays pickled with protocol 5 (their bytes in the pickle)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("refused: an array of Python objects")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array reconstructor, wherever it lives
ALLOWED = {
    **{(mod, "_reconstruct"): _RECONSTRUCT for mod in ("numpy.core.multiarray",
                                                       "numpy._core.multiarray")},
    **{(mod, "_frombuffer"): _frombuffer for mod in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch and nothing else: the only callables a pickle may name
    (:data:`ALLOWED`) are numpy's array and dtype reconstructors (under numpy 1's and numpy 2's
    module names) and the latin-1 encoding of bytes (protocol 2 pickles written by Python 3);
    anything else, a call to ``os.system`` say, is refused before it is looked up."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return ALLOWED[(module, name)]


def read_batch_file(path: Path) -> object:
    """The unpickled content of a batch file, read with :class:`BatchUnpickler`."""
    with open(path, "rb") as f:
        return BatchUnpickler(io.BytesIO(f.read()), encoding="bytes").load()


def _batch(path: Path):
    try:
        d = read_batch_file(path)
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as e:
        why = " ".join(str(e).split())[:160]
        raise ConfigError(f"{path}: not a CIFAR-10 batch file ({type(e).__name__}: {why}); "
                          f"replace it with the file from torchvision's CIFAR-10 download") \
            from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ConfigError(f"{path}: expected N x 3072 images and N labels, got {data.shape} and "
                          f"{labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ConfigError(f"{path}: label values outside the 10 classes (0..9); replace it with "
                          f"the file from torchvision's CIFAR-10 download")
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
