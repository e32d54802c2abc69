"""MixMatch (Berthelot et al., NeurIPS 2019). Chapter: book/01_mixmatch.ipynb.

Algorithm 1 of the paper, per step:
  1. augment the labeled batch once and each unlabeled image K times;
  2. guess labels: average the model's predictions over the K views, then sharpen (T);
  3. MixUp every labeled and unlabeled example with a shuffled one of the whole set, with its
     own weight λ ~ Beta(α, α), λ' = max(λ, 1 - λ) (one draw per example, as in the paper's
     algorithm and the official code);
  4. loss = CE on mixed labeled + λ_u · squared error on mixed unlabeled.
As in the official code: λ_u ramps up linearly over 1/64 of training (16 of its 1024 "epochs",
1024 kimg), batch norm sees interleaved batches and only the first of them updates its running
statistics, weight decay 0.02·lr is applied decoupled after each step (engine), and an EMA of
the weights (0.999; 0.99 in the 3,000-step ``full`` profile, see ``recipe``) is evaluated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.mixing import interleave, mixup, mixup_weight
from ..engine.schedules import unlabeled_ramp
from ..losses import sharpen, soft_cross_entropy, softmax_mse
from ..models import frozen_bn_stats
from ..tracking import guess_accuracy
from .base import SemiMethod


class MixMatch(SemiMethod):
    name = "mixmatch"
    views_l = 1
    views_u = 2  # K, set from hparams in __init__

    @classmethod
    def recipe(cls, profile, dataset):
        # λ_u ramp-up: 1024 kimg of the official 2^20 steps x 64 images, i.e. 1/64 of training.
        # the EMA averages over ~1/1000 of the official run; the full profile's 3,000 steps
        # would need 0.997; 0.99 (about 100 steps) was the first profile's calibrated value
        # (results/v1-profile/calibration/: with 0.999 the evaluated average lagged the model)
        ema = 0.99 if profile == "full" else 0.999
        return dict(optimizer="adam", lr=0.002, decoupled_wd=0.02, ema_decay=ema,
                    hparams=dict(K=2, T=0.5, alpha=0.75, lambda_u=75.0, rampup_frac=1 / 64))

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.views_u = int(self.hp["K"])
        if cfg.batch_l != cfg.batch_u:
            raise ValueError("MixMatch interleaves labeled and unlabeled batches: batch_l must "
                             "equal batch_u")

    def forward_interleaved(self, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
        mixed = interleave(chunks)
        logits = [self.model(mixed[0])]
        with frozen_bn_stats(self.model):  # running statistics from the first batch only
            logits += [self.model(x) for x in mixed[1:]]
        return interleave(logits)

    def training_step(self, batch, step):
        hp, B = self.hp, batch.x_l.shape[0]
        y_l = F.one_hot(batch.y_l, self.spec.num_classes).float()

        # 2. label guessing, no gradient
        with torch.no_grad(), frozen_bn_stats(self.model):
            p_u = torch.stack([F.softmax(self.model(v).float(), 1) for v in batch.views_u]).mean(0)
            y_pseudo = sharpen(p_u, hp["T"])

        # 3. MixUp over the union of labeled and all K unlabeled views
        x_all = torch.cat([batch.x_l, *batch.views_u])
        y_all = torch.cat([y_l, *[y_pseudo] * len(batch.views_u)])
        perm = torch.randperm(len(x_all), generator=batch.gen).to(x_all.device)
        lam = mixup_weight(batch.rng, hp["alpha"], len(x_all))  # one λ' per example
        x_mix, y_mix = mixup(x_all, y_all, x_all[perm], y_all[perm], lam)

        # 4. losses on interleaved forward passes
        logits = torch.cat(self.forward_interleaved(list(x_mix.split(B))))
        loss_x = soft_cross_entropy(logits[:B], y_mix[:B])
        loss_u = softmax_mse(logits[B:], y_mix[B:])
        lambda_u = hp["lambda_u"] * unlabeled_ramp(self.cfg, step)
        loss = loss_x + lambda_u * loss_u
        terms = {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "lambda_u": lambda_u,
                 "lam": float(lam.mean())}
        acc = guess_accuracy(y_pseudo, batch.y_u)  # hidden labels: read-out only
        return loss, terms if acc is None else {**terms, "guess_acc": acc}
