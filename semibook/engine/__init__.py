"""The shared training engine (:mod:`semibook.engine.loop`). Its names are imported on first
use, so that a method module can import ``engine.schedules`` without the loop (which imports
the methods)."""

import importlib

__all__ = ["fit", "load_results", "prepare", "provenance", "run", "run_or_load"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module(".loop", __name__), name)
    raise AttributeError(f"module 'semibook.engine' has no attribute {name!r}")
