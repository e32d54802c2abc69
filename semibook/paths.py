"""Where semibook reads and writes: run folders, results/ and splits/.

Each can be moved with an environment variable, so a user can keep data and runs elsewhere.
Run folders (checkpoints, histories) live outside the repository, in the cache
(``~/.cache/semibook/runs``, or ``$SEMIBOOK_CACHE/runs``): a long benchmark resumes from them in
a later session, and the work tree holds only what is committed (results/, splits/).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dir(env: str, default: str) -> Path:
    return Path(os.environ.get(env) or (ROOT / default))


def cache_dir() -> Path:
    """semibook's cache: generated scenes, downloads and run folders."""
    return Path(os.environ.get("SEMIBOOK_CACHE") or Path.home() / ".cache" / "semibook")


def runs_dir() -> Path:
    return Path(os.environ.get("SEMIBOOK_RUNS") or cache_dir() / "runs")


def results_dir() -> Path:
    return _dir("SEMIBOOK_RESULTS", "results")


def splits_dir() -> Path:
    return _dir("SEMIBOOK_SPLITS", "splits")
