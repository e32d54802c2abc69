"""The bottom of the package: the errors a user's choice can raise and the checks of single
values. Every other module may import this one, and it imports none of them, so the registries
(data, methods, models) and the engine need not import :mod:`semibook.config`, which builds
configs from those registries: imports run one way.
"""

from __future__ import annotations

import difflib
import math
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


def did_you_mean(name: str, known) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` to a misspelt ``name``, else ''."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# The config fields' kinds and ranges (semibook.config.Config): ("int", lowest) integers,
# ("float", low, high, low_open, high_open) numbers, "bool", "str?" a string or None.
FIELD_RULES: dict[str, Any] = {
    "labels": ("int", 1), "seed": ("int", 0), "steps": ("int", 1), "batch_l": ("int", 1),
    "batch_u": ("int", 1), "eval_every": ("int", 1), "eval_size": ("int", 0),
    "eval_batch": ("int", 1), "eval_crop": ("int", 0), "eval_stride": ("int", 0),
    "checkpoint_every": ("int", 0), "log_every": ("int", 1), "track_size": ("int", 0),
    "augment_pad": ("int", 0), "crop_size": ("int", 0), "eval_subset": ("int", 0),
    "validation": ("int", 0),
    "bn_momentum": ("float", 0, 1, True, False), "lr": ("float", 0, math.inf, True, True),
    "momentum": ("float", 0, 1, False, True), "weight_decay": ("float", 0, math.inf, False, True),
    "decoupled_wd": ("float", 0, 1, False, True), "ema_decay": ("float", 0, 1, False, True),
    "augment_scale_min": ("float", 0, math.inf, True, True),
    "augment_scale_max": ("float", 0, math.inf, True, True),
    "nesterov": "bool", "skip_nonfinite": "bool", "compile": "bool",
    "encoder_weights": "str?", "weights_path": "str?", "data_root": "str?", "arch": "str",
}


def check_field(name: str, value: Any) -> None:
    """One config field's type and range (:data:`FIELD_RULES`), as one line naming both."""
    rule = FIELD_RULES.get(name)
    if rule is None:
        return
    kind = rule if isinstance(rule, str) else rule[0]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False, got {value!r}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
    elif kind == "str?":
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{name} must be a string (a path or name) or None, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < rule[1]:
            what = "a positive" if rule[1] == 1 else "a non-negative"
            raise ConfigError(f"{name} must be {what} integer, got {value!r}")
    else:
        _, low, high, low_open, high_open = rule
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) and (low < value if low_open else low <= value) \
            and (value < high if high_open else value <= high)
        if not ok:
            span = (f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
                    if high != math.inf else f"{'above' if low_open else 'at least'} {low}")
            raise ConfigError(f"{name} must be a finite number {'in ' if high != math.inf else ''}"
                              f"{span}, got {value!r}")
