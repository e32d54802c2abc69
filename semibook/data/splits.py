"""Labeled/unlabeled splits as files, so that a run names exactly which images were labeled.

A split is class-balanced: ``labels / num_classes`` images of each class, drawn with
``numpy.random.default_rng(seed)``. The unlabeled set is every other training image, so the two
are disjoint. The file stores the labeled indices; the unlabeled ones are their complement.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checks import ConfigError
from ..files import atomic_write_text
from ..paths import splits_dir


@dataclass
class Split:
    dataset: str
    labels: int
    seed: int
    train_size: int
    labeled: np.ndarray
    unlabeled: np.ndarray
    path: Path | None = None
    sha256: str | None = None


def make_split(y: torch.Tensor | np.ndarray, labels: int, seed: int, num_classes: int,
               dataset: str = "", balanced: bool = True) -> Split:
    """``balanced``: the same number of labels per class (classification); otherwise a plain
    random subset of ``labels`` images (segmentation, whose images hold several classes)."""
    y = np.asarray(y)
    if not balanced:
        if not 0 < labels <= len(y):
            raise ConfigError(f"label count {labels} must be in 1..{len(y)}")
        labeled = np.sort(np.random.default_rng(seed).choice(len(y), size=labels, replace=False))
        return Split(dataset, labels, seed, len(y), labeled,
                     np.setdiff1d(np.arange(len(y)), labeled))
    if labels <= 0 or labels % num_classes:
        raise ConfigError(f"label count {labels} must be a positive multiple of {num_classes}")
    per_class = labels // num_classes
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)
        if len(idx) < per_class:
            raise ConfigError(f"class {c} has {len(idx)} images, fewer than the {per_class} "
                              f"labels per class asked for")
        chosen.append(rng.choice(idx, size=per_class, replace=False))
    labeled = np.sort(np.concatenate(chosen))
    unlabeled = np.setdiff1d(np.arange(len(y)), labeled)
    return Split(dataset, labels, seed, len(y), labeled, unlabeled)


def split_path(dataset: str, labels: int, seed: int, folder: Path | None = None) -> Path:
    return (folder or splits_dir()) / f"{dataset}_{labels}_seed{seed}.json"


def write_split(split: Split, path: Path) -> Path:
    payload = {"dataset": split.dataset, "labels": split.labels, "seed": split.seed,
               "train_size": split.train_size, "labeled": split.labeled.tolist()}
    path.parent.mkdir(parents=True, exist_ok=True)
    # a temporary file of this writer's own: under torchrun every rank draws the same split and
    # writes it, and a shared temporary file would be renamed away under another rank
    atomic_write_text(path, json.dumps(payload) + "\n")
    split.path, split.sha256 = path, file_sha256(path)
    return path


def read_split(path: Path, y: torch.Tensor | np.ndarray | None = None,
               num_classes: int | None = None) -> Split:
    try:
        d = json.loads(Path(path).read_text())
        ids, train_size = d["labeled"], d["train_size"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a split file ({type(e).__name__}: {e})") from None
    bad = [i for i in (ids if isinstance(ids, list) else [ids])
           if isinstance(i, bool) or not isinstance(i, int)]
    if bad or isinstance(train_size, bool) or not isinstance(train_size, int):
        what = f"labeled holds {bad[0]!r}" if bad else f"train_size is {train_size!r}"
        raise ConfigError(f"{path}: not a split file ({what}; labeled must be a flat list of "
                          f"integer image ids, train_size an integer); restore it, or delete "
                          f"it to draw the split again")
    labeled = np.asarray(ids, dtype=np.int64)
    if len(np.unique(labeled)) != len(labeled):
        raise ConfigError(f"{path}: labeled ids repeat")
    if len(labeled) and (labeled.min() < 0 or labeled.max() >= train_size):
        raise ConfigError(f"{path}: labeled ids outside 0..{train_size - 1}")
    if y is not None:
        if len(y) != train_size:
            raise ConfigError(f"{path}: written for {train_size} training images, the data has "
                              f"{len(y)}")
        if num_classes and np.asarray(y).ndim == 1:
            counts = np.bincount(np.asarray(y)[labeled], minlength=num_classes)
            if len(set(counts.tolist())) != 1:
                raise ConfigError(f"{path}: not class-balanced (per-class counts {counts.tolist()})")
    unlabeled = np.setdiff1d(np.arange(train_size), labeled)
    return Split(d.get("dataset", ""), len(labeled), int(d.get("seed", -1)), train_size, labeled,
                 unlabeled, Path(path), file_sha256(Path(path)))


def load_or_make_split(dataset: str, y: torch.Tensor, labels: int, seed: int, num_classes: int,
                       folder: Path | None = None) -> Split:
    """Read the split file for (dataset, labels, seed) if it exists, else draw and write it."""
    path = split_path(dataset, labels, seed, folder)
    if path.exists():
        split = read_split(path, y, num_classes)
        if split.labels != labels:
            raise ConfigError(f"{path}: holds {split.labels} labels, expected {labels}")
        return split
    split = make_split(y, labels, seed, num_classes, dataset, balanced=np.asarray(y).ndim == 1)
    write_split(split, path)
    return split


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
