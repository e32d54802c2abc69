"""Training-step benchmark: ``python -m semibook bench``.

For each case it times the engine's own training step (:func:`semibook.engine.step.train_step`,
what ``fit`` runs per step) after a warm-up: CUDA events on a GPU, ``perf_counter`` on the CPU
(where every operation has finished when it returns). It reports the median and spread of the
step times, images per second, peak memory (``torch.cuda.max_memory_allocated``; on the CPU the
process's peak resident set, reset per case where Linux allows), the step's model FLOPs
(``FlopCounterMode`` around one real step: every forward and backward it runs) and the model
FLOP utilisation, MFU = achieved FLOP/s / the device's measured matrix-multiply rate in the
precision the step computes in (bf16 where autocast is on, fp32 otherwise; ``matmul`` in the
report is the device's headline rate, bf16 on a GPU and fp32 on the CPU, ``matmul_by_dtype``
both).

Each case also times a *reference* step: the same config, model and loss, run the
straightforward way of the public implementations: eager float32, contiguous (NCHW) tensors, the
default optimizer, images augmented one at a time on the CPU in ``DataLoader`` workers and
copied to the device each step, and the loss read back (``loss.item()``) every step. The
speed-up is the reference's median step time over ours.

Cases: every method at the ``full`` profile on the book's data (through
:func:`semibook.engine.fit.prepare`), and the two paper shapes on random images of the paper's
size (the step time does not depend on the pixels): MixMatch with WRN-28-2 at 32x32, 64
labeled + 64 unlabeled images (K = 2); CPS with DeepLabV3+ ResNet-50 at 512x512, 8 labeled + 8
unlabeled, 21 classes (Pascal VOC). ``--quick`` shrinks every case (smoke profile, small
models): it checks the harness, its numbers mean nothing.

The report is written once, whole, when every case is measured (a stopped bench writes
nothing): to ``~/.cache/semibook/bench/<device>.json`` (outside the repository), to ``--out``,
or, with ``--update-results``, over the committed ``results/bench/<device>.json`` (the cases it
did not re-run are kept).

One seam a file, every name importable from ``semibook.bench``:

- ``cases.py``: the case table (``Case``, ``CASES``, ``FULL_CASES``), a case's config and its
  reference's, random images of a paper's shape, the reference's data (``ReferenceData``);
- ``measure.py``: step times, peak memory, FLOPs and the matrix-multiply rate;
- ``compare.py``: one case, our step against the reference (``bench_case``, ``ABLATIONS``), and
  their loss curves (``loss_curves``, ``curve_gaps``);
- ``reports.py``: where a report goes and how it is written; reading the committed reports
  (``load_reports``, ``markdown_table``);
- this file: :func:`run_bench` (every case, the report) and the command line (``add_parser``,
  ``check_args``, ``main``). ``run_bench`` calls ``bench_case``, ``matmul_rate`` and the rest
  through this module's names, so patching ``semibook.bench.<name>`` patches what it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import ConfigError
from ..engine.seed import device_name, pick_device
from .cases import (CASES, FULL_CASES, Case, PerSampleSet, ReferenceData, _setup, case_config,
                    reference_config, synthetic_set)
from .compare import ABLATIONS, bench_case, curve_gaps, loss_curves
from .measure import count_flops, matmul_rate, synchronize, time_steps
from .reports import (_write, bench_dir, device_slug, load_reports, markdown_table,
                      report_header, report_path)

__all__ = ["ABLATIONS", "CASES", "FULL_CASES", "Case", "PerSampleSet", "ReferenceData", "_setup",
           "_write", "add_parser", "bench_case", "bench_dir", "case_config", "check_args",
           "count_flops", "curve_gaps", "device_slug", "load_reports", "loss_curves", "main",
           "markdown_table", "matmul_rate", "reference_config", "report_path", "run_bench",
           "synchronize", "synthetic_set", "time_steps"]


def run_bench(cases: list[str] | None = None, steps: int = 30, warmup: int = 5,
              device: str | torch.device | None = None, quick: bool = False,
              reference: bool = True, ref_workers: int | None = None, curve_steps: int = 0,
              data_root: str | None = None, out: Path | str | None = None,
              log: Callable[[str], None] = print, ablate: bool = False,
              update_results: bool = False, partial: Path | str | None = None,
              **extra: Any) -> dict[str, Any]:
    """Run the benchmark; return the report and write it as JSON, whole, once every case is
    measured (:func:`report_path`; cases already in that file and not re-run are kept).
    ``partial``: a file rewritten after every case, for a caller that may stop the bench."""
    if update_results and quick:
        raise ConfigError("--update-results keeps real measurements only and --quick measures "
                          "nothing; drop one of them")
    if update_results and out:
        raise ConfigError("--update-results writes results/bench/<device>.json; drop --out")
    device = device if isinstance(device, torch.device) else pick_device(device)
    cases = cases or list(CASES)
    for c in cases:
        if c not in CASES:
            raise ConfigError(f"unknown bench case {c!r}; choose from: {', '.join(CASES)}")
    ref_workers = min(4, os.cpu_count() or 1) if ref_workers is None else ref_workers
    by_dtype = {str(dt).replace("torch.", ""): matmul_rate(device, n=512 if quick else None,
                                                           reps=3 if quick else 8, dtype=dt)
                for dt in (torch.float32, torch.bfloat16)}
    rate = by_dtype["bfloat16" if device.type == "cuda" else "float32"]
    rates = {k: v["best_flops_per_s"] for k, v in by_dtype.items()}
    log(f"{device_name(device)}: measured matmul rate "
        + ", ".join(f"{k} {v / 1e12:.3f} TFLOP/s" for k, v in rates.items()))
    out = report_path(device, out, update_results)
    old = json.loads(out.read_text()) if out.exists() else {}
    report = {"device": device_name(device), "device_type": device.type,
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              **report_header(), "quick": quick, "matmul": rate, "matmul_by_dtype": by_dtype,
              "cases": {k: v for k, v in old.get("cases", {}).items()
                        if old.get("quick") == quick and k not in cases}}
    for name in cases:
        t = time.perf_counter()
        res = bench_case(name, device, steps, warmup, rates, quick,
                         reference, ref_workers, data_root, ablate, **extra)
        res["bench_wall_s"] = round(time.perf_counter() - t, 1)
        res["matmul_flops_per_s"] = rates  # what its MFUs are relative to (mfu_dtype)
        res["load_avg"] = list(os.getloadavg())
        res["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report["cases"][name] = res
        o = res["ours"]
        line = (f"{name:>22}: {o['median_s'] * 1e3:9.1f} ms/step  {o['images_per_s']:8.1f} img/s"
                f"  MFU {o['mfu']:6.1%}  peak {o['peak_memory_bytes'] / 2**20:7.0f} MiB")
        if "speedup" in res:
            line += (f"  | reference {res['reference']['median_s'] * 1e3:9.1f} ms/step"
                     f"  speed-up x{res['speedup']:.2f}")
        log(line)
        if partial:
            _write(Path(partial), report)
    if curve_steps:
        report["loss_curves"] = {}
        for name in cases:
            report["loss_curves"][name] = c = loss_curves(name, device, curve_steps, quick=quick,
                                                          ref_workers=ref_workers,
                                                          data_root=data_root, **extra)
            log(f"{name}: loss-curve gap ours vs reference {c['ours_vs_reference_gap']:.4f}, "
                f"seed to seed {c['seed_to_seed_gap']:.4f}")
            if partial:
                _write(Path(partial), report)
    report["load_avg_at_end"] = list(os.getloadavg())
    _write(out, report)
    log(f"wrote {out}")
    report["out"] = str(out)
    return report


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="time training steps against a reference; write JSON")
    b.add_argument("--cases", nargs="+", default=None, metavar="CASE",
                   help=f"default: all ({', '.join(CASES)})")
    b.add_argument("--steps", type=int, default=30, help="timed steps per case (median)")
    b.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    b.add_argument("--device", default=None)
    b.add_argument("--out", default=None, help="the report's file, written whole at the end "
                   "(default: ~/.cache/semibook/bench/<device>.json)")
    b.add_argument("--update-results", action="store_true", help="write the report over the "
                   "committed results/bench/<device>.json (cases not re-run are kept)")
    b.add_argument("--partial", default=None, metavar="PATH", help=argparse.SUPPRESS)
    b.add_argument("--quick", action="store_true", help="tiny versions of the cases (tests)")
    b.add_argument("--no-reference", action="store_true", help="time our step only")
    b.add_argument("--ref-workers", type=int, default=None,
                   help="DataLoader workers of the reference (default: min(4, CPUs))")
    b.add_argument("--curve", type=int, default=0, metavar="STEPS",
                   help="also train STEPS steps, ours and the reference, seeds 0 and 1, and "
                        "compare the loss curves")
    b.add_argument("--data-root", default=None)
    b.add_argument("--ablate", action="store_true",
                   help="also time our step with each speed option flipped, one at a time")
    b.add_argument("--levers", action="store_true",
                   help="time each CPU speed lever against the reference, interleaved, and "
                        "evaluation's share of a run (semibook/levers.py); full-profile cases")
    b.add_argument("--side-by-side", type=int, default=0, metavar="STEPS",
                   help="train STEPS steps of the chosen setting as one 2-thread run and as "
                        "two 1-thread runs side by side, --rounds times (semibook/bench/"
                        "side_by_side.py); needs the machine to itself")
    b.add_argument("--fast", action="store_true",
                   help="our step with the chosen CPU speed setting (semibook.config.FAST)")
    b.add_argument("--rounds", type=int, default=15, metavar="N",
                   help="with --levers: interleaved rounds (one step of each lever a round)")
    b.add_argument("--batch", type=int, default=None, metavar="B",
                   help="B labeled + B unlabeled images instead of the case's own (recorded)")


def check_args(args: argparse.Namespace) -> None:
    """The command line's values (``bench`` and ``bench --levers``), before anything is built
    or timed (one line each)."""
    from ..checks import check_device
    for name, low in (("steps", 1), ("warmup", 0), ("ref_workers", 0), ("curve", 0),
                      ("batch", 1), ("rounds", 1), ("side_by_side", 0)):
        v = getattr(args, name, None)
        if v is not None and v < low:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {low}, got {v}")
    check_device(args.device)
    if args.out and Path(args.out).exists():
        try:
            old = json.loads(Path(args.out).read_text())
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:  # a folder, bad bytes, not JSON
            raise ConfigError(f"{args.out}: not a bench report that can be extended "
                              f"({type(e).__name__}: {' '.join(str(e).split())[:80]}); choose "
                              f"another --out, or move that file away") from None


def main(args: argparse.Namespace) -> int:
    check_args(args)
    if args.side_by_side:
        from .side_by_side import main as side_by_side_main
        return side_by_side_main(args)
    extra = dict(batch_l=args.batch, batch_u=args.batch) if args.batch else {}
    if args.fast:  # our step with the chosen CPU speed setting (the reference stays as it is)
        from ..config import FAST
        extra.update(FAST)
    run_bench(args.cases, args.steps, args.warmup, args.device, args.quick,
              not args.no_reference, args.ref_workers, args.curve, args.data_root, args.out,
              ablate=args.ablate, update_results=args.update_results, partial=args.partial,
              **extra)
    return 0
