"""The hyper-parameter sweeps of the ``full`` profile, as data: the trials of every method, and
the trial each sweep chose (:mod:`semibook.tuning` runs and tables them; :mod:`semibook.config`
applies the choice). Nothing here imports the rest of the package.
"""

from __future__ import annotations

from typing import Any

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
            # a second round, one trial for every method: the baseline's learning rate one
            # step further, and the baseline's best optimisation (Adam 0.004, cosine decay)
            # carried over to each method's official values
            "Adam 0.008, cosine decay": dict(lr=0.008, lr_schedule="cosine"),
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
            "official values, Adam 0.004, cosine decay": dict(lr=0.004, lr_schedule="cosine"),
        },
        "mean_teacher": {
            "ramp-up 40/150 of training (official)": {},
            "ramp-up 1,000 steps": _hp(rampup_steps=1000),
            "ramp-up 1,000 steps, consistency 30": _hp(rampup_steps=1000, consistency=30.0),
            "ramp-up 1,000 steps, burn-in 300": _hp(rampup_steps=1000, burn_in=300),
            "official values, Adam 0.004, cosine decay": dict(lr=0.004, lr_schedule="cosine"),
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


# The trial the sweep chose for each method (the best last validation score; a test holds
# these names to the committed results files). The ``full`` profile applies the chosen trial's
# overrides on the task's embedded dataset (:func:`chosen_overrides`); a method not listed
# keeps its recipe.
CHOSEN: dict[str, dict[str, str]] = {
    # at 40 labels; the same trials at 100 labels are archived in results/v2-100-labels/
    "classification": {
        "supervised": "Adam 0.004, cosine decay",
        "mixmatch": "official values, Adam 0.004, cosine decay",
        "mean_teacher": "ramp-up 1,000 steps, burn-in 300",
    },
    "segmentation": {
        "supervised": "Adam 6e-3, poly",
        "mean_teacher": "no burn-in (official)",
        "adversarial": "semi term from 1/4 of training (official)",
        "cps": "no burn-in (official)",
        "cps_cutmix": "no burn-in (official)",
        "dual_teacher": "no burn-in (official)",
        "soft_teacher": "burn-in 1,000, tau 0.7",
        "dual_branch": "lambda_weak 2",
        "dual_branch_teacher": "burn-in 500",
    },
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


