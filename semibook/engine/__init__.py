"""The shared training engine, one seam a file:

- ``batches.py``: ``StepData``, each step's labeled and unlabeled images and their augmented
  views, a pure function of (seed, step);
- ``step.py``: the speed options a device resolves to, precision, the optimizer, and
  ``train_step`` (one step: loss, backward, update, decoupled decay, EMA);
- ``evaluate.py``: ``Trainer`` (what a run holds), predictions, the test metric, agreement on
  the tracked unlabeled images, the samples a chapter shows;
- ``fit.py``: ``prepare`` (data, split, models) and ``fit`` (the loop, logging, checkpoints,
  exact resume); ``resume.py``: what a resume may change, and the history it keeps;
- ``results.py``: the results file, reading results back, provenance;
- ``run.py``: ``run`` (a run in its folder, and its results file) and ``run_or_load`` (what a
  chapter calls);
- ``checkpoint.py``, ``rundir.py``, ``interrupt.py``, ``schedules.py``, ``seed.py``,
  ``distributed.py``: atomic files and checkpoints, run folders and their lock, Ctrl-C between
  steps, ramp-ups and learning-rate schedules, seeds and devices, several processes.

The public names are imported on first use, so that a method module can import
``engine.schedules`` without the loop (which imports the methods)."""

import importlib

_HOME = {"fit": ".fit", "prepare": ".fit", "load_results": ".results", "provenance": ".results",
         "run": ".run", "run_or_load": ".run"}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name], __name__), name)
    raise AttributeError(f"module 'semibook.engine' has no attribute {name!r}")
