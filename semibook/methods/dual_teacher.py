"""Dual Teacher (Na et al., NeurIPS 2023): switching temporary teachers.
Chapter: book/05_dual_teacher.ipynb (to come).

Two EMA teachers take turns, one per epoch (turn). At the start of its turn the active teacher
becomes a copy of the student, and only it is EMA-updated (0.99) during the turn; so the two
teachers never drift into copies of each other and the student sees alternating targets. Each
turn draws a strong augmentation from a pool (CutMix, ClassMix), never the previous turn's.
Per step, with the active teacher T (full model, eval mode) and the student S (drop-path on):
  1. T's softmax on the weak unlabeled view gives y_pseudo and its confidence conf;
  2. the turn's mix (CutMix boxes, or ClassMix masks from y_pseudo) mixes images, y_pseudo and
     conf with one mask; a strong photometric view of the mixed images goes to S;
     L_mix = w · CE(S(mixed), mixed y_pseudo), weighted as in the official code: on a CutMix
     turn each image i gets its own w_i, the share of confident pixels (conf >= τ) in the
     teacher's unmixed prediction of that image, and the loss is the mean of w_i · CE over the
     pixels whose CE is above 0; on a ClassMix turn one w for the batch, the share of
     confident pixels among the mixed confidences
  3. implicit consistency: the drop-path sub-model S on a strong view vs the full teacher,
     L_ic = CE(S(strong x_u), y_pseudo) on pixels with conf >= τ, weight 0.2;
  loss = CE(labeled) + L_mix + 0.2 · L_ic.  τ = 0.95. The student is evaluated.
ClassMix takes half the classes present, rounded down, as the official code does.
Differences from the official code, and why: a turn is ``turn_steps`` steps (an official epoch
is one pass over the labeled set, a few steps with our small labeled sets); the teacher is
reset before its first pseudo labels (the code resets it after its first step, through its
EMA warm-start min(1 - 1/(i+1), 0.99), which we keep); the teacher predicts as the full model
(eval mode), as the paper describes. The ``paper`` profile is the official code's one run
(ADE20K): AdamW 6e-5 with 10x on the head and no weight decay on the encoder's normalisation
layers, a warm-up and linear decay, 50,000 iterations of 8 + 8 images, a turn per pass over
the labeled set.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.mixing import classmix_masks, cutmix_boxes, mix_with_mask
from ..data.transforms import strong_photometric
from ..engine.schedules import unlabeled_ramp
from ..models import ema_copy
from .base import SemiMethod
from .supervised import segmentation_recipe

POOL = ("cutmix", "classmix")


def active_pair(run: dict, step: int) -> tuple[str]:
    """A finished run's tracked pair of the teacher that was active up to the evaluation at
    ``step`` (the one whose pseudo labels the student had been learning from; the other has
    been frozen since the end of its last turn), read from the run's results ``config``."""
    cfg = run["config"]
    turn = cfg["hparams"]["turn_steps"] or max(1, cfg["labels"] // cfg["batch_l"])
    return (f"teacher{(max(step - 1, 0) // turn) % 2 + 1}-vs-student",)


def augmentation_schedule(n_turns: int, seed: int, pool=POOL) -> list[str]:
    """The strong augmentation of each turn: the first is pool[0] (as in the official code),
    each later one drawn from the pool without the previous turn's."""
    out = [pool[0]]
    for t in range(1, n_turns):
        rng = np.random.default_rng([seed, t, 7])
        out.append(str(rng.choice([p for p in pool if p != out[-1]])))
    return out


class DualTeacher(SemiMethod):
    name = "dual_teacher"
    tasks = ("segmentation",)
    views_l, views_u = 1, 1

    @classmethod
    def recipe(cls, profile, dataset):
        if profile != "paper":
            turn = {"smoke": 2, "full": 200}[profile]
            return segmentation_recipe(profile, dataset) | {"hparams": dict(
                tau=0.95, lambda_ic=0.2, drop_path=0.1, ema=0.99, turn_steps=turn)}
        # naver-ai/dual-teacher, the only run it ships (ADE20K, MiT-B1; every dataset gets it):
        # tools/train.py: 4 + 4 images per GPU on 2 GPUs (dist_train.sh), max_iters 50,000,
        # a turn per epoch (one pass over the labeled loader: turn_steps 0), EMA 0.99,
        # threshold 0.95, implicit consistency x 0.2, head lr x 10; the B1 ADE config: AdamW
        # 6e-5, betas (0.9, 0.999), weight decay 0.01, poly power 1.0 after a linear warm-up of
        # 1,500 iterations from 1e-6 (seg_core/optimizer.py), 512 x 512 crops; no weight decay
        # on the encoder's normalisation layers (seg_core/model.py get_param_groups).
        return dict(optimizer="adamw", lr=6e-5, weight_decay=0.01, lr_schedule="poly",
                    ema_decay=0.0, steps=50000, batch_l=8, batch_u=8, hparams=dict(
                        tau=0.95, lambda_ic=0.2, drop_path=0.1, ema=0.99, turn_steps=0,
                        head_lr_mult=10.0, poly_power=1.0, warmup_steps=1500,
                        warmup_ratio=1e-6, no_decay_norm=True))

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.model = self.build_model(drop_path=self.hp["drop_path"])  # the student
        self.teachers = torch.nn.ModuleList([ema_copy(self.model), ema_copy(self.model)])
        if not self.hp["turn_steps"]:  # 0: one pass over the labeled set, as the code's epoch
            self.hp["turn_steps"] = max(1, cfg.labels // cfg.batch_l)
        n_turns = -(-cfg.steps // self.hp["turn_steps"])
        self.schedule = augmentation_schedule(n_turns, cfg.seed)

    def turn(self, step: int) -> tuple[int, int]:
        """(turn number, step within the turn)."""
        return divmod(step, self.hp["turn_steps"])

    def active_teacher(self, step: int):
        return self.teachers[self.turn(step)[0] % 2]

    def training_step(self, batch, step):
        hp, ignore = self.hp, self.spec.ignore_index
        turn, i = self.turn(step)
        teacher = self.active_teacher(step)
        if i == 0:  # a new turn: the teacher starts as a copy of the student
            teacher.load_state_dict(self.model.state_dict())
        x_u = batch.x_u
        with torch.no_grad():
            teacher.eval()
            p_t = F.softmax(teacher(x_u).float(), 1)
            conf, y_pseudo = p_t.max(1)

        n, _, h, w = x_u.shape
        perm = torch.randperm(n, generator=batch.gen).to(x_u.device)
        kind = self.schedule[turn]
        if kind == "cutmix":  # boxes from another image
            mask = cutmix_boxes(n, h, w, batch.gen).to(x_u.device)
            first, second = perm, torch.arange(n, device=x_u.device)
        else:  # classmix: half the predicted classes (rounded down) of this image over another
            mask = classmix_masks(y_pseudo, batch.gen, ignore).to(x_u.device)
            first, second = torch.arange(n, device=x_u.device), perm
        mix = lambda t: mix_with_mask(mask, t[first], t[second])
        x_mix, y_mix, conf_mix = mix(x_u), mix(y_pseudo), mix(conf[:, None])[:, 0]
        x_mix = strong_photometric(x_mix, batch.gen)

        B = batch.x_l.shape[0]
        logits = self.model(torch.cat([batch.x_l, x_mix]))
        loss_sup = F.cross_entropy(logits[:B].float(), batch.y_l, ignore_index=ignore)
        ce_mix = F.cross_entropy(logits[B:].float(), y_mix, reduction="none")
        if kind == "cutmix":  # per image i (the one the box is pasted into), unmixed confidences
            w_img = (conf >= hp["tau"]).float().flatten(1).mean(1)
            share = w_img.mean()
            weighted = w_img[:, None, None] * ce_mix
            pos = ce_mix > 0
            loss_mix = weighted[pos].mean() if pos.any() else weighted.sum()
        else:  # classmix: one weight, the confident share of the mixed confidences
            share = (conf_mix >= hp["tau"]).float().mean()
            loss_mix = share * ce_mix.mean()

        logits_ic = self.model(strong_photometric(x_u, batch.gen))  # drop-path sub-model
        keep = (conf >= hp["tau"]).float()
        loss_ic = (F.cross_entropy(logits_ic.float(), y_pseudo, reduction="none") * keep).mean()

        w_u = unlabeled_ramp(self.cfg, step)  # 0 during a burn-in (hparams burn_in)
        loss = loss_sup + w_u * loss_mix + hp["lambda_ic"] * w_u * loss_ic
        return loss, {"loss_sup": loss_sup.detach(), "loss_mix": loss_mix.detach(),
                      "loss_ic": loss_ic.detach(), "conf_share": share.detach(),
                      "teacher": float(turn % 2), "classmix": float(kind == "classmix")}

    def ema_pairs(self, step):
        i = self.turn(step)[1]
        return [(self.active_teacher(step), self.model, min(1 - 1 / (i + 1), self.hp["ema"]))]

    def eval_models(self):
        return {"student": self.model, "teacher1": self.teachers[0],
                "teacher2": self.teachers[1]}

    def agreement_pairs(self):
        t1, t2 = self.teachers
        return {"teacher1-vs-student": (t1, self.model), "teacher2-vs-student": (t2, self.model),
                "teacher1-vs-teacher2": (t1, t2)}
