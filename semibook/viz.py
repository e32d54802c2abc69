"""Plots for the chapters (matplotlib only)."""

from __future__ import annotations


def set_style() -> None:
    import matplotlib as mpl
    mpl.rcParams.update({"figure.figsize": (6.4, 3.6), "figure.dpi": 100, "axes.grid": True,
                         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
                         "font.size": 10})


def plot_accuracy(results: dict[str, dict], ax=None, key: str = "acc"):
    """Test accuracy over training for several runs: ``{label: results}``."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots()[1]
    for label, res in results.items():
        ev = [r for r in res["history"] if r["kind"] == "eval"]
        ax.plot([r["step"] for r in ev], [100 * r[key] for r in ev], marker="o", ms=3,
                label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    return ax


def plot_agreement(history: list[dict], pair: str, ax=None, title: str | None = None):
    """Stacked shares over training: agree & correct, agree & wrong, disagree."""
    import matplotlib.pyplot as plt

    from .tracking import agreement_curves
    c = agreement_curves(history, pair)
    ax = ax or plt.subplots()[1]
    ax.stackplot(c["step"], [100 * v for v in c["agree_correct"]],
                 [100 * v for v in c["agree_wrong"]], [100 * v for v in c["disagree"]],
                 labels=["agree, correct", "agree, wrong", "disagree"],
                 colors=["#4c9f70", "#d9a441", "#c8553d"], alpha=0.85)
    ax.set_xlabel("training step")
    ax.set_ylabel("share of unlabeled images (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or pair)
    ax.legend(loc="lower right")
    return ax
