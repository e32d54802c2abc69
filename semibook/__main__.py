"""Command line: ``python -m semibook run --method mixmatch --dataset fashion-mnist --labels 250
--profile full --seed 0``.

Bad input (an unknown method, dataset, profile or device; a negative seed; a label count the
data cannot give; a run folder that is not semibook's, holds another run or is in use; missing
or corrupt data; a checkpoint of another method or shape, or one asking to run code) and a disk
that refuses a write print one line naming the file and the fix, leave no temporary file, and
exit with status 2. A non-finite loss prints one line naming the step and the loss terms and
exits with status 3 (``--skip-nonfinite`` skips such steps instead; a run whose every step was
skipped also exits with 3); Ctrl-C prints one line and exits with status 130, SIGTERM the
same line with status 143. Under
``torchrun --nproc_per_node N`` the run trains with DistributedDataParallel (see
:mod:`semibook.engine.distributed`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, NonFiniteLossError, check_device, check_seed


class _Parser(argparse.ArgumentParser):
    """argparse's refusals as one line (its usage block is what ``--help`` is for)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}; see {self.prog} --help\n")


def _parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line. Nothing here imports torch, so ``--help`` answers at once; choices are
    listed from :mod:`semibook.catalog` and checked when the run is configured (one line)."""
    from .catalog import DATASET_TASKS, methods_for
    from .config import PROFILES

    p = _Parser(prog="python -m semibook",  # plain quotes, not reST's
                description=__doc__.split("\n\n")[0].replace("``", "'"))
    sub = p.add_subparsers(dest="command", required=True)
    by_task = "; ".join(f"{t}: {', '.join(methods_for(t))}" for t in ("classification",
                                                                     "segmentation"))
    r = sub.add_parser(
        "run", help="train one method and write its run folder and results",
        description="Train one method on one split and seed. Ends with a summary: the metric "
                    "in percent, the run folder, the results file (or why none was written) and "
                    "the elapsed time.")
    r.add_argument("--method", required=True, help=f"the method; {by_task}")
    r.add_argument("--dataset", default="fashion-mnist",
                   help="one of: " + ", ".join(f"{d} ({t})" for d, t in DATASET_TASKS.items())
                   + " (default: fashion-mnist)")
    r.add_argument("--labels", type=int, default=250,
                   help="labeled training images (classification: a multiple of the classes; "
                        "default: 250); the rest of the training set is unlabeled")
    r.add_argument("--profile", default=None,
                   help=f"one of: {', '.join(PROFILES)}; smoke: seconds, its numbers mean "
                        f"nothing; full: the book's experiment, minutes a run on a 2-core CPU; "
                        f"paper: the paper's schedule (default: $SEMIBOOK_PROFILE or full)")
    r.add_argument("--seed", type=int, default=0,
                   help="seed of the labeled split and of every random draw (default: 0)")
    r.add_argument("--steps", type=int, default=None, help="override the profile's step count")
    r.add_argument("--eval-every", type=int, default=None, help="steps between evaluations")
    r.add_argument("--eval-size", type=int, default=None, help="test images per evaluation "
                   "(0: all)")
    r.add_argument("--data-root", default=None, help="the dataset's folder (the only place "
                   "looked at when given)")
    r.add_argument("--arch", default=None, help="override the profile's model (e.g. wrn-28-2)")
    r.add_argument("--weights", default=None, metavar="PATH", help="segmentation: the encoder's "
                   "pretrained weights from a file placed by hand (timm's weights for that "
                   "encoder), where they cannot be downloaded")
    r.add_argument("--fast", action="store_true", help="the CPU speed setting (bf16 autocast, "
                   "channels-last, the fused optimizer: semibook.config.FAST); 1.3-2x faster "
                   "steps on a CPU with bf16 instructions, and other floating-point numbers")
    r.add_argument("--skip-nonfinite", action="store_true", help="skip steps whose loss is NaN "
                   "or infinite (counted in the history) instead of stopping")
    r.add_argument("--run-dir", default=None, help="default: ~/.cache/semibook/runs/"
                   "<dataset>-<labels>/<method>-seed<seed>-<profile>")
    r.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best present)")
    r.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    r.add_argument("--allow-code-change", action="store_true", help="with --resume: continue "
                   "even though semibook's code changed since the checkpoint (the results file "
                   "records the code of each segment)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    r.add_argument("--no-results", action="store_true", help="do not write results/<name>.json")
    r.add_argument("--json", action="store_true", help="end with one JSON line instead of the "
                   "summary")
    r.add_argument("--yes", action="store_true", help="start a long CPU run without asking")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    q = sub.add_parser("reproduce", help="run a results table (skipping finished runs)")
    q.add_argument("table", help="classification or segmentation")
    q.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2")
    q.add_argument("--methods", nargs="+", default=None, help="only these methods of the table "
                   "(the fully supervised ceiling is a supervised run)")
    q.add_argument("--labels", type=int, nargs="+", default=None, help="only these label counts "
                   "of the table (its fully supervised count: the ceiling)")
    q.add_argument("--profile", default="full", help="default: full")
    q.add_argument("--data-root", default=None)
    q.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best present)")
    q.add_argument("--dry-run", action="store_true", help="list what is done and what would run")
    q.add_argument("--allow-code-change", action="store_true", help="resume interrupted runs "
                   "even though semibook's code changed since their checkpoints")
    q.add_argument("--quiet", action="store_true")
    t = sub.add_parser("tune", help="the hyper-parameter sweep (seed 0, the smallest split, "
                       "scored on held-out training images) into results/tuning/")
    t.add_argument("task", choices=("classification", "segmentation"))
    t.add_argument("--methods", nargs="+", default=None, help="only these methods' trials")
    t.add_argument("--quiet", action="store_true")
    t.add_argument("--allow-code-change", action="store_true", help="resume interrupted "
                   "runs even though semibook's code changed since their checkpoints")
    c = sub.add_parser("calibrate", help="the full profile's calibration runs (seed 0) of each "
                       "candidate size, into results/calibration/")
    c.add_argument("task", choices=("classification", "segmentation"))
    c.add_argument("--candidates", nargs="+", default=None,
                   help="names from semibook.calibration.CANDIDATES (default: all)")
    c.add_argument("--methods", nargs="+", default=None, help="only the runs of these methods")
    c.add_argument("--quiet", action="store_true")
    c.add_argument("--allow-code-change", action="store_true", help="resume interrupted "
                   "runs even though semibook's code changed since their checkpoints")
    d = sub.add_parser("demo", help="labels alone against label spreading on Fashion-MNIST, "
                       "about a minute on a CPU (a demo, not the benchmark)")
    d.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default: 0 1 2")
    d.add_argument("--per-class", type=int, default=5, help="labeled images per class "
                   "(default: 5)")
    d.add_argument("--pool", type=int, default=20000, help="training images in the pool, "
                   "labeled and unlabeled (default: 20000)")
    d.add_argument("--out", default=None, help="the figure (default: "
                   "~/.cache/semibook/demo.png)")
    d.add_argument("--data-root", default=None)
    h = sub.add_parser("report", help="print the headline results table (from results/)")
    h.add_argument("--readme", action="store_true", help="write it into README.md and draw "
                   "docs/results.png (each only where it changed)")
    if argv and argv[0] == "bench":  # the benchmark's options need its module (and torch)
        from .bench import add_parser as add_bench_parser
        add_bench_parser(sub)
    else:
        sub.add_parser("bench", help="time training steps against a reference; write JSON")
    return p


def _reproduce(args) -> int:
    for seed in args.seeds or ():
        check_seed(seed)
    check_device(args.device)
    from .reproduce import SEEDS, reproduce
    rows = reproduce(args.table, seeds=tuple(args.seeds or SEEDS), methods=args.methods,
                     profile=args.profile, dry_run=args.dry_run, device=args.device,
                     progress=not args.quiet,
                     overrides={"data_root": args.data_root} if args.data_root else None,
                     labels=args.labels, allow_code_change=args.allow_code_change)
    if any(r["status"] == "failed" for r in rows):
        return 3
    return 2 if any(r["status"] == "foreign" for r in rows) else 0


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def estimate(cfg) -> tuple[float, str] | None:
    """Seconds this config's run takes on this kind of device, from the results files of the
    same method, dataset, profile, model and step count (the longest of them), and the file."""
    from .engine.results import load_results
    same = [r for r in load_results(method=cfg.method, dataset=cfg.dataset, profile=cfg.profile)
            if r["config"].get("steps") == cfg.steps and r["config"].get("arch") == cfg.arch]
    if not same:
        return None
    r = max(same, key=lambda r: r["elapsed_s"])
    return r["elapsed_s"], f"{r['results_file']} ({r['device']})"


def _confirm(cfg, args) -> bool:
    """A run of the full or paper profile on a CPU says how long it will take; at a terminal it
    asks first (unless --yes)."""
    from .engine.seed import pick_device
    if cfg.profile == "smoke" or pick_device(args.device).type != "cpu":
        return True
    est = estimate(cfg)
    line = (f"{cfg.method} in the {cfg.profile} profile on the CPU: {cfg.steps} steps, about "
            f"{_minutes(est[0])} as measured in {est[1]}" if est else
            f"{cfg.method} in the {cfg.profile} profile on the CPU: {cfg.steps} steps; no results "
            f"file of this method, model and step count to time it from")
    print(line, flush=True)
    if args.yes or not sys.stdin.isatty():
        return True
    return input("start it? [y/N] ").strip().lower() in ("y", "yes")


def summary(res: dict) -> str:
    """What a finished ``run`` prints: the metric in percent (as the book shows it), the run
    folder, the results file or why there is none, and the elapsed time."""
    from .paths import results_dir
    key = res.get("metric", "acc")
    name = {"acc": "accuracy", "miou": "mIoU"}[key]
    lines = [f"{res['method']} on {res['dataset']}, {res['labels']} labels, seed {res['seed']}, "
             f"profile {res['profile']}"]
    if res.get("last"):
        lines.append(f"  last {name} {100 * res['last'][key]:.2f}% at step {res['last']['step']}"
                     f"; best {100 * res['best'][key]:.2f}% at step {res['best']['step']}")
    if res.get("skipped_nonfinite"):
        lines.append(f"  skipped:      {res['skipped_nonfinite']} of {res['config']['steps']} "
                     f"steps had a non-finite loss (--skip-nonfinite)")
    folder = res["run_dir"] or "none here (trained elsewhere, as its results file says)"
    lines.append(f"  run folder:   {folder}")
    why = ("smoke runs are never saved as results" if res["profile"] == "smoke" else
           "--no-results" if res.get("no_results") else
           "the run did not finish" if not res.get("finished") else
           f"none of this config under {results_dir()}")
    lines.append(f"  results file: {res.get('results_file') or 'none (' + why + ')'}")
    lines.append(f"  elapsed:      {_minutes(res['elapsed_s'])}")
    return "\n".join(lines)


class Interrupted(Exception):
    """Ctrl-C (status 130) or SIGTERM (status 143) during a run: one line saying where the run
    stands."""

    def __init__(self, text: str, status: int = 130):
        super().__init__(text)
        self.status = status


def _run(args) -> int:
    check_seed(args.seed)
    check_device(args.device)
    from .config import make_config
    from .engine.run import run
    from .engine.run import default_run_dir
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
    if args.fast:
        from .config import FAST
        overrides.update(FAST)
    if args.weights:
        overrides["weights_path"] = args.weights
    cfg = make_config(args.method, args.dataset, args.labels, args.seed, args.profile,
                      **overrides)
    run_dir = args.run_dir or default_run_dir(cfg)
    _default_dir["run_dir"] = Path(run_dir)
    if not (args.resume or args.overwrite):
        from .engine.run import finished_run
        done = finished_run(cfg, run_dir)
        if done is not None:  # nothing to continue: show the run, as a finished run ends
            _report(done, args, again=True)
            return 0
    if not _confirm(cfg, args):
        print("not started")
        return 1
    try:
        res = run(cfg, run_dir, resume=args.resume, overwrite=args.overwrite,
                  progress=not args.quiet, save_results=False if args.no_results else None,
                  device=args.device, allow_code_change=args.allow_code_change)
    except KeyboardInterrupt as e:
        from .engine.interrupt import Terminated
        ckpt = Path(run_dir) / "checkpoint.pt"
        where = (f"{ckpt} holds the last checkpoint; continue with the same command and "
                 f"--resume" if ckpt.exists() else f"no checkpoint was written in {run_dir} yet")
        term = isinstance(e, Terminated)
        raise Interrupted(f"{'terminated (SIGTERM)' if term else 'interrupted'}; {where}",
                          143 if term else 130) from None
    if res.get("rank", 0) != 0:  # under torchrun, rank 0 reports
        return 0
    _report({**res, "run_dir": str(run_dir), "no_results": args.no_results}, args)
    return 0


def _report(res: dict, args, again: bool = False) -> None:
    """A run's summary (``--json``: one line); ``again``: the run had finished before this
    command, which trained nothing and says how to train it again."""
    if args.json:
        print(json.dumps({k: res.get(k) for k in (
            "method", "dataset", "labels", "seed", "profile", "last", "best", "elapsed_s",
            "run_dir", "results_file", "skipped_nonfinite")} | ({"already_finished": True}
                                                                  if again else {})))
        return
    print(summary(res))
    if again:
        where = "its run folder" if res.get("run_dir") else "its results file"
        print(f"already finished ({where}), so nothing was trained; to train it again, add "
              f"--overwrite")


# Where each command writes, for the advice on a disk that refuses a write
WRITES_TO = {"run": "--run-dir", "bench": "--out", "reproduce": "$SEMIBOOK_RESULTS or "
             "$SEMIBOOK_RUNS", "calibrate": "$SEMIBOOK_RESULTS or $SEMIBOOK_RUNS"}


def _os_error(e: OSError, command: str = "run", again: str = "run the command again") -> str:
    """A failed read or write of the disk as one line: the file, the reason, the fix.
    ``again`` says how to continue once the disk has room (``--resume`` where a run folder
    holds the run)."""
    import errno
    where = f"{e.filename}: " if e.filename else ""
    other = WRITES_TO.get(command, "--run-dir")
    fix = {errno.ENOSPC: f"free space on that disk, then {again}",
           errno.EDQUOT: f"free space within your quota, then {again}",
           errno.EFBIG: f"the file is larger than this process may write (ulimit -f); raise the "
                        f"limit, then {again}",
           errno.EROFS: f"choose another {other}, on a writable disk",
           errno.EACCES: f"make it writable, or choose another {other}",
           errno.EPERM: f"make it writable, or choose another {other}"}.get(
        e.errno, "check the path and the disk")
    return f"{where}{e.strerror or e}; {fix}"


def _again(args) -> str:
    """How to continue a run stopped by a full disk: ``--resume`` where its folder holds it."""
    if args.command != "run":
        return "run the command again"
    from .engine import rundir
    d = _default_dir.get("run_dir")
    if d is not None and (d / rundir.MARKER).exists():
        return "continue with the same command and --resume"
    return "run the command again"


_default_dir: dict[str, Path] = {}  # the run folder of this process's run (for _again)


def _quiet_stdout() -> None:
    """Standard output closed or its reader gone (``>&-``, ``| head``): what would go to it is
    dropped, so that the run's own outcome decides the status and its one line."""
    import os
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        if sys.stdout is not None:
            os.dup2(fd, sys.stdout.fileno())
        else:
            sys.stdout = open(fd, "w", closefd=False)
    except (OSError, ValueError):
        sys.stdout = open(os.devnull, "w")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if sys.stdout is None:  # started with standard output closed
        _quiet_stdout()
    args = _parser(argv).parse_args(argv)
    import signal
    import threading
    from .engine.interrupt import terminate
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminate)  # SIGTERM stops as Ctrl-C does
    try:
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "tune":
            from .tuning import tune
            tune(args.task, args.methods, progress=not args.quiet,
                 allow_code_change=args.allow_code_change)
            return 0
        if args.command == "calibrate":
            from .calibration import calibrate
            calibrate(args.task, args.candidates, args.methods, progress=not args.quiet,
                      allow_code_change=args.allow_code_change)
            return 0
        if args.command == "demo":
            for seed in args.seeds:
                check_seed(seed)
            from .demo import demo
            demo(tuple(args.seeds), args.per_class, args.pool, args.out, args.data_root)
            return 0
        if args.command == "report":
            from . import headline
            if args.readme:
                written = headline.write_readme()
                print("wrote " + ", ".join(written) if written else "README.md and "
                      f"{headline.FIGURE} were up to date")
            else:
                print(headline.markdown(headline.headline()))
            return 0
        if args.command == "bench":
            if args.levers:  # the levers import the bench, not the other way round
                from .bench import check_args
                check_args(args)
                from .levers import main as levers_main
                return levers_main(args)
            from .bench import main as bench_main
            return bench_main(args)
        return _run(args)
    except ConfigError as e:  # bad input: one line, nothing written
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except BrokenPipeError:  # the reader of standard output went away: nothing more to say
        _quiet_stdout()
        print("error: standard output was closed (broken pipe) before the command ended; "
              "keep its reader open, or redirect it to a file", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only folder: one line, temporary files removed
        print(f"error: {_os_error(e, args.command, _again(args))}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as e:
        from .engine.interrupt import Terminated
        if isinstance(e, Interrupted):
            print(f"error: {e}", file=sys.stderr)
            return e.status
        term = isinstance(e, Terminated)
        print(f"error: {'terminated (SIGTERM)' if term else 'interrupted'}", file=sys.stderr)
        return 143 if term else 130


if __name__ == "__main__":
    sys.exit(main())
