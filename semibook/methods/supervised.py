"""Supervised baseline: the labeled images alone, with everything else as the semi-supervised
method it is compared with (model, optimizer, augmentation, EMA, schedule)."""

from __future__ import annotations

import torch.nn.functional as F

from .base import SemiMethod
from .mixmatch import MixMatch


class Supervised(SemiMethod):
    name = "supervised"
    views_l, views_u = 1, 0

    @classmethod
    def recipe(cls, profile, dataset):
        # MixMatch's optimisation recipe, minus its unlabeled loss: the fair baseline.
        r = MixMatch.recipe(profile, dataset)
        r.pop("hparams")
        return r

    def training_step(self, batch, step):
        logits_l = self.model(batch.x_l)
        loss_sup = F.cross_entropy(logits_l.float(), batch.y_l)
        return loss_sup, {"loss_sup": loss_sup.detach()}
