"""File-based semantic segmentation, shared by PASCAL VOC 2012 and Cityscapes: finding the
dataset's folder, reading image and mask files, label maps, and splits.

Splits are lists of ids. :func:`make_fraction_split` draws a labeled subset (a fraction such
as ``"1/16"`` or a count) from a seed; :func:`read_id_list` / :func:`write_id_list` read and
write the one-id-per-line files that CPS and UniMatch publish. The datasets and per-sample
transforms, which need torchvision, are in :mod:`semibook.data.segfiles` (imported only where
such a dataset is read, so that commands on the embedded data start without torchvision).
"""

from __future__ import annotations

import math
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np
from PIL import Image

from ..checks import ConfigError
from .sources import search

Pair = tuple[Path, Path]


# -- finding the dataset folder ------------------------------------------------------------------

def find_root(name: str, root: str | Path | None, is_root: Callable[[Path], bool],
              subfolders: Sequence[str], how_to_get: str) -> Path:
    """The dataset's folder: ``root`` or one of its ``subfolders`` (``""`` for itself) where
    ``is_root`` holds, else the same under ``$SEMIBOOK_DATA`` (see
    :func:`semibook.data.sources.search`, which names every place tried when none fits)."""
    def read(place: Path) -> Path | None:
        return next((place / sub for sub in subfolders if is_root(place / sub)), None)
    found, _ = search(name, str(root) if root else None, [], read, None, None, how_to_get)
    return found


# -- reading files --------------------------------------------------------------------------------

def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def read_image(path: Path) -> np.ndarray:
    """An RGB image as uint8 (H, W, 3); a missing, truncated or corrupt file is a ConfigError."""
    try:
        with Image.open(path) as im:
            im.load()  # decodes now, so a truncated file fails here and not later
            return np.array(im.convert("RGB"))  # a writable copy
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ConfigError(f"{path}: cannot read image ({_one_line(e)})") from None


def read_mask(path: Path) -> np.ndarray:
    """A mask of integer values (H, W): a palette or single-channel PNG, never RGB colours."""
    try:
        with Image.open(path) as im:
            im.load()
            mode, values = im.mode, np.array(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ConfigError(f"{path}: cannot read mask ({_one_line(e)})") from None
    if mode not in ("P", "L", "I", "I;16"):
        raise ConfigError(f"{path}: mask has mode {mode}; expected a palette or "
                          f"single-channel PNG of label values, not colours")
    return values


def make_label_map(mapping: dict[int, int]) -> np.ndarray:
    """A 256-entry lookup table from stored mask values to labels; -1 marks values that must
    not occur."""
    lut = np.full(256, -1, dtype=np.int16)
    for k, v in mapping.items():
        lut[k] = v
    return lut


def _ranges(values: Iterable[int]) -> str:
    """[0, 1, 2, 3, 255] -> '0..3, 255'."""
    out, run = [], []
    for v in sorted(values):
        if run and v == run[-1] + 1:
            run.append(v)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}..{run[-1]}")
        run = [v]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}..{run[-1]}")
    return ", ".join(out)


def apply_label_map(mask: np.ndarray, label_map: np.ndarray, path: Path) -> np.ndarray:
    values = np.unique(mask)
    bad = [int(v) for v in values if v < 0 or v > 255 or label_map[int(v)] < 0]
    if bad:
        allowed = _ranges(np.flatnonzero(label_map >= 0).tolist())
        shown = ", ".join(map(str, bad[:8])) + (" ..." if len(bad) > 8 else "")
        raise ConfigError(f"{path}: mask holds values {shown} outside the known ones "
                          f"({allowed})")
    return label_map[mask].astype(np.uint8)


# -- splits as id lists ---------------------------------------------------------------------------

class IdSplit(NamedTuple):
    labeled: list[str]
    unlabeled: list[str]


def _fraction(value) -> Fraction | None:
    """A fraction given as '1/16', 0.0625 or Fraction(1, 16); None for a count (an int)."""
    if isinstance(value, bool):
        raise ConfigError(f"labeled amount {value!r} is neither a fraction nor a count")
    if isinstance(value, (int, np.integer)):
        return None
    try:
        if isinstance(value, str):
            f = Fraction(value.strip().replace("_", "/"))  # UniMatch folders say 1_16
        else:
            f = Fraction(float(value)).limit_denominator(10**6)
    except (ValueError, ZeroDivisionError, TypeError):
        raise ConfigError(f"labeled amount {value!r} is neither a fraction (like 1/16 or "
                          f"0.125) nor a count") from None
    return f


def split_count(n: int, fraction_or_count) -> int:
    """How many of ``n`` ids are labeled: a count as given, or a fraction rounded up, as in the
    published splits (1/16 of 10,582 VOC ids is 662, 1/16 of 2,975 Cityscapes ones is 186)."""
    f = _fraction(fraction_or_count)
    if f is None:
        count = int(fraction_or_count)
        if not 0 < count <= n:
            raise ConfigError(f"labeled count {count} must be in 1..{n}, the size of the "
                              f"training set")
        return count
    if not 0 < f <= 1:
        raise ConfigError(f"labeled fraction {fraction_or_count} must be in (0, 1]")
    return max(1, math.ceil(f * n))


def make_fraction_split(ids: Iterable[str], fraction_or_count, seed: int,
                        pool: Iterable[str] | None = None) -> IdSplit:
    """Draw the labeled ids from ``pool`` (default: all ``ids``) with
    ``numpy.random.default_rng(seed)``; the unlabeled ids are every other one of ``ids``.
    Both lists come back sorted, and the result does not depend on the input order."""
    ids = sorted(set(ids))
    pool = ids if pool is None else sorted(set(pool))
    outside = set(pool) - set(ids)
    if outside:
        raise ConfigError(f"{len(outside)} ids of the labeled pool are not training ids "
                          f"(e.g. {sorted(outside)[0]})")
    count = split_count(len(pool), fraction_or_count)
    chosen = np.random.default_rng(seed).choice(len(pool), size=count, replace=False)
    labeled = sorted(pool[i] for i in chosen)
    taken = set(labeled)
    return IdSplit(labeled, [i for i in ids if i not in taken])


_CITYSCAPES_SUFFIX = re.compile(r"_(leftImg8bit|gt(Fine|Coarse)_[A-Za-z]+)$")


def id_from_token(token: str) -> str:
    """Reduce a list entry to an id: ``2007_000032``, ``/JPEGImages/2007_000032.jpg`` and
    ``leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png`` give ``2007_000032`` and
    ``aachen_000000_000019``."""
    name = token.replace("\\", "/").rsplit("/", 1)[-1]
    for ext in (".png", ".jpg", ".jpeg"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return _CITYSCAPES_SUFFIX.sub("", name)


def read_id_list(path: str | Path, known: Iterable[str] | None = None) -> list[str]:
    """Ids from a one-entry-per-line file, in file order. A line may hold just the id (CPS,
    UniMatch's VOC lists) or paths (UniMatch's Cityscapes lists: image then mask); the first
    token is reduced to the id. Blank lines and ``#`` comments are skipped. With ``known``,
    ids outside it are refused."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read id list ({_one_line(e)})") from None
    ids, seen = [], set()
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        i = id_from_token(line.split()[0])
        if not i:
            raise ConfigError(f"{path}:{n}: no id in line {line!r}")
        if i in seen:
            raise ConfigError(f"{path}:{n}: id {i} appears twice")
        seen.add(i)
        ids.append(i)
    if known is not None:
        known = set(known)
        unknown = [i for i in ids if i not in known]
        if unknown:
            shown = ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else "")
            raise ConfigError(f"{path}: {len(unknown)} unknown ids (not in the dataset's "
                              f"{len(known)} ids of this split): {shown}")
    return ids


def write_id_list(path: str | Path, ids: Iterable[str]) -> Path:
    """Write one id per line (the format CPS and UniMatch publish for VOC)."""
    path = Path(path)
    ids = [str(i) for i in ids]
    seen = set()
    for i in ids:
        if not i or any(c.isspace() for c in i):
            raise ConfigError(f"{path}: id {i!r} is empty or holds whitespace")
        if i in seen:
            raise ConfigError(f"{path}: id {i} appears twice")
        seen.add(i)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text("".join(i + "\n" for i in ids))
    tmp.replace(path)
    return path


def read_id_split(labeled_path: str | Path, unlabeled_path: str | Path | None,
                  known: Iterable[str]) -> IdSplit:
    """A labeled list and, optionally, an unlabeled one (else: every other known id), both
    checked against the ``known`` training ids and against each other."""
    known = sorted(set(known))
    labeled = read_id_list(labeled_path, known)
    if unlabeled_path is None:
        taken = set(labeled)
        return IdSplit(labeled, [i for i in known if i not in taken])
    unlabeled = read_id_list(unlabeled_path, known)
    both = sorted(set(labeled) & set(unlabeled))
    if both:
        shown = ", ".join(both[:3]) + (" ..." if len(both) > 3 else "")
        raise ConfigError(f"{unlabeled_path}: {len(both)} ids are also in the labeled list "
                          f"{labeled_path}: {shown}")
    return IdSplit(labeled, unlabeled)
