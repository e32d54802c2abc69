"""Labeled/unlabeled splits as files, so that a run names exactly which images were labeled.

A split is class-balanced: ``labels / num_classes`` images of each class, drawn with
``numpy.random.default_rng(seed)``. The unlabeled set is every other training image, so the two
are disjoint. The file stores the labeled indices; the unlabeled ones are their complement.

A tuning run holds a validation set out of the training images (``validation_ids``: fixed,
the same for every seed and label count, class-balanced for classification): the split file
then also stores those ``held_out`` ids, and neither the labeled nor the unlabeled images
include them, so hyper-parameters are chosen on images no run trained on, never on the test set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
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
    held_out: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


VALIDATION_SEED = 20261207  # the validation set's own draw, the same for every run


def validation_ids(y: torch.Tensor | np.ndarray, n: int, num_classes: int,
                   balanced: bool = True) -> np.ndarray:
    """The ``n`` training images held out for validation: ``n / num_classes`` of each class
    (``balanced``), else a plain random subset; sorted, and independent of any run's seed."""
    y = np.asarray(y)
    if not 0 < n < len(y):
        raise ConfigError(f"a validation set of {n} images must leave training images of the "
                          f"{len(y)}")
    rng = np.random.default_rng(VALIDATION_SEED)
    if not balanced:
        return np.sort(rng.choice(len(y), size=n, replace=False))
    if n % num_classes:
        raise ConfigError(f"validation size {n} is not a multiple of the {num_classes} classes")
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), size=n // num_classes,
                                              replace=False) for c in range(num_classes)]))


def make_split(y: torch.Tensor | np.ndarray, labels: int, seed: int, num_classes: int,
               dataset: str = "", balanced: bool = True, validation: int = 0) -> Split:
    """``balanced``: the same number of labels per class (classification); otherwise a plain
    random subset of ``labels`` images (segmentation, whose images hold several classes).
    ``validation``: that many images held out first (:func:`validation_ids`)."""
    y = np.asarray(y)
    held = validation_ids(y, validation, num_classes, balanced) if validation else \
        np.zeros(0, dtype=np.int64)
    pool = np.setdiff1d(np.arange(len(y)), held)
    if not balanced:
        if not 0 < labels <= len(pool):
            raise ConfigError(f"label count {labels} must be in 1..{len(pool)}")
        labeled = np.sort(pool[np.random.default_rng(seed).choice(len(pool), size=labels,
                                                                  replace=False)])
        return Split(dataset, labels, seed, len(y), labeled, np.setdiff1d(pool, labeled),
                     held_out=held)
    if labels <= 0 or labels % num_classes:
        raise ConfigError(f"label count {labels} must be a positive multiple of {num_classes}")
    per_class = labels // num_classes
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        idx = np.setdiff1d(np.flatnonzero(y == c), held)
        if len(idx) < per_class:
            raise ConfigError(f"class {c} has {len(idx)} images, fewer than the {per_class} "
                              f"labels per class asked for")
        chosen.append(rng.choice(idx, size=per_class, replace=False))
    labeled = np.sort(np.concatenate(chosen))
    unlabeled = np.setdiff1d(pool, labeled)
    return Split(dataset, labels, seed, len(y), labeled, unlabeled, held_out=held)


def split_path(dataset: str, labels: int, seed: int, folder: Path | None = None,
               validation: int = 0) -> Path:
    val = f"_val{validation}" if validation else ""
    return (folder or splits_dir()) / f"{dataset}_{labels}_seed{seed}{val}.json"


def write_split(split: Split, path: Path) -> Path:
    payload = {"dataset": split.dataset, "labels": split.labels, "seed": split.seed,
               "train_size": split.train_size, "labeled": split.labeled.tolist()}
    if len(split.held_out):
        payload["held_out"] = split.held_out.tolist()
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
        held_ids = d.get("held_out", [])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a split file ({type(e).__name__}: {e})") from None
    bad = [(key, i) for key, v in (("labeled", ids), ("held_out", held_ids))
           for i in (v if isinstance(v, list) else [v])
           if isinstance(i, bool) or not isinstance(i, int)]
    if bad or isinstance(train_size, bool) or not isinstance(train_size, int):
        what = f"{bad[0][0]} holds {bad[0][1]!r}" if bad else f"train_size is {train_size!r}"
        raise ConfigError(f"{path}: not a split file ({what}; labeled and held_out must be flat "
                          f"lists of integer image ids, train_size an integer); restore it, or delete "
                          f"it to draw the split again")
    labeled = np.asarray(ids, dtype=np.int64)
    held = np.asarray(held_ids, dtype=np.int64)
    if len(np.unique(labeled)) != len(labeled):
        raise ConfigError(f"{path}: labeled ids repeat")
    if len(labeled) and (labeled.min() < 0 or labeled.max() >= train_size):
        raise ConfigError(f"{path}: labeled ids outside 0..{train_size - 1}")
    if len(held) and (held.min() < 0 or held.max() >= train_size or len(np.unique(held)) !=
                      len(held) or np.intersect1d(held, labeled).size):
        raise ConfigError(f"{path}: held-out ids repeat, lie outside 0..{train_size - 1} or are "
                          f"labeled")
    if y is not None:
        if len(y) != train_size:
            raise ConfigError(f"{path}: written for {train_size} training images, the data has "
                              f"{len(y)}")
        if num_classes and np.asarray(y).ndim == 1:
            counts = np.bincount(np.asarray(y)[labeled], minlength=num_classes)
            if len(set(counts.tolist())) != 1:
                raise ConfigError(f"{path}: not class-balanced (per-class counts {counts.tolist()})")
    unlabeled = np.setdiff1d(np.arange(train_size), np.union1d(labeled, held))
    return Split(d.get("dataset", ""), len(labeled), int(d.get("seed", -1)), train_size, labeled,
                 unlabeled, Path(path), file_sha256(Path(path)), held_out=held)


def load_or_make_split(dataset: str, y: torch.Tensor, labels: int, seed: int, num_classes: int,
                       folder: Path | None = None, validation: int = 0) -> Split:
    """Read the split file for (dataset, labels, seed[, validation]) if it exists, else draw
    and write it. A file whose held-out images are not this validation set stops the run."""
    path = split_path(dataset, labels, seed, folder, validation)
    balanced = np.asarray(y).ndim == 1
    if path.exists():
        split = read_split(path, y, num_classes)
        if split.labels != labels:
            raise ConfigError(f"{path}: holds {split.labels} labels, expected {labels}")
        want = validation_ids(y, validation, num_classes, balanced) if validation else []
        if not np.array_equal(split.held_out, want):
            raise ConfigError(f"{path}: its held-out images are not the {validation}-image "
                              f"validation set; delete the file to draw the split again")
        return split
    split = make_split(y, labels, seed, num_classes, dataset, balanced=balanced,
                       validation=validation)
    write_split(split, path)
    return split


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
