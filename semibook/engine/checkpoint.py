"""Checkpoints and run-folder files: written atomically (temporary file, fsync, rename), so a
process killed at any moment leaves either the previous complete file or the new one, never a
torn one. Checkpoints load with ``weights_only=True``: they hold only tensors and plain
containers of str, int, float and bool (configs as dicts; no RNG states are needed, see
:mod:`semibook.engine.seed`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from ..config import ConfigError


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass


def save_checkpoint(path: Path, state: dict) -> None:
    path = Path(path)
    tmp = _tmp(path)
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    _replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file (config, results) so that readers never see half of it."""
    path = Path(path)
    tmp = _tmp(path)
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    _replace(tmp, path)


def load_checkpoint(path: Path, method: str | None = None) -> dict:
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:
        first = " ".join(str(e).split())[:200]
        raise ConfigError(f"{path}: cannot load checkpoint ({type(e).__name__}: {first})") \
            from None
    if not isinstance(state, dict) or "config" not in state:
        raise ConfigError(f"{path}: not a semibook checkpoint (no config in it)")
    if method is not None and state.get("config", {}).get("method") != method:
        raise ConfigError(f"{path}: checkpoint of method {state.get('config', {}).get('method')!r}"
                          f", expected {method!r}")
    return state


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
