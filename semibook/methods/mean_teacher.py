"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017). Chapter: book/02_mean_teacher.ipynb.

Per step:
  1. two noisy views of each image (random translation and flip, Gaussian input noise 0.15):
     one for the student, one for the teacher;
  2. classification loss: CE of the student on the labeled images;
  3. consistency loss: squared error between student and teacher softmax outputs on all images
     (labeled and unlabeled), weighted by w(t) = w_max · exp(-5 (1 - t)²) over the ramp-up;
  4. only the student gets gradients; after the step the teacher becomes the EMA of the
     student, with decay 0.99 during the ramp-up and 0.999 after (official TensorFlow code's
     defaults; the CPU-sized full profile, 3,000 steps, keeps 0.99 throughout; the paper
     profile 0.999 throughout, as the CIFAR-10 runner).
The teacher is the evaluated model. Adam's learning rate follows the official sigmoid ramp-up
and ramp-down (engine schedule ``mean_teacher``).

Segmentation (the paper has none; this version is the book's own): the teacher sees the weak
view of each unlabeled image and the student a strong photometric view of the same crop, so
their pixels correspond; the consistency is the squared error between their softmax maps on the
unlabeled pixels; EMA decay 0.99 throughout; the optimiser and poly schedule of the other
segmentation methods (smoke and full profiles). The ``paper`` profile runs instead the Mean
Teacher baseline of CPS's comparisons (TorchSemiSeg: the same input for both networks, squared
error x 100 on all pixels, EMA 0.99, no ramp-up; ``hparams["same_input"]``).
CIFAR-10 ``paper`` profile: the official runner's batches of 100 drawn from all images
(``hparams["pooled_batches"]``), EMA and Adam beta2 0.999 throughout, 2-pixel translations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.transforms import gaussian_noise, strong_photometric
from ..engine.schedules import ramp_length, unlabeled_ramp
from ..losses import softmax_mse
from ..models import ema_copy, frozen_bn_stats
from ..tracking import guess_accuracy
from .base import SemiMethod
from .supervised import segmentation_recipe


class MeanTeacher(SemiMethod):
    name = "mean_teacher"
    views_l, views_u = 2, 2
    tasks = ("classification", "segmentation")

    @classmethod
    def recipe(cls, profile, dataset):
        from ..data import dataset_info
        if dataset_info(dataset).task == "segmentation":
            if profile == "paper":
                # TorchSemiSeg's baseline (exp.voc/voc8.res50v3+.MeanTeacher: config.py,
                # network.py, train.py): both networks see the same images, MSE x 100 on the
                # softmax maps of all of them, EMA 0.99, no ramp-up; CPS's optimisation
                from .cps import torchsemiseg_recipe
                return torchsemiseg_recipe(dataset) | {"hparams": dict(
                    consistency=100.0, rampup_frac=0.0, ema_rampup=0.99, ema_after=0.99,
                    same_input=True)}
            # our choice of weight (mean over classes of the squared error, as in classification)
            return segmentation_recipe(profile, dataset) | {"hparams": dict(
                consistency=10.0, rampup_frac=40 / 150, ema_rampup=0.99, ema_after=0.99)}
        if profile == "paper":
            # CuriousAI/mean-teacher tensorflow/experiments/cifar10_final_eval.py (the paper's
            # CIFAR-10 runs) over mean_teacher/model.py's defaults: 150,000 steps of 100 images
            # drawn from all the data (n_labeled_per_batch 'vary'), EMA and Adam beta2 0.999
            # during the ramp-up too, consistency 100 x n_labeled / 50,000, ramp-up 40,000,
            # ramp-down 25,000, lr 0.003, input noise 0.15, translation by up to 2 pixels
            # (reflect), flips (Fashion-MNIST: the same runner); on CIFAR-10 the inputs are
            # contrast-normalised and ZCA-whitened (Cifar10ZCA, preprocess_cifar10.py)
            hp = dict(consistency=100.0, rampup_frac=40 / 150, rampdown_frac=25 / 150,
                      ema_rampup=0.999, ema_after=0.999, noise=0.15, adam_beta2_rampup=0.999,
                      pooled_batches=True)
            return dict(optimizer="adam", lr=0.003, lr_schedule="mean_teacher", ema_decay=0.0,
                        steps=150000, batch_l=100, batch_u=100, augment_pad=2,
                        hparams=hp | ({"zca": True} if dataset == "cifar10" else {}))
        # The TF code's defaults: ramp-up 40k, ramp-down 25k of 150k steps: same fractions.
        return dict(optimizer="adam", lr=0.003, lr_schedule="mean_teacher", ema_decay=0.0,
                    hparams=dict(consistency=100.0, rampup_frac=40 / 150,
                                 rampdown_frac=25 / 150, ema_rampup=0.99,
                                 ema_after=0.99 if profile == "full" else 0.999, noise=0.15))

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.teacher = ema_copy(self.model)
        # the EMA decay switches when the consistency weight has ramped up (after a burn-in)
        self.rampup_steps = int(self.hp.get("burn_in", 0) or 0) + ramp_length(cfg)
        if self.hp.get("pooled_batches"):
            from ..data import dataset_info
            self.label_share = cfg.labels / dataset_info(cfg.dataset).train_size
        if spec.task == "segmentation":
            self.views_l = self.views_u = 1  # one crop; the student's view differs in colour only

    def training_step(self, batch, step):
        if self.spec.task == "segmentation":
            return self.segmentation_step(batch, step)
        if batch.pooled:
            return self.pooled_step(batch, step)
        hp, B = self.hp, batch.x_l.shape[0]
        x_student = torch.cat([batch.views_l[0], batch.views_u[0]])
        x_teacher = torch.cat([batch.views_l[1], batch.views_u[1]])
        x_student = gaussian_noise(x_student, batch.gen, hp["noise"])
        x_teacher = gaussian_noise(x_teacher, batch.gen, hp["noise"])

        logits_s = self.model(x_student)
        with torch.no_grad(), frozen_bn_stats(self.teacher):
            p_t = F.softmax(self.teacher(x_teacher).float(), dim=1)

        loss_sup = F.cross_entropy(logits_s[:B].float(), batch.y_l)
        loss_cons = softmax_mse(logits_s, p_t)
        w = hp["consistency"] * unlabeled_ramp(self.cfg, step, "sigmoid")
        loss = loss_sup + w * loss_cons
        terms = {"loss_sup": loss_sup.detach(), "loss_cons": loss_cons.detach(), "w_cons": w}
        acc = guess_accuracy(p_t[B:], batch.y_u)  # the teacher's labels; hidden: read-out only
        return loss, terms if acc is None else {**terms, "guess_acc": acc}

    def pooled_step(self, batch, step):
        """The CIFAR-10 runner's step (``hparams["pooled_batches"]``): one batch from all
        images, each seen by the student and the teacher in its own view; the classification
        cost is the labeled images' summed CE over the whole batch, the consistency on every
        image, with maximum weight consistency x labels / training images (the runner's
        ``100.0 * n_labeled / 50000``)."""
        hp, n = self.hp, len(batch.y_l)
        x_student = gaussian_noise(batch.views_u[0], batch.gen, hp["noise"])
        x_teacher = gaussian_noise(batch.views_u[1], batch.gen, hp["noise"])
        logits_s = self.model(x_student)
        with torch.no_grad(), frozen_bn_stats(self.teacher):
            p_t = F.softmax(self.teacher(x_teacher).float(), dim=1)
        loss_sup = F.cross_entropy(logits_s.float(), batch.y_l, ignore_index=-1,
                                   reduction="sum") / n
        loss_cons = softmax_mse(logits_s, p_t)
        w = hp["consistency"] * self.label_share * unlabeled_ramp(self.cfg, step, "sigmoid")
        unl = batch.y_l < 0
        terms = {"loss_sup": loss_sup.detach(), "loss_cons": loss_cons.detach(), "w_cons": w,
                 "labeled_share": (~unl).float().mean()}
        acc = guess_accuracy(p_t[unl], batch.y_u[unl]) if batch.y_u is not None else None
        return loss_sup + w * loss_cons, terms if acc is None else {**terms, "guess_acc": acc}

    def segmentation_step(self, batch, step):
        if self.hp.get("same_input"):
            return self.baseline_segmentation_step(batch, step)
        x_u_w = batch.x_u
        x_u_s = strong_photometric(x_u_w, batch.gen)
        logits = self.model(torch.cat([batch.x_l, x_u_s]))
        with torch.no_grad(), frozen_bn_stats(self.teacher):
            p_t = F.softmax(self.teacher(x_u_w).float(), dim=1)
        B = batch.x_l.shape[0]
        loss_sup = F.cross_entropy(logits[:B].float(), batch.y_l,
                                   ignore_index=self.spec.ignore_index)
        loss_cons = softmax_mse(logits[B:], p_t)
        w = self.hp["consistency"] * unlabeled_ramp(self.cfg, step, "sigmoid")
        return loss_sup + w * loss_cons, {"loss_sup": loss_sup.detach(),
                                          "loss_cons": loss_cons.detach(), "w_cons": w}

    def baseline_segmentation_step(self, batch, step):
        """TorchSemiSeg's Mean Teacher baseline (``hparams["same_input"]``, the paper
        profile): student and teacher see the same labeled and unlabeled images; the
        consistency is the squared error between their softmax maps on all pixels of both,
        at its full weight from the first step."""
        x = torch.cat([batch.x_l, batch.x_u])
        logits = self.model(x)
        with torch.no_grad(), frozen_bn_stats(self.teacher):
            p_t = F.softmax(self.teacher(x).float(), dim=1)
        B = batch.x_l.shape[0]
        loss_sup = F.cross_entropy(logits[:B].float(), batch.y_l,
                                   ignore_index=self.spec.ignore_index)
        loss_cons = softmax_mse(logits, p_t)
        w = self.hp["consistency"]
        return loss_sup + w * loss_cons, {"loss_sup": loss_sup.detach(),
                                          "loss_cons": loss_cons.detach(), "w_cons": w}

    def ema_pairs(self, step):
        hp = self.hp
        decay = hp["ema_rampup"] if step < self.rampup_steps else hp["ema_after"]
        return [(self.teacher, self.model, decay)]

    def eval_models(self):
        return {"teacher": self.teacher, "student": self.model}

    def agreement_pairs(self):
        return {"teacher-vs-student": (self.teacher, self.model)}
