"""Soft Teacher (Xu et al., ICCV 2021), carried from detection to segmentation.
Chapter: book/07_teachers_weak_labels.ipynb.

Soft Teacher trains a detector end to end with an EMA teacher: the teacher sees a weak view of
each unlabeled image, the student a strong view of the same image, and each batch holds one
labeled image for four unlabeled ones. Its own idea is the "soft teacher": the teacher's
confident detections (score >= 0.9) are the foreground pseudo labels, every other student
proposal is background, and the loss of each background proposal is weighted by how sure the
teacher is that it is background (its background score), so that a missed object does not
teach the student "background" at full strength. Here a pixel plays a proposal's part.
Per step, teacher T (EMA of the student S) and the unlabeled images' weak view x_w (the
student's view x_s is a strong photometric view of the same crop, so pixels correspond):
  1. p = softmax(T(x_w)); a pixel is foreground where its arg-max c is an item class and
     p_c >= tau (0.9): target c, weight 1; every other pixel is background: target 0, weight
     r = p_0, the teacher's background probability ("reliability");
  2. L_u = (sum_fg CE(S(x_s), c) + sum_bg r CE(S(x_s), 0)) / max(N_fg + sum_bg r, 1),
     the official code's normalisation (the paper writes 1/N_fg for the foreground and
     r_j / sum_k r_k for the background; the code divides the weighted sum by the sum of all
     weights, which we follow);
  3. loss = CE(S(x_l), y_l) + alpha L_u, alpha = 4 (the code's unsup_weight);
  4. after the step T <- EMA(S), decay 0.999 in the official code (0.99 at this CPU size,
     3,000 steps, as the book's segmentation Mean Teacher).
The student is evaluated, as the official code's test configuration does (the teacher is
evaluated beside it). Batches: 1 labeled to 4 unlabeled (the code's sample_ratio [1, 4]).
Left out, and why: box jittering for regression uncertainty (a detection-only idea, a pixel
has no box) and the region proposal network's pseudo boxes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.transforms import strong_photometric
from ..engine.schedules import unlabeled_ramp
from ..models import ema_copy
from .base import SemiMethod, StudentTeacher
from .supervised import segmentation_recipe

# labeled and unlabeled images per step, 1 to 4 as Soft Teacher's sampler: smoke and full
# keep about the 16 images of the other methods' steps (the paper profile: 8 GPUs x (1 + 4))
BATCHES = {"smoke": (2, 8), "full": (4, 16), "paper": (8, 32)}


def soft_background_loss(logits: torch.Tensor, probs_t: torch.Tensor, tau: float,
                         background: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Soft Teacher's unlabeled loss on pixels: the student's ``logits`` (n, C, h, w) against
    the teacher's probabilities ``probs_t`` (n, C, h, w). Foreground pseudo labels where the
    teacher's arg-max is not ``background`` and its probability >= ``tau`` (weight 1); every
    other pixel is background, weighted by the teacher's background probability. Returns the
    loss (weighted sum over the sum of weights, at least 1) and read-outs."""
    conf, cls = probs_t.max(1)
    fg = (cls != background) & (conf >= tau)
    target = torch.where(fg, cls, torch.full_like(cls, background))
    weight = torch.where(fg, torch.ones_like(conf), probs_t[:, background])
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    loss = (weight * ce).sum() / weight.sum().clamp_min(1.0)
    return loss, {"fg_share": fg.float().mean(), "bg_weight": weight[~fg].mean()
                  if (~fg).any() else weight.new_zeros(())}


class SoftTeacher(StudentTeacher, SemiMethod):
    name = "soft_teacher"
    tasks = ("segmentation",)
    views_l, views_u = 1, 1
    paper = "Xu et al., ICCV 2021"

    @classmethod
    def recipe(cls, profile, dataset):
        batch_l, batch_u = BATCHES[profile]
        return segmentation_recipe(profile, dataset) | dict(
            batch_l=batch_l, batch_u=batch_u, hparams=dict(
                tau=0.9, unsup_weight=4.0, ema=0.999 if profile == "paper" else 0.99))

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.teacher = ema_copy(self.model)

    def training_step(self, batch, step):
        hp, B = self.hp, batch.x_l.shape[0]
        x_w = batch.x_u
        x_s = strong_photometric(x_w, batch.gen)
        logits = self.model(torch.cat([batch.x_l, x_s]))
        with torch.no_grad():  # the teacher predicts as a frozen model (eval mode)
            self.teacher.eval()
            p_t = F.softmax(self.teacher(x_w).float(), dim=1)
        loss_sup = F.cross_entropy(logits[:B].float(), batch.y_l,
                                   ignore_index=self.spec.ignore_index)
        loss_u, reads = soft_background_loss(logits[B:], p_t, hp["tau"])
        loss = loss_sup + hp["unsup_weight"] * unlabeled_ramp(self.cfg, step) * loss_u
        return loss, {"loss_sup": loss_sup.detach(), "loss_u": loss_u.detach(),
                      **{k: v.detach() for k, v in reads.items()}}
