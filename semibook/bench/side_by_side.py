"""Two cores, two ways: one run with 2 threads against two 1-thread runs side by side.

The levers time one step with 2 threads against 1 in the same process (``threads``), which says
how much a second thread speeds one run up; it cannot say what two runs on two cores cost each
other (shared caches and memory bandwidth). Here each way trains the same case's chosen setting
(:data:`semibook.config.FAST`) for the same number of steps in fresh processes: one process with
2 threads, then two processes with 1 thread each that start together (a barrier after their
warm-up), in alternating rounds so a drifting machine slows both ways alike. The throughput is
steps per second of wall time over all processes of a round; ``pair_over_two_threads`` above 1
means two 1-thread runs side by side finish the benchmark sooner. It needs the machine to itself.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import queue
import statistics
import time
from typing import Any, Callable


def _train(case: str, steps: int, warmup: int, threads: int, quick: bool,
           data_root: str | None, barrier, out) -> None:
    """One process: build the case's chosen setting, warm up, wait at ``barrier``, then time
    ``steps`` training steps; puts the seconds on ``out``."""
    import torch

    torch.set_num_threads(threads)
    from ..config import FAST
    from ..engine.step import train_step
    from .cases import _setup, case_config, reference_config
    cfg, image_set = case_config(case, quick, data_root)
    cfg = dataclasses.replace(reference_config(cfg), steps=max(cfg.steps, warmup + steps + 1),
                              **FAST)
    trainer, opt = _setup(cfg, image_set, torch.device("cpu"))
    for s in range(warmup):
        train_step(trainer, opt, s)
    barrier.wait()
    t = time.perf_counter()
    for s in range(warmup, warmup + steps):
        train_step(trainer, opt, s)
    out.put(time.perf_counter() - t)


def _round(case: str, steps: int, warmup: int, procs: int, threads: int, quick: bool,
           data_root: str | None) -> float:
    """Steps per second of ``procs`` processes of ``threads`` threads started together."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=_train, args=(case, steps, warmup, threads, quick, data_root,
                                           barrier, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    secs: list[float] = []
    try:
        while len(secs) < procs:
            try:
                secs.append(out.get(timeout=1.0))
            except queue.Empty:  # a process that died leaves the others at the barrier
                dead = [p.exitcode for p in ps if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a {threads}-thread training process of {case} "
                                       f"failed (exit code {dead[0]})") from None
    finally:
        for p in ps:
            if len(secs) < procs:
                p.terminate()
            p.join()
    return procs * steps / max(secs)


def side_by_side(case: str, steps: int = 100, rounds: int = 2, warmup: int = 3,
                 quick: bool = False, data_root: str | None = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """One run with 2 threads against two 1-thread runs side by side (see the module)."""
    two, pair = [], []
    for _ in range(rounds):
        two.append(_round(case, steps, warmup, 1, 2, quick, data_root))
        pair.append(_round(case, steps, warmup, 2, 1, quick, data_root))
    res = {"steps": steps, "rounds": rounds, "two_threads_steps_per_s": statistics.median(two),
           "pair_steps_per_s": statistics.median(pair)}
    res["pair_over_two_threads"] = res["pair_steps_per_s"] / res["two_threads_steps_per_s"]
    log(f"{case:>24} side by side: one 2-thread run {res['two_threads_steps_per_s']:.1f} "
        f"steps/s, two 1-thread runs {res['pair_steps_per_s']:.1f} steps/s in all "
        f"(x{res['pair_over_two_threads']:.2f})")
    return res


CASES = ("supervised-full", "cps_cutmix-full")  # the cheapest step and one of the heaviest


def main(args) -> int:
    """``python -m semibook bench --side-by-side STEPS``: each case (``--cases``, default
    :data:`CASES`) both ways; the report goes to the cache, or with ``--update-results`` to
    results/bench/levers/side_by_side.json, which the performance appendix reads."""
    import os

    from ..config import ConfigError
    from ..paths import cache_dir
    from .reports import _write, bench_dir, report_header
    cases = args.cases or list(CASES)
    report = report_header(cases, "--side-by-side", kind="side_by_side")
    if os.cpu_count() < 2:
        raise ConfigError("--side-by-side needs 2 CPU cores")
    report["cases"] = {}
    for name in cases:
        report["cases"][name] = side_by_side(name, args.side_by_side, args.rounds,
                                             args.warmup, args.quick, args.data_root)
    report["load_avg_at_end"] = list(os.getloadavg())
    out = (bench_dir() / "levers" / "side_by_side.json" if args.update_results
           else cache_dir() / "bench" / "side_by_side.json")
    _write(out, report)
    print(f"wrote {out}")
    return 0
