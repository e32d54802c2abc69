"""Calibration of the ``full`` profile: candidate sizes, each tried at one seed.

The ``full`` profile is what the book reports, and it must fit the machine the project always
has: a 2-core CPU, the whole benchmark in at most 5 hours of wall time with two runs at a time,
no run over 15 minutes. Each candidate here is a set of overrides of the profile (model, steps,
batch sizes, evaluation); for each, three runs at seed 0 tell whether it leaves room for the
methods to show their effect: supervised-only at the smallest split, one semi-supervised method
at that split, and supervised training with every label (the ceiling).

``python -m semibook calibrate segmentation`` runs what is missing and writes one results file
per run under ``results/calibration/`` (the same format as every results file: config, commit,
device, versions, elapsed time). Chapter 6 tables them; the chosen candidate is the profile in
:mod:`semibook.config`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from .config import choose, make_config
from .paths import results_dir, runs_dir

# Candidates per task: name -> overrides of the full profile, each naming every value that the
# candidates vary (so a candidate stays what it was when the profile changes). The
# semi-supervised method tried is the task's strongest by its papers (MixMatch; CPS with CutMix).
CANDIDATES: dict[str, dict[str, dict[str, Any]]] = {
    "classification": {
        # the papers' averaging: batch-norm momentum 0.001, weight EMA 0.999
        "wrn-10-1, 3000 steps, 32+32": dict(arch="wrn-10-1", steps=3000, batch_l=32,
                                            batch_u=32, eval_every=500, bn_momentum=0.001,
                                            ema_decay=0.999),
        # the same with batch norm and the weight EMA averaging over about 100 steps, not 1000
        "wrn-10-1, 3000 steps, 32+32, BN/EMA 0.99": dict(
            arch="wrn-10-1", steps=3000, batch_l=32, batch_u=32, eval_every=500,
            bn_momentum=0.01, ema_decay=0.99),
    },
    "segmentation": {
        "unet-mnv3s, 2000 steps, 8+8": dict(arch="unet-mnv3s", steps=2000, batch_l=8,
                                            batch_u=8, eval_every=250, eval_batch=128,
                                            lr=1e-3, crop_size=0),
        "unet-r10t, 1500 steps, 8+8": dict(arch="unet-r10t", steps=1500, batch_l=8,
                                           batch_u=8, eval_every=250, eval_batch=128, lr=1e-3,
                                           crop_size=0),
        "unet-r10t, 1500 steps, 8+8, lr 3e-3": dict(arch="unet-r10t", steps=1500, batch_l=8,
                                                    batch_u=8, eval_every=250, eval_batch=128,
                                                    lr=3e-3, crop_size=0),
        # the same, shortened: at 1,500 (and 1,200) steps a CPS run was on course to pass 15
        # minutes with two runs at a time
        "unet-r10t, 1000 steps, 8+8, lr 3e-3": dict(arch="unet-r10t", steps=1000, batch_l=8,
                                                    batch_u=8, eval_every=200, eval_batch=32,
                                                    lr=3e-3, crop_size=0),
        # training on 48 x 48 crops of the 64 x 64 scenes (evaluation stays on whole scenes):
        # a step costs about 0.6 of a whole-scene step, so 1,800 steps cost what 1,000 did
        "unet-r10t, 1800 steps, 8+8 crops of 48, lr 3e-3": dict(
            arch="unet-r10t", steps=1800, batch_l=8, batch_u=8, crop_size=48, eval_every=300,
            eval_batch=32, lr=3e-3),
    },
}

DATASET = {"classification": "fashion-mnist", "segmentation": "fashion-scenes"}
SEMI_METHOD = {"classification": "mixmatch", "segmentation": "cps_cutmix"}


# The split every candidate was tried at (the benchmark's tables may since have changed theirs).
LABELS = {"classification": 250, "segmentation": 50}


def runs(task: str) -> list[tuple[str, int]]:
    """(method, labels) of a candidate's three runs: supervised and the semi-supervised method
    at the calibration's split, and the fully supervised ceiling."""
    from .reproduce import TABLES
    n = LABELS[task]
    return [("supervised", n), (SEMI_METHOD[task], n), ("supervised", TABLES[task].ceiling_labels)]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")


def results_path(task: str, candidate: str, method: str, labels: int) -> Path:
    return results_dir() / "calibration" / f"{task}_{_slug(candidate)}_{method}_{labels}.json"


def config(task: str, candidate: str, method: str, labels: int):
    return make_config(method, DATASET[task], labels, 0, "full", **CANDIDATES[task][candidate])


def calibrate(task: str, candidates=None, methods=None, echo: Callable[[str], None] = print,
              progress: bool = False) -> None:
    """Run every missing calibration run of ``task`` (resuming interrupted ones); ``methods``
    keeps only the runs of those methods."""
    from .engine.run import run_to_file

    for c in candidates or ():
        choose("candidate", c, CANDIDATES[task])
    for m in methods or ():
        choose("method", m, sorted({m for m, _ in runs(task)}))
    for cand in candidates or CANDIDATES[task]:
        for method, labels in runs(task):
            if methods and method not in methods:
                continue
            out = results_path(task, cand, method, labels)
            if result(task, cand, method, labels) is not None:
                echo(f"done     {cand}: {method} {labels}")
                continue
            run_dir = runs_dir() / "calibration" / task / _slug(cand) / f"{method}-{labels}"
            echo(f"{'resuming' if (run_dir / 'checkpoint.pt').exists() else 'training'} "
                 f"{cand}: {method} {labels}")
            run_to_file(config(task, cand, method, labels), run_dir, out, {"candidate": cand},
                        progress)


def result(task: str, candidate: str, method: str, labels: int) -> dict[str, Any] | None:
    """A calibration run's results: its file under ``results/calibration/``, or, for the
    candidate that the full profile now is, the benchmark's own results file of the same
    config (so the chosen candidate's seed-0 runs are not trained twice). None: not run."""
    from .engine.results import finished_results, read_results
    p = results_path(task, candidate, method, labels)
    if p.exists():  # a file of another schema is skipped (with a warning): not run
        return read_results(p)
    return finished_results(config(task, candidate, method, labels))


def table(task: str) -> list[dict[str, Any]]:
    """One row per candidate: its model, steps and batch, the seconds of each run, and the
    best metric of supervised, the semi-supervised method and the ceiling (None: not run)."""
    rows = []
    for cand, over in CANDIDATES[task].items():
        row: dict[str, Any] = {"candidate": cand, **{k: over.get(k) for k in
                                                     ("arch", "steps", "batch_l", "batch_u")}}
        for role, (method, labels) in zip(("supervised", "semi", "ceiling"), runs(task)):
            row[role] = result(task, cand, method, labels)
        rows.append(row)
    return rows


def _pct(res: dict[str, Any] | None) -> str:
    return "not run" if res is None else f"{100 * res['best'][res['metric']]:.1f}"


def markdown(task: str, chosen: str | None = None) -> str:
    """The calibration table of ``task`` from its results files: per candidate the cost of each
    run (elapsed seconds, evaluations included), the best metric (%) of supervised-only and of
    the semi-supervised method at the smallest split and of the ceiling, and the gap from
    supervised to the ceiling. ``chosen`` marks the candidate the full profile uses."""
    (_, n), semi = runs(task)[0], SEMI_METHOD[task]
    metric = "accuracy" if task == "classification" else "mIoU"
    lines = [f"| candidate | seconds per run (supervised / {semi} / ceiling) | supervised, {n} "
             f"labels | {semi}, {n} labels | fully supervised | gap to the ceiling |",
             "|---|---|---|---|---|---|"]
    for row in table(task):
        secs = " / ".join("-" if row[k] is None else f"{row[k]['elapsed_s']:.0f}"
                          for k in ("supervised", "semi", "ceiling"))
        gap = "-"
        if row["supervised"] and row["ceiling"]:
            m = row["ceiling"]["metric"]
            gap = (f"{100 * (row['ceiling']['best'][m] - row['supervised']['best'][m]):+.1f} "
                   f"pts")
        name = row["candidate"] + (" **(chosen)**" if row["candidate"] == chosen else "")
        lines.append(f"| {name} | {secs} | {_pct(row['supervised'])} | {_pct(row['semi'])} | "
                     f"{_pct(row['ceiling'])} | {gap} |")
    lines.append(f"\nBest {metric} (%) over the run, seed 0, read from `results/calibration/` (for the "
                 f"candidate that the full profile is, from the benchmark's own results files).")
    return "\n".join(lines)
