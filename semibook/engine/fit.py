"""``fit``: a method trained in its run folder. Data, split and models are prepared before
anything is written; then the loop (steps, logging, evaluation, checkpoints), exact resume
from a checkpoint, and results.json at the end."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..checks import ConfigError, NonFiniteLossError
from ..config import Config, check_config
from ..data import ImageSet, load_dataset
from ..data.splits import Split, load_or_make_split, make_split
from ..methods import get_method_class
from ..methods.base import DataSpec
from . import distributed, interrupt, rundir
from .batches import StepData
from .checkpoint import (atomic_write_text, check_resumable, load_checkpoint, load_weights,
                         save_checkpoint)
from .evaluate import Trainer, _fixed_subset
from .results import _code_commit, check_segment, code_segments, make_results
from .resume import _changed_options, _history_until, resume_diff
from .seed import device_name, pick_device, seed_everything, step_seed
from .step import build_optimizer, speed_options, train_step



class Progress:
    """tqdm on a terminal; plain lines (at evaluations) when output is not a terminal."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stdout.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True)

    def step(self, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if logs:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in list(logs.items())[:4]})

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def prepare(cfg: Config, device: torch.device | None = None,
            image_set: ImageSet | None = None) -> tuple[Trainer, Split]:
    """Load data and split, build the method on the device. Raises before anything is written
    when the data is missing or the split does not fit. An ``image_set`` given (the benchmark's
    images of the paper shapes) is used as it is, with a split drawn in memory."""
    device = device or pick_device()
    given = image_set is not None
    image_set = image_set if given else load_dataset(cfg.dataset, cfg.data_root)
    info = image_set.info
    n_train = len(image_set.y_train) - cfg.validation  # a tuning run's validation held out
    held = f" (with {cfg.validation} held out for validation)" if cfg.validation else ""
    if cfg.labels > n_train:
        raise ConfigError(f"label count {cfg.labels} is larger than the {n_train} training "
                          f"images found in {image_set.source}{held}")
    # the models first: a model that cannot be built (pretrained weights out of reach) stops
    # the run before a split file is written (splits draw from their own seeded generator)
    seed_everything(step_seed(cfg.seed, 0, "init"))
    spec = DataSpec(info.num_classes, info.in_channels, info.classes, info.task,
                    image_set.mean, image_set.std, info.ignore_index)
    method = get_method_class(cfg.method)(cfg, spec).to(device)
    if method.views_u and cfg.labels >= n_train:
        raise ConfigError(f"label count {cfg.labels} leaves no unlabeled image of the "
                          f"{n_train} training images in {image_set.source}{held}, and "
                          f"{cfg.method} trains on unlabeled images; choose fewer labels, or the "
                          f"supervised method")
    if given:
        split = make_split(image_set.y_train, cfg.labels, cfg.seed, info.num_classes, info.name,
                           balanced=image_set.y_train.ndim == 1, validation=cfg.validation)
    else:
        split = load_or_make_split(cfg.dataset, image_set.y_train, cfg.labels, cfg.seed,
                                   info.num_classes, validation=cfg.validation)
    opts = speed_options(cfg, device)
    if opts["channels_last"]:
        method.to(memory_format=torch.channels_last)
    if opts["compile"]:  # in place, so state_dict keys and EMA copies stay as they are
        for net in method.children():
            for m in (net if isinstance(net, nn.ModuleList) else [net]):
                m.compile()
    data = StepData(image_set, split, cfg, device, weak_labels=method.weak_labels)
    ki = _fixed_subset(len(split.unlabeled), cfg.track_size, salt=2025)
    unl = torch.as_tensor(split.unlabeled)[ki]
    if cfg.validation:  # evaluated on the held-out training images; the test set is not read
        vi = torch.as_tensor(split.held_out)[_fixed_subset(len(split.held_out), cfg.eval_size,
                                                           salt=2024)]
        x_eval, y_eval, eval_on = image_set.x_train[vi], image_set.y_train[vi], "validation"
    else:
        vi = _fixed_subset(len(image_set.y_test), cfg.eval_size, salt=2024)
        x_eval, y_eval, eval_on = image_set.x_test[vi], image_set.y_test[vi], "test"
    trainer = Trainer(cfg, method, data, x_eval, y_eval, image_set.x_train[unl],
                      image_set.y_train[unl], image_set, device, test_index=vi,
                      track_index=unl, eval_on=eval_on)
    return trainer, split


def fit(cfg: Config, run_dir: Path | str, resume: bool = False, overwrite: bool = False,
        progress: bool = True, device: torch.device | str | None = None,
        stop_after: int | None = None, allow_code_change: bool = False) -> dict[str, Any]:
    """Train ``cfg`` in ``run_dir`` and return the results dict (also written as results.json).

    Every segment of the run (its start, each resume) records in the history the hash of its
    split file and of the package's code; a resume refuses a changed split, and a changed code
    unless ``allow_code_change`` (the results file then lists the segments' code).
    ``stop_after`` ends the process's work after that many steps (as a crash would), leaving the
    checkpoint to ``resume`` from; used by the tests.
    """
    run_dir = Path(run_dir)
    check_config(cfg)  # a config made by hand or changed since make_config: before any write
    device = device if isinstance(device, torch.device) else pick_device(device)
    ranks, device = distributed.setup(device)  # torchrun: join the group; rank 0 writes
    differs = lambda old: resume_diff(cfg, old)  # noqa: E731
    if ranks.main:  # reads only: a folder in use, foreign or of another run stops here
        rundir.probe_lock(run_dir)
    if ranks.main or not overwrite:
        rundir.inspect(run_dir, resume, overwrite, differs)
    trainer, split = prepare(cfg, device)  # fails before anything is written
    distributed.check(cfg, trainer.method, ranks)
    distributed.barrier()  # every rank has seen the folder as it was before rank 0 writes
    lock = rundir.claim(run_dir, resume, overwrite, differs) if ranks.main else None
    try:
        return _train(cfg, trainer, split, run_dir, resume, ranks, device, progress, stop_after,
                      allow_code_change)
    except OSError as e:  # a full disk under the history's appends (every other write of the
        if e.filename is None and not isinstance(e, BrokenPipeError):  # run names its file)
            e.filename = str(run_dir / "history.jsonl")
        raise
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: Config, trainer: Trainer, split: Split, run_dir: Path, resume: bool,
           ranks: distributed.Dist, device: torch.device, progress: bool,
           stop_after: int | None, allow_code_change: bool = False) -> dict[str, Any]:
    """``fit`` in its claimed run folder: load the checkpoint to resume from (before writing
    anything), then train, log, checkpoint and write results.json."""
    method = trainer.method
    opt = build_optimizer(cfg, method.trainable_parameters(), device, method.head_parameters(),
                          method.encoder_norm_parameters())
    hist_path, ckpt_path = run_dir / "history.jsonl", run_dir / "checkpoint.pt"
    start, elapsed_before, started_at = 0, 0.0, datetime.now(timezone.utc).isoformat()
    code = now = _code_commit()  # the code this run starts from (kept across resumes)
    # the current logging window (steps since the last train row), checkpointed with the rest
    sums: dict[str, torch.Tensor] = {}
    count = skipped = 0
    kept = None  # the history to continue, on a resume
    option_rows = []  # options changed on this resume (RESUMABLE_CHANGES)
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, cfg.method)
        diff = resume_diff(cfg, state["config"])
        if diff:
            raise ConfigError(f"{ckpt_path}: checkpoint of a different config (differs in: "
                              f"{', '.join(diff)})")
        check_resumable(state, ckpt_path, cfg.steps, tuple(method.extra_optimizers()))
        check_segment(state, ckpt_path, split, now, allow_code_change)
        load_weights(method, state["method"], ckpt_path, f"{cfg.method} models")
        load_weights(opt, state["optimizer"], ckpt_path, "optimizer")
        for name, o in method.extra_optimizers().items():
            load_weights(o, state["extra_optimizers"][name], ckpt_path, f"{name} optimizer")
        start, elapsed_before, started_at = state["step"], state["elapsed_s"], state["started_at"]
        code = state.get("code", code)
        sums = {k: v.to(device) for k, v in state.get("log_sums", {}).items()}
        count, skipped = state.get("log_count", 0), state.get("log_skipped", 0)
        if ranks.main:
            kept = _history_until(hist_path, start) if hist_path.exists() else []
            option_rows = _changed_options(cfg, state["config"], kept, start)
    # this segment of the run (from which step, on which split file and code), written before
    # its first row: a resume that writes no row (stopped at once) leaves the history as it was
    segment = [{"kind": "segment", "step": start, "split_sha256": split.sha256, **now}]
    if ranks.main:  # the checks are done: the run's first write is the marker
        rundir.mark(run_dir)
        atomic_write_text(run_dir / "config.json", cfg.to_json() + "\n")
        if kept is not None:
            atomic_write_text(hist_path, "".join(ln + "\n" for ln in kept + option_rows))
        elif hist_path.exists():
            hist_path.unlink()
    trainer.step_fn = distributed.wrap(method, ranks, device, trainer.segmentation)

    def checkpoint(step: int) -> None:
        if not ranks.main:
            return
        save_checkpoint(ckpt_path, {"step": step, "config": cfg.to_dict(),
                                    "method": method.state_dict(), "optimizer": opt.state_dict(),
                                    "extra_optimizers": {k: o.state_dict() for k, o in
                                                         method.extra_optimizers().items()},
                                    "elapsed_s": elapsed_before + time.time() - t0,
                                    "started_at": started_at, "code": code,
                                    "split_sha256": split.sha256,
                                    "code_sha256": now["code_sha256"],
                                    "log_sums": dict(sums), "log_count": count,
                                    "log_skipped": skipped})

    bad = torch.full((), -1, dtype=torch.long, device=device)

    def stop_if_nonfinite() -> None:
        first = distributed.first_bad(bad)  # the same answer on every rank
        if first >= 0:
            terms = ", ".join(f"{k}={float(v) / max(count, 1):.4g}" for k, v in sums.items())
            how = (f"last good checkpoint: {ckpt_path}; to skip such steps, continue it with "
                   f"--resume --skip-nonfinite" if ckpt_path.exists() else
                   "no checkpoint yet; to skip such steps, run again with --skip-nonfinite")
            raise NonFiniteLossError(
                f"non-finite loss at step {first} (means of the steps since the last log: "
                f"{terms}); {how}")

    t0 = time.time()
    bar = Progress(cfg.steps, start, progress and ranks.main)
    bar.line(f"{cfg.method} on {cfg.dataset} ({cfg.labels} labels, seed {cfg.seed}, profile "
             f"{cfg.profile}): {cfg.steps} steps on {device_name(device)}; data: "
             f"{trainer.image_set.source}")

    def log(row: dict[str, Any]) -> None:
        hist.write("".join(json.dumps(r) + "\n" for r in (*segment, row)))
        segment.clear()

    with (open(hist_path if ranks.main else os.devnull, "a") as hist,
          interrupt.deferred() as ctrl_c):
        for step in range(start, cfg.steps):
            if stop_after is not None and step - start >= stop_after:
                break
            loss, logs, lr, updated = train_step(trainer, opt, step)
            if not updated:
                skipped += 1
            else:
                if not cfg.skip_nonfinite:  # the first bad step, kept on the device (no sync)
                    bad = torch.where(torch.isfinite(loss) | (bad >= 0), bad, step)
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + torch.as_tensor(v, dtype=torch.float32).detach()
                count += 1
            done = step + 1
            if done % cfg.log_every == 0 or done % cfg.eval_every == 0 or done == cfg.steps or (
                    cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
                stop_if_nonfinite()  # before anything of this window is written
            if done % cfg.log_every == 0 or done == cfg.steps:
                sums = distributed.average(sums)  # several processes: the global batch's means
                row = {"kind": "train", "step": done, "lr": lr,
                       **{k: float(v) / count for k, v in sums.items()}}
                if cfg.skip_nonfinite:
                    row["skipped_nonfinite"] = skipped
                log(row)
                bar.step({k: row[k] for k in sums})
                sums, count, skipped = {}, 0, 0
            else:
                bar.step({})
            if (done % cfg.eval_every == 0 or done == cfg.steps) and ranks.main:
                row = trainer.evaluate(done)
                row["elapsed_s"] = round(elapsed_before + time.time() - t0, 2)
                log(row)
                hist.flush()
                key = trainer.metric
                bar.line(f"step {done:>7}/{cfg.steps}  {key} {row[key]:.4f}  "
                         + "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                                     if k.startswith(key + "_"))
                         + f"  ({row['elapsed_s']:.0f} s)")
                checkpoint(done)
            elif cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
                hist.flush()
                checkpoint(done)
            ctrl_c.check()  # Ctrl-C stops here, between steps (see engine/interrupt.py)
    stop_if_nonfinite()
    bar.close()
    if not ranks.main:  # rank 0 evaluates and writes
        return {"rank": ranks.rank, "finished": None}
    history = [json.loads(ln) for ln in hist_path.read_text().splitlines() if ln]
    finished = bool(history) and any(r["kind"] == "eval" and r["step"] == cfg.steps
                                     for r in history)
    results = make_results(cfg, history, split, device, started_at,
                           elapsed_before + time.time() - t0, finished, trainer.metric, code)
    if finished and trainer.segmentation:
        results["samples"] = trainer.samples()
    segments = code_segments(history)
    if segments:  # --allow-code-change: the code of each segment, and that it changed
        results["code_changed"] = segments
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=1) + "\n")
    return results
