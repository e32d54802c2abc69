"""Where semibook reads and writes: the repository root, runs/, results/ and splits/.

Each can be moved with an environment variable, so a user can keep data and runs elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dir(env: str, default: str) -> Path:
    return Path(os.environ.get(env) or (ROOT / default))


def runs_dir() -> Path:
    return _dir("SEMIBOOK_RUNS", "runs")


def results_dir() -> Path:
    return _dir("SEMIBOOK_RESULTS", "results")


def splits_dir() -> Path:
    return _dir("SEMIBOOK_SPLITS", "splits")
