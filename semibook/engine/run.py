"""A run in its run folder (``run``), its results file under ``results/``, and what a chapter
calls (``run_or_load``: the finished results file of exactly this config, else train now)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..checks import ConfigError, NonFiniteLossError
from ..config import Config
from ..paths import results_dir, runs_dir
from .checkpoint import atomic_write_text
from .fit import fit
from .results import finished_results, read_results, result_name, same_config
from .seed import pick_device



def _refuse_foreign(out: Path, other: str = "") -> None:
    """Before any training: a file at the results path that is not a results file is the
    user's, never replaced."""
    if out.exists() and read_results(out) is None:
        raise ConfigError(f"{out} is not a semibook results file, and this run would write its "
                          f"results there; move it away{other}")


def default_run_dir(cfg: Config) -> Path:
    return runs_dir() / f"{cfg.dataset}-{cfg.labels}" / f"{cfg.method}-seed{cfg.seed}-{cfg.profile}"


def run(cfg: Config, run_dir: Path | str | None = None, resume: bool = False,
        overwrite: bool = False, progress: bool = True, save_results: bool | None = None,
        device: str | None = None, allow_code_change: bool = False) -> dict[str, Any]:
    """Train one configured run in its run folder; a finished run of the full or paper profile
    also writes ``results/<dataset>_<labels>_<method>_seed<seed>_<profile>.json`` (a config
    with overrides: a name of its own, see :func:`result_name`). A file there that is not a
    results file is never replaced: the run is refused before it trains."""
    run_dir = Path(run_dir or default_run_dir(cfg))
    if save_results is None:
        save_results = cfg.profile != "smoke"
    out = results_dir() / result_name(cfg)
    if save_results:
        _refuse_foreign(out, ", or pass --no-results")
    results = fit(cfg, run_dir, resume=resume, overwrite=overwrite, progress=progress,
                  device=device, allow_code_change=allow_code_change)
    if results.get("finished") and results.get("skipped_nonfinite", 0) >= cfg.steps:
        raise NonFiniteLossError(
            f"every one of the {cfg.steps} steps had a non-finite loss and was skipped, so the "
            f"weights are as initialised ({run_dir / 'results.json'}); no results file was "
            f"written: look for the cause (data, learning rate) and run again with --overwrite")
    if save_results and results.get("finished"):
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(results, indent=1) + "\n")
        results["results_file"] = str(out)
    return results


def finished_run(cfg: Config, run_dir: Path | str | None = None) -> dict[str, Any] | None:
    """The finished run of exactly ``cfg``: its run folder's ``results.json`` (with the results
    file under ``results/`` when one holds the same run), or, where the run folder holds no run,
    the finished results file of this config (``run_dir`` is then None); None when neither
    exists. Reads only: a second ``run`` of a finished config shows it instead of refusing."""
    run_dir = Path(run_dir or default_run_dir(cfg))
    found = finished_results(cfg) if cfg.profile != "smoke" else None
    try:
        res = json.loads((run_dir / "results.json").read_text())
    except FileNotFoundError:
        res = None
    except (OSError, ValueError):
        return None  # the run itself names what is wrong with the folder
    if isinstance(res, dict):
        if not (res.get("finished") and same_config(res, cfg)):
            return None
        return {**res, "run_dir": str(run_dir),
                "results_file": found["results_file"] if found else None}
    if found is None or (run_dir / "checkpoint.pt").exists():
        return None
    return {**found, "run_dir": None}


class ResultsMissingError(ConfigError):
    """Load-only mode (``$SEMIBOOK_LOAD_ONLY``) found no results file for a config."""


def run_or_load(cfg: Config, progress: bool = True) -> dict[str, Any]:
    """What a chapter calls: the finished results file of exactly this config if one exists
    (``results/``, written by a real run), else train now. Smoke runs always train and are never
    saved as results. With ``$SEMIBOOK_LOAD_ONLY`` set (CI's check of the committed chapters), a
    missing results file is an error, never an hour of training."""
    found = finished_results(cfg) if cfg.profile != "smoke" else None
    if found:
        return found
    if cfg.profile != "smoke" and os.environ.get("SEMIBOOK_LOAD_ONLY"):
        raise ResultsMissingError(
            f"no finished results file for {result_name(cfg)} (exactly this config) in "
            f"{results_dir()}, and $SEMIBOOK_LOAD_ONLY forbids training; run: "
            f".venv/bin/python -m semibook run --method {cfg.method} --dataset {cfg.dataset} "
            f"--labels {cfg.labels} --profile {cfg.profile} --seed {cfg.seed}")
    if cfg.profile != "smoke" and pick_device().type == "cpu":
        print(f"note: no finished results file for this {cfg.method} config in "
              f"{results_dir()}; training it here, {cfg.steps} steps on the CPU (the full "
              f"profile: minutes; paper: days; SEMIBOOK_PROFILE=smoke checks the code path in "
              f"seconds)", flush=True)
    res = run(cfg, overwrite=True, progress=progress)
    res["loaded"] = False
    return res


def run_to_file(cfg: Config, run_dir: Path, out: Path, extra: dict[str, Any],
                progress: bool = False, allow_code_change: bool = False) -> dict[str, Any]:
    """Train ``cfg`` in ``run_dir`` (resuming it where a checkpoint is left) and, finished,
    write its results with ``extra`` keys to ``out``: a calibration run's or a tuning trial's
    results file (``results/calibration/``, ``results/tuning/``)."""
    _refuse_foreign(out)
    resume = (run_dir / "checkpoint.pt").exists()
    res = fit(cfg, run_dir, resume=resume, overwrite=not resume, progress=progress,
              allow_code_change=allow_code_change)
    if res.get("finished"):
        res.update(extra)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(res, indent=1) + "\n")
    return res
