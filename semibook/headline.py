"""The headline result on README.md's first screen, computed from the committed results files
(never typed): a small table and a figure of the classification benchmark, and one line on the
segmentation one. ``python -m semibook report`` prints the table; ``--readme`` writes it between
README.md's markers and draws ``docs/results.png`` (both only where they changed, so a second
call changes nothing)."""

from __future__ import annotations

import hashlib
import io
import json
import statistics
from pathlib import Path
from typing import Any

from .checks import ConfigError
from .diagnosis import last_score
from .files import atomic_write, atomic_write_text
from .names import display_name
from .paths import ROOT

START, END = "<!-- results: written by python -m semibook report --readme -->", "<!-- /results -->"
FIGURE = "docs/results.png"
NAMES = {"supervised": "supervised only", "mixmatch": "MixMatch", "mean_teacher": "Mean Teacher"}


def _last(runs: list[dict[str, Any]]) -> dict[str, Any]:
    vals = [100 * last_score(r) for r in runs]
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1
            else 0.0, "seeds": sorted(r["seed"] for r in runs)}


def headline() -> dict[str, Any]:
    """The numbers: per label count and method, the last test accuracy's mean and std over
    seeds (and the fully supervised ceiling); the segmentation table's best method at its
    smallest label count, where the methods must show their effect, against supervised-only;
    what the runs share."""
    from .reproduce import TABLE_LABELS, collect
    got = collect("classification")
    if got["missing"] or not got["ceiling"]:
        raise ConfigError(f"{len(got['missing'])} runs of the classification table have no "
                          f"results file; run: .venv/bin/python -m semibook reproduce "
                          f"classification")
    rows = {n: {m: _last(runs) for m, runs in got["by_labels"][n].items()}
            for n in TABLE_LABELS["classification"]}
    first = got["ceiling"][0]
    seg = collect("segmentation")
    n_seg = min(TABLE_LABELS["segmentation"])
    seg_rows = {m: _last(runs) for m, runs in seg["by_labels"].get(n_seg, {}).items()}
    from .reproduce import WEAK_LABEL_METHODS
    others = [m for m in seg_rows if m != "supervised"]
    return {"labels": rows, "ceiling": _last(got["ceiling"]),
            "ceiling_labels": got["table"].ceiling_labels,
            "steps": first["config"]["steps"], "arch": first["config"]["arch"],
            "eval_images": f"{first['config']['eval_size']:,} test images"
            if first["config"].get("eval_size") else "all test images",
            "device": first["device"].split(" (")[0].replace("cpu", "CPU"),
            "segmentation": {"labels": n_seg, "rows": seg_rows,
                             "semi": [m for m in others if m not in WEAK_LABEL_METHODS],
                             "weak": [m for m in others if m in WEAK_LABEL_METHODS]}}


def _cell(v: dict[str, Any] | None) -> str:
    return f"{v['mean']:.1f} ± {v['std']:.1f}" if v else "-"


def markdown(h: dict[str, Any]) -> str:
    counts = list(h["labels"])
    lines = ["| test accuracy (%) | " + " | ".join(f"{n:,} labels" for n in counts) + " |",
             "|---|" + "---:|" * len(counts)]
    for m, name in NAMES.items():
        lines.append(f"| {name} | " + " | ".join(_cell(h["labels"][n].get(m)) for n in counts)
                     + " |")
    lines.append(f"| every label ({h['ceiling_labels']:,}) | "
                 + " | ".join(_cell(h["ceiling"]) for _ in counts) + " |")
    seg = h["segmentation"]
    lines += ["", f"Fashion-MNIST, {h['arch'].upper()} trained {h['steps']:,} steps from random "
              f"weights on a {h['device']} (the `full` profile); accuracy on "
              f"{h['eval_images']} at the end of training, mean ± std over seeds "
              f"{', '.join(map(str, h['ceiling']['seeds']))}."]
    rows, sup = seg["rows"], seg["rows"].get("supervised")
    if sup:
        lines[-1] += f" On the segmentation scenes ({seg['labels']} labeled) supervised only " \
                     f"reaches {_cell(sup)} mIoU"
        for kind, names in (("semi-supervised", seg["semi"]), ("weak-label", seg["weak"])):
            best = max(names, key=lambda m: rows[m]["mean"], default=None)
            if best:
                lines[-1] += (f"; the best {kind} method, {display_name(best, start=False)}, "
                              f"{_cell(rows[best])}")
        lines[-1] += ". Chapter 6 has every table."
    return "\n".join(lines)


def _digest(h: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(h, sort_keys=True).encode()).hexdigest()[:16]


def figure(h: dict[str, Any], path: Path) -> None:
    """Bars of the last test accuracy (mean ± std over seeds) per method and label count, the
    fully supervised ceiling as a line; the numbers' digest kept in the PNG's metadata."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = list(h["labels"])
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    x, width = np.arange(len(counts)), 0.8 / len(NAMES)
    for i, (m, name) in enumerate(NAMES.items()):
        v = [h["labels"][n].get(m) or {"mean": 0, "std": 0} for n in counts]
        ax.bar(x + (i - (len(NAMES) - 1) / 2) * width, [r["mean"] for r in v], width,
               yerr=[r["std"] for r in v], capsize=3, label=name)
    ax.axhline(h["ceiling"]["mean"], color="k", ls="--", lw=1,
               label=f"every label ({h['ceiling_labels']:,})")
    ax.set_xticks(x, [f"{n:,} labels" for n in counts])
    ax.set_ylabel("test accuracy (%)")
    lo = min(r["mean"] - r["std"] for row in h["labels"].values() for r in row.values())
    ax.set_ylim(5 * int((lo - 3) // 5), 5 * int(h["ceiling"]["mean"] // 5 + 2))
    ax.set_title(f"Fashion-MNIST, few labels: mean ± std over {len(h['ceiling']['seeds'])} "
                 f"seeds", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None, "Source": _digest(h)})
    plt.close(fig)
    atomic_write(path, True, lambda f: f.write(buf.getvalue()))


def _figure_digest(path: Path) -> str | None:
    try:
        from PIL import Image
        with Image.open(path) as im:
            return im.info.get("Source")
    except OSError:
        return None


def write_readme(readme: Path = ROOT / "README.md", fig: Path = ROOT / FIGURE) -> list[str]:
    """Write the table between README.md's markers and the figure, each only where it
    changed; returns the files written."""
    h = headline()
    text = readme.read_text()
    if text.count(START) != 1 or text.count(END) != 1:
        raise ConfigError(f"{readme} needs the two marker lines {START!r} and {END!r} once "
                          f"each; put them where the table goes")
    head, rest = text.split(START)
    new = head + START + "\n" + markdown(h) + "\n" + END + rest.split(END, 1)[1]
    written = []
    if new != text:
        atomic_write_text(readme, new)
        written.append(str(readme))
    if _figure_digest(fig) != _digest(h):
        fig.parent.mkdir(parents=True, exist_ok=True)
        figure(h, fig)
        written.append(str(fig))
    return written
