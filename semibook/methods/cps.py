"""Cross Pseudo Supervision (Chen et al., CVPR 2021). Chapter: book/04_cps.ipynb (to come).

Two networks of one architecture, initialised differently, learn from each other:
  1. each network's cross-entropy on the labeled images;
  2. each network's hard pseudo labels (argmax, made without gradient) are the other network's
     cross-entropy targets on the unlabeled pixels;
  loss = L_sup + λ · L_cps. Inference uses one network (the first).
CutMix variant (``cps_cutmix``): pseudo labels are made on the unmixed unlabeled images, mixed
with the same mask as the images, and the networks are trained on the mixed images. The mask is
the official code's: 3 boxes, each a third of its own drawn share (0.25 to 0.5), combined by XOR
(:func:`semibook.data.mixing.box_masks`; about a quarter of each image is mixed on average).
As in the official code, the plain variant applies the cross supervision to the labeled
images too; the CutMix variant to the mixed unlabeled images only. On Cityscapes the ``paper``
recipe's supervised loss is the official runs' hard-pixel (OHEM) cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.mixing import box_masks, mix_with_mask
from ..engine.schedules import unlabeled_ramp
from ..losses import ohem_cross_entropy
from .base import SemiMethod
from .supervised import segmentation_recipe


class CPS(SemiMethod):
    name = "cps"
    tasks = ("segmentation",)
    views_l, views_u = 1, 1
    cutmix = False

    # charlesCXK/TorchSemiSeg's configs (exp.voc/voc8.res50v3+.CPS*, exp.city/city8.res50v3+.
    # CPS*): the cross weight, plain and with CutMix, per dataset (fashion-scenes: VOC's)
    LAMBDA = {"cityscapes": (6.0, 5.0)}
    LAMBDA_VOC = (1.5, 1.0)

    @classmethod
    def recipe(cls, profile, dataset):
        if profile != "paper":
            return segmentation_recipe(profile, dataset) | {"hparams": dict(
                lambda_cps=cls.LAMBDA_VOC[cls.cutmix])}
        lam = cls.LAMBDA.get(dataset, cls.LAMBDA_VOC)[cls.cutmix]
        hparams = dict(lambda_cps=lam)
        if dataset == "cityscapes":  # exp.city train.py: ProbOhemCrossEntropy2d(thresh=0.7,
            # min_kept=50000 * batch_size // world_size) on each GPU's share of the batch
            hparams |= dict(ohem_thresh=0.7, ohem_min_kept=50000)
        return torchsemiseg_recipe(dataset) | {"hparams": hparams}

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.model2 = self.build_model()  # a second draw of the initial weights

    def ce(self, logits, target):
        return F.cross_entropy(logits.float(), target, ignore_index=self.spec.ignore_index)

    def sup_ce(self, logits, target):
        """The supervised loss: cross-entropy, or with ``ohem_thresh`` (Cityscapes' ``paper``
        recipe) its hard-pixel version, at least ``ohem_min_kept`` pixels per image."""
        if "ohem_thresh" not in self.hp:
            return self.ce(logits, target)
        return ohem_cross_entropy(logits, target, self.spec.ignore_index, self.hp["ohem_thresh"],
                                  self.hp["ohem_min_kept"] * len(target))

    def training_step(self, batch, step):
        x_l, y_l, x_u = batch.x_l, batch.y_l, batch.x_u
        if self.cutmix:
            with torch.no_grad():  # pseudo labels from the unmixed images
                y1_u = self.model(x_u).argmax(1)
                y2_u = self.model2(x_u).argmax(1)
            n, _, h, w = x_u.shape
            perm = torch.randperm(n, generator=batch.gen).to(x_u.device)
            mask = box_masks(n, h, w, batch.gen).to(x_u.device)
            x_in = mix_with_mask(mask, x_u[perm], x_u)
            y1 = mix_with_mask(mask, y1_u[perm], y1_u)
            y2 = mix_with_mask(mask, y2_u[perm], y2_u)
            n_l = 0
            x_all = torch.cat([x_l, x_in])
        else:
            n_l, x_all = len(x_l), torch.cat([x_l, x_u])
        logits1, logits2 = self.model(x_all), self.model2(x_all)
        loss_sup = self.sup_ce(logits1[:len(x_l)], y_l) + self.sup_ce(logits2[:len(x_l)], y_l)
        if not self.cutmix:  # cross supervision on labeled and unlabeled images
            with torch.no_grad():
                y1, y2 = logits1.argmax(1), logits2.argmax(1)
        start = len(x_l) - n_l
        loss_cps = self.ce(logits1[start:], y2) + self.ce(logits2[start:], y1)
        loss = loss_sup + self.hp["lambda_cps"] * unlabeled_ramp(self.cfg, step) * loss_cps
        return loss, {"loss_sup": loss_sup.detach(), "loss_cps": loss_cps.detach()}

    def trainable_parameters(self):
        return [p for m in (self.model, self.model2) for p in m.parameters() if p.requires_grad]

    def eval_models(self):
        return {"net1": self.model, "net2": self.model2}

    def agreement_pairs(self):
        return {"net1-vs-net2": (self.model, self.model2)}


class CPSCutMix(CPS):
    name = "cps_cutmix"
    cutmix = True


def torchsemiseg_recipe(dataset: str) -> dict:
    """The optimisation of TorchSemiSeg's 1/8-split configs and scripts (CPS, and its Mean
    Teacher baseline), as they ran: DeepLabV3+ on ResNet-50, SGD with momentum 0.9, weight
    decay 1e-4, poly 0.9, 8 labeled + 8 unlabeled images per iteration (the config's batch_size,
    split over the GPUs). VOC (fashion-scenes: the same): lr 0.0025 x 4 GPUs (train.py scales
    it by the world size), 34 epochs of 9,260 // 8 = 1,157 iterations. Cityscapes: lr 0.02 (not
    scaled there), 137 epochs of 2,604 // 8 = 325 iterations. An epoch is the unlabeled set's
    size over the batch, so other splits run other lengths; these are the 1/8 split's."""
    steps, lr = (137 * 325, 0.02) if dataset == "cityscapes" else (34 * 1157, 0.0025 * 4)
    return dict(arch="deeplabv3plus-r50", optimizer="sgd", lr=lr, momentum=0.9, nesterov=False,
                weight_decay=1e-4, lr_schedule="poly", ema_decay=0.0, steps=steps, batch_l=8,
                batch_u=8)
