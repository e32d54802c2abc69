"""Calibration of the ``full`` profile: candidate tasks and sizes, each tried at one seed.

The ``full`` profile is what the book reports. It must fit the machine the project always has
(a 2-core CPU: no run over 15 minutes, the whole benchmark in about 12 core-hours) and leave the
methods room to show their effect: supervised training with every label (the ceiling) at least
90 % on Fashion-MNIST and 60 mIoU on fashion-scenes, and supervised-only training at the
smallest split at least 20 points below. Each candidate is a set of overrides of the profile
(dataset variant, model, steps, schedule); for each, two runs at seed 0 measure that room:
supervised-only at the smallest split and the ceiling. Both are scored on the validation
images held out of the training set (``Config.validation``), never on the test set.

``python -m semibook calibrate segmentation`` runs what is missing and writes one results file
per run under ``results/calibration/`` (the same format as every results file: config, commit,
device, versions, elapsed time). Chapter 6 tables them; the chosen candidate is the profile in
:mod:`semibook.config`. The calibration of the first profile (eleven-class scenes, a WRN-10-1)
is archived with its results in ``results/v1-profile/calibration/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .config import choose, make_config
from .diagnosis import last_score
from .paths import results_dir, runs_dir
from .tuning import LABELS, VALIDATION

# Candidates per task: name -> overrides of the full profile, each naming every value that the
# candidates vary (so a candidate stays what it was when the profile changes).
_CLS = dict(steps=3000, batch_l=32, batch_u=32, eval_every=500, lr_schedule="cosine")
_SEG = dict(batch_l=8, batch_u=8, crop_size=48, eval_every=500, lr=3e-3)
CANDIDATES: dict[str, dict[str, dict[str, Any]]] = {
    "classification": {
        # the first profile's network: 87.5 % with every label, too little room above
        "wrn-10-1, 3000 steps, 32+32, cosine": dict(arch="wrn-10-1", **_CLS),
        "wrn-16-1, 3000 steps, 32+32, cosine": dict(arch="wrn-16-1", **_CLS),
        # the same network trained half as long again: the 3,000-step ceiling met 90 % on the
        # validation images by 0.4 points and reached 89.1 % on the test set, still rising
        "wrn-16-1, 4500 steps, 32+32, cosine": dict(arch="wrn-16-1", **{**_CLS, "steps": 4500}),
    },
    "segmentation": {
        # the first profile's scenes: eleven classes, two to four items of 22 to 45 pixels
        "eleven classes, 3000 steps": dict(dataset="fashion-scenes-v1", steps=3000, **_SEG),
        # five classes, one to three items of 34 to 56 pixels (semibook.data.scenes.V2)
        "five classes, 1800 steps": dict(dataset="fashion-scenes", steps=1800, **_SEG),
        "five classes, 3000 steps": dict(dataset="fashion-scenes", steps=3000, **_SEG),
        "five classes, 4000 steps": dict(dataset="fashion-scenes", steps=4000, **_SEG),
    },
}

DATASET = {"classification": "fashion-mnist", "segmentation": "fashion-scenes"}


def runs(task: str) -> list[tuple[str, int]]:
    """(method, labels) of a candidate's two runs: supervised at the smallest split, and with
    every label that the validation set leaves (the ceiling)."""
    from .reproduce import TABLES
    n = LABELS[task]
    return [("supervised", n), ("supervised", TABLES[task].ceiling_labels - VALIDATION[task])]


# the fields a candidate chooses; the schedule and the methods' values are the sweep's
SIZES = ("dataset", "arch", "steps", "batch_l", "batch_u", "crop_size", "validation")


def chosen(task: str) -> str | None:
    """The candidate whose sizes the full profile has (None: none has them)."""
    method, labels = runs(task)[0]
    want = make_config(method, DATASET[task], labels, 0, "full",
                       validation=VALIDATION[task]).to_dict()
    return next((c for c in CANDIDATES[task] if all(
        config(task, c, method, labels).to_dict()[k] == want[k] for k in SIZES)), None)


def room(task: str) -> list[dict[str, Any]]:
    """Per candidate with both runs finished: the ceiling and the smallest split's last
    validation score, the points between them, and whether the ceiling reaches the target
    (:data:`CEILING`) and the room :data:`ROOM` points."""
    out = []
    for row in table(task):
        if row["supervised"] and row["ceiling"]:
            m = row["ceiling"]["metric"]
            top, low = row["ceiling"]["last"][m], row["supervised"]["last"][m]
            out.append({"candidate": row["candidate"], "ceiling": top, "smallest": low,
                        "room": top - low, "ceiling_met": top >= CEILING[task],
                        "room_met": top - low >= ROOM, "seconds": row["ceiling"]["elapsed_s"]})
    return out


# what a candidate must leave the methods: the ceiling, and the points below it at the
# smallest split
CEILING = {"classification": 0.90, "segmentation": 0.60}
ROOM = 0.20


def test_room(got: dict[str, Any], task: str) -> str | None:
    """The same two targets read on the benchmark's own runs, on the test set: its ceiling
    (the mean over seeds of the fully supervised runs) and its room above supervised-only
    training at the table's smallest split; None until both have finished runs."""
    import statistics
    n = min(got["table"].labels)
    sup = got["by_labels"].get(n, {}).get("supervised", [])
    if not got["ceiling"] or not sup:
        return None
    mean = lambda rs: statistics.fmean(last_score(r) for r in rs)  # noqa: E731
    top, room = mean(got["ceiling"]), mean(got["ceiling"]) - mean(sup)
    unit = "%" if task == "classification" else " mIoU"
    return (f"{task}, the benchmark's runs on the test set: ceiling {100 * top:.1f}{unit} over "
            f"{len(got['ceiling'])} seeds (target {100 * CEILING[task]:.0f}: "
            f"{'met' if top >= CEILING[task] else 'NOT met'}), {100 * room:.1f} points above "
            f"supervised-only at {n} labels over {len(sup)} seeds (target {100 * ROOM:.0f}: "
            f"{'met' if room >= ROOM else 'NOT met'})")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")


def results_path(task: str, candidate: str, method: str, labels: int) -> Path:
    return results_dir() / "calibration" / f"{task}_{_slug(candidate)}_{method}_{labels}.json"


def config(task: str, candidate: str, method: str, labels: int):
    over = dict(CANDIDATES[task][candidate])
    # the recipe before the sweep's choice: the calibration chose the sizes first
    return make_config(method, over.pop("dataset", DATASET[task]), labels, 0, "full",
                       tuned=False, validation=VALIDATION[task], eval_subset=0, **over)


def calibrate(task: str, candidates=None, methods=None, echo: Callable[[str], None] = print,
              progress: bool = False, allow_code_change: bool = False) -> None:
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
                        progress, allow_code_change)


def result(task: str, candidate: str, method: str, labels: int) -> dict[str, Any] | None:
    """A calibration run's results file under ``results/calibration/`` (None: not run)."""
    from .engine.results import read_results
    p = results_path(task, candidate, method, labels)
    return read_results(p) if p.exists() else None  # another schema's: skipped, warned


def table(task: str) -> list[dict[str, Any]]:
    """One row per candidate: its dataset, model, steps and batch, and the results of the
    supervised run at the smallest split and of the ceiling (None: not run)."""
    rows = []
    for cand, over in CANDIDATES[task].items():
        row: dict[str, Any] = {"candidate": cand, **{k: over.get(k) for k in
                                                     ("arch", "steps", "batch_l", "batch_u")},
                               "dataset": over.get("dataset", DATASET[task])}
        for role, (method, labels) in zip(("supervised", "ceiling"), runs(task)):
            row[role] = result(task, cand, method, labels)
        rows.append(row)
    return rows


def _pct(res: dict[str, Any] | None) -> str:
    return "not run" if res is None else f"{100 * res['last'][res['metric']]:.1f}"


def markdown(task: str, chosen: str | None = None) -> str:
    """The calibration table of ``task`` from its results files: per candidate the seconds of
    each run (evaluations included), the last validation score (%) of supervised-only at the
    smallest split and of the ceiling, and the room between them. ``chosen`` marks the
    candidate the full profile uses."""
    (_, n), (_, full) = runs(task)
    metric = "accuracy" if task == "classification" else "mIoU"
    lines = [f"| candidate | seconds (supervised / ceiling) | supervised, {n} labels | "
             f"every label ({full}) | room |", "|---|---|---|---|---|"]
    for row in table(task):
        secs = " / ".join("-" if row[k] is None else f"{row[k]['elapsed_s']:.0f}"
                          for k in ("supervised", "ceiling"))
        gap = "-"
        if row["supervised"] and row["ceiling"]:
            m = row["ceiling"]["metric"]
            gap = (f"{100 * (row['ceiling']['last'][m] - row['supervised']['last'][m]):+.1f} "
                   f"pts")
        name = row["candidate"] + (" **(chosen)**" if row["candidate"] == chosen else "")
        lines.append(f"| {name} | {secs} | {_pct(row['supervised'])} | {_pct(row['ceiling'])} | "
                     f"{gap} |")
    lines.append(f"\nLast validation {metric} (%), seed 0, on training images held out of "
                 f"training; read from `results/calibration/`.")
    return "\n".join(lines)
