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
            return segmentation_recipe(profile, dataset)
        # MixMatch's optimisation recipe, minus its unlabeled loss: the fair baseline.
        r = MixMatch.recipe(profile, dataset)
        r.pop("hparams")
        return r

    def training_step(self, batch, step):
        logits_l = self.model(batch.x_l)
        loss_sup = F.cross_entropy(logits_l.float(), batch.y_l,
                                   ignore_index=self.spec.ignore_index)
        return loss_sup, {"loss_sup": loss_sup.detach()}


def segmentation_recipe(profile: str, dataset: str) -> dict:
    """The optimisation shared by the segmentation methods.

    The papers' common recipe (the supervised baseline's ``paper`` profile, and the user's VOC
    and Cityscapes in smoke and full; the methods' ``paper`` recipes are their official runs):
    SGD with momentum 0.9, weight decay 1e-4, a poly learning-rate decay (power
    0.9) and a random rescale by 0.5 to 2.0, made for fine-tuning an ImageNet-pretrained
    encoder. The embedded fashion-scenes start from random weights, where that recipe learns
    slowly (its full-profile runs on the first, eleven-class scenes are kept in
    ``results/sgd-recipe/``; chapter 3 compares). There the smoke and full profiles use Adam
    (3e-3, the same poly decay; calibrated on the first scenes, where 1e-3 left the every-label
    ceiling 4 points lower: ``results/v1-profile/calibration/``) and a milder rescale, 0.8 to
    1.25 (the scenes' items already vary in size: 1.2 to 2.0 times in ``fashion-scenes``, 0.8
    to 1.6 in ``fashion-scenes-v1``), for every method alike."""
    if dataset.startswith("fashion-scenes") and profile != "paper":
        return dict(optimizer="adam", lr=3e-3, weight_decay=0.0, lr_schedule="poly",
                    ema_decay=0.0, augment_scale_min=0.8, augment_scale_max=1.25)
    return dict(optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=1e-4,
                lr_schedule="poly", ema_decay=0.0)
