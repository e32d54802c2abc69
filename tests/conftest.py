"""Shared fixtures: every test writes into its own folders, and never downloads."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    for var, sub in (("SEMIBOOK_RUNS", "runs"), ("SEMIBOOK_RESULTS", "results"),
                     ("SEMIBOOK_SPLITS", "splits"), ("SEMIBOOK_CACHE", "cache")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("SEMIBOOK_NO_DOWNLOAD", "1")
    monkeypatch.delenv("SEMIBOOK_DATA", raising=False)
    return tmp_path


def _images(rng, labels, size, channels):
    """Class-dependent images: a bright bar whose row depends on the class, plus noise."""
    n = len(labels)
    x = rng.integers(0, 40, size=(n, channels, size, size), dtype=np.uint8)
    for i, c in enumerate(labels):
        r = 2 + 2 * int(c)
        x[i, :, r:r + 2, 4:size - 4] = 220
    return x


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def fake_fashion(tmp_path_factory) -> Path:
    """A tiny Fashion-MNIST tree in the Debian package's layout: 400 train, 200 test images."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, per_class in (("train", 40), ("t10k", 20)):
        y = np.repeat(np.arange(10), per_class)
        rng.shuffle(y)
        x = _images(rng, y, 28, 1)[:, 0]
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", y)
    return root


@pytest.fixture(scope="session")
def fake_cifar(tmp_path_factory) -> Path:
    """A tiny CIFAR-10 tree in torchvision's layout (cifar-10-batches-py, pickled batches)."""
    root = tmp_path_factory.mktemp("cifar")
    base = root / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        y = np.repeat(np.arange(10), 3)
        x = _images(rng, y, 32, 3).reshape(len(y), -1)
        with open(base / name, "wb") as f:
            pickle.dump({b"data": x, b"labels": y.tolist(), b"batch_label": name.encode()}, f)
    return root


@pytest.fixture
def tiny(fake_fashion):
    """Overrides that make a smoke-profile config train on the fake tree in a second or two."""
    return dict(data_root=str(fake_fashion), eval_size=0, track_size=64)


def tiny_scenes_loader(fashion_root, variant="v2"):
    """A fashion-scenes loader of 64 train and 32 val scenes from a Fashion-MNIST tree (also
    installed by the subprocess drivers of test_reliability.py)."""
    from semibook.data.scenes import make_scenes

    def load(root, download):
        x_tr, y_tr = make_scenes("train", 64, root=str(fashion_root), variant=variant)
        x_te, y_te = make_scenes("val", 32, root=str(fashion_root), variant=variant)
        return (x_tr, y_tr.long(), x_te, y_te.long()), "tiny fake scenes"
    return load


def seg_cfg(method, tiny_scenes, steps=6, eval_every=3, **kw):
    """A smoke-profile fashion-scenes config on the ``tiny_scenes`` fixture's scenes: 16
    labeled scenes, seed 0, ``steps`` steps evaluated and logged every ``eval_every``."""
    import semibook as sb
    return sb.make_config(method, "fashion-scenes", 16, 0, "smoke", **{
        **tiny_scenes, "steps": steps, "eval_every": eval_every, "log_every": eval_every, **kw})


@pytest.fixture
def tiny_scenes(fake_fashion, monkeypatch):
    """fashion-scenes from the fake Fashion-MNIST tree, 64 train and 32 val scenes."""
    import semibook.data as data
    monkeypatch.setitem(data._LOADERS, "fashion-scenes", tiny_scenes_loader(fake_fashion))
    monkeypatch.setitem(data._WEAK, "fashion-scenes",  # the boxes of those very scenes
                        lambda root, n: data._scene_weak_labels(data.V2, str(fake_fashion), n))
    return dict(eval_size=0, track_size=8)


@pytest.fixture
def tiny_scenes_v1(fake_fashion, monkeypatch):
    """fashion-scenes-v1 (the first, eleven-class scenes) from the fake Fashion-MNIST tree,
    64 train and 32 val scenes."""
    import semibook.data as data
    monkeypatch.setitem(data._LOADERS, "fashion-scenes-v1", tiny_scenes_loader(fake_fashion, "v1"))
    monkeypatch.setitem(data._WEAK, "fashion-scenes-v1",
                        lambda root, n: data._scene_weak_labels(data.V1, str(fake_fashion), n))
    return dict(eval_size=0, track_size=8)


@pytest.fixture
def terminal_sigint():
    """SIGINT handled as in a program started from a terminal (Python's KeyboardInterrupt
    handler), also when the tests run in a background job whose shell set it to be ignored;
    the handler the tests found is put back afterwards."""
    import signal
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def computed(history: list[dict]) -> list[dict]:
    """A history's rows as training computed them: without the run's segment rows (split and
    code hashes, one per start and resume) and elapsed times, so that a resumed run's history
    compares equal to an unbroken one's."""
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in history
            if r.get("kind") != "segment"]
