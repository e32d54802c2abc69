"""Failure modes, read from the runs' own histories: the tuning sweep's trials of a method side
by side (its ablation), and each class's score over training.

The sweep (:mod:`semibook.tuning`) holds, for every method, its official value and the values
tried for the short schedule, each a real run scored on the validation images. A chapter
teaches what goes wrong with the official value by putting the two curves together, class by
class: a class whose score falls while the rest rise is the method confirming its own errors.
"""

from __future__ import annotations

from typing import Any

from .report import curve_shape


def metric_of(res: dict[str, Any]) -> str:
    return res.get("metric") or ("acc" if "acc" in res.get("last", {}) else "miou")


def last_score(res: dict[str, Any]) -> float:
    """A run's score at its last evaluation, in its own metric (a fraction, not a percent)."""
    return res["last"][metric_of(res)]


def curve(res: dict[str, Any], key: str | None = None) -> tuple[list[int], list[float]]:
    """(steps, values) of a run's evaluation curve for ``key`` (default: its metric), each
    point scored on the same images (:func:`semibook.engine.results.curve_value`)."""
    from .engine.results import curve_value
    key = key or metric_of(res)
    rows = [r for r in res["history"] if r.get("kind") == "eval" and key in r]
    return [r["step"] for r in rows], [curve_value(r, key) for r in rows]


def class_scores(res: dict[str, Any]) -> tuple[list[int], list[list[float]]]:
    """Each class's score at each evaluation: accuracy (``class_acc``, classification) or IoU
    (``iou``, segmentation). Returns (steps, per-class lists)."""
    key = "class_acc" if any("class_acc" in r for r in res["history"]) else "iou"
    rows = [r for r in res["history"] if r.get("kind") == "eval" and r.get(key)]
    steps = [r["step"] for r in rows]
    return steps, [list(v) for v in zip(*(r[key] for r in rows))]


def trials(task: str, method: str) -> dict[str, dict[str, Any]]:
    """The method's finished trials, by name, in the sweep's order."""
    from .tuning import SWEEPS, result
    out = {}
    for name in SWEEPS[task][method]:
        res = result(task, method, name)
        if res is not None:
            out[name] = res
    return out


def plot_trials(task: str, method: str, ax=None, baseline: bool = True):
    """Every trial of ``method``'s sweep: the validation score over training, the official
    trial dashed, the chosen one thick; with ``baseline``, the supervised baseline's chosen
    trial in grey. The legend sits under the axes."""
    import matplotlib.pyplot as plt
    from .tuning import choices, result
    from .viz import outside_legend
    ax = ax or plt.subplots(figsize=(6.4, 3.6))[1]
    runs = trials(task, method)
    pick = choices(task)
    for i, (name, res) in enumerate(runs.items()):
        steps, vals = curve(res)
        ax.plot(steps, [100 * v for v in vals], marker="o", ms=3, ls="--" if i == 0 else "-",
                lw=2.4 if pick.get(method) == name else 1.2, label=name)
    if baseline and pick.get("supervised"):
        steps, vals = curve(result(task, "supervised", pick["supervised"]))
        ax.plot(steps, [100 * v for v in vals], color="0.5", lw=1.2, ls=":",
                label=f"supervised: {pick['supervised']}")
    unit = "accuracy" if task == "classification" else "mIoU"
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {unit} (%)")
    ax.set_title(f"{method}: the sweep's trials", fontsize=10)
    outside_legend(ax, ncol=2)
    return ax


def plot_class_scores(runs: dict[str, dict[str, Any]], classes, ncols: int = 5,
                      title: str | None = None):
    """One small panel per class: that class's score over training in each run (``{label:
    results}``); a class that one run loses while the other keeps shows at a glance."""
    import math
    import matplotlib.pyplot as plt
    rows = math.ceil(len(classes) / ncols)
    # long labels (trial names) one a line under the panels, so the figure keeps its width
    lcols = 1 if max(len(str(k)) for k in runs) > 36 else min(len(runs), 3)
    lrows = math.ceil(len(runs) / lcols)
    fig, axes = plt.subplots(rows, ncols, figsize=(min(7.2, 1.4 * ncols + 0.2),
                                                   1.6 * rows + 0.6 + 0.25 * lrows),
                             sharex=True, sharey=True, squeeze=False)
    for label, res in runs.items():
        steps, per = class_scores(res)
        for c, ax in enumerate(axes.flat[:len(classes)]):
            ax.plot(steps, [100 * v for v in per[c]], lw=1.2, label=label)
    for c, ax in enumerate(axes.flat):
        if c >= len(classes):
            ax.set_visible(False)
            continue
        ax.set_title(str(classes[c]), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 100)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=lcols, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.25 * lrows / fig.get_figheight() + 0.02, 1, 1))
    return fig


def class_changes(a: dict[str, Any], b: dict[str, Any], classes) -> list[dict[str, Any]]:
    """Per class, the last score of run ``a`` and run ``b`` and b's gain over a, largest loss
    first."""
    (_, pa), (_, pb) = class_scores(a), class_scores(b)
    rows = [{"class": str(name), "a": pa[c][-1], "b": pb[c][-1], "gain": pb[c][-1] - pa[c][-1]}
            for c, name in enumerate(classes)]
    return sorted(rows, key=lambda r: r["gain"])


def describe_trial(name: str, res: dict[str, Any]) -> str:
    """One sentence on a trial's curve, computed from it: its last value, and its peak where it
    ended lower."""
    steps, vals = curve(res)
    c = curve_shape(steps, vals)
    text = f"{name}: {100 * c['last']:.1f} at step {c['last_step']}"
    if c["shape"] == "peaked":
        text += (f", after a peak of {100 * c['peak']:.1f} at step {c['peak_step']} "
                 f"({100 * c['fall']:.1f} points lost)")
    kept = kept_share(res)
    if kept is not None:
        text += (f"; its mask kept {100 * kept:.1f} % of the unlabeled pixels (mean over its "
                 f"last {KEPT_WINDOW:,} steps)")
    return text


# the train logs' share of unlabeled pixels that a method's confidence mask lets through
SHARE_KEYS = ("conf_share", "keep_share")
KEPT_WINDOW = 1000


def kept_share(res: dict[str, Any], window: int = KEPT_WINDOW,
               keys: tuple[str, ...] = SHARE_KEYS) -> float | None:
    """The mean share of unlabeled pixels a method's mask kept over the last ``window`` steps
    of its training log (the adversarial method's discriminator, Dual Teacher's and the
    dual-branch teacher's thresholds); None for a method that logs none."""
    rows = [r for r in res.get("history", []) if r.get("kind") == "train"]
    key = next((k for k in keys if any(k in r for r in rows)), None)
    if key is None:
        return None
    end = max(r["step"] for r in rows)
    vals = [r[key] for r in rows if key in r and r["step"] > end - window]
    return sum(vals) / len(vals) if vals else None


def describe_ablation(task: str, method: str, classes, official: str | None = None,
                      chosen: str | None = None) -> str:
    """The method's official trial against its chosen one, in words computed from the files:
    each curve's end (and peak), the gap, and the classes that moved most."""
    from .tuning import SWEEPS, choices
    runs = trials(task, method)
    official = official or next(iter(SWEEPS[task][method]))
    chosen = chosen or choices(task).get(method)
    if official not in runs or chosen not in runs:
        return f"{method}: its sweep has not finished."
    if official == chosen:
        return (f"{method}: the official value was the best of its sweep: "
                f"{describe_trial(official, runs[official])}.")
    a, b = runs[official], runs[chosen]
    gain = 100 * (curve(b)[1][-1] - curve(a)[1][-1])
    moved = [r for r in class_changes(a, b, classes) if abs(r["gain"]) >= 0.05]
    text = (f"{describe_trial(official, a)}; {describe_trial(chosen, b)}: "
            f"{gain:+.1f} points for the chosen value.")
    if moved:
        text += " By class (last evaluation, official then chosen): " + ", ".join(
            f"{r['class']} {100 * r['a']:.0f} -> {100 * r['b']:.0f}" for r in moved) + "."
    return text


def worst_collapse(runs: dict[str, dict[str, Any]], pair: str, classes) -> str | None:
    """The trial whose tracked classes collapsed most (:func:`semibook.tracking.
    collapsed_classes`: the largest sum of right-share points lost while agreement held), or
    None where no trial's class collapsed."""
    from .tracking import collapsed_classes
    lost = {name: sum(f["peak"] - f["last"] for f in collapsed_classes(res["history"], pair,
                                                                       classes))
            for name, res in runs.items()}
    worst = max(lost, key=lost.get, default=None)
    return worst if worst is not None and lost[worst] > 0 else None


def show_sweep(task: str, method: str, classes, pair: str | None = None) -> None:
    """A chapter's tuning section in one call: the method's trials (table and curves against
    the baseline), the ablation in words, and each trial's line (its end, peak and kept share;
    with ``pair``, the classes that collapsed in it). The per-class panels set the chosen trial
    against the trial whose classes collapsed most (``pair`` given and one did: the failure
    mode in our own curves), else against the official one where it lost."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display
    from .tracking import collapsed_classes, describe_collapse
    from .tuning import SWEEPS, choices, markdown
    display(Markdown(markdown(task, [method])))
    runs = trials(task, method)
    if not runs:
        print(f"{method}: no trial of its sweep has finished.")
        return
    plot_trials(task, method)
    plt.show()
    official, chosen = next(iter(SWEEPS[task][method])), choices(task).get(method)
    worst = worst_collapse(runs, pair, classes) if pair else None
    against = worst if worst and worst != chosen else official
    if chosen and chosen != against and against in runs:
        kind = "most collapsed" if against == worst else "official"
        plot_class_scores({f"{kind}: {against}": runs[against], f"chosen: {chosen}": runs[chosen]},
                          classes, title=f"{method}: each class's validation score over training")
        plt.show()
    print(describe_ablation(task, method, classes))
    base = trials(task, "supervised").get(choices(task).get("supervised"))
    if chosen in runs and base is not None and method != "supervised":
        lead = 100 * (last_score(runs[chosen]) - last_score(base))
        print(f"Its chosen trial against the supervised baseline's chosen trial, on the same "
              f"held-out images: {100 * last_score(runs[chosen]):.1f} against "
              f"{100 * last_score(base):.1f}, {abs(lead):.1f} points "
              f"{'ahead' if lead >= 0 else 'behind'}.")
    for name, res in runs.items():  # every trial's curve: where it ended, and what it lost
        line = "  " + describe_trial(name, res)
        if pair and collapsed_classes(res["history"], pair, classes):
            line += ". " + describe_collapse(res["history"], pair, classes, "it")
        print(line)


def sweep_leads(folder, task: str) -> dict[str, Any]:
    """A sweep read from the trial files under ``folder``/tuning (the book's, or an archive's
    at another split): each method's best last validation score over its trials (its choice)
    and its lead over the supervised baseline's choice. Returns ``labels`` (the split the
    trials trained on) and ``rows`` (method, trials, chosen trial, score, lead)."""
    from pathlib import Path

    from .engine.results import load_results
    from .tuning import DATASET, SWEEPS
    runs = [r for r in load_results(Path(folder) / "tuning", dataset=DATASET[task])
            if r.get("finished") and "trial" in r]
    by: dict[str, list] = {}
    for r in runs:
        by.setdefault(r["method"], []).append(r)
    best = {m: max(rs, key=last_score) for m, rs in by.items()}
    score = {m: last_score(r) for m, r in best.items()}
    base = score.get("supervised")
    rows = [{"method": m, "trials": len(by[m]), "chosen": best[m]["trial"], "last": score[m],
             "lead": None if base is None or m == "supervised" else score[m] - base}
            for m in SWEEPS[task] if m in by]
    return {"labels": sorted({r["labels"] for r in runs}), "rows": rows}


def sweep_leads_markdown(leads: dict[str, dict[str, Any]]) -> str:
    """Several :func:`sweep_leads` side by side (``{title: leads}``): each method's chosen
    validation score and its lead over supervised-only, one column pair per sweep."""
    titles = list(leads)
    methods = list(dict.fromkeys(r["method"] for v in leads.values() for r in v["rows"]))
    lines = ["| method | " + " | ".join(f"{t}: chosen | {t}: lead" for t in titles) + " |",
             "|---|" + "---|---|" * len(titles)]
    for m in methods:
        cells = []
        for t in titles:
            r = next((r for r in leads[t]["rows"] if r["method"] == m), None)
            cells += (["-", "-"] if r is None else
                      [f"{100 * r['last']:.1f}", "-" if r["lead"] is None
                       else f"{100 * r['lead']:+.1f}"])
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
