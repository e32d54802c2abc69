"""Pseudo-label agreement between two models over training.

On a fixed set of unlabeled images (or pixels), the predictions of two models in play (teacher
and student, two CPS networks, ...) either agree or not; using the images' hidden labels, for
analysis only and never for training, agreement splits into agree-and-correct and
agree-and-wrong. Recorded overall and per class (of the true label) at every evaluation.
"""

from __future__ import annotations

import torch


def agreement(pred_a: torch.Tensor, pred_b: torch.Tensor, target: torch.Tensor,
              num_classes: int, ignore_index: int | None = None) -> dict:
    """Shares of samples (or pixels) where a and b agree and are right, agree and are wrong,
    or disagree. Per-class shares are over the samples of each true class: agreement, agreement
    on the right class, and each model's right share (``a_correct``, ``b_correct``), which
    :func:`collapsed_classes` reads."""
    a, b, t = pred_a.reshape(-1), pred_b.reshape(-1), target.reshape(-1)
    if ignore_index is not None:
        keep = t != ignore_index
        a, b, t = a[keep], b[keep], t[keep]
    n = max(len(t), 1)
    same = a == b
    right = same & (a == t)
    wrong = same & (a != t)
    per_class = {}
    for c in range(num_classes):
        sel = t == c
        k = int(sel.sum())
        if k:
            per_class[str(c)] = {"agree": float(same[sel].float().mean()),
                                 "agree_correct": float(right[sel].float().mean()),
                                 "a_correct": float((a[sel] == c).float().mean()),
                                 "b_correct": float((b[sel] == c).float().mean()),
                                 "n": k}
    return {"agree": float(same.sum()) / n, "agree_correct": float(right.sum()) / n,
            "agree_wrong": float(wrong.sum()) / n, "disagree": float((~same).sum()) / n,
            "n": len(t), "per_class": per_class}


def guess_accuracy(probs: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor | None:
    """The share of unlabeled images whose guessed label (the arg-max of a method's target
    distribution, ``probs`` (n, classes)) is the hidden true label: what a method logs as
    ``guess_acc`` at each step. None when the batch carries no hidden labels."""
    if hidden is None:
        return None
    return (probs.argmax(1) == hidden).float().mean()


def agreement_curves(history: list[dict], pair: str,
                     background: int | None = None) -> dict[str, list[float]]:
    """Steps and shares of one tracked pair from a run's evaluation history; with
    ``background`` (segmentation) on the item pixels alone, from the per-class records."""
    rows = [r for r in history if r.get("kind") == "eval" and pair in r.get("agreement", {})]
    if background is not None:
        fg = [(r["step"], foreground_shares(r["agreement"][pair], background)) for r in rows]
        fg = [(s, v) for s, v in fg if v]
        return {"step": [s for s, _ in fg], "agree": [v["agree"] for _, v in fg],
                "agree_correct": [v["agree_correct"] for _, v in fg],
                "agree_wrong": [v["agree"] - v["agree_correct"] for _, v in fg],
                "disagree": [1 - v["agree"] for _, v in fg]}
    out: dict[str, list[float]] = {"step": [r["step"] for r in rows]}
    for key in ("agree", "agree_correct", "agree_wrong", "disagree"):
        out[key] = [r["agreement"][pair][key] for r in rows]
    return out


def foreground_shares(row: dict, background: int = 0) -> dict[str, float] | None:
    """Agreement on the pixels whose true class is not ``background``, from one evaluation's
    per-class record (classes weighted by their pixel counts); None without such pixels."""
    per = {int(c): v for c, v in row["per_class"].items() if int(c) != background}
    n = sum(v["n"] for v in per.values())
    if not n:
        return None
    return {"agree": sum(v["agree"] * v["n"] for v in per.values()) / n,
            "agree_correct": sum(v["agree_correct"] * v["n"] for v in per.values()) / n, "n": n}


def describe_agreement(history: list[dict], pair: str, background: int | None = None,
                       words: tuple[str, str] = ("the two agree on", "agreement")) -> str:
    """A paragraph, computed from a run's history, that reads one agreement curve: where the
    agreement starts and ends, how much of it is correct, when it rose (or, on an unsteady path,
    its lowest and highest points), whether it stalled over the last third of training, and
    (``background`` given: segmentation) the same on the item pixels alone, since background
    dominates the pixel count. ``words`` names the shares, e.g. ("the mask keeps", "the kept
    share") for a confident mask."""
    verb, noun = words
    rows = [r for r in history if r.get("kind") == "eval" and pair in r.get("agreement", {})]
    if len(rows) < 2:
        return f"Too few evaluations of {pair} to read a curve."
    a = [r["agreement"][pair] for r in rows]
    steps = [r["step"] for r in rows]
    pct = lambda v: f"{100 * v:.1f}%"
    first, last = a[0], a[-1]
    prec = last["agree_correct"] / last["agree"] if last["agree"] else 0.0
    items = ""
    if background is not None:
        fg = [foreground_shares(v, background) for v in a]
        if fg[0] and fg[-1]:
            hi = max(range(len(fg)), key=lambda i: fg[i]["agree"])
            lo = min(range(len(fg)), key=lambda i: fg[i]["agree"])
            fprec = fg[-1]["agree_correct"] / fg[-1]["agree"] if fg[-1]["agree"] else 0.0
            items = (f"{pair}, item pixels ({pct(fg[-1]['n'] / last['n'])} of the tracked "
                     f"pixels; background left out): {verb} {pct(fg[0]['agree'])} at the first "
                     f"evaluation (step {steps[0]}) and {pct(fg[-1]['agree'])} at the last "
                     f"(step {steps[-1]}), right on {pct(fg[-1]['agree_correct'])}, so "
                     f"{pct(fprec)} of {noun} on items is right; its lowest "
                     f"{pct(fg[lo]['agree'])} (step {steps[lo]}), its highest "
                     f"{pct(fg[hi]['agree'])} (step {steps[hi]}).\n\nAll pixels, background "
                     f"included: ")
    text = items + (f"{'' if items else pair + ': '}at the first evaluation (step {steps[0]}) {verb} "
            f"{pct(first['agree'])} of the tracked unlabeled {'pixels' if background is not None else 'images'}, "
            f"right on {pct(first['agree_correct'])} of them; at the last (step {steps[-1]}) "
            f"on {pct(last['agree'])}, right on {pct(last['agree_correct'])}, so {pct(prec)} "
            f"of {noun} is right. ")
    rise = last["agree"] - first["agree"]
    vals = [v["agree"] for v in a]
    lo, hi = vals.index(min(vals)), vals.index(max(vals))
    if vals[lo] < min(first["agree"], last["agree"]) - 0.01 \
            or vals[hi] > max(first["agree"], last["agree"]) + 0.01:
        # not a steady path: a "half of the change by step s" would mislead
        text += (f"It did not move steadily: at its lowest {pct(vals[lo])} (step {steps[lo]}), "
                 f"at its highest {pct(vals[hi])} (step {steps[hi]}). ")
    elif abs(rise) >= 0.01:
        half = next(s for s, v in zip(steps, a) if
                    (v["agree"] - first["agree"]) / rise >= 0.5)
        if half < steps[-1]:
            text += (f"Half of the {'rise' if rise > 0 else 'fall'} of {100 * abs(rise):.1f} "
                     f"points came by step {half}. ")
    tail = [v for s, v in zip(steps, a) if s >= steps[-1] * 2 / 3]
    change = tail[-1]["agree"] - tail[0]["agree"]
    gain = tail[-1]["agree_correct"] - tail[0]["agree_correct"]
    if abs(change) < 0.01 and abs(gain) < 0.01:
        text += "Over the last third of training both shares stalled (changes under a point). "
    else:
        text += (f"Over the last third of training {noun} moved by {100 * change:+.1f} points "
                 f"and its correct part by {100 * gain:+.1f}. ")
    return text.strip()


def guess_curve(history: list[dict]) -> dict[str, list[float]]:
    """Steps and guessed-label accuracies (``guess_acc``, each the mean over one logging
    window of training steps) from a run's history; empty lists for a run that logged none."""
    rows = [r for r in history if r.get("kind") == "train" and "guess_acc" in r]
    return {"step": [r["step"] for r in rows], "guess_acc": [r["guess_acc"] for r in rows]}


def describe_guesses(history: list[dict], test_metric: str = "acc",
                     who: str = "the guessed labels") -> str:
    """A paragraph, computed from a run's history, that reads the guessed-label accuracy curve:
    where it starts, where it ends (mean of the last tenth of training, since each point is one
    logging window of a few batches), its best window, when it first came within two points of
    its end, and the test accuracy of the evaluated model at the last evaluation beside it."""
    c = guess_curve(history)
    if len(c["step"]) < 5:
        return "This run logged no guessed-label accuracy (it was trained before the read-out existed)."
    steps, acc = c["step"], c["guess_acc"]
    k = max(1, len(acc) // 10)
    end = sum(acc[-k:]) / k
    best = max(range(len(acc)), key=acc.__getitem__)
    near = next(s for s, v in zip(steps, acc) if v >= end - 0.02)
    evals = [r for r in history if r.get("kind") == "eval" and test_metric in r]
    text = (f"On the unlabeled images of each batch, {who} matched the hidden labels "
            f"{100 * acc[0]:.1f}% of the time over the first {steps[0]} steps and "
            f"{100 * end:.1f}% over the last {steps[-1] - steps[-k - 1] if len(steps) > k else steps[-1]} "
            f"(best window: {100 * acc[best]:.1f}% at step {steps[best]}); they came within two "
            f"points of that end by step {near}.")
    if evals:
        text += (f" The evaluated model's test accuracy at step {evals[-1]['step']} was "
                 f"{100 * evals[-1][test_metric]:.1f}% (on the test images, unaugmented).")
    return text


def collapsed_classes(history: list[dict], pair: str, classes: list[str] | tuple[str, ...],
                      drop: float = 0.15) -> list[dict]:
    """Confirmation bias, read from a run's history: the classes of the tracked unlabeled
    images whose right share under the pair's first model fell by at least ``drop`` from its
    peak to the end while the two models' agreement on them did not fall. Each: the class, its
    peak right share and step, its last, and the agreement at the peak and at the end."""
    rows = [r for r in history if r.get("kind") == "eval" and pair in r.get("agreement", {})]
    out = []
    for c, name in enumerate(classes):
        pts = [(r["step"], r["agreement"][pair].get("per_class", {}).get(str(c))) for r in rows]
        pts = [(s, v) for s, v in pts if v and "a_correct" in v]
        if len(pts) < 2:
            continue
        peak_step, peak = max(pts, key=lambda p: p[1]["a_correct"])
        end_step, end = pts[-1]
        if peak["a_correct"] - end["a_correct"] >= drop and end["agree"] >= peak["agree"]:
            out.append({"class": name, "peak": peak["a_correct"], "peak_step": peak_step,
                        "last": end["a_correct"], "last_step": end_step,
                        "agree_at_peak": peak["agree"], "agree_last": end["agree"]})
    return out


def describe_collapse(history: list[dict], pair: str, classes, model: str = "the model") -> str:
    """One sentence per collapsed class (:func:`collapsed_classes`), or that none collapsed."""
    found = collapsed_classes(history, pair, classes)
    unit = "pixels" if any("miou" in r for r in history if r.get("kind") == "eval") else "images"
    if not found:
        return (f"No class collapsed: on the tracked unlabeled {unit}, {model}'s right share of "
                f"no class fell by 15 points or more from its peak while agreement held.")
    return " ".join(
        f"On the tracked {f['class']} {unit}, {model} was right on {f['peak']:.0%} at step "
        f"{f['peak_step']} and on {f['last']:.0%} at step {f['last_step']}, while the two "
        f"models' agreement on them went from {f['agree_at_peak']:.0%} to "
        f"{f['agree_last']:.0%} (confirmation bias)."
        for f in found)


def describe_series(history: list[dict], key: str, name: str | None = None,
                    reference: tuple[str, float] | None = None) -> str:
    """A sentence, computed from a run's history, on one logged training quantity ``key``:
    its mean over the first and the last tenth of the logged windows, its lowest and highest
    window, and, with ``reference`` (a name and a value, e.g. ("chance", ln 2)), where the
    last tenth sits against it."""
    rows = [(r["step"], r[key]) for r in history if r.get("kind") == "train" and key in r]
    if len(rows) < 2:
        return f"This run logged no {key}."
    k = max(1, len(rows) // 10)
    first = sum(v for _, v in rows[:k]) / k
    last = sum(v for _, v in rows[-k:]) / k
    lo = min(rows, key=lambda p: p[1])
    hi = max(rows, key=lambda p: p[1])
    text = (f"{name or key}: {first:.3f} over the first {rows[k - 1][0]} steps, {last:.3f} over "
            f"the last {rows[-1][0] - rows[-k - 1][0] if len(rows) > k else rows[-1][0]} "
            f"(lowest window {lo[1]:.3f} at step {lo[0]}, highest {hi[1]:.3f} at step {hi[0]})")
    if reference:
        ref_name, ref = reference
        rel = "below" if last < ref else "above"
        text += f"; at the end {last:.3f}, {abs(last - ref):.3f} {rel} {ref_name} ({ref:.3f})"
    return text + "."


def coupling_curve(history: list[dict], pairs, background: int | None = 0) -> dict[str, list]:
    """How far a method's teachers stay from its student over training: at each evaluation,
    the share of tracked pixels (with ``background``, item pixels alone) on which teacher and
    student predict different classes, averaged over ``pairs``: the pair names, or a function
    step -> the names at that evaluation (Dual Teacher's active teacher:
    :func:`semibook.methods.dual_teacher.active_pair`). 0 means the teacher is a copy of its
    student."""
    pick = pairs if callable(pairs) else (lambda step: pairs)
    at: dict[str, dict[int, float]] = {}

    def share(p: str) -> dict[int, float]:
        if p not in at:
            c = agreement_curves(history, p, background)
            at[p] = dict(zip(c["step"], c["disagree"]))
        return at[p]
    steps, vals = [], []
    for s in sorted({e["step"] for e in history if e.get("agreement")}):
        names = tuple(pick(s))
        if names and all(s in share(p) for p in names):
            steps.append(s)
            vals.append(sum(share(p)[s] for p in names) / len(names))
    return {"step": steps, "disagree": vals}


def _run_pairs(pairs, run: dict):
    """A group's pairs for one run: a tuple of names, or ``pairs(run, step)`` bound to it."""
    return (lambda step: pairs(run, step)) if callable(pairs) else pairs


def describe_coupling(groups: dict[str, tuple[list[dict], tuple[str, ...]]],
                      background: int | None = 0) -> str:
    """A paragraph, computed from the runs' histories, comparing teacher-student coupling:
    ``groups`` maps a name to (runs over seeds, the teacher-vs-student pairs to average, or a
    function (run, step) -> the pairs at that evaluation). For
    each, the disagreement over the last third of training (mean over its evaluations and
    seeds, with the spread over seeds), and which method keeps its teachers further from the
    student."""
    import statistics

    late = {}
    for name, (runs, pairs) in groups.items():
        per_seed = []
        for r in runs:
            c = coupling_curve(r["history"], _run_pairs(pairs, r), background)
            if c["step"]:
                tail = [d for s, d in zip(c["step"], c["disagree"]) if s >= c["step"][-1] * 2 / 3]
                per_seed.append(sum(tail) / len(tail))
        if per_seed:
            late[name] = per_seed
    if len(late) < 2:
        return "Too few runs with agreement records to compare the coupling."
    where = "item pixels" if background is not None else "tracked pixels"
    parts = []
    for name, vals in late.items():
        sd = f" ± {100 * statistics.stdev(vals):.1f}" if len(vals) > 1 else ""
        parts.append(f"{name} {100 * statistics.fmean(vals):.1f}{sd}% "
                     f"({len(vals)} seed{'s' if len(vals) > 1 else ''})")
    ranked = sorted(late, key=lambda k: statistics.fmean(late[k]), reverse=True)
    a, b = ranked[0], ranked[-1]
    diff = 100 * (statistics.fmean(late[a]) - statistics.fmean(late[b]))
    text = (f"Over the last third of training, teacher and student predicted different classes "
            f"on this share of the {where} (mean over the evaluations and seeds ± standard "
            f"deviation over seeds): " + "; ".join(parts) + ". ")
    spread = max((statistics.stdev(v) for v in late.values() if len(v) > 1), default=0.0)
    if diff <= 2 * 100 * spread:
        text += (f"The difference, {diff:.1f} points, is within two standard deviations of the "
                 f"seeds (the larger spread, {100 * spread:.1f} points), so these runs do not show "
                 f"one method's teachers staying further from their student than the other's.")
    else:
        text += (f"{a}'s teachers stay further from their student than {b}'s, by {diff:.1f} "
                 f"points: the less coupled pair.")
    return text
