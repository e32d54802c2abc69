"""A mean teacher on the strong-weak dual-branch network, with image-level class restriction.
Chapter: book/07_teachers_weak_labels.ipynb.

The plan of one of the book's source documents, which reads Mean Teacher, Soft Teacher and the
dual-branch network together; no public code does it, so this is the book's own method:
``dual_branch`` (strong branch on pixel labels, weak branch on box labels, one encoder) plus an
EMA teacher of the whole network whose pseudo labels teach the student's strong branch on the
unlabeled scenes. The weak labels help the teacher twice: its pseudo labels may only take the
classes the scene's image-level weak label allows (its list of items), so a shirt is never
labelled "coat" in a scene without a coat.
Per step, teacher T (EMA of the student S, decay 0.99), unlabeled weak view x_w and a strong
photometric view x_s of the same crop:
  1. the dual-branch losses of ``dual_branch`` (strong branch: CE on x_l; weak branch: CE on
     the box label maps), with one student pass over x_l and x_s: the weak branch sees the
     strong view (same geometry, so the boxes still fit), which saves a second pass over the
     unlabeled images (``dual_branch`` alone gives it the weak view x_w);
  2. q = softmax of T's strong branch on x_w over the allowed classes only (the others get
     probability 0); pseudo label y = arg-max q, kept where max q >= tau (0.9);
  3. L_u = CE(S's strong branch(x_s), y) on the kept pixels, averaged over all unlabeled
     pixels, weight lambda_u = 1;
  loss = L_strong + lambda_weak L_weak + lambda_u L_u. The student's strong branch is
  evaluated (the teacher's beside it). ``hparams["restrict"]`` False drops the class
  restriction (every class allowed), to see what it adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.transforms import strong_photometric
from ..engine.schedules import unlabeled_ramp
from ..models import ema_copy
from .base import StudentTeacher
from .dual_branch import DualBranch


def allowed_pseudo_labels(logits: torch.Tensor, tags: torch.Tensor,
                          tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pseudo labels restricted to each image's allowed classes: ``logits`` (n, C, h, w),
    ``tags`` bool (n, C). Returns (labels, confidence, keep), the softmax taken over the
    allowed classes only and ``keep`` where its maximum is at least ``tau``."""
    allowed = tags[:, :, None, None].to(logits.device)
    q = F.softmax(logits.float().masked_fill(~allowed, float("-inf")), dim=1)
    conf, labels = q.max(1)
    return labels, conf, conf >= tau


class DualBranchTeacher(StudentTeacher, DualBranch):
    name = "dual_branch_teacher"
    paper = "the book's own (Mean Teacher + Soft Teacher's views + Luo & Yang)"

    @classmethod
    def recipe(cls, profile, dataset):
        r = super().recipe(profile, dataset)
        r["hparams"] = dict(r["hparams"], tau=0.9, lambda_u=1.0, restrict=True,
                            ema=0.999 if profile == "paper" else 0.99)
        return r

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.teacher = ema_copy(self.model)

    def training_step(self, batch, step):
        hp = self.hp
        with torch.no_grad():
            self.teacher.eval()
            tags = batch.tags_u if hp["restrict"] else torch.ones_like(batch.tags_u)
            y_u, _, keep = allowed_pseudo_labels(self.teacher(batch.x_u), tags, hp["tau"])
        x_s = strong_photometric(batch.x_u, batch.gen)
        loss_strong, loss_weak, logits_s = self.branch_losses(batch, x_s)
        ce = F.cross_entropy(logits_s.float(), y_u, reduction="none")
        loss_u = (ce * keep).mean()
        loss = (loss_strong + hp["lambda_weak"] * loss_weak
                + hp["lambda_u"] * unlabeled_ramp(self.cfg, step) * loss_u)
        return loss, {"loss_sup": loss_strong.detach(), "loss_weak": loss_weak.detach(),
                      "loss_u": loss_u.detach(), "keep_share": keep.float().mean()}

    @torch.no_grad()
    def tracked_labels(self, x, tags=None):
        """Besides the two branches: the teacher's pseudo labels restricted to each image's
        classes against its plain arg-max, so the chapter can show what the restriction
        corrects."""
        out = super().tracked_labels(x)
        if tags is not None:
            self.teacher.eval()
            logits = self.teacher(x)
            out["restricted-vs-plain"] = (allowed_pseudo_labels(logits, tags, 0.0)[0],
                                          logits.argmax(1))
        return out
