"""Resuming a run: which config changes a resume may carry (recorded in the history), the
history kept up to the checkpoint's step, and the rows recording the options a resume changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..checks import ConfigError
from ..config import Config
from .results import config_diff


# Options a run may change when it is resumed (recorded in its history): they change what
# happens to a bad step, not what a good one computes. Results files still match on them.
RESUMABLE_CHANGES = ("skip_nonfinite",)


def resume_diff(cfg: Config, old: dict[str, Any]) -> list[str]:
    """The fields of ``config_diff`` that forbid continuing a run of ``old`` as ``cfg``."""
    return [k for k in config_diff(cfg, old) if k not in RESUMABLE_CHANGES]


def _history_until(hist_path: Path, start: int) -> list[str]:
    """The history's lines up to step ``start`` (the checkpoint's): what was logged after it is
    dropped, and so are a segment row from ``start`` (that segment's work is redone) and a last
    line torn by a kill. Any other line that is not a history row
    stops the resume with one line."""
    try:
        lines = hist_path.read_bytes().split(b"\n")
    except OSError as e:
        raise ConfigError(f"{hist_path}: cannot read the history ({e.strerror})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    kept = []
    for i, raw in enumerate(lines, 1):
        try:
            row = json.loads(raw.decode("ascii"))
            step = row["step"] if isinstance(row, dict) else None
        except (ValueError, KeyError):
            step = None
        if step is None or isinstance(step, bool) or not isinstance(step, int):
            if i == len(lines):  # torn by a kill while it was written
                break
            raise ConfigError(f"{hist_path}: line {i} is not a history row (a JSON object with "
                              f"an integer step); the run cannot continue exactly: pass "
                              f"--overwrite to start it again")
        if step < start or (step == start and row.get("kind") != "segment"):
            kept.append(raw.decode("ascii"))
    return kept


def _changed_options(cfg: Config, old: dict[str, Any], kept: list[str],
                     start: int) -> list[str]:
    """History rows recording the options (RESUMABLE_CHANGES) that this resume changes: each
    option's value as the checkpoint's config holds it, or as an earlier resume from the same
    checkpoint recorded it, against ``cfg``'s."""
    was = {k: old.get(k, getattr(Config, k)) for k in RESUMABLE_CHANGES}
    for row in map(json.loads, kept):
        if row.get("kind") == "option" and row["step"] == start:
            was.update({k: row[k] for k in RESUMABLE_CHANGES if k in row})
    now = {k: getattr(cfg, k) for k in RESUMABLE_CHANGES if getattr(cfg, k) != was[k]}
    return [json.dumps({"kind": "option", "step": start, **now})] if now else []
