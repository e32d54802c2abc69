"""Command line: ``python -m semibook run --method mixmatch --dataset fashion-mnist --labels 250
--profile full --seed 0``.

Bad input (an unknown method, dataset or profile; a label count the data cannot give; a run
folder that holds another run; missing or corrupt data; a checkpoint of another method or
shape) prints one line naming the valid choices, writes nothing, and exits with status 2. A
non-finite loss prints one line naming the step and the loss terms and exits with status 3
(``--skip-nonfinite`` skips such steps instead). Under ``torchrun --nproc_per_node N`` the run
trains with DistributedDataParallel (see :mod:`semibook.engine.distributed`).
"""

from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m semibook", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train one method and write its run folder and results")
    r.add_argument("--method", required=True)
    r.add_argument("--dataset", default="fashion-mnist")
    r.add_argument("--labels", type=int, default=250)
    r.add_argument("--profile", default=None, help="smoke, full or paper (default: "
                   "$SEMIBOOK_PROFILE or full)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--steps", type=int, default=None, help="override the profile's step count")
    r.add_argument("--eval-every", type=int, default=None)
    r.add_argument("--eval-size", type=int, default=None, help="test images per evaluation "
                   "(0: all)")
    r.add_argument("--data-root", default=None)
    r.add_argument("--arch", default=None, help="override the profile's model (e.g. wrn-28-2)")
    r.add_argument("--skip-nonfinite", action="store_true", help="skip steps whose loss is NaN "
                   "or infinite (counted in the history) instead of stopping")
    r.add_argument("--run-dir", default=None, help="default: runs/<dataset>-<labels>/"
                   "<method>-seed<seed>-<profile>")
    r.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best present)")
    r.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    r.add_argument("--no-results", action="store_true", help="do not write results/<name>.json")
    r.add_argument("--quiet", action="store_true")
    q = sub.add_parser("reproduce", help="run a results table (skipping finished runs)")
    q.add_argument("table", help="classification or segmentation")
    q.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2")
    q.add_argument("--methods", nargs="+", default=None, help="only these methods of the table "
                   "(the fully supervised ceiling is a supervised run)")
    q.add_argument("--profile", default="full", help="default: full")
    q.add_argument("--data-root", default=None)
    q.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best present)")
    q.add_argument("--dry-run", action="store_true", help="list what is done and what would run")
    q.add_argument("--quiet", action="store_true")
    c = sub.add_parser("calibrate", help="the full profile's calibration runs (seed 0) of each "
                       "candidate size, into results/calibration/")
    c.add_argument("task", choices=("classification", "segmentation"))
    c.add_argument("--candidates", nargs="+", default=None,
                   help="names from semibook.calibration.CANDIDATES (default: all)")
    c.add_argument("--methods", nargs="+", default=None, help="only the runs of these methods")
    c.add_argument("--quiet", action="store_true")
    from .bench import add_parser as add_bench_parser
    add_bench_parser(sub)
    return p


def _reproduce(args) -> int:
    from .reproduce import SEEDS, reproduce
    rows = reproduce(args.table, seeds=tuple(args.seeds or SEEDS), methods=args.methods,
                     profile=args.profile, dry_run=args.dry_run, device=args.device,
                     progress=not args.quiet,
                     overrides={"data_root": args.data_root} if args.data_root else None)
    return 3 if any(r["status"] == "failed" for r in rows) else 0


def _run(args) -> int:
    from .config import make_config
    from .engine import run
    overrides = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.eval_every is not None:
        overrides["eval_every"] = args.eval_every
    if args.eval_size is not None:
        overrides["eval_size"] = args.eval_size
    if args.data_root:
        overrides["data_root"] = args.data_root
    if args.arch:
        overrides["arch"] = args.arch
    if args.skip_nonfinite:
        overrides["skip_nonfinite"] = True
    cfg = make_config(args.method, args.dataset, args.labels, args.seed, args.profile,
                      **overrides)
    res = run(cfg, args.run_dir, resume=args.resume, overwrite=args.overwrite,
              progress=not args.quiet, save_results=False if args.no_results else None,
              device=args.device)
    summary = {k: res.get(k) for k in ("method", "dataset", "labels", "seed", "profile", "last",
                                       "best", "elapsed_s", "results_file")}
    if res.get("rank", 0) == 0:  # under torchrun, rank 0 reports
        print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .engine.loop import NonFiniteLossError
    try:
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "calibrate":
            from .calibration import calibrate
            calibrate(args.task, args.candidates, args.methods, progress=not args.quiet)
            return 0
        if args.command == "bench":
            from .bench import main as bench_main
            return bench_main(args)
        return _run(args)
    except ConfigError as e:  # bad input: one line, nothing written
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
