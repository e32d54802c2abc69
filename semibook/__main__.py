"""Command line: ``python -m semibook run --method mixmatch --dataset fashion-mnist --labels 250
--profile full --seed 0``.

Bad input (an unknown method, dataset or profile; a label count the data cannot give; a run
folder that holds another run) prints one line naming the valid choices, writes nothing, and
exits with status 2.
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
    r.add_argument("--run-dir", default=None, help="default: runs/<dataset>-<labels>/"
                   "<method>-seed<seed>-<profile>")
    r.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best present)")
    r.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    r.add_argument("--no-results", action="store_true", help="do not write results/<name>.json")
    r.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .config import make_config
    from .engine import run
    try:
        overrides = {}
        if args.steps is not None:
            overrides["steps"] = args.steps
        if args.eval_every is not None:
            overrides["eval_every"] = args.eval_every
        if args.eval_size is not None:
            overrides["eval_size"] = args.eval_size
        if args.data_root:
            overrides["data_root"] = args.data_root
        cfg = make_config(args.method, args.dataset, args.labels, args.seed, args.profile,
                          **overrides)
        res = run(cfg, args.run_dir, resume=args.resume, overwrite=args.overwrite,
                  progress=not args.quiet, save_results=False if args.no_results else None,
                  device=args.device)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {k: res.get(k) for k in ("method", "dataset", "labels", "seed", "profile", "last",
                                       "best", "elapsed_s", "results_file")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
