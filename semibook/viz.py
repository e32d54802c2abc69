"""Plots for the chapters (matplotlib only): curves, stacked agreement shares and bars. The
label maps, prediction grids, confidence maps and diagrams are in :mod:`semibook.pictures`."""

from __future__ import annotations


def set_style() -> None:
    import matplotlib as mpl
    mpl.rcParams.update({"figure.figsize": (6.4, 3.6), "figure.dpi": 100, "axes.grid": True,
                         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
                         "font.size": 10})


def curve_points(run: dict, key: str) -> tuple[dict[int, float], dict[int, float]]:
    """A run's points of ``key`` (in %): the line, each point scored on the same images (a run
    evaluated on a fixed subset: the intermediate points, and the last one's subset score where
    the run kept it), and the evaluations on every test image (with a subset: the last one)."""
    line, whole = {}, {}
    for r in run["history"]:
        if r["kind"] != "eval" or key not in r:
            continue
        if any(k.startswith("subset_") for k in r):  # scored on every image; subset kept
            whole[r["step"]] = 100 * r[key]
            if f"subset_{key}" in r:
                line[r["step"]] = 100 * r[f"subset_{key}"]
        else:
            line[r["step"]] = 100 * r[key]
    return line, whole


def plot_accuracy(results: dict, ax=None, key: str = "acc"):
    """A test metric over training for several runs: ``{label: results}`` or ``{label:
    [results over seeds]}`` (then the mean over the seeds, with a band of ± one standard
    deviation); ``key`` is ``acc`` (classification), ``miou`` (segmentation) or one of their
    ``_<model>`` variants. The line's points are scored on the same images (a run evaluated on a
    fixed subset: the subset); a hollow diamond marks the last evaluation on every test image,
    the score its table reports. The legend sits under the axes, off the lines."""
    import matplotlib.pyplot as plt
    import numpy as np

    ax = ax or plt.subplots()[1]
    counts = {1 if isinstance(r, dict) else len(r) for r in results.values()}
    same = len(counts) == 1 and counts != {1}  # every entry over the same number of seeds
    diamonds = False
    for label, res in results.items():
        runs = [res] if isinstance(res, dict) else list(res)
        points = [curve_points(run, key) for run in runs]
        steps = sorted(set.intersection(*(set(line) for line, _ in points)))
        vals = np.array([[line[s] for s in steps] for line, _ in points])
        name = label if len(runs) == 1 or same else f"{label} (mean of {len(runs)} seeds)"
        line, = ax.plot(steps, vals.mean(0), marker="o", ms=3, label=name)
        if len(runs) > 1:
            sd = vals.std(0, ddof=1)
            ax.fill_between(steps, vals.mean(0) - sd, vals.mean(0) + sd, alpha=0.15,
                            color=line.get_color(), lw=0)
        ends = sorted(set.intersection(*(set(whole) for _, whole in points)))
        if ends:
            diamonds = True
            ax.plot(ends, [np.mean([whole[s] for _, whole in points]) for s in ends], "D",
                    ms=6, mfc="none", color=line.get_color())
    ax.set_xlabel("training step")
    ax.set_ylabel("test mIoU (%)" if key.startswith("miou") else "test accuracy (%)")
    proxy = "last, on every test image"
    if diamonds and proxy not in ax.get_legend_handles_labels()[1]:  # one entry for them all
        ax.plot([], [], "D", ms=6, mfc="none", color="0.3", label=proxy)
    n = next(iter(counts))
    outside_legend(ax, title=f"mean of {n} seeds, band ± 1 standard deviation" if same else None)
    return ax


def outside_legend(ax, ncol: int | None = None, title: str | None = None):
    """The axes' legend under the plot, in columns, where it covers no line."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    ncol = ncol or min(3 if max(len(t) for t in labels) < 28 else 2, len(labels))
    return ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                     ncol=ncol, fontsize=8, frameon=False, title=title, title_fontsize=8)


def plot_agreement(history: list[dict], pair: str, ax=None, title: str | None = None,
                   labels=("agree, correct", "agree, wrong", "disagree"),
                   background: int | None = None):
    """Stacked shares over training: agree & correct, agree & wrong, disagree (for a confident
    mask: kept & correct, kept & wrong, dropped); with ``background`` on the item pixels
    alone. The legend sits under the axes."""
    import matplotlib.pyplot as plt

    from .tracking import agreement_curves
    c = agreement_curves(history, pair, background)
    ax = ax or plt.subplots()[1]
    ax.stackplot(c["step"], [100 * v for v in c["agree_correct"]],
                 [100 * v for v in c["agree_wrong"]], [100 * v for v in c["disagree"]],
                 labels=list(labels),
                 colors=["#4c9f70", "#d9a441", "#c8553d"], alpha=0.85)
    ax.set_xlabel("training step")
    pixels = any("miou" in r for r in history if r.get("kind") == "eval")
    what = "item pixels" if background is not None else ("pixels" if pixels else "images")
    ax.set_ylabel(f"share of unlabeled {what} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or pair, fontsize=9)
    outside_legend(ax)
    return ax


def plot_agreement_split(history: list[dict], pair: str, title: str | None = None,
                         labels=("agree, correct", "agree, wrong", "disagree"),
                         background: int = 0, ymax: float | None = None):
    """Two panels of :func:`plot_agreement` for a segmentation run: the item pixels first,
    then all pixels (background included, which dominates their count). ``ymax`` (%): the
    axes stop there, to show thin lower bands (a confident mask that keeps a few percent); the
    top band then runs off the axes, and the y label says so."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.2), sharey=True)
    plot_agreement(history, pair, axes[0], "item pixels", labels, background)
    plot_agreement(history, pair, axes[1], "all pixels (background included)", labels)
    axes[0].set_ylabel("share of tracked unlabeled pixels (%)"
                       + (f"\n(axis cut at {ymax:g}%)" if ymax else ""))
    if ymax:
        axes[0].set_ylim(0, ymax)
    axes[1].set_ylabel("")
    axes[0].get_legend().remove()
    axes[1].get_legend().remove()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8,
               frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_guess_accuracy(results: dict[str, dict], ax=None, title: str | None = None):
    """Guessed-label accuracy on the unlabeled images over training (the ``guess_acc`` that
    MixMatch and Mean Teacher log), one line per run, beside the evaluated model's test
    accuracy (markers)."""
    import matplotlib.pyplot as plt

    from .tracking import guess_curve
    ax = ax or plt.subplots()[1]
    for i, (name, res) in enumerate(results.items()):
        c = guess_curve(res["history"])
        line, = ax.plot(c["step"], [100 * v for v in c["guess_acc"]], lw=1.2,
                        label=f"{name}: guessed labels (unlabeled batch)", color=f"C{i}")
        ev = [r for r in res["history"] if r.get("kind") == "eval" and "acc" in r]
        ax.plot([r["step"] for r in ev], [100 * r["acc"] for r in ev], "o--",
                color=line.get_color(), label=f"{name}: test accuracy")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Guessed labels against the hidden labels")
    outside_legend(ax, ncol=1)
    return ax


# the stacked shares' names for a tracked pair whose "agreement" is a confident mask (the
# adversarial method's: kept pseudo labels against all of them)
PAIR_LABELS = {"confident-mask": ("kept, correct", "kept, wrong", "dropped")}
AGREE_LABELS = ("agree, correct", "agree, wrong", "disagree")


def agreement_grid(runs: dict[str, dict], ncols: int = 3, background: int | None = None,
                   title: str | None = None):
    """One small :func:`plot_agreement` panel per run (``{name: results}``, each run's first
    tracked pair; with ``background``, on the item pixels), in a grid of ``ncols`` columns
    that fits the book's column. One legend for every panel: a confident mask's bands (kept /
    dropped) are named in it beside the agreement bands they share colours with."""
    import math

    import matplotlib.pyplot as plt
    rows = math.ceil(len(runs) / ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(2.4 * ncols, 2.3 * rows + 0.3),
                             sharex=True, sharey=True, squeeze=False)
    masks: list[tuple[str, ...]] = []
    for ax, (name, res) in zip(axes.flat, runs.items()):
        pair = next(iter(next(r for r in res["history"] if "agreement" in r)["agreement"]))
        labels = PAIR_LABELS.get(pair, AGREE_LABELS)
        plot_agreement(res["history"], pair, ax=ax, title=f"{name}\n{pair}", labels=labels,
                       background=background)
        ax.get_legend().remove()
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.title.set_fontsize(8)
        ax.tick_params(labelsize=7)
        if labels != AGREE_LABELS:  # named in the shared legend, not over its bands
            masks.append(labels)
    from matplotlib.patches import Patch
    handles = [Patch(color=c, alpha=0.85) for c in ("#4c9f70", "#d9a441", "#c8553d")]
    names = [a + (f"\n(a mask: {m})" if masks else "")
             for a, m in zip(AGREE_LABELS, masks[0] if masks else AGREE_LABELS)]
    spare = list(axes.flat)[len(runs):]
    for ax in spare:
        ax.set_visible(False)
        axes.flat[list(axes.flat).index(ax) - ncols].xaxis.set_tick_params(labelbottom=True)
    fig.supylabel("share of tracked " + ("item pixels" if background is not None else "samples")
                  + " (%)", fontsize=8)
    if spare:  # the legend in the grid's first empty cell
        fig.tight_layout(rect=(0, 0.02, 1, 1))
        box = spare[0].get_position()
        fig.legend(handles, names, loc="center", fontsize=8, frameon=False, title=
                   "x: training step", title_fontsize=8,
                   bbox_to_anchor=(box.x0 + box.width / 2, box.y0 + box.height / 2))
    else:
        fig.supxlabel("training step", fontsize=8)
        fig.legend(handles, names, loc="upper center", ncol=3, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
        fig.tight_layout()
    if title:
        fig.suptitle(title, fontsize=10)
        fig.tight_layout(rect=(0, 0.02, 1, 1))
    return fig


def plot_losses(history: list[dict], keys, ax=None, title: str | None = None,
                reference: dict[str, float] | None = None):
    """Training losses logged in a run's history (``kind == "train"`` rows), one line per key;
    ``reference`` draws labelled horizontal lines (e.g. ln 2, a discriminator at chance)."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots()[1]
    rows = [r for r in history if r.get("kind") == "train"]
    for k in keys:
        pts = [(r["step"], r[k]) for r in rows if k in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2, label=k)
    for name, y in (reference or {}).items():
        ax.axhline(y, color="0.5", ls=":", lw=1)
        ax.annotate(name, (ax.get_xlim()[1], y), xytext=(-4, 3), textcoords="offset points",
                    ha="right", fontsize=7, color="0.35")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (mean over a logging window)")
    if title:
        ax.set_title(title, fontsize=9)
    outside_legend(ax)
    return ax


def plot_coupling(groups: dict[str, tuple[list[dict], tuple[str, ...]]],
                  background: int | None = 0, ax=None):
    """Teacher-student disagreement over training (:func:`semibook.tracking.coupling_curve`),
    one line per ``{name: (runs over seeds, pairs)}``: the mean over the seeds, with a band of
    ± one standard deviation."""
    import matplotlib.pyplot as plt
    import numpy as np

    from .tracking import _run_pairs, coupling_curve
    ax = ax or plt.subplots()[1]
    for name, (runs, pairs) in groups.items():
        curves = [coupling_curve(r["history"], _run_pairs(pairs, r), background) for r in runs]
        steps = sorted(set.intersection(*(set(c["step"]) for c in curves)))
        vals = np.array([[dict(zip(c["step"], c["disagree"]))[s] * 100 for s in steps]
                         for c in curves])
        line, = ax.plot(steps, vals.mean(0), marker="o", ms=3,
                        label=f"{name} (mean of {len(runs)} seed{'s' if len(runs) > 1 else ''})")
        if len(runs) > 1:
            sd = vals.std(0, ddof=1)
            ax.fill_between(steps, vals.mean(0) - sd, vals.mean(0) + sd, alpha=0.15,
                            color=line.get_color(), lw=0)
    ax.set_xlabel("training step")
    what = "item pixels" if background is not None else "tracked pixels"
    ax.set_ylabel(f"teacher ≠ student\n(% of {what})")
    ax.set_ylim(bottom=0)
    outside_legend(ax)
    return ax
