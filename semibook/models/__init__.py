"""Models: the WRN family for classification, EMA helpers."""

from __future__ import annotations

import torch.nn as nn

from .discriminator import FCDiscriminator
from .ema import ema_copy, ema_update, frozen_bn_stats
from .segmentation import PRESETS as SEGMENTATION_MODELS
from .segmentation import create_segmentation_model
from .wrn import BN_MOMENTUM, WideResNet, parse_wrn, wrn

ARCHS = ("wrn-28-2", "wrn-10-1", "wrn-D-W")


def create_model(arch: str, num_classes: int, in_channels: int,
                 bn_momentum: float = BN_MOMENTUM) -> nn.Module:
    """Build a classifier by name (``wrn-28-2`` and any ``wrn-D-W``)."""
    return wrn(arch, num_classes, in_channels, bn_momentum)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ARCHS", "FCDiscriminator", "SEGMENTATION_MODELS", "WideResNet",
           "create_segmentation_model", "create_model", "count_parameters", "ema_copy", "ema_update",
           "frozen_bn_stats", "parse_wrn"]
