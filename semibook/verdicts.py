"""What the benchmark's results say, in words and tables: each table's Markdown (mean ± std over
seeds, the gain over supervised-only training and the share of the gap to full supervision it
closes), the paired verdict of a method against supervised-only training, the facts from a
run's history that bear on it, the time limits checked against the files, and the chapters'
verdicts and chapter 6's conclusion. :mod:`semibook.reproduce` plans and runs the tables;
everything here reads the results files it wrote (:func:`semibook.reproduce.collect`).
"""

from __future__ import annotations

from typing import Any

from . import reproduce as rp
from .diagnosis import last_score
from .names import display_name, name_list
from .outcomes import least_gain, measured_facts, verdict
from .reproduce import CEILING_METHOD, CLI


def table_markdown(got: dict[str, Any], labels: int) -> str:
    """The Markdown table of one label count of a :func:`collect` ed table: mean ± std over
    seeds, the gain over supervised-only and the share of the gap to the fully supervised
    ceiling that each method closes (see :func:`semibook.report.results_table`)."""
    from .report import results_table

    runs = dict(got["by_labels"].get(labels, {}))
    if not runs:
        return f"No finished run with {labels} labels yet."
    ceiling = None
    if got["ceiling"]:
        ceiling = f"fully supervised ({got['table'].ceiling_labels} labels)"
        runs[ceiling] = got["ceiling"]
    return results_table(runs, baseline=CEILING_METHOD, ceiling=ceiling)


def missing_markdown(got: dict[str, Any]) -> str:
    """Which runs of a :func:`collect` ed table have no results file yet, and the commands
    that produce them ('' when none is missing)."""
    missing, t, profile = got["missing"], got["table"], got["profile"]
    if not missing:
        return ""
    groups: dict[tuple[str, int, bool], list[int]] = {}
    for e in missing:
        groups.setdefault((e.method, e.labels, e.ceiling), []).append(e.seed)
    lines = [f"{len(missing)} of {got['runs']} runs of the `{t.name}` table have no finished "
             f"results file of the `{profile}` profile yet:", "",
             "| method | labels | seeds without results |", "|---|---|---|"]
    lines += [f"| {m}{' (fully supervised)' if c else ''} | {n} | {', '.join(map(str, s))} |"
              for (m, n, c), s in groups.items()]
    flag = "" if profile == "full" else f" --profile {profile}"
    lines += ["", f"`{CLI} reproduce {t.name}{flag}` runs them and skips the "
              f"finished ones; a single run: `{missing[0].command(profile)}`."]
    return "\n".join(lines)


def verdict_markdown(got: dict[str, Any], labels: int, method: str) -> str:
    """One sentence, computed from the results files, saying whether ``method`` beats
    supervised-only training (see :func:`verdict`) and what share of the gap it closes."""
    v = verdict(got, labels, method)
    if v is None:
        return (f"No finished pair of {method} and supervised runs with {labels} labels yet, so "
                f"no verdict.")
    unit = "accuracy points" if v["metric"] == "acc" else "mIoU points"
    seeds = f"{len(v['seeds'])} seed{'s' if len(v['seeds']) > 1 else ''} ({', '.join(map(str, v['seeds']))})"
    gain = f"{100 * v['gain']:+.2f} {unit}"
    split = f"{labels} labels" if v["metric"] == "acc" else f"{labels} labeled scenes"
    if v["sd"] is None:
        text = (f"**{display_name(method)}, {split}:** {gain} over supervised-only training on "
                f"{seeds}; a single seed has no spread, so whether it beats supervised by more "
                f"than two standard deviations is not known yet.")
    else:
        text = (f"**{display_name(method)}, {split}:** {gain} over supervised-only training (mean "
                f"of "
                f"the per-seed differences over {seeds}, standard deviation "
                f"{100 * v['sd']:.2f}, so two of them are {200 * v['sd']:.2f}): "
                + ("it beats supervised by more than two standard deviations (met)."
                   if v["shown"] else
                   "not more than two standard deviations above supervised (NOT met)"
                   + ("; it is more than two standard deviations below it, a loss the seeds "
                      "agree on." if v["loss_shown"] else ".")))
    if v["gap_closed"] is not None:
        text += (f" It closes {100 * v['gap_closed']:.0f}% of the gap between supervised-only "
                 f"training and full supervision." if v["gap_closed"] >= 0 else
                 f" It widens the gap between supervised-only training and full supervision by "
                 f"{-100 * v['gap_closed']:.0f}%.")
    if not v["shown"]:  # explain the seed that holds the verdict back: its smallest gain
        r, b = least_gain(got, labels, method)
        facts = measured_facts(r, b)
        if facts:
            text += (f" Measured on seed {r['seed']}, where it gained least "
                     f"({100 * (last_score(r) - last_score(b)):+.2f}), to explain it: " + "; ".join(facts)
                     + ".")
    return text


def timing(got: dict[str, Any]) -> dict[str, Any]:
    """The elapsed times that a :func:`collect` ed table's results files record (training and
    evaluation, as each run measured itself): count, sum, and the longest run."""
    runs = [r for rs in got["by_labels"].values() for rr in rs.values() for r in rr]
    runs += got["ceiling"]
    secs = [r["elapsed_s"] for r in runs]
    longest = max(runs, key=lambda r: r["elapsed_s"]) if runs else None
    return {"runs": len(runs), "of": got["runs"], "sum_s": sum(secs),
            "max_s": longest["elapsed_s"] if longest else None,
            "longest": (f"{longest['method']}, {longest['labels']} labels, seed {longest['seed']}"
                        if longest else None),
            "devices": sorted({r["device"] for r in runs})}


# The full profile's time limits on the project's 2-core CPU: the whole benchmark at most 12
# core-hours (each run uses one core: about 6 hours with two runs at a time), no run over 15
# minutes
BUDGET_CORE_H = 12.0
MAX_RUN_MIN = 15.0


def timing_markdown(tables: dict[str, dict[str, Any]], budget_core_h: float = BUDGET_CORE_H,
                    max_run_min: float = MAX_RUN_MIN) -> str:
    """The full profile's time limits checked against the results files: per table and in all,
    the sum of the runs' elapsed times (core-hours: each run uses one core), that sum halved
    (two runs at a time), and the longest run."""
    lines = ["| table | finished runs | core-hours (sum of elapsed times) | two at a time | "
             "longest run |", "|---|---|---|---|---|"]
    total, longest, done, planned = 0.0, 0.0, 0, 0
    for name, got in tables.items():
        t = timing(got)
        total, done, planned = total + t["sum_s"], done + t["runs"], planned + t["of"]
        if t["runs"]:
            longest = max(longest, t["max_s"])
            lines.append(f"| {name} | {t['runs']} of {t['of']} | {t['sum_s'] / 3600:.2f} h | "
                         f"{t['sum_s'] / 7200:.2f} h | {t['max_s'] / 60:.1f} min "
                         f"({t['longest']}) |")
        else:
            lines.append(f"| {name} | 0 of {t['of']} | - | - | - |")
    lines.append(f"| all | {done} of {planned} | {total / 3600:.2f} h | {total / 7200:.2f} h | "
                 f"{longest / 60:.1f} min |")
    ok_total, ok_max = total / 3600 <= budget_core_h, longest / 60 <= max_run_min
    what = "the whole benchmark" if done == planned else f"the {done} finished runs"
    lines += ["", f"Time limits: at most {budget_core_h:g} core-hours in all, no run over "
              f"{max_run_min:g} minutes. For {what}: {total / 3600:.2f} core-hours "
              f"({'within' if ok_total else 'above'} the limit"
              f"{'' if done == planned else ' so far; the whole benchmark is not measured yet'})"
              f", longest run "
              f"{longest / 60:.1f} min ({'within' if ok_max else 'above'} the limit)."
              + seed_spread(tables)]
    return "\n".join(lines)


def seed_spread(tables: dict[str, dict[str, Any]]) -> str:
    """The largest ratio between two seeds' elapsed times of one config (method and label
    count): the seeds of a config do the same work (steps, batches, evaluations), so the ratio
    is the speed and load of the machine when they ran. Empty without two seeds of a config."""
    worst = None
    for got in tables.values():
        for n, runs in got["by_labels"].items():
            for method, rs in runs.items():
                if len(rs) > 1:
                    lo, hi = (f(r["elapsed_s"] for r in rs) for f in (min, max))
                    if worst is None or hi / lo > worst[0]:
                        worst = (hi / lo, method, n, lo, hi)
    if worst is None:
        return ""
    r, method, n, lo, hi = worst
    return (f" The seeds of one config do the same work, yet their elapsed times differ by up "
            f"to {r:.2f} times ({method}, {n} labels: {lo:.0f} s to {hi:.0f} s): the speed and "
            f"load of the machine when they ran.")


def contributions_markdown(table: str, steps: list[tuple[str, str, str]],
                           profile: str = "full") -> str:
    """What each ingredient adds, from the results files: for each (method, baseline, what
    the method adds to the baseline) and each label count of ``table``, the paired gain of the
    method over the baseline over the seeds both finished (see :func:`verdict`), and whether
    it exceeds two standard deviations."""
    got = rp.collect(table, profile)
    lines = []
    for method, baseline, what in steps:
        for n in got["table"].labels:
            v = verdict(got, n, method, baseline)
            if v is None:
                lines.append(f"- **{what}** ({method} against {baseline}, {n} labels): no "
                             f"finished pair of runs yet.")
                continue
            unit = "accuracy points" if v["metric"] == "acc" else "mIoU points"
            unit += "" if v["sd"] is None else f", standard deviation {100 * v['sd']:.2f}"
            seeds = ", ".join(map(str, v["seeds"]))
            claim = ("more than two standard deviations: a gain, shown" if v["shown"] else
                     "a single seed: not yet known whether it exceeds its spread"
                     if v["sd"] is None else
                     "more than two standard deviations below: a loss, shown"
                     if v["loss_shown"] else
                     "within two standard deviations: neither a gain nor a loss is shown")
            lines.append(f"- **{what}** ({method} against {baseline}, {n} labels): "
                         f"{100 * v['gain']:+.2f} {unit}, seed{'s' if len(v['seeds']) > 1 else ''}"
                         f" {seeds}; {claim}.")
    return "\n".join(lines)


def chapter_verdicts(table: str, methods: list[str], profile: str = "full") -> str:
    """What a chapter says about its methods over the benchmark's seeds: one
    :func:`verdict_markdown` sentence per method and label count of ``table``, from the
    ``profile`` results files (chapter 6 tables them all)."""
    got = rp.collect(table, profile)
    lead = ("Over the benchmark's seeds (the runs that chapter 6 tables), from the results "
            "files: the gain is the mean of the per-seed differences in the last evaluation, "
            "and it counts as shown when it exceeds two standard deviations of those "
            "differences.")
    lines = [verdict_markdown(got, n, m) for n in got["table"].labels for m in methods]
    return "\n\n".join([lead, *lines])


def conclusion_markdown(tables: dict[str, dict[str, Any]]) -> str:
    """The benchmark's conclusion, computed from :func:`collect` ed tables: per table and split,
    which methods beat supervised-only training by more than two standard
    deviations of the per-seed differences and which do not, the largest share of the
    supervised-to-full-supervision gap a method closes there, and the ceiling."""
    import statistics
    out = []
    for (name, got), n in [((name, got), n) for name, got in tables.items()
                           for n in sorted(got["table"].labels)]:
        t = got["table"]
        vs = [v for m in t.methods if m != CEILING_METHOD
              for v in [verdict(got, n, m)] if v is not None]
        if not vs:
            out.append(f"**{name}, {n} labels:** no finished pair of runs yet.")
            continue
        smallest = n == min(t.labels)
        unit = "%" if vs[0]["metric"] == "acc" else " mIoU"
        won = [v["method"] for v in vs if v["shown"]]
        lost = [v["method"] for v in vs if not v["shown"] and not v["loss_shown"]]
        below = [v["method"] for v in vs if v["loss_shown"]]
        ceiling = [last_score(r) for r in got["ceiling"]]
        split = f"{n} labels" if vs[0]["metric"] == "acc" else f"{n} labeled scenes"
        two = "supervised-only training by more than two standard deviations"
        body = ((f"{name_list(won)} beat{'s' if len(won) == 1 else ''} {two}" if won else
                 f"{name_list(lost)} do{'es' if len(lost) == 1 else ''} not beat {two}" if lost
                 else f"no method beats {two}")
                + (f"; {name_list(lost)} do{'es' if len(lost) == 1 else ''} not"
                   if lost and won else "")
                + (f"; {name_list(below)} end{'s' if len(below) == 1 else ''} below it by more "
                   f"than two standard deviations" if below else "") + ".")
        text = f"**{name}, {split}:** " + body[0].upper() + body[1:]
        # the largest share of the gap closed, from unlabeled images alone and, apart, with the
        # weak labels (boxes) of chapter 7's dual-branch methods
        for kind, pick in (("", lambda m: m not in rp.WEAK_LABEL_METHODS),
                           (" with box labels on the unlabeled images",
                            lambda m: m in rp.WEAK_LABEL_METHODS)):
            top = max((v for v in vs if v["gap_closed"] is not None and pick(v["method"])),
                      key=lambda v: v["gap_closed"], default=None)
            if top is not None:
                text += (f" The largest share of the gap to full supervision closed{kind}: "
                         f"{100 * top['gap_closed']:.0f}% ({display_name(top['method'], False)}, "
                         f"{100 * top['gain']:+.1f} points).")
        if ceiling and smallest:
            text += (f" Every label: {100 * statistics.fmean(ceiling):.1f}{unit} over "
                     f"{len(ceiling)} seed{'s' if len(ceiling) > 1 else ''}.")
        missing = got["runs"] - timing(got)["runs"]
        if missing and smallest:
            text += f" {missing} of the table's {got['runs']} runs have not finished."
        out.append(text)
    return "\n\n".join(out)


def summary_markdown(table: str, methods: list[str], labels: int | None = None,
                     profile: str = "full") -> str:
    """A chapter summary's measured bullets, one per method and split (``labels``: one split;
    default every split of the table), computed from the results files: the gain over
    supervised-only training with its spread, whether it is more than two standard deviations
    (above or below), the share of the gap to full supervision closed, and the class that
    collapsed on the seed that gained least, where one did."""
    from .outcomes import collapsed_in
    got = rp.collect(table, profile)
    out = []
    for labels, m in [(n, m) for m in methods
                      for n in ([labels] if labels is not None else got["table"].labels)]:
        v = verdict(got, labels, m)
        if v is None or v["sd"] is None:
            out.append(f"- {display_name(m)}, {labels} labels: not enough finished seeds for a "
                       f"verdict yet.")
            continue
        word = ("more than two standard deviations above supervised-only training" if v["shown"]
                else "below supervised-only training by more than two standard deviations"
                if v["loss_shown"] else "not more than two standard deviations from it")
        unit = "accuracy points" if v["metric"] == "acc" else "mIoU points"
        split = f"{labels} labels" if v["metric"] == "acc" else f"{labels} labeled scenes"
        text = (f"- {display_name(m)}, {split}: {100 * v['gain']:+.1f} ± {100 * v['sd']:.1f} {unit} over "
                f"supervised-only training over {len(v['seeds'])} seeds, {word}")
        if v["gap_closed"] is not None:
            text += (f"; {100 * v['gap_closed']:.0f}% of the gap to full supervision closed"
                     if v["gap_closed"] >= 0 else
                     f"; the gap to full supervision {-100 * v['gap_closed']:.0f}% wider")
        if not v["shown"]:
            seed, classes = collapsed_in(got, labels, m)
            if classes:
                names = " and ".join([", ".join(classes[:-1]), classes[-1]] if len(classes) > 1
                                     else classes)
                text += (f"; on seed {seed}, where it gained least, {names} collapsed on the "
                         f"tracked unlabeled data")
        out.append(text + ".")
    return "\n".join(out)


def versus_markdown(table: str, method: str, baseline: str, profile: str = "full") -> str:
    """``method`` against another method of ``table`` (``baseline``), paired by seed as
    :func:`verdict` pairs a method with supervised-only training, one bullet per split."""
    got = rp.collect(table, profile)
    out = []
    for n in got["table"].labels:
        v = verdict(got, n, method, baseline=baseline)
        if v is None or v["sd"] is None:
            continue
        unit = "accuracy points" if v["metric"] == "acc" else "mIoU points"
        split = f"{n} labels" if v["metric"] == "acc" else f"{n} labeled scenes"
        word = ("more than two standard deviations ahead" if v["shown"] else
                "more than two standard deviations behind" if v["loss_shown"] else
                "within two standard deviations: no difference shown")
        out.append(f"- {split}: {100 * v['gain']:+.1f} ± {100 * v['sd']:.1f} {unit} over "
                   f"{len(v['seeds'])} seeds, {word}")
    head = (f"{display_name(method)} against {display_name(baseline, False)}, the mean of the "
            f"per-seed differences in the last evaluation ± their standard deviation:")
    return head + "\n\n" + "\n".join(out) if out else f"{head} no pair of finished runs yet."
