"""The bottom of the package: the errors a user's choice can raise and the checks of single
values. Every other module may import this one, and it imports none of them, so the registries
(data, methods, models) and the engine need not import :mod:`semibook.config`, which builds
configs from those registries: imports run one way.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A bad choice by the user: printed as one line by the CLI, no traceback."""


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss (``Config.skip_nonfinite`` skips such steps instead); the CLI
    prints it as one line and exits with status 3. Defined here, with :class:`ConfigError`, so
    that the command line catches both without importing torch."""


def check_seed(seed: Any) -> int:
    """A seed is a non-negative integer (numpy's seed sequences take no negative entropy)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer (0, 1, 2, ...), got {seed!r}")
    return seed


DEVICES = ("cpu", "cuda", "mps")


def check_device(name: str | None) -> str | None:
    """``--device``: cpu, cuda (or cuda:N) or mps; None picks the best present."""
    if name is None:
        return None
    kind, _, index = str(name).partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"unknown device {name!r}; choose one of: cpu, cuda, cuda:N, mps (or "
                          f"leave --device out for the best one present)")
    return name


def choose(kind: str, value: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise one clear line listing them
    (and the nearest, for a typo)."""
    choices = list(choices)
    if value not in choices:
        import difflib
        near = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ConfigError(f"unknown {kind} {value!r}; {hint}choose one of: {', '.join(choices)}")
    return value
