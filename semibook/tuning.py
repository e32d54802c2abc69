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

DATASET = {"classification": "fashion-mnist", "segmentation": "fashion-scenes"}
# the smallest split of each table, where the methods must show their effect
LABELS = {"classification": 40, "segmentation": 20}
# training images held out for validation: 500 a class, and 500 scenes
VALIDATION = {"classification": 5000, "segmentation": 500}

_hp = lambda **kw: {"hparams": kw}  # noqa: E731


def _burn_ins(last: str, **last_hp: Any) -> dict[str, dict[str, Any]]:
    """A pseudo-label method's trials: none (the official code starts its unlabeled term at
    step 0, from a pretrained encoder), burn-ins of 500 and 1,000 steps (a sixth and a third of
    the run: supervised training on 20 scenes has reached its plateau by step 500), and one
    more."""
    return {"no burn-in (official)": {}, "burn-in 500": _hp(burn_in=500),
            "burn-in 1,000": _hp(burn_in=1000), last: _hp(**last_hp)}

# Per task and method: trial name -> overrides. The first trial is the profile's value.
SWEEPS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "classification": {
        # the baseline's own recipes: MixMatch's optimisation (Adam 0.002, constant), with a
        # cosine decay at two rates, and Mean Teacher's (Adam 0.003, ramp-up and ramp-down)
        "supervised": {
            "Adam 0.002, constant (MixMatch's)": {},
            "Adam 0.002, cosine decay": dict(lr_schedule="cosine"),
            "Adam 0.004, cosine decay": dict(lr=0.004, lr_schedule="cosine"),
            "Adam 0.003, Mean Teacher's schedule": dict(
                lr=0.003, lr_schedule="mean_teacher", decoupled_wd=0.0,
                hparams=dict(rampup_frac=40 / 150, rampdown_frac=25 / 150)),
        },
        "mixmatch": {
            # the official ramp-up: 1/64 of training (16,384 of its 2^20 steps), constant lr
            "ramp-up 1/64 of training (official)": {},
            "ramp-up 1,500 steps, cosine decay": dict(lr_schedule="cosine",
                                                      **_hp(rampup_steps=1500)),
            "ramp-up 1,500 steps, cosine, lambda_u 25": dict(
                lr_schedule="cosine", **_hp(rampup_steps=1500, lambda_u=25.0)),
            "ramp-up 3,000 steps, cosine decay": dict(lr_schedule="cosine",
                                                      **_hp(rampup_steps=3000)),
        },
        "mean_teacher": {
            "ramp-up 40/150 of training (official)": {},
            "ramp-up 1,000 steps": _hp(rampup_steps=1000),
            "ramp-up 1,000 steps, consistency 30": _hp(rampup_steps=1000, consistency=30.0),
            "ramp-up 1,000 steps, burn-in 300": _hp(rampup_steps=1000, burn_in=300),
        },
    },
    "segmentation": {
        "supervised": {
            "Adam 3e-3, poly (the profile's)": {},
            "Adam 1e-3, poly": dict(lr=1e-3),
            "Adam 6e-3, poly": dict(lr=6e-3),
            "Adam 3e-3, constant": dict(lr_schedule="constant"),
        },
        "mean_teacher": _burn_ins("burn-in 500, ramp-up 500", burn_in=500, rampup_steps=500),
        "adversarial": {
            "semi term from 1/4 of training (official)": {},
            "semi term from step 500": _hp(semi_start=500),
            "burn-in 500": _hp(burn_in=500, semi_start=500),
            "burn-in 500, T_semi 0.1": _hp(burn_in=500, semi_start=500, T_semi=0.1),
        },
        "cps": _burn_ins("burn-in 500, lambda_cps 0.5", burn_in=500, lambda_cps=0.5),
        "cps_cutmix": _burn_ins("burn-in 500, lambda_cps 0.5", burn_in=500, lambda_cps=0.5),
        "dual_teacher": _burn_ins("burn-in 500, tau 0.9", burn_in=500, tau=0.9),
        "soft_teacher": _burn_ins("burn-in 1,000, tau 0.7", burn_in=1000, tau=0.7),
        "dual_branch": {
            "lambda_weak 1 (ours)": {},
            "lambda_weak 0.5": _hp(lambda_weak=0.5),
            "lambda_weak 2": _hp(lambda_weak=2.0),
            "lambda_weak 0.25": _hp(lambda_weak=0.25),
        },
        "dual_branch_teacher": _burn_ins("burn-in 1,000, tau 0.7", burn_in=1000, tau=0.7),
    },
}


def _slug(name: str) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(p for p in keep.split("-") if p)


# The trial the sweep chose for each method (the best last validation score; a test holds
# these names to the committed results files). The ``full`` profile applies the chosen trial's
# overrides on the task's embedded dataset (:func:`chosen_overrides`); a method not listed
# keeps its recipe.
CHOSEN: dict[str, dict[str, str]] = {
    "classification": {},
    "segmentation": {},
}


def merged(base_hparams: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A trial's overrides on a config whose hyper-parameters are ``base_hparams``: its
    hparams merged into those, its other fields as they are."""
    over = dict(over)
    return {**over, "hparams": {**base_hparams, **over.pop("hparams", {})}}


def chosen_overrides(task: str, method: str) -> dict[str, Any]:
    """The overrides of the trial chosen for ``method`` (empty where none is chosen)."""
    trial = CHOSEN.get(task, {}).get(method)
    return dict(SWEEPS[task][method][trial]) if trial else {}


def config(task: str, method: str, trial: str):
    """The trial's config: the full profile's recipe (before any tuning) at seed 0 on the
    table's smallest split, scored on the validation images, with the trial's overrides."""
    base = make_config(method, DATASET[task], LABELS[task], 0, "full", tuned=False)
    return make_config(method, DATASET[task], LABELS[task], 0, "full", tuned=False,
                       validation=VALIDATION[task],
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
         progress: bool = False) -> None:
    """Run every missing trial of ``task`` (of ``methods`` only, when given)."""
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
                        {"trial": trial}, progress)


def table(task: str) -> list[dict[str, Any]]:
    """One row per trial: method, trial, its validation score (last and best, None: not run),
    and whether it is the method's choice (the best last score among its finished trials)."""
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
        done = [r for r in mine if r["last"] is not None]
        if done:
            max(done, key=lambda r: r["last"])["chosen"] = True
        rows += mine
    return rows


def choices(task: str) -> dict[str, str]:
    """The trial each method's finished sweep chooses (methods with every trial finished)."""
    rows = table(task)
    done = {m for m in SWEEPS[task]
            if all(r["last"] is not None for r in rows if r["method"] == m)}
    return {r["method"]: r["trial"] for r in rows if r["chosen"] and r["method"] in done}


def against_supervised(task: str) -> list[dict[str, Any]]:
    """Each method's chosen trial against the supervised baseline's chosen trial, on the
    validation images at seed 0: the pilot that says whether the method is ahead before the
    long runs. Rows of methods whose sweep (or the baseline's) is unfinished have None."""
    rows, pick = table(task), choices(task)
    score = {r["method"]: r["last"] for r in rows if r["chosen"] and r["method"] in pick}
    base = score.get("supervised")
    return [{"method": m, "trial": pick.get(m), "last": score.get(m),
             "gain": None if base is None or m not in score else score[m] - base}
            for m in SWEEPS[task] if m != "supervised"]


def markdown(task: str) -> str:
    """The sweep as a table: each trial's validation score (%), the choice in bold."""
    lines = ["| method | trial | validation, last | validation, best | seconds |",
             "|---|---|---|---|---|"]
    pct = lambda v: "not run" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for r in table(task):
        name = f"**{r['trial']}** (chosen)" if r["chosen"] else r["trial"]
        secs = "-" if r["elapsed_s"] is None else f"{r['elapsed_s']:.0f}"
        lines.append(f"| {r['method']} | {name} | {pct(r['last'])} | {pct(r['best'])} | {secs} |")
    return "\n".join(lines)
