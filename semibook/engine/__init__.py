"""The shared training engine."""

from .loop import fit, load_results, prepare, run

__all__ = ["fit", "load_results", "prepare", "run"]
