"""Tables for the chapters, built from results dicts (never from typed numbers)."""

from __future__ import annotations

import statistics
from typing import Any


def summarize(runs: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of one method's best and last evaluation.

    ``runs`` is one results dict or a list of them (one per seed, same metric). The standard
    deviation is the sample one (n - 1 in the denominator); ``None`` for a single run."""
    runs = [runs] if isinstance(runs, dict) else list(runs)
    if not runs:
        raise ValueError("no results to summarize")
    key = runs[0].get("metric", "acc")
    out: dict[str, Any] = {"metric": key, "n": len(runs),
                           "seeds": sorted(r["seed"] for r in runs),
                           "profile": ", ".join(sorted({_profile(r) for r in runs})),
                           "profile_changes": sorted({k for r in runs
                                                      for k in r.get("profile_changes") or ()}),
                           "steps": ", ".join(sorted({str(r["config"]["steps"]) for r in runs})),
                           "device": ", ".join(sorted({r["device"] for r in runs})),
                           "best_step": runs[0]["best"]["step"] if len(runs) == 1 else None}
    for which in ("best", "last"):
        vals = [r[which][key] for r in runs]
        out[which] = vals
        out[f"{which}_mean"] = statistics.fmean(vals)
        out[f"{which}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
    return out


def _profile(res: dict[str, Any]) -> str:
    """The run's profile, marked "(earlier)" where the profile has changed since the run (the
    fields a loaded results file's ``profile_changes`` names)."""
    return res["profile"] + (" (earlier)" if res.get("profile_changes") else "")


def aggregate(results: dict[str, Any], baseline: str = "supervised",
              ceiling: str | None = None) -> dict[str, dict[str, Any]]:
    """:func:`summarize` for each entry of ``{name: results or [results over seeds]}``, plus,
    against the ``baseline`` entry, ``gain_best`` and ``gain_last`` (difference of the means)
    and, with a ``ceiling`` entry (full supervision), ``gap_best`` and ``gap_last``: the share
    of the baseline-to-ceiling gap that the entry closes, (m - b) / (c - b) on the means
    (``None`` where an entry is missing or the gap is not positive)."""
    rows = {name: summarize(r) for name, r in results.items()}
    runs = {name: [r] if isinstance(r, dict) else list(r) for name, r in results.items()}
    base, top = rows.get(baseline), rows.get(ceiling) if ceiling else None
    for name, row in rows.items():
        for which in ("best", "last"):
            m = row[f"{which}_mean"]
            gain = gap = sd = None
            if base is not None and name != baseline:
                gain = m - base[f"{which}_mean"]
                width = top[f"{which}_mean"] - base[f"{which}_mean"] if top else 0.0
                if top is not None and name != ceiling and width > 0:
                    gap = gain / width
                # the ceiling's seeds too: the same seeds, every label
                sd = _paired_sd(runs[name], runs[baseline], which)
            row[f"gain_{which}"], row[f"gap_{which}"] = gain, gap
            row[f"gain_{which}_sd"] = sd
    return rows


def _paired_sd(runs: list[dict[str, Any]], base: list[dict[str, Any]], which: str):
    """The standard deviation over seeds of (run - baseline) at ``which`` (best or last), on
    the seeds both have (they share their split); None with fewer than two such seeds."""
    key = lambda r: r[which][r.get("metric", "acc")]
    b = {r["seed"]: key(r) for r in base}
    diffs = [key(r) - b[r["seed"]] for r in runs if r["seed"] in b]
    return statistics.stdev(diffs) if len(diffs) > 1 else None


def _pct(mean: float, std: float | None) -> str:
    return f"{100 * mean:.2f}%" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}%"


def _pts(gain: float | None, sd: float | None) -> str:
    if gain is None:
        return ""
    return f"{100 * gain:+.2f} pts" if sd is None else f"{100 * gain:+.2f} ± {100 * sd:.2f} pts"


def results_table(results: dict[str, Any], baseline: str = "supervised",
                  ceiling: str | None = None) -> str:
    """A Markdown table: best and last test metric of each entry and the gain over the
    baseline's last value, with the step and device that produced them.

    An entry is one results dict, or a list of them over seeds: then best and last are
    mean ± std over the seeds, a column counts the seeds, and the gain over the baseline, at
    the best and at the last evaluation, is the mean ± std of the per-seed differences (the
    seeds share their split, so the comparison is paired). With ``ceiling`` (the name of
    the fully supervised entry) a column gives the share of the baseline-to-ceiling gap that
    each entry closes (last evaluation). Numbers come from :func:`aggregate`."""
    rows = aggregate(results, baseline, ceiling)
    has_base = baseline in rows  # gain columns only against a baseline that is tabled
    key = next(iter(rows.values()))["metric"]
    label = {"acc": "acc", "miou": "mIoU"}[key]
    seeds = any(isinstance(r, (list, tuple)) for r in results.values())
    # profile, steps and device: a column only where the runs differ, else one line below
    shared = {k: next(iter(rows.values()))[k] for k in ("profile", "steps", "device")
              if len(rows) > 1 and len({str(r[k]) for r in rows.values()}) == 1}
    own = [k for k in ("profile", "steps") if k not in shared]
    head = ["method"] + own + (["seeds"] if seeds else []) + [
        f"best {label}" + ("" if seeds else " (step)"), f"last {label}"] + (
        ["gain (best)"] if seeds and has_base else []) + (["gain (last)"] if has_base else []) + (
        ["gap closed (last)"] if ceiling and has_base else []) + (
        [] if "device" in shared else ["device"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        best = _pct(r["best_mean"], r["best_std"])
        if r["best_step"] is not None and not seeds:
            best += f" ({r['best_step']})"
        cells = [name] + [str(r[k]) for k in own] + ([", ".join(map(str, r["seeds"]))]
                                                     if seeds else [])
        cells += [best, _pct(r["last_mean"], r["last_std"])]
        if seeds and has_base:
            cells.append(_pts(r["gain_best"], r["gain_best_sd"]))
        if has_base:
            cells.append(_pts(r["gain_last"], r["gain_last_sd"]))
        if ceiling and has_base:
            cells.append("" if r["gap_last"] is None else f"{100 * r['gap_last']:.0f}%")
        lines.append("| " + " | ".join(cells + ([] if "device" in shared else [r["device"]]))
                     + " |")
    # the short column names, said in words under the table
    said_gain = (f"gain: over {baseline}" + (", mean ± std of the per-seed differences"
                                             if seeds else "") + " (in points)")
    if ceiling:
        said_gain += f"; gap closed: the share of the gap from {baseline} to {ceiling} closed"
    if has_base:
        lines.append("\n" + said_gain[0].upper() + said_gain[1:] + ".")
    if shared:
        name, _, then = str(shared.get("profile")).partition(" ")
        said = {"profile": f"profile `{name}`" + (f" {then}" if then else ""),
                "steps": f"{shared.get('steps')} steps",
                "device": f"device {shared.get('device')}"}
        lines.append("\nEvery run: " + ", ".join(said[k] for k in shared) + ".")
    changed = sorted({k for r in rows.values() for k in r["profile_changes"]})
    if changed:
        lines.append(f"\n(earlier): a run of its profile as it was then; today's differs in "
                     f"{', '.join(changed)}.")
    return "\n".join(lines)



def curve_shape(steps: list[int], values: list[float], tol: float = 0.005) -> dict[str, Any]:
    """The shape of an evaluation curve, computed from it: its peak (value and step), its last
    value, and ``shape``: "rising" (the last evaluation is the peak, above the one before by
    more than ``tol``), "peaked" (the peak came earlier and the curve ended more than ``tol``
    below it) or "flat" (the end within ``tol`` of the peak and of the evaluation before)."""
    if not values:
        raise ValueError("an empty curve has no shape")
    peak = max(range(len(values)), key=lambda i: (values[i], i))
    out = {"peak": values[peak], "peak_step": steps[peak], "last": values[-1],
           "last_step": steps[-1], "fall": values[peak] - values[-1]}
    prev = values[-2] if len(values) > 1 else values[-1]
    if out["fall"] > tol:
        out["shape"] = "peaked"
    elif values[-1] - prev > tol:
        out["shape"] = "rising"
    else:
        out["shape"] = "flat"
    return out


def describe_shape(steps: list[int], values: list[float], what: str = "accuracy",
                   unit: float = 100.0) -> str:
    """A phrase for :func:`curve_shape`: "still rising at its last evaluation (step s)",
    "peaked at v at step s and ended p points lower" or "level over its last evaluations"."""
    c = curve_shape(steps, values)
    if c["shape"] == "rising":
        return f"its {what} was still rising at its last evaluation (step {c['last_step']})"
    if c["shape"] == "peaked":
        return (f"its {what} peaked at {unit * c['peak']:.2f} at step {c['peak_step']} and "
                f"ended {unit * c['fall']:.2f} points lower at step {c['last_step']}")
    return f"its {what} was level over its last evaluations (to step {c['last_step']})"


SEEDS = (0, 1, 2)


def over_seeds(cfgs: dict[str, Any], results: dict[str, Any] | None = None,
               seeds=SEEDS) -> dict[str, list[dict[str, Any]]]:
    """A chapter's runs over seeds: for each ``{name: config}``, the finished results files of
    the same config with each of ``seeds`` (``results``, the runs the chapter has at hand,
    stand in for their own seed, e.g. the smoke profile's runs, which are never saved)."""
    import dataclasses

    from .engine.results import finished_results
    out = {}
    for name, cfg in cfgs.items():
        own = (results or {}).get(name)
        runs = []
        for s in seeds:
            if own is not None and own["seed"] == s:
                runs.append(own)
            elif cfg.profile != "smoke":
                found = finished_results(dataclasses.replace(cfg, seed=s))
                if found is not None:
                    runs.append(found)
        if runs:
            out[name] = runs
    return out


def chapter_table(cfgs: dict[str, Any], results: dict[str, Any] | None = None,
                  baseline: str = "supervised", ceiling: bool = True, seeds=SEEDS) -> str:
    """The results table every chapter shows: each run of ``cfgs`` over ``seeds`` (mean ± std
    of the best and last evaluation), its gain over ``baseline`` with the spread of the
    per-seed differences and, with ``ceiling``, the share of the gap to full supervision
    (supervised-only training on every training label, same profile) that it closes; a line
    under the table says how many seeds each mean holds."""
    import dataclasses

    from .data import dataset_info
    runs = over_seeds(cfgs, results, seeds)
    top = None
    base = cfgs.get(baseline)
    if ceiling and base is not None:
        n = dataset_info(base.dataset).train_size
        full = over_seeds({"c": dataclasses.replace(base, labels=n)}, None, seeds).get("c")
        if full:
            top = f"fully supervised ({n} labels)"
            runs[top] = full
    if not runs:
        return "No finished run to table yet."
    counts = sorted({len(r) for r in runs.values()})
    if counts == [1]:  # one run each: the single-run format, best with its step
        runs = {name: r[0] for name, r in runs.items()}
    table = results_table(runs, baseline=baseline, ceiling=top)
    if counts == [1]:
        note = ("One seed only (seed " + str(next(iter(runs.values()))["seed"]) + "): no "
                "spread is known, so a difference between rows may be noise.")
    else:
        note = (f"Mean ± standard deviation over the seeds listed; a method's run and the "
                f"{baseline} run of one seed share their labeled split, so each gain is paired "
                f"seed by seed.")
    return table + "\n\n" + note

# Config fields that describe a chapter's runs, in the order the setup paragraph names them;
# a field that differs between the runs is listed per run instead.
_SETUP_FIELDS = ("arch", "encoder_weights", "steps", "batch_l", "batch_u", "crop_size",
                 "augment_scale_min", "augment_scale_max", "augment_pad", "optimizer", "lr",
                 "lr_schedule", "weight_decay", "ema_decay", "bn_momentum", "eval_every")


def _setup_value(field: str, cfg: Any) -> str:
    """A config value as the setup paragraph says it: an ``ema_decay`` of 0 is no EMA of the
    weights kept by the engine (a teacher method keeps its own, with the decay it names), and
    the ``mean_teacher`` learning-rate schedule is named for what it does."""
    value = getattr(cfg, field)
    if field == "lr_schedule" and value == "mean_teacher":
        return "Mean Teacher's sigmoid ramp-up and ramp-down"
    if field == "ema_decay" and not value:
        own = cfg.hparams.get("ema_after")
        return "none" + (f", its teacher's own decay {own:g}" if own else "")
    return str(value)


def setup_markdown(cfgs: dict[str, Any]) -> str:
    """A paragraph, computed from the configs, that says what a chapter's runs share (split
    file, model, steps and batches, weak view, optimiser, evaluation) and what differs between
    them, and where their numbers come from in this profile."""
    from .data import dataset_info
    from .data.splits import split_path
    cs = list(cfgs.values())
    c = cs[0]
    info = dataset_info(c.dataset)
    seg = info.task == "segmentation"
    same = {f for f in _SETUP_FIELDS if all(getattr(x, f) == getattr(c, f) for x in cs)}
    unit = "scenes" if seg else "images"
    parts = [f"the split file `splits/{split_path(c.dataset, c.labels, c.seed).name}` "
             f"({c.labels} labeled {unit}, seed {c.seed})"]
    if {"arch", "encoder_weights"} <= same:
        init = (f"{c.encoder_weights}-pretrained encoder" if c.encoder_weights
                else "randomly initialised")
        parts.append(f"the model `{c.arch}` ({init})" if seg else f"the model `{c.arch}`")
    if {"steps", "batch_l", "batch_u", "crop_size"} <= same:
        what = f"crops of {c.crop_size} x {c.crop_size} pixels" if seg and c.crop_size else unit
        parts.append(f"{c.steps:,} steps of {c.batch_l} labeled + {c.batch_u} unlabeled {what}")
    if seg and {"augment_scale_min", "augment_scale_max"} <= same:
        parts.append(f"a weak view that rescales by {c.augment_scale_min:g} to "
                     f"{c.augment_scale_max:g}, crops and flips")
    elif not seg and "augment_pad" in same:
        parts.append(f"a weak view that pads by {c.augment_pad}, crops and flips")
    if {"optimizer", "lr", "lr_schedule", "weight_decay"} <= same:
        wd = f", weight decay {c.weight_decay:g}" if c.weight_decay else ""
        parts.append(f"{'Adam' if c.optimizer == 'adam' else 'SGD'} at {c.lr:g} with a "
                     f"{c.lr_schedule} schedule{wd}")
    if "eval_every" in same:
        whole = " (whole scenes)" if seg else ""
        evaluated = "validation" if c.dataset in ("voc", "cityscapes") else "test"  # their val
        parts.append(f"an evaluation every {c.eval_every} steps on the {evaluated} set{whole}")
    text = ("Both runs share " if len(cs) == 2 else f"All {len(cs)} runs share ") + ", ".join(parts[:-1]) + f" and {parts[-1]}."
    differ = [f for f in _SETUP_FIELDS if f not in same]
    if differ:
        text += " They differ in " + "; ".join(
            f"`{f}`: " + ", ".join(f"{_setup_value(f, x)} ({m})" for m, x in cfgs.items())
            for f in differ) + "."
    if c.profile == "smoke":
        text += (" In the `smoke` profile each run trains here for a few steps, to exercise the "
                 "code; its numbers mean nothing.")
    else:
        text += (f" In the `{c.profile}` profile each run is read from the finished results "
                 f"file of exactly this configuration in `results/` (written by "
                 f"`python -m semibook reproduce`), and trained here only when there is none; "
                 f"the line under each run says which.")
    return text
