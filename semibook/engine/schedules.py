"""Ramp-ups and learning-rate schedules."""

from __future__ import annotations

import math


def linear_rampup(step: int, length: int) -> float:
    """0 -> 1 linearly over ``length`` steps (MixMatch's λ_u ramp-up), then 1."""
    if length <= 0:
        return 1.0
    return min(max(step / length, 0.0), 1.0)


def sigmoid_rampup(step: int, length: int) -> float:
    """exp(-5 (1 - t)^2), t = step / length (Laine & Aila; Mean Teacher), then 1."""
    if length <= 0 or step >= length:
        return 1.0
    phase = 1.0 - max(step, 0) / length
    return math.exp(-5.0 * phase * phase)


def sigmoid_rampdown(step: int, length: int, total: int) -> float:
    """exp(-12.5 (1 - t)^2) over the last ``length`` steps of ``total`` (Mean Teacher)."""
    if length <= 0 or step < total - length:
        return 1.0
    phase = 1.0 - max(total - step, 0) / length
    return math.exp(-12.5 * phase * phase)


def frac_steps(cfg, key: str) -> int:
    """A ramp length given in the recipe as a fraction of training, in steps (at least 1)."""
    return max(1, round(cfg.steps * cfg.hparams[key]))


def ramp_length(cfg) -> int:
    """The unlabeled weight's ramp-up in steps: ``hparams["rampup_steps"]`` (absolute, the
    short schedules') where given, else ``rampup_frac`` of training (the official recipes'
    fraction), else none."""
    hp = cfg.hparams
    if hp.get("rampup_steps") is not None:
        return int(hp["rampup_steps"])
    return frac_steps(cfg, "rampup_frac") if "rampup_frac" in hp else 0


def unlabeled_ramp(cfg, step: int, shape: str = "linear") -> float:
    """The factor on a method's unlabeled (pseudo-label or consistency) loss at ``step``: 0
    for the first ``hparams["burn_in"]`` steps (supervised-only training first, the remedy
    where a term assumes a network that already predicts: Soft Teacher's and the dual-branch
    teacher's pseudo labels, CPS's, on randomly initialised networks), then the ramp-up
    (:func:`ramp_length`, ``shape`` linear or sigmoid) counted from the burn-in's end, then 1.
    Without either hyper-parameter it is 1 from step 0."""
    burn = int(cfg.hparams.get("burn_in", 0) or 0)
    if step < burn:
        return 0.0
    ramp = linear_rampup if shape == "linear" else sigmoid_rampup
    return ramp(step - burn, ramp_length(cfg))


def lr_factor(cfg, step: int) -> float:
    if cfg.lr_schedule == "constant":
        return 1.0
    if cfg.lr_schedule == "poly":  # DeepLab's (1 - t/T)^0.9
        # paper recipes only: another power (hparams poly_power) and a linear warm-up from
        # warmup_ratio over warmup_steps that replaces the decay while it lasts (Dual Teacher's
        # PolyWarmupAdamW, naver-ai/dual-teacher seg_core/optimizer.py)
        warmup = cfg.hparams.get("warmup_steps", 0)
        if step < warmup:
            return 1 - (1 - step / warmup) * (1 - cfg.hparams.get("warmup_ratio", 1e-6))
        return (1 - step / cfg.steps) ** cfg.hparams.get("poly_power", 0.9)
    if cfg.lr_schedule == "cosine":  # FixMatch-style cos(7πk/16K)
        return math.cos(7 * math.pi * step / (16 * cfg.steps))
    if cfg.lr_schedule == "mean_teacher":
        return (sigmoid_rampup(step, frac_steps(cfg, "rampup_frac"))
                * sigmoid_rampdown(step, frac_steps(cfg, "rampdown_frac"), cfg.steps))
    raise ValueError(cfg.lr_schedule)


def set_step_hparams(optimizer, cfg, step: int, extra=()) -> float:
    """Set this step's learning rate (and Mean Teacher's Adam betas); return the lr. Extra
    optimizers (a discriminator's) follow the same schedule from their own base rate."""
    factor = lr_factor(cfg, step)
    for o in extra:
        for g in o.param_groups:
            g["lr"] = g.setdefault("base_lr", g["lr"]) * factor
    lr = cfg.lr * factor
    for g in optimizer.param_groups:
        # a group with lr_mult (the paper recipes' 10x head, hparams head_lr_mult) scales it
        g["lr"] = lr * g["lr_mult"] if "lr_mult" in g else lr
        if cfg.lr_schedule == "mean_teacher" and "betas" in g:
            # Official code: β2 0.99 during ramp-up (the CIFAR-10 runner: 0.999, hparams
            # adam_beta2_rampup), 0.999 after; β1 0.9 -> 0.5 in the ramp-down.
            down = sigmoid_rampdown(step, frac_steps(cfg, "rampdown_frac"), cfg.steps)
            b1 = down * 0.9 + (1 - down) * 0.5
            b2 = cfg.hparams.get("adam_beta2_rampup", 0.99) \
                if step < frac_steps(cfg, "rampup_frac") else 0.999
            g["betas"] = (b1, b2)
    return lr
