"""Where semibook reads and writes: run folders, results/ and splits/.

Each can be moved with an environment variable, so a user can keep data and runs elsewhere.
Run folders (checkpoints, histories) live outside the repository, in the cache
(``~/.cache/semibook/runs``, or ``$SEMIBOOK_CACHE/runs``): a long benchmark resumes from them in
a later session, and the work tree holds only what is committed (results/, splits/).
"""

from __future__ import annotations

import os
from pathlib import Path

from .checks import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _folder(env: str, default: Path) -> Path:
    """``$env`` or ``default``; a path that exists and is not a folder is one line (semibook
    writes into it)."""
    path = Path(os.environ.get(env) or default)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} (${env}) is not a folder; point ${env} at a folder, or unset "
                          f"it" if os.environ.get(env) else f"{path} is not a folder; move it "
                          f"away, or set ${env} to a folder")
    return path


def _dir(env: str, default: str) -> Path:
    return _folder(env, ROOT / default)


def cache_dir() -> Path:
    """semibook's cache: generated scenes, downloads and run folders."""
    return _folder("SEMIBOOK_CACHE", Path.home() / ".cache" / "semibook")


def runs_dir() -> Path:
    return _folder("SEMIBOOK_RUNS", cache_dir() / "runs")


def results_dir() -> Path:
    return _dir("SEMIBOOK_RESULTS", "results")


def splits_dir() -> Path:
    return _dir("SEMIBOOK_SPLITS", "splits")
