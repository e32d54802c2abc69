"""The CPU's speed levers measured side by side: ``python -m semibook bench --levers``.

For each case (every method at the ``full`` profile), one model and optimizer per lever is
built from the same config, and their training steps are timed *interleaved*: one step of each
lever in turn, for as many rounds as asked, so a machine whose speed drifts (other work, a
neighbour on the host) slows every lever alike and the ratios hold. The levers:

- ``reference``: every speed option off (eager float32, NCHW, the default optimizer), the code
  path of the results committed so far;
- ``channels_last``: NHWC tensors and models (oneDNN's native layout on the CPU);
- ``bf16``: bfloat16 autocast (convolutions and matrix products in bf16, sums in float32);
- ``fused``: the optimizer's fused kernel;
- ``compile``: ``torch.compile`` (inductor); its compile time is the first steps' excess,
  reported apart, with the number of steps after which it pays within the run;
- ``chosen``: :data:`semibook.config.FAST`, the combination kept.

Evaluation is timed once per lever pair (reference, chosen) over the whole test set, and the
chosen setting's intermediate evaluation on the fixed subset (``eval_subset``), giving the
share of a whole run that evaluation takes. Threads: the chosen step with 2 threads against 1,
interleaved in the same process (two 1-thread runs side by side were not timed here).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .config import FAST, Config, ConfigError

LEVERS: dict[str, dict[str, Any]] = {
    "reference": {}, "channels_last": dict(channels_last="on"), "bf16": dict(precision="bf16"),
    "fused": dict(fused_optimizer="on"), "compile": dict(compile=True), "chosen": FAST}
EVAL_SUBSET = {"classification": 2000, "segmentation": 250}


def _interleaved(fns: dict[str, Callable[[int], Any]], rounds: int, first: int) -> dict[str, list]:
    """Per-step times of each function, one call of each in turn for ``rounds`` rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn(first + r)
            times[k].append(time.perf_counter() - t)
    return times


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def lever_case(name: str, rounds: int = 15, warmup: int = 3, levers: list[str] | None = None,
               data_root: str | None = None, threads: bool = True, quick: bool = False,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time one case's step under each lever (interleaved), its evaluation, and threads
    (``quick``: the case's tiny version, for the tests)."""
    from .bench import _setup, case_config, reference_config
    from .engine.step import train_step
    levers = levers or list(LEVERS)
    device = torch.device("cpu")
    cfg, image_set = case_config(name, quick, data_root)
    run_steps, evals = cfg.steps, -(-cfg.steps // cfg.eval_every)
    base = dataclasses.replace(reference_config(cfg), steps=max(cfg.steps, 10 * (warmup + rounds)))
    built, warm = {}, {}
    for lever in levers:
        c = dataclasses.replace(base, **LEVERS[lever])
        trainer, opt = _setup(c, image_set, device)
        fn = (lambda tr, op: lambda s: train_step(tr, op, s))(trainer, opt)
        warm[lever] = [_timed(lambda: fn(s)) for s in range(warmup)]
        built[lever] = (trainer, fn)
    times = _interleaved({k: fn for k, (_, fn) in built.items()}, rounds, warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med[levers[0]]
    out: dict[str, Any] = {"method": cfg.method, "dataset": cfg.dataset, "arch": cfg.arch,
                           "batch_l": cfg.batch_l, "batch_u": cfg.batch_u, "rounds": rounds,
                           "run_steps": run_steps, "evaluations": evals, "levers": {}}
    for k in levers:
        row = {"change": LEVERS[k], "median_s": med[k], "speedup": ref / med[k],
               "p25_s": statistics.quantiles(times[k], n=4)[0],
               "p75_s": statistics.quantiles(times[k], n=4)[2], "warmup_s": warm[k]}
        if k == "compile":  # the compile time: the warm-up's excess over steady steps
            row["compile_s"] = sum(warm[k]) - warmup * med[k]
            saved = med[levers[0]] - med[k]
            row["pays_after_steps"] = row["compile_s"] / saved if saved > 0 else None
            row["pays_within_run"] = saved > 0 and row["compile_s"] < saved * run_steps
        out["levers"][k] = row
        log(f"{name:>24} {k:>14}: {med[k] * 1e3:8.1f} ms/step  x{ref / med[k]:.2f}"
            + (f"  (compile {row['compile_s']:.0f} s)" if "compile_s" in row else ""))
    if "chosen" in built:
        out["evaluation"] = _evaluation(built, cfg, out, log, name)
        if threads:
            out["threads"] = _threads(built["chosen"][1], rounds, warmup + rounds, log, name)
    return out


def _evaluation(built: dict, cfg: Config, out: dict, log, name: str) -> dict[str, Any]:
    """Seconds of one whole evaluation (reference and chosen), of one on the fixed subset
    (chosen), and evaluation's share of a whole run of the chosen setting."""
    task = "segmentation" if built["chosen"][0].segmentation else "classification"
    subset = min(EVAL_SUBSET[task], len(built["chosen"][0].test_x) // 4)
    res: dict[str, Any] = {"test_images": len(built["chosen"][0].test_x), "eval_subset": subset}
    if "reference" in built:
        res["reference_whole_s"] = _timed(lambda: built["reference"][0].evaluate(1, whole=True))
    chosen = built["chosen"][0]
    res["chosen_whole_s"] = _timed(lambda: chosen.evaluate(1, whole=True))
    chosen.cfg = dataclasses.replace(chosen.cfg, eval_subset=subset)
    chosen.__dict__.pop("subset", None)
    res["chosen_subset_s"] = _timed(lambda: chosen.evaluate(1, whole=False))
    step, n, evals = out["levers"]["chosen"]["median_s"], out["run_steps"], out["evaluations"]
    ev_all = evals * res["chosen_whole_s"]
    ev_sub = (evals - 1) * res["chosen_subset_s"] + res["chosen_whole_s"]
    res["share_whole_every_time"] = ev_all / (n * step + ev_all)
    res["share_subset_then_whole"] = ev_sub / (n * step + ev_sub)
    if "reference_whole_s" in res:
        ref_step = out["levers"]["reference"]["median_s"]
        ref_ev = evals * res["reference_whole_s"]
        res["reference_share"] = ref_ev / (n * ref_step + ref_ev)
        res["run_speedup"] = (n * ref_step + ref_ev) / (n * step + ev_sub)
    log(f"{name:>24} evaluation: whole {res['chosen_whole_s']:.1f} s, subset "
        f"{res['chosen_subset_s']:.1f} s; share of a run {res['share_subset_then_whole']:.1%} "
        f"(whole every time {res['share_whole_every_time']:.1%})")
    return res


def _threads(fn: Callable[[int], Any], rounds: int, first: int, log, name: str) -> dict:
    """The chosen step with 2 threads against 1, interleaved."""
    was = torch.get_num_threads()
    per: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        for n in (1, 2):
            torch.set_num_threads(n)
            per[n].append(_timed(lambda: fn(first + r)))
    torch.set_num_threads(was)
    m1, m2 = statistics.median(per[1]), statistics.median(per[2])
    res = {"one_thread_s": m1, "two_threads_s": m2, "two_thread_speedup": m1 / m2,
           "better": "two 1-thread runs side by side" if m1 / m2 < 2 else "one 2-thread run"}
    log(f"{name:>24} threads: 1 thread {m1 * 1e3:.1f} ms, 2 threads {m2 * 1e3:.1f} ms "
        f"(x{m1 / m2:.2f}; two runs at once would need x2 to lose)")
    return res


def levers_table(report: dict[str, Any]) -> str:
    """A levers report as a Markdown table: per case, the reference step and each lever's
    speed-up, compile time, evaluation's share of a run before and after, and 2 threads."""
    names = [k for k in LEVERS if k != "reference"]
    rows = ["| case | reference ms/step | " + " | ".join(names) + " | compile s | "
            "evaluation share: reference → chosen | 2 threads |",
            "|" + "---|" * (len(names) + 5)]
    for case, c in report["cases"].items():
        lv, ev, th = c["levers"], c.get("evaluation", {}), c.get("threads", {})
        cells = [f"x{lv[k]['speedup']:.2f}" if k in lv else "-" for k in names]
        comp = lv.get("compile", {}).get("compile_s")
        share = (f"{ev['reference_share']:.1%} → {ev['share_subset_then_whole']:.1%}"
                 if "reference_share" in ev else "-")
        rows.append(f"| {case} | {lv['reference']['median_s'] * 1e3:,.0f} | "
                    + " | ".join(cells)
                    + f" | {'-' if comp is None else f'{max(comp, 0):,.0f}'} | {share} | "
                    + (f"x{th['two_thread_speedup']:.2f}" if th else "-") + " |")
    return "\n".join(rows)


def levers_summary(report: dict[str, Any]) -> str:
    """In words, from the report: the chosen setting's speed-up range, the cases under 1.5x,
    evaluation's largest share, and whether compile paid anywhere."""
    cases = report["cases"]
    chosen = {k: c["levers"]["chosen"]["speedup"] for k, c in cases.items()
              if "chosen" in c["levers"]}
    lo, hi = min(chosen, key=chosen.get), max(chosen, key=chosen.get)
    under = [f"{k} (x{v:.2f})" for k, v in chosen.items() if v < 1.5]
    shares = {k: c["evaluation"]["share_subset_then_whole"] for k, c in cases.items()
              if "evaluation" in c}
    worst = max(shares, key=shares.get) if shares else None
    paid = [k for k, c in cases.items() if c["levers"].get("compile", {}).get("pays_within_run")]
    text = (f"The chosen setting makes the step x{chosen[lo]:.2f} ({lo}) to x{chosen[hi]:.2f} "
            f"({hi}) as fast as the reference; ")
    text += (f"under x1.5: {', '.join(under)}. " if under else "every case reaches x1.5. ")
    if worst:
        over = [f"{k} ({v:.1%})" for k, v in shares.items() if v > 0.05]
        text += (f"With intermediate evaluations on the fixed subset, evaluation takes at most "
                 f"{shares[worst]:.1%} of a run ({worst}); "
                 + (f"over 5 %: {', '.join(over)}. " if over else "every case at most 5 %. "))
    runs = {k: c["evaluation"]["run_speedup"] for k, c in cases.items()
            if "run_speedup" in c.get("evaluation", {})}
    if runs:
        lo_r, hi_r = min(runs, key=runs.get), max(runs, key=runs.get)
        text += (f"A whole run (its steps and evaluations) is x{runs[lo_r]:.2f} ({lo_r}) to "
                 f"x{runs[hi_r]:.2f} ({hi_r}) as fast as on the reference path, which evaluated "
                 f"every point on every test image in float32. ")
    text += (f"torch.compile paid within a run for {', '.join(paid)}." if paid else
             "torch.compile paid within a run for no case (its compile time is not won back, "
             "or its step is not faster).")
    return text


def run_levers(cases: list[str] | None, rounds: int, warmup: int, out: Path | str | None,
               data_root: str | None = None, log: Callable[[str], None] = print) -> dict:
    """``bench --levers``: :func:`semibook.levers.lever_case` for each full-profile case,
    written (whole, after each case) to ``out`` (default: the cache's bench/levers-cpu.json; the
    committed report is results/bench/levers/cpu.json, written only when named)."""
    from .bench import FULL_CASES, _write
    from .bench.reports import report_header
    from .engine.seed import device_name
    from .paths import cache_dir
    cases = cases or FULL_CASES
    report = report_header(cases, "--levers", kind="levers",
                           device=device_name(torch.device("cpu")))
    out = Path(out) if out else cache_dir() / "bench" / "levers-cpu.json"
    torch.set_num_threads(1)
    report.update(threads=1, cases={})
    for name in cases:
        report["cases"][name] = lever_case(name, rounds, warmup, data_root=data_root, log=log)
        report["cases"][name]["load_avg"] = list(os.getloadavg())
        _write(out, report)
    report["load_avg_at_end"] = list(os.getloadavg())
    _write(out, report)
    report["out"] = str(out)
    return report


def _write_report(report: dict[str, Any], out: Path | str) -> None:
    from .bench import _write
    _write(Path(out), {k: v for k, v in report.items() if k != "out"})


def keep_curves(report: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """``report`` with each case's loss curves carried over from ``previous`` (the committed
    report it replaces) where this run measured none, each marked with the run that measured
    it (``curves["measured"]``: its time and commit), so a re-timing without ``--curve`` does
    not drop the evidence that the chosen setting trains the same model."""
    for name, case in report["cases"].items():
        old = ((previous or {}).get("cases") or {}).get(name, {}).get("curves")
        if old and "curves" not in case:
            case["curves"] = {**old, "measured": old.get("measured") or {
                "time": previous.get("time"), "git_commit": previous.get("git_commit")}}
    return report


def main(args) -> int:
    """``python -m semibook bench --levers`` (the bench's options); with ``--curve STEPS``,
    the chosen setting's loss curves against the reference's (:func:`precision_curves`),
    added to the report. The report goes to ``--out``, or with ``--update-results`` to the
    committed results/bench/levers/cpu.json, written whole at the end (the cases measured so
    far are kept in the cache meanwhile); by default to the cache."""
    from .bench import bench_dir
    from .paths import cache_dir
    if args.rounds < 2:  # the rest was checked with the bench's (bench.check_args)
        raise ConfigError(f"--rounds must be at least 2, got {args.rounds}")
    if args.update_results and args.out:
        raise ConfigError("--update-results writes results/bench/levers/cpu.json; leave out --out")
    final = Path(args.out) if args.out else (bench_dir() / "levers" / "cpu.json"
                                             if args.update_results else None)
    work = cache_dir() / "bench" / ("levers-cpu.partial.json" if final else "levers-cpu.json")
    report = run_levers(args.cases, args.rounds, args.warmup, work, args.data_root)
    if args.curve:
        for name in report["cases"]:
            c = precision_curves(name, args.curve, data_root=args.data_root)
            report["cases"][name]["curves"] = c
            print(f"{name:>24} loss curves over {args.curve} steps: chosen vs reference "
                  f"{c['chosen_vs_reference_gap']:.4f}, seed to seed {c['seed_to_seed_gap']:.4f}"
                  f" ({'within' if c['within_seed_spread'] else 'OUTSIDE'} the seed spread)")
            _write_report(report, work)
    if final is not None:
        if final.exists():
            import json
            keep_curves(report, json.loads(final.read_text()))
        _write_report(report, final)
        work.unlink(missing_ok=True)
        print(f"wrote {final}")
    return 0


def precision_curves(name: str, steps: int = 500, seeds=(0, 1), quick: bool = False,
                     data_root: str | None = None) -> dict[str, Any]:
    """Does the chosen setting train the same model? The case trained ``steps`` steps with
    the reference options and with :data:`FAST`, on the engine's own batches (the same images
    and augmentations for a seed), for each seed. The setting passes when the mean gap between
    the two paths' smoothed loss curves (same seed) is no larger than the gap between two seeds
    of the same path."""
    from .bench import _setup, case_config, curve_gaps, reference_config
    from .engine.step import train_step
    curves: dict[str, dict[int, list[float]]] = {"reference": {}, "chosen": {}}
    for seed in seeds:
        cfg, image_set = case_config(name, quick, data_root, seed=seed)
        cfg = dataclasses.replace(reference_config(cfg), steps=max(cfg.steps, steps))
        for path, change in (("reference", {}), ("chosen", FAST)):
            trainer, opt = _setup(dataclasses.replace(cfg, **change), image_set,
                                  torch.device("cpu"))
            losses = [train_step(trainer, opt, s)[0] for s in range(steps)]
            curves[path][seed] = torch.stack(losses).float().tolist()
    return curve_gaps(curves, "chosen", steps, seeds)
