"""Wide ResNet as used by MixMatch (WRN-28-2, about 1.47M parameters for CIFAR-10).

Pre-activation blocks (BN, leaky ReLU 0.1, conv), batch-norm momentum 0.001 in PyTorch's sense
(TensorFlow decay 0.999), the first block of the first group activating before its shortcut.
``wrn-D-W`` names depth D (D = 6n + 4) and width W; any number of input channels.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import ConfigError

BN_MOMENTUM = 0.001
SLOPE = 0.1


def parse_wrn(arch: str) -> tuple[int, int]:
    m = re.fullmatch(r"wrn-(\d+)-(\d+)", arch)
    if not m or (int(m.group(1)) - 4) % 6 or int(m.group(1)) < 10 or int(m.group(2)) < 1:
        raise ConfigError(f"unknown architecture {arch!r}; choose wrn-D-W with depth D = 6n + 4 "
                          f">= 10 and width W >= 1 (e.g. wrn-28-2, the MixMatch model)")
    return int(m.group(1)), int(m.group(2))


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, activate_before_residual: bool = False,
                 bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in, momentum=bn_momentum)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None if c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)
        self.activate_before_residual = activate_before_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.leaky_relu(self.bn1(x), SLOPE)
        # The shortcut takes the activated input in the first block and where it projects.
        skip = a if (self.activate_before_residual or self.shortcut is not None) else x
        out = self.conv1(a)
        out = self.conv2(F.leaky_relu(self.bn2(out), SLOPE))
        return out + (skip if self.shortcut is None else self.shortcut(skip))


class WideResNet(nn.Module):
    def __init__(self, num_classes: int = 10, depth: int = 28, width: int = 2, in_channels: int = 3,
                 bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers = []
        for g, stride in enumerate((1, 2, 2)):
            for i in range(n):
                layers.append(Block(widths[g] if i == 0 else widths[g + 1], widths[g + 1],
                                    stride if i == 0 else 1,
                                    activate_before_residual=(g == 0 and i == 0),
                                    bn_momentum=bn_momentum))
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(widths[3], momentum=bn_momentum)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv(x))
        x = F.leaky_relu(self.bn(x), SLOPE)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def wrn(arch: str, num_classes: int, in_channels: int,
        bn_momentum: float = BN_MOMENTUM) -> WideResNet:
    depth, width = parse_wrn(arch)
    return WideResNet(num_classes, depth, width, in_channels, bn_momentum)
