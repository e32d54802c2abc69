"""Checkpoints, written atomically as every run-folder file is (:mod:`semibook.files`), so a
process killed at any moment leaves either the previous complete file or the new one, never a
torn one. Checkpoints load with ``weights_only=True``: they hold only tensors and plain
containers of str, int, float and bool (configs as dicts; no RNG states are needed, see
:mod:`semibook.engine.seed`)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
import torch.nn as nn

from ..checks import ConfigError
from ..files import atomic_write, atomic_write_text  # noqa: F401 (re-exported)


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, True, lambda f: torch.save(state, f))


def _load_failure(path: Path, e: Exception) -> str:
    """Why a checkpoint did not load, in one line of semibook's words. torch's own message
    for a refused object advises loading with ``weights_only=False``, which would run the
    file's code; it is not shown."""
    text = str(e)
    if isinstance(e, pickle.UnpicklingError) or "weights_only" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f"it asks to call {found.group(1)}" if found else \
            "it holds objects other than tensors and plain containers"
        return (f"{path}: refused to load the checkpoint: {what}, which no semibook checkpoint "
                f"does (a damaged or foreign file, possibly malicious); delete it, or pass "
                f"--overwrite to start the run again")
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = first if len(first) <= 160 else first[:157] + "..."
    return (f"{path}: cannot load checkpoint ({type(e).__name__}: {first}); the file is "
            f"damaged: delete it, or pass --overwrite to start the run again")


def load_checkpoint(path: Path, method: str | None = None) -> dict:
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(_load_failure(path, e)) from None
    if not isinstance(state, dict) or "config" not in state:
        raise ConfigError(f"{path}: not a semibook checkpoint (no config in it)")
    if method is not None and state.get("config", {}).get("method") != method:
        raise ConfigError(f"{path}: checkpoint of method {state.get('config', {}).get('method')!r}"
                          f", expected {method!r}")
    return state


# What a checkpoint to resume from holds (written by engine.fit), with the kinds of the values
RESUME_KEYS = (("step", int), ("config", dict), ("method", dict), ("optimizer", dict),
               ("extra_optimizers", dict), ("elapsed_s", (int, float)), ("started_at", str))


def check_resumable(state: dict, path: Path, steps: int, extra: tuple[str, ...] = ()) -> None:
    """One line, naming the checkpoint, where it lacks what a resume reads (a key, the extra
    optimizers ``extra``) or holds a step outside 0..``steps``."""
    for key, kind in RESUME_KEYS:
        v = state.get(key)
        if not isinstance(v, kind) or isinstance(v, bool):
            what = "has no" if key not in state else "has a damaged"
            raise ConfigError(f"{path}: the checkpoint {what} {key!r}, so the run cannot "
                              f"continue from it; delete it, or pass --overwrite to start the "
                              f"run again")
    missing = [n for n in extra if n not in state["extra_optimizers"]]
    if missing or not 0 <= state["step"] <= steps:
        what = (f"no state of the {missing[0]} optimizer" if missing else
                f"step {state['step']}, outside 0..{steps}")
        raise ConfigError(f"{path}: the checkpoint holds {what}, so the run cannot continue "
                          f"from it; delete it, or pass --overwrite to start the run again")


def load_weights(module: nn.Module | torch.optim.Optimizer, state: dict, path: Path,
                 what: str = "model") -> None:
    """``module.load_state_dict(state)``, with a mismatch (missing or extra tensors, other
    shapes) reported as one line naming the checkpoint and the first tensor that differs."""
    if isinstance(module, nn.Module):
        own = module.state_dict()
        missing = [k for k in own if k not in state]
        extra = [k for k in state if k not in own]
        if missing or extra:
            names = ", ".join(([f"missing {missing[0]}"] if missing else [])
                              + ([f"unexpected {extra[0]}"] if extra else []))
            raise ConfigError(f"{path}: checkpoint does not fit the {what} ({len(missing)} "
                              f"tensors missing, {len(extra)} unexpected: {names})")
        for k, v in own.items():
            if tuple(v.shape) != tuple(state[k].shape):
                raise ConfigError(f"{path}: checkpoint tensor {k} has shape "
                                  f"{tuple(state[k].shape)}, the {what} expects {tuple(v.shape)}")
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as e:
        first = " ".join(str(e).split())[:200]
        raise ConfigError(f"{path}: checkpoint does not fit the {what} ({first})") from None
