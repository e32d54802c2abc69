"""The shared training engine."""

from .loop import fit, load_results, prepare, provenance, run, run_or_load

__all__ = ["fit", "load_results", "prepare", "provenance", "run", "run_or_load"]
