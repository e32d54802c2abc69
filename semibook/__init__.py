"""semibook: semi-supervised learning, chapter by chapter, on one shared engine.

The few names a chapter needs::

    import semibook as sb
    sb.setup()                                   # seed, device, plot style, versions
    cfg = sb.make_config("mixmatch", "fashion-mnist", labels=250)
    res = sb.run(cfg)                            # train; results dict (and results/ file)
    sb.load_results(method="mixmatch")           # results files written by real runs
"""

from __future__ import annotations

import importlib

from .config import PROFILES, Config, ConfigError, make_config

__version__ = "0.1.0"

# Imported on first use (PEP 562), so that ``python -m semibook --help`` needs no torch.
_LAZY = {"DATASETS": ".data", "available": ".data", "load_dataset": ".data",
         "fit": ".engine.fit", "load_results": ".engine.results", "provenance": ".engine.results",
         "run": ".engine.run", "run_or_load": ".engine.run", "METHODS": ".methods",
         "get_method_class": ".methods", "create_model": ".models"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'semibook' has no attribute {name!r}")


def get_method(name: str):
    """The method class registered under ``name`` (an unknown name lists the known ones)."""
    from .methods import get_method_class
    return get_method_class(name)


def setup(seed: int = 0, profile: str | None = None, quiet: bool = False) -> dict:
    """One call at the top of a chapter: seed, pick the device, set the plot style, and say
    which profile (the notebook's ``PROFILE``, else ``$SEMIBOOK_PROFILE``), device and versions
    this chapter runs with."""
    import os
    import platform

    import torch

    from .engine.seed import device_name, pick_device, seed_everything
    from .viz import set_style

    seed_everything(seed)
    set_style()
    device = pick_device()
    profile = profile or os.environ.get("SEMIBOOK_PROFILE", "full")
    info = {"profile": profile, "device": device_name(device),
            "torch": torch.__version__, "python": platform.python_version()}
    if not quiet:
        print("  ".join(f"{k}: {v}" for k, v in info.items()))
    return info


__all__ = ["Config", "ConfigError", "DATASETS", "METHODS", "PROFILES", "available", "create_model",
           "fit", "get_method", "load_dataset", "load_results", "make_config", "provenance", "run",
           "run_or_load", "setup"]
