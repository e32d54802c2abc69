"""What a finished cell of the benchmark says beyond its mean: each seed's score and gain
(:func:`seeds_markdown`), how supervised-only training ended at each seed (:func:`describe_end`),
each class's score (:func:`classes_markdown`), all three in one chapter call (:func:`show_seeds`),
and the facts from one run's history that explain a verdict not met (:func:`measured_facts`).
Every sentence is computed from the results files."""

from __future__ import annotations

from typing import Any

from .diagnosis import class_scores, curve, last_score, metric_of


def seeds_markdown(got: dict[str, Any], labels: int, methods: list[str] | None = None) -> str:
    """Each method's last score seed by seed at ``labels`` labels (``methods``: these only), as
    a Markdown table, with each method's gain over supervised-only seed by seed: the spread
    that a mean ± std hides."""
    runs = got["by_labels"].get(labels, {})
    runs = {m: rs for m, rs in runs.items() if methods is None or m in methods}
    seeds = sorted({r["seed"] for rs in runs.values() for r in rs})
    rows = [f"| method | {' | '.join(f'seed {s}' for s in seeds)} |",
            "|---|" + "---|" * len(seeds)]
    last = {m: {r["seed"]: 100 * last_score(r) for r in rs} for m, rs in runs.items()}
    base = last.get("supervised", {})
    for method, by in last.items():
        rows.append(f"| {method} | " + " | ".join(f"{by[s]:.1f}" if s in by else "-"
                                                 for s in seeds) + " |")
    for method, by in last.items():
        if method != "supervised" and base:
            rows.append(f"| gain of {method} | " + " | ".join(
                f"{by[s] - base[s]:+.1f}" if s in by and s in base else "-" for s in seeds)
                + " |")
    return "\n".join(rows)


def describe_end(res: dict[str, Any]) -> str:
    """How a run ended, from its history: its lowest training loss and its last, and at the
    last evaluation the evaluated model against the raw network where the run keeps both (a
    weight average); says so where the loss jumped in the last steps after a long stretch near
    zero (ten times its lowest, after the lowest came past half of training)."""
    loss = [(r["step"], r["loss"]) for r in res["history"] if r["kind"] == "train" and "loss" in r]
    evals = [r for r in res["history"] if r["kind"] == "eval"]
    if not loss or not evals:
        return f"seed {res['seed']}: no training log to read."
    low, end, last, key = min(loss, key=lambda t: t[1]), loss[-1], evals[-1], metric_of(res)
    unit = " %" if key == "acc" else " mIoU"
    text = (f"{res['method']}, seed {res['seed']}: training loss {low[1]:.5f} at its lowest "
            f"(step {low[0]}), {end[1]:.4f} at step {end[0]}; at the end the evaluated model "
            f"scores {100 * last[key]:.1f}{unit}")
    raw = next((k for k in (f"{key}_model", f"{key}_student") if k in last), None)
    if raw:
        text += f" and the raw network {100 * last[raw]:.1f}{unit}"
    if end[1] > 10 * max(low[1], 1e-12) and low[0] > end[0] / 2:
        text += ": the loss jumped in the last steps, and the network with it"
    return text + "."


def show_seeds(table: str, labels: int, methods: list[str]) -> None:
    """A chapter's seed-by-seed view: each method's last score and gain per seed at ``labels``
    labels (:func:`seeds_markdown`), how supervised-only training ended at each seed
    (:func:`describe_end`, since a baseline that falls in its last steps enlarges every gain
    over it), each class's score (:func:`classes_markdown`), and for each method whose verdict
    is not met, each class's test score over training on the seed where it gained least,
    against supervised-only training on that seed: the failure in its own curves."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    from .data import dataset_info
    from .diagnosis import plot_class_scores
    from .reproduce import collect
    got = collect(table)
    if not got["by_labels"].get(labels):
        print(f"no finished runs at {labels} labels yet")
        return
    classes = dataset_info(got["table"].dataset).classes
    display(Markdown(seeds_markdown(got, labels, ["supervised", *methods])))
    for r in sorted(got["by_labels"][labels].get("supervised", []), key=lambda r: r["seed"]):
        print(describe_end(r))
    display(Markdown(classes_markdown(got, labels, ["supervised", *methods], classes)))
    for m in methods:
        v = verdict(got, labels, m)
        if v is None or v["shown"]:
            continue
        r, b = least_gain(got, labels, m)
        plot_class_scores({f"{m}, seed {r['seed']}": r, f"supervised, seed {b['seed']}": b},
                          classes, title=f"{m} on seed {r['seed']}, where it gained least: "
                          f"each class's test score over training")
        plt.show()


def classes_markdown(got: dict[str, Any], labels: int, methods: list[str], classes) -> str:
    """Each class's last score (accuracy or IoU, %) at ``labels`` labels, the mean over the
    seeds, for each of ``methods`` and each one's change against the first: where a gain in
    the mean comes from, and which class a method gives up."""
    runs = got["by_labels"].get(labels, {})
    last = {m: [[100 * v[-1] for v in class_scores(r)[1]] for r in runs[m]]
            for m in methods if runs.get(m)}
    if not last:
        return ""
    import statistics
    means = {m: [sum(col) / len(col) for col in zip(*rows)] for m, rows in last.items()}
    sds = {m: [statistics.stdev(col) if len(col) > 1 else None for col in zip(*rows)]
           for m, rows in last.items()}
    first = next(iter(means))
    head = ["class", *(f"{m} ({len(last[m])} seeds)" for m in means),
            *(f"{m} − {first}" for m in means if m != first)]
    out = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for c, name in enumerate(classes):
        if c >= len(means[first]):
            break
        row = [f"{means[m][c]:.1f}" + ("" if sds[m][c] is None else f" ± {sds[m][c]:.1f}")
               for m in means]
        row += [f"{means[m][c] - means[first][c]:+.1f}" for m in means if m != first]
        out.append(f"| {name} | " + " | ".join(row) + " |")
    unit = "accuracy" if any("class_acc" in h for r in runs[first] for h in r["history"]) else "IoU"
    return (f"**Each class's last test {unit} (%), mean ± std over the seeds**\n\n"
            + "\n".join(out))


def _classes(res: dict[str, Any]) -> list[str]:
    """The class names of a run's dataset (class numbers where the file names none)."""
    from .data import dataset_info
    try:
        return list(dataset_info(res["dataset"]).classes)
    except (KeyError, ValueError):
        return [str(c) for c in range(1000)]


def measured_facts(res: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """Facts from one run's history (and its supervised baseline's) that bear on why a method
    did not beat supervised: the shape of each test curve (still rising at the end, peaked
    earlier and fell, or level; :func:`semibook.report.curve_shape`), and how right the tracked
    pseudo labels were at the end."""
    from .report import describe_shape

    key = res["metric"]
    out = []
    for name, r in (("the method", res), ("supervised-only training", base)):
        steps, values = curve(r, key) if r.get("history") else ([], [])
        if len(steps) >= 2:
            shape = describe_shape(steps, values, "accuracy" if key == "acc" else "mIoU")
            n = (r.get("config") or {}).get("eval_subset")
            where = (f", scored on the same {n:,} test "
                     f"{'images' if key == 'acc' else 'scenes'} at each evaluation") if n else ""
            out.append(f"for {name}, {shape}{where}")
    last = next((h for h in reversed(res.get("history", [])) if h.get("agreement")), None)
    if last:
        pair, a = next(iter(last["agreement"].items()))
        prec = a["agree_correct"] / a["agree"] if a["agree"] else 0.0
        what = 'images' if key == 'acc' else 'pixels'
        out.append(f"at the end the discriminator's confident mask kept {100 * a['agree']:.1f}% "
                   f"of the unlabeled {what}, and {100 * prec:.1f}% of the labels it kept were "
                   f"right" if pair == "confident-mask" else
                   f"at the end its tracked pair ({pair}) agreed on {100 * a['agree']:.1f}% of "
                   f"the unlabeled {what}, and {100 * prec:.1f}% of the labels it agreed on "
                   f"were right")
        out += [f"on the tracked {f['class']} {what}, its "
                f"right share fell from "
                f"{100 * f['peak']:.0f}% (step {f['peak_step']}) to {100 * f['last']:.0f}% (step "
                f"{f['last_step']}) while the pair's agreement on them went from "
                f"{100 * f['agree_at_peak']:.0f}% to {100 * f['agree_last']:.0f}% (confirmation bias)"
                for f in _collapsed(res)]
    out += _mask_facts(res)
    return out


def _mask_facts(res: dict[str, Any], window: int = 1000) -> list[str]:
    """What a method's pseudo-label mask let through over the last ``window`` steps of its
    training log: the share of unlabeled pixels its confidence mask kept (the adversarial
    method's discriminator, Dual Teacher's and the dual-branch teacher's thresholds), and the
    share that Soft Teacher's teacher made foreground targets."""
    from .diagnosis import kept_share
    out = []
    kept = kept_share(res, window)
    if kept is not None:
        out.append(f"over its last {window:,} steps its confidence mask kept {100 * kept:.1f}% "
                   f"of the unlabeled pixels")
    fg = kept_share(res, window, keys=("fg_share",))  # Soft Teacher's foreground targets
    if fg is not None:
        out.append(f"over its last {window:,} steps its teacher made {100 * fg:.1f}% "
                   f"of the unlabeled pixels foreground (item) targets")
    return out


def describe_lead(runs: list[dict[str, Any]], a: str, b: str, names: tuple[str, str]) -> str:
    """One sentence, the mean over ``runs`` (the seeds of one config), on how far model ``a``
    led model ``b`` at each evaluation (keys such as ``acc`` and ``acc_student``; the
    intermediate points on the fixed subset, the last on every test image where both were
    scored there)."""
    from .viz import curve_points
    pts = [(curve_points(r, a), curve_points(r, b)) for r in runs]
    steps = sorted(set.intersection(*(set(pa[0]) & set(pb[0]) for pa, pb in pts)))
    ends = sorted(set.intersection(*(set(pa[1]) & set(pb[1]) for pa, pb in pts)))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    lead = [(s, mean([pa[0][s] - pb[0][s] for pa, pb in pts])) for s in steps]
    unit = " %" if a.startswith("acc") else " mIoU"
    text = (f"Mean over {len(runs)} seed{'s' if len(runs) > 1 else ''}, {names[0]} minus "
            f"{names[1]}: " + ", ".join(f"{d:+.1f} points at step {s}" for s, d in lead))
    if ends:
        text += (f"; at the last evaluation, on every test image, "
                 f"{mean([pa[1][ends[-1]] for pa, _ in pts]):.1f}{unit} against "
                 f"{mean([pb[1][ends[-1]] for _, pb in pts]):.1f}{unit}")
    return text + "."


def least_gain(got: dict[str, Any], labels: int, method: str) -> tuple[dict, dict] | None:
    """``method``'s run on the seed where it gained least against supervised-only training on
    the same seed, with that supervised run (paired by seed); None: no pair."""
    runs = got["by_labels"].get(labels, {})
    base = {r["seed"]: r for r in runs.get("supervised", [])}
    pairs = [(r, base[r["seed"]]) for r in runs.get(method, []) if r["seed"] in base]
    return min(pairs, key=lambda p: last_score(p[0]) - last_score(p[1])) if pairs else None


def collapsed_in(got: dict[str, Any], labels: int, method: str) -> tuple[int | None, list[str]]:
    """The seed where ``method`` gained least (:func:`least_gain`), and the classes that
    collapsed on its tracked unlabeled data (confirmation bias)."""
    pair = least_gain(got, labels, method)
    if pair is None:
        return None, []
    r = pair[0]
    return r["seed"], [f["class"] for f in _collapsed(r)]


def _collapsed(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The classes that collapsed on a run's tracked pair (its first agreement pair), with
    their peak and last right shares (:func:`semibook.tracking.collapsed_classes`)."""
    from .tracking import collapsed_classes
    row = next((h for h in reversed(res.get("history", [])) if h.get("agreement")), None)
    if row is None:
        return []
    return collapsed_classes(res["history"], next(iter(row["agreement"])), _classes(res))


def verdict(got: dict[str, Any], labels: int, method: str,
            baseline: str = "supervised") -> dict[str, Any] | None:
    """Whether ``method`` beats supervised-only training at ``labels`` labels in a
    :func:`collect` ed table, from the last evaluation of each seed both have finished.

    The seeds share their split, so the comparison is paired: the gain is the mean over seeds of
    (method - supervised), and it counts as shown when it exceeds two standard deviations of
    those per-seed differences (at least two seeds). ``gap_closed`` is the share of the
    baseline-to-fully-supervised gap that the mean gain closes. ``baseline``: another method
    of the table in supervised-only training's place. None: nothing to compare."""
    import statistics

    runs = got["by_labels"].get(labels, {})
    if method not in runs or baseline not in runs:
        return None
    by_seed = {r["seed"]: last_score(r) for r in runs[method]}
    base = {r["seed"]: last_score(r) for r in runs[baseline]}
    seeds = sorted(set(by_seed) & set(base))
    if not seeds:
        return None
    diffs = [by_seed[s] - base[s] for s in seeds]
    gain = statistics.fmean(diffs)
    sd = statistics.stdev(diffs) if len(diffs) > 1 else None
    ceiling = [last_score(r) for r in got["ceiling"]]
    sup_mean = statistics.fmean(base[s] for s in seeds)
    width = statistics.fmean(ceiling) - sup_mean if ceiling else None
    return {"method": method, "labels": labels, "seeds": seeds, "gain": gain, "sd": sd,
            "shown": sd is not None and gain > 2 * sd,
            "loss_shown": sd is not None and gain < -2 * sd, "metric": runs[method][0]["metric"],
            "gap_closed": gain / width if width and width > 0 else None}


def baseline_ablation_markdown(table: str, folder: str, methods: list[str], what: str,
                               profile: str = "full") -> str:
    """Each of ``methods`` against a second supervised-only baseline: the finished runs in
    ``results/<folder>/`` (the same splits and seeds, one setting changed, named by ``what``),
    paired by seed as :func:`verdict` pairs them with the benchmark's own baseline; and that
    second baseline against the first. One bullet per split and method."""
    from . import reproduce as rp
    from .engine.results import load_results
    from .names import display_name
    from .paths import results_dir
    got = rp.collect(table, profile)
    alt = [r for r in load_results(results_dir() / folder) if r.get("finished")]
    if not alt:
        return f"No finished runs in results/{folder}/ yet."
    # the second baseline as one more method of the table, in a copy of its split dicts only
    got = {**got, "by_labels": {n: dict(ms) for n, ms in got["by_labels"].items()}}
    for r in alt:
        got["by_labels"].setdefault(r["labels"], {}).setdefault("alt", []).append(r)
    out, unit = [], "points"
    for n in sorted({r["labels"] for r in alt}):
        base = verdict(got, n, "alt")
        if base and base["sd"] is not None:
            out.append(f"- {n} labeled scenes, supervised-only {what} against the benchmark's "
                       f"baseline: {100 * base['gain']:+.2f} ± {100 * base['sd']:.2f} {unit}")
        for m in methods:
            a, b = verdict(got, n, m), verdict(got, n, m, baseline="alt")
            if a is None or b is None or a["sd"] is None or b["sd"] is None:
                continue
            word = ("ahead by more than two standard deviations" if b["shown"] else
                    "behind by more than two standard deviations" if b["loss_shown"] else
                    "within two standard deviations")
            out.append(f"- {n} labeled scenes, {display_name(m, start=False)}: "
                       f"{100 * a['gain']:+.2f} ± {100 * a['sd']:.2f} {unit} against the "
                       f"benchmark's baseline, {100 * b['gain']:+.2f} ± {100 * b['sd']:.2f} "
                       f"against supervised-only {what} ({word})")
    return "\n".join(out)
