"""Hyper-parameters chosen honestly for the ``full`` profile's short schedule.

The protocol of Oliver et al. (2018), "Realistic evaluation of deep semi-supervised learning":

- every trial trains on the smallest split of its table at seed 0 and is scored on a validation
  set held out of the *training* images (``Config.validation``; the test set is never read);
- the supervised baseline gets as many trials as each method (a test holds the sweeps to it),
  over its own learning rate and schedule;
- each trial writes one results file under ``results/tuning/`` (config, history, validation
  scores, elapsed time), so the sweep is committed and tabled in the book; the chosen value is
  the trial with the best last validation score.

A trial is a set of overrides of the full profile (hyper-parameters under ``hparams``), named
in words. The first trial of every method is its official value as the full profile has it,
so the table shows whether that value transfers to a short schedule.

``python -m semibook tune classification`` runs what is missing (resuming interrupted trials).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .config import choose, make_config
from .paths import results_dir, runs_dir
from .sweeps import (CHOSEN, DATASET, LABELS, SWEEPS, VALIDATION, chosen_overrides,  # noqa: F401
                     merged)


def _slug(name: str) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(p for p in keep.split("-") if p)


def config(task: str, method: str, trial: str):
    """The trial's config: the full profile's recipe (before any tuning) at seed 0 on the
    table's smallest split, scored on the validation images, with the trial's overrides."""
    base = make_config(method, DATASET[task], LABELS[task], 0, "full", tuned=False)
    # every evaluation scores every validation image: the trials' curves are the evidence
    return make_config(method, DATASET[task], LABELS[task], 0, "full", tuned=False,
                       validation=VALIDATION[task], eval_subset=0,
                       **merged(base.hparams, SWEEPS[task][method][trial]))


def results_path(task: str, method: str, trial: str) -> Path:
    return results_dir() / "tuning" / f"{task}_{method}_{_slug(trial)}.json"


def result(task: str, method: str, trial: str) -> dict[str, Any] | None:
    """A finished trial's results file of exactly today's trial config, or None."""
    p = results_path(task, method, trial)
    if not p.exists():
        return None
    from .engine.results import read_results, same_config
    res = read_results(p)  # one line for a damaged file; another schema's: skipped, warned
    return res if res and res.get("finished") and same_config(res, config(task, method, trial)) \
        else None


def tune(task: str, methods=None, echo: Callable[[str], None] = print,
         progress: bool = False, allow_code_change: bool = False) -> None:
    """Run every missing trial of ``task`` (of ``methods`` only, when given; an interrupted
    trial resumes, across a change of the code only with ``allow_code_change``)."""
    from .engine.run import run_to_file
    for m in methods or ():  # a misspelt method would otherwise run nothing, silently
        choose("method", m, SWEEPS[task])
    for method, trials in SWEEPS[task].items():
        if methods and method not in methods:
            continue
        for trial in trials:
            if result(task, method, trial) is not None:
                echo(f"done     {method}: {trial}")
                continue
            run_dir = runs_dir() / "tuning" / task / method / _slug(trial)
            echo(f"training {method}: {trial}")
            run_to_file(config(task, method, trial), run_dir, results_path(task, method, trial),
                        {"trial": trial}, progress, allow_code_change)


def table(task: str) -> list[dict[str, Any]]:
    """One row per trial: method, trial, its validation score (last and best, None: not run),
    and whether it is the method's choice: the best last score, once every trial of the
    method has finished (a choice among some of the trials is none)."""
    rows = []
    for method, trials in SWEEPS[task].items():
        mine = []
        for trial in trials:
            res = result(task, method, trial)
            metric = res["metric"] if res else None
            mine.append({"method": method, "trial": trial, "official": trial == next(iter(trials)),
                         "last": res["last"][metric] if res else None,
                         "best": res["best"][metric] if res else None,
                         "elapsed_s": res["elapsed_s"] if res else None, "chosen": False})
        if all(r["last"] is not None for r in mine):
            max(mine, key=lambda r: r["last"])["chosen"] = True
        rows += mine
    return rows


def choices(task: str) -> dict[str, str]:
    """The trial each method's finished sweep chooses (methods with every trial finished)."""
    return {r["method"]: r["trial"] for r in table(task) if r["chosen"]}


def against_markdown(task: str) -> str:
    """:func:`against_supervised` as a table: the pilot before the long runs."""
    unit = "accuracy" if task == "classification" else "mIoU"
    lines = [f"| method | chosen trial | validation {unit} (%) | against supervised (points) |",
             "|---|---|---|---|"]
    for r in against_supervised(task):
        if r["gain"] is None:
            lines.append(f"| {r['method']} | not finished | - | - |")
        else:
            lines.append(f"| {r['method']} | {r['trial']} | {100 * r['last']:.1f} | "
                         f"{100 * r['gain']:+.1f} |")
    return "\n".join(lines)


def against_supervised(task: str) -> list[dict[str, Any]]:
    """Each method's chosen trial against the supervised baseline's chosen trial, on the
    validation images at seed 0: the pilot that says whether the method is ahead before the
    long runs. Rows of methods whose sweep (or the baseline's) is unfinished have None."""
    chosen = [r for r in table(task) if r["chosen"]]
    pick = {r["method"]: r["trial"] for r in chosen}
    score = {r["method"]: r["last"] for r in chosen}
    base = score.get("supervised")
    return [{"method": m, "trial": pick.get(m), "last": score.get(m),
             "gain": None if base is None or m not in score else score[m] - base}
            for m in SWEEPS[task] if m != "supervised"]


def markdown(task: str, methods=None) -> str:
    """The sweep as a table (of ``methods`` only, when given): each trial's validation score
    (%), the choice in bold (once the method's trials have all finished)."""
    lines = ["| method | trial | validation, last | validation, best | seconds |",
             "|---|---|---|---|---|"]
    pct = lambda v: "not run" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for r in table(task):
        if methods and r["method"] not in methods:
            continue
        name = f"**{r['trial']}** (chosen)" if r["chosen"] else r["trial"]
        secs = "-" if r["elapsed_s"] is None else f"{r['elapsed_s']:.0f}"
        lines.append(f"| {r['method']} | {name} | {pct(r['last'])} | {pct(r['best'])} | {secs} |")
    return "\n".join(lines)
