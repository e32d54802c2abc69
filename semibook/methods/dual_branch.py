"""The strong-weak dual-branch network (Luo & Yang, ECCV 2020), with box labels.
Chapter: book/07_teachers_weak_labels.ipynb.

The paper's finding, from its abstract: training one network on a few pixel-accurate
("strong") label maps and many coarse ("weak") ones bundled together does worse than the
strong ones alone, which shows the weak labels misused. Its fix separates them: a shared
network component and two branches, one for each kind of label, so that the weak labels' errors
do not interfere with the strong branch, which alone predicts at test time. The paper's full
text was not at hand; the losses below are this book's reading of that design. Here the weak
labels are the unlabeled scenes' boxes (fashion-scenes gives each item's box and class):
  1. weak label map m from the boxes: a box's class inside it, background outside every box,
     ignored where boxes of different classes overlap (:func:`semibook.data.scenes.box_label_map`);
  2. one encoder pass over the labeled images x_l and the unlabeled images x_u (weak views);
  3. loss = CE(strong branch(x_l), y_l) + lambda_weak CE(weak branch(x_u), m), ignored pixels
     left out; lambda_weak = 1 (our choice: the two losses added).
The box interior is the coarsest mask a box gives. Each branch here is a U-Net decoder with its
head on the shared encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.segmentation import DualBranch as DualBranchNet
from .base import SemiMethod
from .supervised import segmentation_recipe


class DualBranch(SemiMethod):
    name = "dual_branch"
    tasks = ("segmentation",)
    views_l, views_u = 1, 1
    weak_labels = True
    paper = "Luo & Yang, ECCV 2020"

    @classmethod
    def recipe(cls, profile, dataset):
        return segmentation_recipe(profile, dataset) | {"hparams": dict(lambda_weak=1.0)}

    def build_model(self, **kw):
        return DualBranchNet(super().build_model(**kw), super().build_model(**kw))

    def ce(self, logits, target):
        return F.cross_entropy(logits.float(), target, ignore_index=self.spec.ignore_index)

    def branch_losses(self, batch, x_u=None):
        """The strong branch on the labeled images and the weak branch on the unlabeled
        images (``x_u``, default their weak view; any view of the same geometry) with their
        box labels, from one encoder pass; also returns the unlabeled images' strong-branch
        logits (``dual_branch_teacher`` trains them on its pseudo labels)."""
        B = batch.x_l.shape[0]
        x_u = batch.x_u if x_u is None else x_u
        strong, weak = self.model.both(torch.cat([batch.x_l, x_u]))
        loss_strong = self.ce(strong[:B], batch.y_l)
        loss_weak = self.ce(weak[B:], batch.w_u)
        return loss_strong, loss_weak, strong[B:]

    def training_step(self, batch, step):
        loss_strong, loss_weak, _ = self.branch_losses(batch)
        loss = loss_strong + self.hp["lambda_weak"] * loss_weak
        return loss, {"loss_sup": loss_strong.detach(), "loss_weak": loss_weak.detach()}

    @torch.no_grad()
    def tracked_labels(self, x, tags=None):
        """The two branches' labels on the tracked unlabeled images: how far the weak branch
        (boxes) and the strong branch (pixels) agree, and which is right."""
        self.model.eval()
        strong, weak = self.model.both(x)
        return {"strong-vs-weak": (strong.argmax(1), weak.argmax(1))}
