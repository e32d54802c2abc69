"""Reproduce a results table: ``python -m semibook reproduce classification``.

A table is a list of runs (method, dataset, labels, seed) at the ``full`` profile: every method
of the table on each of its label counts, plus supervised-only training with every training
label (the fully supervised ceiling), each for seeds 0, 1 and 2. A run whose results file in
``results/`` already holds a finished run of exactly the same config is skipped; a run folder
left by an interrupted run of the same config is resumed from its checkpoint; everything else
is trained with :func:`semibook.engine.run.run`, which writes the results file.

The label counts of the tables live in :data:`TABLE_LABELS`, and nowhere else. What the
finished tables say (their Markdown, verdicts, time limits) is :mod:`semibook.verdicts`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from .config import Config, choose, make_config
from .data import dataset_info
from .checks import NonFiniteLossError
from .engine.resume import resume_diff
from .data.splits import file_sha256, split_path
from .engine.results import read_results, result_name, same_config
from .engine.run import default_run_dir, run
from .paths import results_dir

SEEDS = (0, 1, 2)

# How the book and the messages write the command: the interpreter of the README's set-up
# (``make book`` or ``make test`` create .venv).
CLI = ".venv/bin/python -m semibook"

# The label counts of each table: the one place to change them. Classification: 40 labels (four
# a class), the smallest setting of the FixMatch-era benchmarks, beside 250, MixMatch's headline
# setting. The sweep also ran at 100 labels (ten a class, results/v2-100-labels/): there the
# chosen trials led supervised-only by less on the validation images (MixMatch +5.1 points
# against +16.5 at 40, Mean Teacher +1.3 against +6.5), so the smallest split stays where
# the unlabeled images have the most to give. Its price is the spread between seeds, each of
# which draws its own four images a class (chapter 6 shows both). Segmentation: labeled scenes
# out of the 10,000 training scenes of fashion-scenes. The smallest split must leave at least
# 20 points to full supervision at the profile's size (chapter 6's calibration measures it).
TABLE_LABELS: dict[str, tuple[int, ...]] = {
    "classification": (40, 250),
    "segmentation": (20, 50),
}

CEILING_METHOD = "supervised"
# the methods that learn from the weak labels of fashion-scenes (boxes, class lists): two of
# chapter 7's three (Soft Teacher learns from unlabeled scenes alone)
WEAK_LABEL_METHODS = ("dual_branch", "dual_branch_teacher")


@dataclass(frozen=True)
class Table:
    """Methods of one task on one dataset at several label counts, plus the ceiling.
    ``full_labels`` is the ceiling's label count (default: every training image)."""
    name: str
    dataset: str
    methods: tuple[str, ...]
    labels: tuple[int, ...]
    full_labels: int | None = None

    @property
    def ceiling_labels(self) -> int:
        return self.full_labels or dataset_info(self.dataset).train_size


TABLES: dict[str, Table] = {
    "classification": Table("classification", "fashion-mnist",
                            ("supervised", "mixmatch", "mean_teacher"),
                            TABLE_LABELS["classification"]),
    "segmentation": Table("segmentation", "fashion-scenes",
                          ("supervised", "mean_teacher", "adversarial", "cps", "cps_cutmix",
                           "dual_teacher", "soft_teacher") + WEAK_LABEL_METHODS,
                          TABLE_LABELS["segmentation"]),
}


@dataclass(frozen=True)
class Entry:
    """One run of a table; ``ceiling`` marks supervised-only training with every label."""
    method: str
    dataset: str
    labels: int
    seed: int
    ceiling: bool = False

    def command(self, profile: str = "full") -> str:
        return (f"{CLI} run --method {self.method} --dataset {self.dataset} "
                f"--labels {self.labels} --profile {profile} --seed {self.seed}")


def get_table(table: str | Table) -> Table:
    return table if isinstance(table, Table) else TABLES[choose("table", table, TABLES)]


def entries(table: str | Table, seeds=SEEDS, methods=None, labels=None) -> list[Entry]:
    """The runs of a table, label count by label count, then the ceiling. ``methods`` keeps
    only those methods (the ceiling is a ``supervised`` run); ``labels`` only those label
    counts (the ceiling's included)."""
    t = get_table(table)
    keep = list(t.methods) if methods is None else [choose("method", m, t.methods)
                                                    for m in methods]
    counts = t.labels if labels is None else [int(choose(
        "label count", str(n), [str(k) for k in (*t.labels, t.ceiling_labels)])) for n in labels]
    out = [Entry(m, t.dataset, n, s) for n in t.labels if n in counts for m in t.methods
           if m in keep for s in seeds]
    if CEILING_METHOD in keep and (labels is None or t.ceiling_labels in counts):
        out += [Entry(CEILING_METHOD, t.dataset, t.ceiling_labels, s, ceiling=True)
                for s in seeds]
    return out


SPLIT_CHANGED = "the split file"  # how a stale row's reason starts when its split changed


def status(cfg: Config) -> tuple[str, dict[str, Any] | None, str]:
    """``done`` (a finished results file of this config, on today's split file), ``stale`` (the
    results file holds another config, an unfinished run, or a split whose file has changed
    since; it will be replaced), ``missing``, or ``foreign`` (a file at the results name that
    is not a results file: never replaced); and why, for ``stale`` and ``foreign``."""
    path = results_dir() / result_name(cfg)
    if not path.exists():
        return "missing", None, ""
    res = read_results(path)
    if res is None:
        return "foreign", None, f"{path} is not a results file; move it away to run this"
    if not same_config(res, cfg):
        return "stale", res, "its results file holds another config"
    if not res.get("finished"):
        return "stale", res, "its results file holds an unfinished run"
    split = split_path(cfg.dataset, cfg.labels, cfg.seed)
    if split.exists() and res.get("split_sha256") != file_sha256(split):
        return "stale", res, (f"{SPLIT_CHANGED} {split} has changed since the run (sha256 "
                              f"{str(res.get('split_sha256'))[:12]} in the results file, "
                              f"{file_sha256(split)[:12]} now)")
    return "done", res, ""


def plan(table: str | Table, seeds=SEEDS, methods=None, profile: str = "full",
         overrides: dict[str, Any] | None = None, labels=None) -> list[dict[str, Any]]:
    """Each run of the table with its config, status (and why) and (when done) its results."""
    rows = []
    for e in entries(table, seeds, methods, labels):
        cfg = make_config(e.method, e.dataset, e.labels, e.seed, profile, **(overrides or {}))
        st, res, why = status(cfg)
        rows.append({"entry": e, "config": cfg, "status": st, "why": why,
                     "results": res if st == "done" else None})
    return rows


def _resumable(cfg: Config) -> bool:
    """A run folder of this very config exists (e.g. an interrupted run): continue it."""
    path = default_run_dir(cfg) / "config.json"
    try:
        return path.exists() and not resume_diff(cfg, json.loads(path.read_text()))
    except (OSError, ValueError):
        return False


def describe(row: dict[str, Any]) -> str:
    """One line: method, dataset, labels, seed and profile of a planned run."""
    e = row["entry"]
    return (f"{e.method:<13} {e.dataset} {e.labels:>6} labels{' (ceiling)' if e.ceiling else ''}"
            f"  seed {e.seed}  {row['config'].profile}")


def reproduce(table: str | Table, seeds=SEEDS, methods=None, profile: str = "full",
              dry_run: bool = False, device: str | None = None, progress: bool = True,
              overrides: dict[str, Any] | None = None,
              echo: Callable[[str], None] = print, labels=None,
              allow_code_change: bool = False) -> list[dict[str, Any]]:
    """Run what is not done yet of ``table`` (one line per run says what happens to it);
    ``dry_run`` only lists. Returns the plan, with ``status`` ``ran`` for the runs trained now
    and ``failed`` for those stopped by a non-finite loss (the others still run).
    Smoke-profile runs are never written to ``results/``, so they are never ``done``."""
    rows = plan(table, seeds, methods, profile, overrides, labels)
    todo = [r for r in rows if r["status"] not in ("done", "foreign")]
    for r in rows:
        echo(f"{r['status']:<8} {describe(r)}" + (f"  ({r['why']})" if r["why"] else ""))
    foreign = sum(r["status"] == "foreign" for r in rows)
    echo(f"{len(rows) - len(todo) - foreign} of {len(rows)} runs done, {len(todo)} to run"
         + (f", {foreign} blocked by a file that is not a results file" if foreign else "")
         + (" (smoke runs are never saved as results)" if profile == "smoke" else ""))
    if dry_run:
        return rows
    for i, r in enumerate(todo, 1):
        cfg = r["config"]
        # a run folder of the old split is started again, never continued on the new one
        resume = _resumable(cfg) and not r["why"].startswith(SPLIT_CHANGED)
        echo(f"[{i}/{len(todo)}] {'resuming' if resume else 'training'} {describe(r)}")
        try:
            res = run(cfg, resume=resume, overwrite=not resume, progress=progress,
                      device=device, allow_code_change=allow_code_change)
        except NonFiniteLossError as e:
            echo(f"failed: {e}")
            r["status"] = "failed"
            continue
        r["status"], r["results"] = "ran", res
    failed = [r for r in todo if r["status"] == "failed"]
    if failed:
        echo(f"{len(failed)} run(s) failed: " + "; ".join(describe(r) for r in failed))
    return rows


def collect(table: str | Table, profile: str = "full", seeds=SEEDS, methods=None,
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The finished results of a table, grouped for :func:`semibook.report.results_table`:
    ``by_labels`` maps each label count to ``{method: [results over seeds]}`` (methods without
    any finished run left out), ``ceiling`` holds the fully supervised runs, and ``missing``
    the entries without a finished results file of their exact config."""
    t = get_table(table)
    rows = plan(t, seeds, methods, profile, overrides)
    by_labels: dict[int, dict[str, list]] = {n: {} for n in t.labels}
    ceiling, missing = [], []
    for r in rows:
        e = r["entry"]
        if r["status"] != "done":
            missing.append(e)
        elif e.ceiling:
            ceiling.append(r["results"])
        else:
            by_labels[e.labels].setdefault(e.method, []).append(r["results"])
    return {"table": t, "profile": profile, "by_labels": by_labels, "ceiling": ceiling,
            "missing": missing, "runs": len(rows), "entries": [r["entry"] for r in rows]}
