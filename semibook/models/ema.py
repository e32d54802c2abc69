"""Exponential moving averages of a model's weights, and a switch that freezes BN statistics."""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn as nn


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy to average into: it never receives gradients."""
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for parameters and floating buffers (BN
    statistics); integer buffers (BN's batch counter) are copied."""
    for e, m in zip(ema.parameters(), model.parameters()):
        e.lerp_(m.detach(), 1.0 - decay)
    for e, m in zip(ema.buffers(), model.buffers()):
        if e.dtype.is_floating_point:
            e.lerp_(m, 1.0 - decay)
        else:
            e.copy_(m)


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module):
    """Forward passes in train mode (batch statistics) that leave BN's running statistics as
    they are: momentum 0 makes the running update a no-op."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield model
    finally:
        for m, s in zip(bns, saved):
            m.momentum = s
