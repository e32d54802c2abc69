"""Checkpoints: written atomically (temporary file, fsync, rename), loaded with weights_only."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import ConfigError


def save_checkpoint(path: Path, state: dict) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, method: str | None = None) -> dict:
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{path}: cannot load checkpoint ({type(e).__name__}: {e})") from None
    if method is not None and state.get("config", {}).get("method") != method:
        raise ConfigError(f"{path}: checkpoint of method {state.get('config', {}).get('method')!r}"
                          f", expected {method!r}")
    return state
