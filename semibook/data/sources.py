"""The search order every dataset follows, and the one clear error when all places fail.

An explicit ``root`` is the only place looked at: a mistyped path is an error, never a silent
fall-back to another copy of the data. Without one: ``$SEMIBOOK_DATA``; the dataset's system
folder (for Fashion-MNIST, the Debian package ``dataset-fashion-mnist``); torchvision's download
into ``~/.cache/semibook`` (skipped when ``download=False`` or ``$SEMIBOOK_NO_DOWNLOAD`` is set).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

from ..checks import ConfigError
from ..paths import cache_dir

T = TypeVar("T")


class DataNotFoundError(ConfigError):
    pass


def search(name: str, root: str | None, system: list[Path], read: Callable[[Path], T | None],
           download: Callable[[Path], None] | None, allow_download: bool | None,
           how_to_get: str) -> tuple[T, str]:
    """Try each place in order; ``read(dir)`` returns the data or None when it is not there.
    With no place at all to look (no root, no ``$SEMIBOOK_DATA``, no system folder, no
    download), the error says exactly that."""
    tried: list[str] = []
    places: list[tuple[str, Path]] = []
    if root:
        place = Path(root).expanduser()
        found = read(place)
        if found is not None:
            return found, str(place)
        state = "does not exist" if not place.exists() else "does not hold it"
        raise DataNotFoundError(f"{name} not found: the data root {place} {state}. {how_to_get}")
    if os.environ.get("SEMIBOOK_DATA"):
        places.append(("$SEMIBOOK_DATA", Path(os.environ["SEMIBOOK_DATA"]).expanduser()))
    places += [("system folder", p) for p in system]
    if not places and download is None:
        raise DataNotFoundError(f"{name} not found: no data root given and $SEMIBOOK_DATA is not "
                                f"set. {how_to_get}")
    for label, place in places:
        found = read(place)
        if found is not None:
            return found, str(place)
        tried.append(f"{label} {place}" + ("" if place.exists() else " (does not exist)"))
    if allow_download is None:
        allow_download = not os.environ.get("SEMIBOOK_NO_DOWNLOAD")
    if download is not None:
        target = cache_dir()
        if allow_download:
            try:
                download(target)
                found = read(target)
                if found is not None:
                    return found, str(target)
                tried.append(f"torchvision download into {target} (no files after download)")
            except Exception as e:  # no network, refused, ...
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                tried.append(f"torchvision download into {target} (failed: {first[:120]})")
        else:
            tried.append(f"torchvision download into {target} (skipped: downloads are off)")
    raise DataNotFoundError(f"{name} not found. Tried: " + "; ".join(tried) + f". {how_to_get}")
