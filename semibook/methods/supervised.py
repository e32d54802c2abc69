"""Supervised baseline: the labeled images alone, with everything else as the semi-supervised
method it is compared with (model, optimizer, augmentation, EMA, schedule)."""

from __future__ import annotations

import torch.nn.functional as F

from .base import SemiMethod
from .mixmatch import MixMatch


class Supervised(SemiMethod):
    name = "supervised"
    views_l, views_u = 1, 0
    tasks = ("classification", "segmentation")

    @classmethod
    def recipe(cls, profile, dataset):
        from ..data import dataset_info
        if dataset_info(dataset).task == "segmentation":
            return segmentation_recipe(profile)
        # MixMatch's optimisation recipe, minus its unlabeled loss: the fair baseline.
        r = MixMatch.recipe(profile, dataset)
        r.pop("hparams")
        return r

    def training_step(self, batch, step):
        logits_l = self.model(batch.x_l)
        loss_sup = F.cross_entropy(logits_l.float(), batch.y_l,
                                   ignore_index=self.spec.ignore_index)
        return loss_sup, {"loss_sup": loss_sup.detach()}


def segmentation_recipe(profile: str) -> dict:
    """The optimisation shared by the segmentation methods (as in CPS and UniMatch): SGD with
    momentum 0.9, weight decay 1e-4 and a poly learning-rate decay (power 0.9)."""
    return dict(optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=1e-4,
                lr_schedule="poly", ema_decay=0.0)
