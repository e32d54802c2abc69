"""The bench's reports: where one goes (:func:`report_path`: the cache, ``--out``, or the
committed ``results/bench/<device>.json``) and how it is written (whole, atomically); and
reading the committed reports back for the book's performance appendix (:func:`load_reports`,
:func:`markdown_table`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from ..engine.checkpoint import atomic_write_text
from ..paths import cache_dir, results_dir


def device_slug(device: torch.device) -> str:
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def report_path(device: torch.device, out: Path | str | None = None,
                update_results: bool = False) -> Path:
    """Where the report goes: ``out``; with ``update_results`` the committed
    ``results/bench/<device>.json``; else ``bench/<device>.json`` in semibook's cache, outside
    the repository, so that no bench run rewrites a committed file unasked."""
    if out:
        return Path(out)
    folder = bench_dir() if update_results else cache_dir() / "bench"
    return folder / f"{device_slug(device)}.json"


def report_header(cases: list[str] | None = None, flag: str | None = None,
                  **fields: Any) -> dict[str, Any]:
    """The head every bench report starts with: ``fields`` (its kind, device, threads...), then
    the host (processor, vector instructions), the load average at the start, the library
    versions, the commit and the time. With ``flag``, first checks that every one of ``cases``
    is a full-profile case (the levers and the side-by-side runs time only those)."""
    import os
    from datetime import datetime, timezone

    from ..config import ConfigError
    from ..engine.results import _git_commit, _versions
    from ..engine.seed import host_info
    if flag is not None:
        from .cases import FULL_CASES
        bad = [c for c in cases or [] if c not in FULL_CASES]
        if bad:
            raise ConfigError(f"{flag} times full-profile cases; not {', '.join(bad)}")
    return {**fields, "host": host_info(), "load_avg_at_start": list(os.getloadavg()),
            "versions": _versions(), **_git_commit(),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")


# -- reading the reports (the book's performance appendix) ------------------------------------

def bench_dir() -> Path:
    return results_dir() / "bench"


def load_reports(folder: Path | str | None = None) -> list[dict[str, Any]]:
    """Every benchmark report (``<device>.json``) under ``results/bench/``, with its file."""
    folder = Path(folder) if folder else bench_dir()
    out = []
    for f in sorted(folder.glob("*.json")):
        r = json.loads(f.read_text())
        r["file"] = f.name
        out.append(r)
    return out


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def markdown_table(report: dict[str, Any]) -> str:
    """One report as a Markdown table: per case, our step and the reference's."""
    rows = ["| case | model | images | steps timed | ours ms/step | images/s | MFU | "
            "peak MiB | reference ms/step | speed-up |", "|" + "---|" * 10]
    for name, c in report["cases"].items():
        o, r = c["ours"], c.get("reference")
        shape = f"{c['batch_l']}+{c['batch_u'] if c['images_per_step'] > c['batch_l'] else 0}" \
                f" x {c['image_size']}²"
        rows.append(
            f"| {name} | {c['arch']} | {shape} | {o['steps']} | {o['median_s'] * 1e3:,.0f} "
            f"({o['p25_s'] * 1e3:,.0f}-{o['p75_s'] * 1e3:,.0f}) | {o['images_per_s']:,.1f} | "
            f"{o['mfu']:.1%} | {_mib(o['peak_memory_bytes'])} | "
            + (f"{r['median_s'] * 1e3:,.0f} | x{c['speedup']:.2f} |" if r else "- | - |"))
    return "\n".join(rows)
