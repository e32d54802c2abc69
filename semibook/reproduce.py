"""Reproduce a results table: ``python -m semibook reproduce classification``.

A table is a list of runs (method, dataset, labels, seed) at the ``full`` profile: every method
of the table on each of its label counts, plus supervised-only training with every training
label (the fully supervised ceiling), each for seeds 0, 1 and 2. A run whose results file in
``results/`` already holds a finished run of exactly the same config is skipped; a run folder
left by an interrupted run of the same config is resumed from its checkpoint; everything else
is trained with :func:`semibook.engine.run.run`, which writes the results file.

The label counts of the tables live in :data:`TABLE_LABELS`, and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from .config import Config, choose, make_config
from .data import dataset_info
from .checks import NonFiniteLossError
from .engine.resume import resume_diff
from .data.splits import file_sha256, split_path
from .engine.results import read_results, result_name, same_config
from .engine.run import default_run_dir, run
from .paths import results_dir

SEEDS = (0, 1, 2)

# How the book and the messages write the command: the interpreter of the README's set-up
# (``make book`` or ``make test`` create .venv).
CLI = ".venv/bin/python -m semibook"

# The label counts of each table: the one place to change them. Classification: 100 labels (ten
# a class) beside MixMatch's headline setting of 250. At 40 labels (four a class, the smallest
# setting of the FixMatch-era benchmarks) the draw of the four images decided more than the
# method: over seeds 0-2 supervised-only ended at 49.4, 59.2 and 52.6 %, MixMatch at 63.2, 75.2
# and 57.5 %, so three seeds could not tell a method from its split (results/v2-40-labels/).
# Segmentation: labeled scenes out of the 10,000 training scenes of fashion-scenes. The smallest
# split must leave at least 20 points to full supervision at the profile's size (chapter 6's
# calibration measures it).
TABLE_LABELS: dict[str, tuple[int, ...]] = {
    "classification": (100, 250),
    "segmentation": (20, 50),
}

CEILING_METHOD = "supervised"
# chapter 7's methods, which learn from the weak labels of fashion-scenes (boxes, class lists)
WEAK_LABEL_METHODS = ("soft_teacher", "dual_branch", "dual_branch_teacher")


@dataclass(frozen=True)
class Table:
    """Methods of one task on one dataset at several label counts, plus the ceiling.
    ``full_labels`` is the ceiling's label count (default: every training image)."""
    name: str
    dataset: str
    methods: tuple[str, ...]
    labels: tuple[int, ...]
    full_labels: int | None = None

    @property
    def ceiling_labels(self) -> int:
        return self.full_labels or dataset_info(self.dataset).train_size


TABLES: dict[str, Table] = {
    "classification": Table("classification", "fashion-mnist",
                            ("supervised", "mixmatch", "mean_teacher"),
                            TABLE_LABELS["classification"]),
    "segmentation": Table("segmentation", "fashion-scenes",
                          ("supervised", "mean_teacher", "adversarial", "cps", "cps_cutmix",
                           "dual_teacher") + WEAK_LABEL_METHODS, TABLE_LABELS["segmentation"]),
}


@dataclass(frozen=True)
class Entry:
    """One run of a table; ``ceiling`` marks supervised-only training with every label."""
    method: str
    dataset: str
    labels: int
    seed: int
    ceiling: bool = False

    def command(self, profile: str = "full") -> str:
        return (f"{CLI} run --method {self.method} --dataset {self.dataset} "
                f"--labels {self.labels} --profile {profile} --seed {self.seed}")


def get_table(table: str | Table) -> Table:
    return table if isinstance(table, Table) else TABLES[choose("table", table, TABLES)]


def entries(table: str | Table, seeds=SEEDS, methods=None, labels=None) -> list[Entry]:
    """The runs of a table, label count by label count, then the ceiling. ``methods`` keeps
    only those methods (the ceiling is a ``supervised`` run); ``labels`` only those label
    counts (the ceiling's included)."""
    t = get_table(table)
    keep = list(t.methods) if methods is None else [choose("method", m, t.methods)
                                                    for m in methods]
    counts = t.labels if labels is None else [int(choose(
        "label count", str(n), [str(k) for k in (*t.labels, t.ceiling_labels)])) for n in labels]
    out = [Entry(m, t.dataset, n, s) for n in t.labels if n in counts for m in t.methods
           if m in keep for s in seeds]
    if CEILING_METHOD in keep and (labels is None or t.ceiling_labels in counts):
        out += [Entry(CEILING_METHOD, t.dataset, t.ceiling_labels, s, ceiling=True)
                for s in seeds]
    return out


SPLIT_CHANGED = "the split file"  # how a stale row's reason starts when its split changed


def status(cfg: Config) -> tuple[str, dict[str, Any] | None, str]:
    """``done`` (a finished results file of this config, on today's split file), ``stale`` (the
    results file holds another config, an unfinished run, or a split whose file has changed
    since; it will be replaced), ``missing``, or ``foreign`` (a file at the results name that
    is not a results file: never replaced); and why, for ``stale`` and ``foreign``."""
    path = results_dir() / result_name(cfg)
    if not path.exists():
        return "missing", None, ""
    res = read_results(path)
    if res is None:
        return "foreign", None, f"{path} is not a results file; move it away to run this"
    if not same_config(res, cfg):
        return "stale", res, "its results file holds another config"
    if not res.get("finished"):
        return "stale", res, "its results file holds an unfinished run"
    split = split_path(cfg.dataset, cfg.labels, cfg.seed)
    if split.exists() and res.get("split_sha256") != file_sha256(split):
        return "stale", res, (f"{SPLIT_CHANGED} {split} has changed since the run (sha256 "
                              f"{str(res.get('split_sha256'))[:12]} in the results file, "
                              f"{file_sha256(split)[:12]} now)")
    return "done", res, ""


def plan(table: str | Table, seeds=SEEDS, methods=None, profile: str = "full",
         overrides: dict[str, Any] | None = None, labels=None) -> list[dict[str, Any]]:
    """Each run of the table with its config, status (and why) and (when done) its results."""
    rows = []
    for e in entries(table, seeds, methods, labels):
        cfg = make_config(e.method, e.dataset, e.labels, e.seed, profile, **(overrides or {}))
        st, res, why = status(cfg)
        rows.append({"entry": e, "config": cfg, "status": st, "why": why,
                     "results": res if st == "done" else None})
    return rows


def _resumable(cfg: Config) -> bool:
    """A run folder of this very config exists (e.g. an interrupted run): continue it."""
    path = default_run_dir(cfg) / "config.json"
    try:
        return path.exists() and not resume_diff(cfg, json.loads(path.read_text()))
    except (OSError, ValueError):
        return False


def describe(row: dict[str, Any]) -> str:
    """One line: method, dataset, labels, seed and profile of a planned run."""
    e = row["entry"]
    return (f"{e.method:<13} {e.dataset} {e.labels:>6} labels{' (ceiling)' if e.ceiling else ''}"
            f"  seed {e.seed}  {row['config'].profile}")


def reproduce(table: str | Table, seeds=SEEDS, methods=None, profile: str = "full",
              dry_run: bool = False, device: str | None = None, progress: bool = True,
              overrides: dict[str, Any] | None = None,
              echo: Callable[[str], None] = print, labels=None,
              allow_code_change: bool = False) -> list[dict[str, Any]]:
    """Run what is not done yet of ``table`` (one line per run says what happens to it);
    ``dry_run`` only lists. Returns the plan, with ``status`` ``ran`` for the runs trained now
    and ``failed`` for those stopped by a non-finite loss (the others still run).
    Smoke-profile runs are never written to ``results/``, so they are never ``done``."""
    rows = plan(table, seeds, methods, profile, overrides, labels)
    todo = [r for r in rows if r["status"] not in ("done", "foreign")]
    for r in rows:
        echo(f"{r['status']:<8} {describe(r)}" + (f"  ({r['why']})" if r["why"] else ""))
    foreign = sum(r["status"] == "foreign" for r in rows)
    echo(f"{len(rows) - len(todo) - foreign} of {len(rows)} runs done, {len(todo)} to run"
         + (f", {foreign} blocked by a file that is not a results file" if foreign else "")
         + (" (smoke runs are never saved as results)" if profile == "smoke" else ""))
    if dry_run:
        return rows
    for i, r in enumerate(todo, 1):
        cfg = r["config"]
        # a run folder of the old split is started again, never continued on the new one
        resume = _resumable(cfg) and not r["why"].startswith(SPLIT_CHANGED)
        echo(f"[{i}/{len(todo)}] {'resuming' if resume else 'training'} {describe(r)}")
        try:
            res = run(cfg, resume=resume, overwrite=not resume, progress=progress,
                      device=device, allow_code_change=allow_code_change)
        except NonFiniteLossError as e:
            echo(f"failed: {e}")
            r["status"] = "failed"
            continue
        r["status"], r["results"] = "ran", res
    failed = [r for r in todo if r["status"] == "failed"]
    if failed:
        echo(f"{len(failed)} run(s) failed: " + "; ".join(describe(r) for r in failed))
    return rows


def collect(table: str | Table, profile: str = "full", seeds=SEEDS, methods=None,
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The finished results of a table, grouped for :func:`semibook.report.results_table`:
    ``by_labels`` maps each label count to ``{method: [results over seeds]}`` (methods without
    any finished run left out), ``ceiling`` holds the fully supervised runs, and ``missing``
    the entries without a finished results file of their exact config."""
    t = get_table(table)
    rows = plan(t, seeds, methods, profile, overrides)
    by_labels: dict[int, dict[str, list]] = {n: {} for n in t.labels}
    ceiling, missing = [], []
    for r in rows:
        e = r["entry"]
        if r["status"] != "done":
            missing.append(e)
        elif e.ceiling:
            ceiling.append(r["results"])
        else:
            by_labels[e.labels].setdefault(e.method, []).append(r["results"])
    return {"table": t, "profile": profile, "by_labels": by_labels, "ceiling": ceiling,
            "missing": missing, "runs": len(rows), "entries": [r["entry"] for r in rows]}


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


def verdict(got: dict[str, Any], labels: int, method: str,
            baseline: str = CEILING_METHOD) -> dict[str, Any] | None:
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
    last = lambda r: r["last"][r["metric"]]
    by_seed = {r["seed"]: last(r) for r in runs[method]}
    base = {r["seed"]: last(r) for r in runs[baseline]}
    seeds = sorted(set(by_seed) & set(base))
    if not seeds:
        return None
    diffs = [by_seed[s] - base[s] for s in seeds]
    gain = statistics.fmean(diffs)
    sd = statistics.stdev(diffs) if len(diffs) > 1 else None
    ceiling = [last(r) for r in got["ceiling"]]
    sup_mean = statistics.fmean(base[s] for s in seeds)
    width = statistics.fmean(ceiling) - sup_mean if ceiling else None
    return {"method": method, "labels": labels, "seeds": seeds, "gain": gain, "sd": sd,
            "shown": sd is not None and gain > 2 * sd,
            "loss_shown": sd is not None and gain < -2 * sd, "metric": runs[method][0]["metric"],
            "gap_closed": gain / width if width and width > 0 else None}


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
    if v["sd"] is None:
        text = (f"**{method}, {labels} labels:** {gain} over supervised-only training on "
                f"{seeds}; a single seed has no spread, so whether it beats supervised by more "
                f"than two standard deviations is not known yet.")
    else:
        text = (f"**{method}, {labels} labels:** {gain} over supervised-only training (mean of "
                f"the per-seed differences over {seeds}, standard deviation "
                f"{100 * v['sd']:.2f}): "
                + ("it beats supervised by more than two standard deviations (met)."
                   if v["shown"] else
                   "not more than two standard deviations above supervised (NOT met)"
                   + ("; it is more than two standard deviations below it, a loss the seeds "
                      "agree on." if v["loss_shown"] else ".")))
    if v["gap_closed"] is not None:
        text += (f" It closes {100 * v['gap_closed']:.0f}% of the gap between supervised-only "
                 f"training and full supervision.")
    if not v["shown"]:
        facts = measured_facts(got["by_labels"][labels][method][0],
                               got["by_labels"][labels][CEILING_METHOD][0])
        if facts:
            text += " Measured on seed " + str(got["by_labels"][labels][method][0]["seed"]) + \
                ", to explain it: " + "; ".join(facts) + "."
    return text


def measured_facts(res: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """Facts from one run's history (and its supervised baseline's) that bear on why a method
    did not beat supervised: the shape of each test curve (still rising at the end, peaked
    earlier and fell, or level; :func:`semibook.report.curve_shape`), and how right the tracked
    pseudo labels were at the end."""
    from .report import describe_shape

    key = res["metric"]
    out = []
    for name, r in (("the method", res), ("supervised-only training", base)):
        ev = [h for h in r.get("history", []) if h["kind"] == "eval"]
        if len(ev) >= 2:
            shape = describe_shape([h["step"] for h in ev], [h[key] for h in ev],
                                   "accuracy" if key == "acc" else "mIoU")
            out.append(f"for {name}, {shape}")
    last = next((h for h in reversed(res.get("history", [])) if h.get("agreement")), None)
    if last:
        pair, a = next(iter(last["agreement"].items()))
        prec = a["agree_correct"] / a["agree"] if a["agree"] else 0.0
        out.append(f"at the end its tracked pair ({pair}) agreed on {100 * a['agree']:.1f}% of "
                   f"the unlabeled {'images' if key == 'acc' else 'pixels'}, and "
                   f"{100 * prec:.1f}% of the labels it agreed on were right")
    return out


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
              f"({'within' if ok_total else 'above'} the limit), longest run "
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
    got = collect(table, profile)
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
    got = collect(table, profile)
    lead = ("Over the benchmark's seeds (the runs that chapter 6 tables), from the results "
            "files: the gain is the mean of the per-seed differences in the last evaluation, "
            "and it counts as shown when it exceeds two standard deviations of those "
            "differences.")
    lines = [verdict_markdown(got, n, m) for n in got["table"].labels for m in methods]
    return "\n\n".join([lead, *lines])


def conclusion_markdown(tables: dict[str, dict[str, Any]]) -> str:
    """The benchmark's conclusion, computed from :func:`collect` ed tables: per table, at its
    smallest split, which methods beat supervised-only training by more than two standard
    deviations of the per-seed differences and which do not, the largest share of the
    supervised-to-full-supervision gap a method closes there, and the ceiling."""
    import statistics
    out = []
    for name, got in tables.items():
        t = got["table"]
        n = min(t.labels)
        vs = [v for m in t.methods if m != CEILING_METHOD
              for v in [verdict(got, n, m)] if v is not None]
        if not vs:
            out.append(f"**{name}:** no finished pair of runs at {n} labels yet.")
            continue
        unit = "%" if vs[0]["metric"] == "acc" else " mIoU"
        won = [v["method"] for v in vs if v["shown"]]
        lost = [v["method"] for v in vs if not v["shown"]]
        top = max((v for v in vs if v["gap_closed"] is not None),
                  key=lambda v: v["gap_closed"], default=None)
        ceiling = [r["last"][r["metric"]] for r in got["ceiling"]]
        text = (f"**{name}, {n} labels:** "
                + (f"{', '.join(won)} beat{'s' if len(won) == 1 else ''} supervised-only "
                   f"training by more than two standard deviations" if won else
                   "no method beats supervised-only training by more than two standard "
                   "deviations")
                + (f"; {', '.join(lost)} do{'es' if len(lost) == 1 else ''} not" if lost else "")
                + ".")
        if top is not None:
            text += (f" The largest share of the gap to full supervision closed: "
                     f"{100 * top['gap_closed']:.0f}% ({top['method']}, "
                     f"{100 * top['gain']:+.1f} points).")
        if ceiling:
            text += (f" Every label: {100 * statistics.fmean(ceiling):.1f}{unit} over "
                     f"{len(ceiling)} seed{'s' if len(ceiling) > 1 else ''}.")
        missing = got["runs"] - timing(got)["runs"]
        if missing:
            text += f" {missing} of the table's {got['runs']} runs have not finished."
        out.append(text)
    return "\n\n".join(out)
