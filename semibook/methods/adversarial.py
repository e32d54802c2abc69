"""Adversarial semi-supervised segmentation (Hung et al., BMVC 2018).
Chapter: book/03_adversarial.ipynb (to come).

A fully convolutional discriminator D learns to tell the segmentation network's softmax maps
from one-hot ground-truth maps (labeled batches only). Per step:
  1. segmentation network, D frozen:
     L = CE(labeled) + λ_adv · BCE(D(p_l), real) + λ_adv_u · BCE(D(p_u), real)
         + λ_semi · masked CE(unlabeled, argmax), on the unlabeled pixels where
           sigmoid(D(p_u)) > T_semi, from step semi_start on;
  2. then D (its own Adam), on the same step's labeled predictions (detached) as fake and, as
     real, the one-hot label maps of a second labeled batch drawn independently of the first
     (the official code's separate ground-truth loader), ignored pixels left out. With
     ``d_remain`` (the official code's ``D_remain``, on in its every run, and in the ``paper``
     profile here) the unlabeled predictions are fake too, every pixel of them.
Values (chapter 3's "paper vs code" says which source gives each): λ_adv 0.01 (labeled; the
unlabeled 0.001 is the official code's), λ_semi 0.1, T_semi 0.2, the masked CE from iteration
5,000 of 20,000 (1/4 of training here, in every profile); D: Adam 1e-4, β = (0.9, 0.99) (the
official code's; the paper's ICLR 2018 version says 0.999), with the network's poly decay. The
``paper`` profile is the official run (train.py and the README's command): 20,000 iterations
of 10 images, SGD 2.5e-4 with 10x on the decoder and classifier, weight decay 5e-4, no
rescaling and no flips.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..engine.schedules import unlabeled_ramp
from ..losses import masked_bce_with_logits, masked_cross_entropy
from ..models import FCDiscriminator
from .base import SemiMethod
from .supervised import segmentation_recipe


class Adversarial(SemiMethod):
    name = "adversarial"
    tasks = ("segmentation",)
    views_l, views_u = 1, 1
    labels_extra = True  # D's real maps: an independently drawn labeled batch
    extra_hparams = ("semi_start",)  # semi_start_frac in absolute steps (a short schedule's)

    @classmethod
    def recipe(cls, profile, dataset):
        # d_remain is off unless set (the ``paper`` profile sets it): the benchmark's D sees the
        # labeled predictions only (the chapter's paper-vs-code says why)
        hparams = dict(lambda_adv=0.01, lambda_adv_u=0.001, lambda_semi=0.1, T_semi=0.2,
                       semi_start_frac=0.25, lr_d=1e-4)
        if profile != "paper":
            return segmentation_recipe(profile, dataset) | {"hparams": hparams}
        # hfslyc/AdvSemiSeg train.py's defaults with the README's semi-supervised command (VOC;
        # the code has no other dataset, so every dataset gets them): 20,000 iterations of 10
        # images, SGD 2.5e-4 (x10 on the classifier, optim_parameters), momentum 0.9, weight
        # decay 5e-4, poly 0.9; the command sets neither --random-scale nor --random-mirror.
        return dict(optimizer="sgd", lr=2.5e-4, momentum=0.9, nesterov=False,
                    weight_decay=5e-4, lr_schedule="poly", ema_decay=0.0, steps=20000,
                    batch_l=10, batch_u=10, augment_scale_min=1.0, augment_scale_max=1.0,
                    hparams=hparams | dict(head_lr_mult=10.0, flip=False, d_remain=True))

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.D = FCDiscriminator(spec.num_classes)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.hp["lr_d"], betas=(0.9, 0.99))
        # the official semi_start (5,000 of 20,000 steps): hparams semi_start in absolute steps
        # where a short schedule sets it, else that fraction of training
        self.semi_start = int(self.hp["semi_start"]) if self.hp.get("semi_start") is not None \
            else round(cfg.steps * self.hp["semi_start_frac"])
        self._fake = None

    def training_step(self, batch, step):
        hp, B, ignore = self.hp, batch.x_l.shape[0], self.spec.ignore_index
        self.D.requires_grad_(False)  # the network's step must not train D
        logits = self.model(torch.cat([batch.x_l, batch.x_u]))
        logits_l, logits_u = logits[:B], logits[B:]
        p_l, p_u = F.softmax(logits_l.float(), 1), F.softmax(logits_u.float(), 1)
        valid_l = (batch.y_l != ignore)[:, None]

        loss_ce = F.cross_entropy(logits_l.float(), batch.y_l, ignore_index=ignore)
        # one pass of D over both batches (D is convolutions only: each map's output is its own)
        d_l, d_u = self.D(torch.cat([p_l, p_u])).split([B, len(p_u)])
        loss_adv = masked_bce_with_logits(d_l, 1.0, valid_l)
        loss_adv_u = masked_bce_with_logits(d_u, 1.0)
        w_u = unlabeled_ramp(self.cfg, step)  # 0 during a burn-in (hparams burn_in)
        loss = loss_ce + hp["lambda_adv"] * loss_adv + hp["lambda_adv_u"] * w_u * loss_adv_u

        with torch.no_grad():
            conf = torch.sigmoid(d_u.float())[:, 0]
            mask = conf > hp["T_semi"]
            y_pseudo = logits_u.argmax(1)
        loss_semi = masked_cross_entropy(logits_u, y_pseudo, mask)
        if step >= self.semi_start:
            loss = loss + hp["lambda_semi"] * loss_semi
        self._fake = (p_l.detach(), p_u.detach() if hp.get("d_remain") else None, batch.y_l,
                      batch.y_l_extra)
        return loss, {"loss_ce": loss_ce.detach(), "loss_adv": loss_adv.detach(),
                      "loss_semi": loss_semi.detach(), "conf_share": mask.float().mean()}

    def after_step(self, step):
        """D's step: the network's labeled softmax maps (and with ``d_remain`` its unlabeled
        ones, all pixels) are fake; the one-hot maps of the second, independently drawn labeled
        batch are real."""
        p_l, p_u, y_l, y_gt = self._fake
        self._fake = None
        self.D.requires_grad_(True)
        ignore, k = self.spec.ignore_index, self.spec.num_classes
        valid_fake, valid_real = (y_l != ignore)[:, None], (y_gt != ignore)[:, None]
        if p_u is not None:  # one mean over both batches' pixels, as the official code's
            p_l = torch.cat([p_l, p_u])
            valid_fake = torch.cat([valid_fake, torch.ones_like(p_u[:, :1], dtype=torch.bool)])
        real = F.one_hot(y_gt.clamp(max=k - 1), k).permute(0, 3, 1, 2).float() * valid_real
        d_fake, d_real = self.D(torch.cat([p_l, real])).split([len(p_l), len(real)])
        loss_d = (masked_bce_with_logits(d_fake, 0.0, valid_fake)
                  + masked_bce_with_logits(d_real, 1.0, valid_real)) / 2
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        from ..engine.distributed import average_gradients
        average_gradients(self.D.parameters())  # several processes: D sees the global batch
        self.opt_d.step()
        return {"loss_d": loss_d.detach()}

    @torch.no_grad()
    def tracked_labels(self, x, tags=None):
        """The confident mask: pseudo labels the discriminator keeps (sigmoid > T_semi) against
        all pseudo labels, so that "agree" means kept, and "disagree" dropped."""
        was = self.model.training, self.D.training
        self.model.eval(), self.D.eval()
        p = F.softmax(self.model(x).float(), 1)
        keep = torch.sigmoid(self.D(p).float())[:, 0] > self.hp["T_semi"]
        self.model.train(was[0]), self.D.train(was[1])
        y_pseudo = p.argmax(1)
        return {"confident-mask": (torch.where(keep, y_pseudo, -1).cpu(), y_pseudo.cpu())}

    @torch.no_grad()
    def sample_maps(self, x):
        """The discriminator's confidence map, sigmoid(D(softmax(S(x)))), on the tracked images
        ``x`` (model input): stored in the results' samples as ``track_dconf``, so that chapter
        3 shows it and thresholds it without the weights."""
        was = self.model.training, self.D.training
        self.model.eval(), self.D.eval()
        conf = torch.sigmoid(self.D(F.softmax(self.model(x).float(), 1)).float())[:, 0]
        self.model.train(was[0]), self.D.train(was[1])
        return {"track_dconf": conf}

    def extra_optimizers(self):
        return {"discriminator": self.opt_d}
