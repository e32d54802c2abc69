"""The fully convolutional discriminator of AdvSemiSeg (Hung et al., BMVC 2018).

Input: a class-probability map (softmax output, or a one-hot label map), N x C x H x W.
Five 4x4 convolutions with stride 2 (64, 128, 256, 512, 1 channels), LeakyReLU 0.2 between
them; the 1-channel confidence map is upsampled back to H x W. Its sigmoid says, per pixel,
how much the map looks like a ground-truth label map.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class FCDiscriminator(nn.Module):
    def __init__(self, num_classes: int, width: int = 64):
        super().__init__()
        chans = [num_classes, width, 2 * width, 4 * width, 8 * width]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(chans, chans[1:]))
        self.classifier = nn.Conv2d(chans[-1], 1, 4, 2, 1)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        x = p
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return F.interpolate(self.classifier(x), size=p.shape[-2:], mode="bilinear",
                             align_corners=False)
