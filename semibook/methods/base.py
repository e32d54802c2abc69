"""The method contract: a method builds its models and turns a batch into a loss.

The engine (:func:`semibook.engine.fit.fit`) owns everything else: the loop, optimizer,
schedule, EMA updates (from :meth:`SemiMethod.ema_pairs`), evaluation, checkpoints, logging,
device and precision. A method is an ``nn.Module`` so that one ``state_dict`` holds all its
models (student, teachers, EMA copies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..models import create_model, ema_copy
from ..models.segmentation import normalized_segmentation_model


@dataclass
class Batch:
    """One training step's data, on the training device.

    ``views_l``/``views_u`` hold independently augmented views of the same images (as many as
    the method asks for); ``x_l`` and ``x_u`` are the first views. ``gen`` and ``rng`` are this
    step's generators for the method's own random draws (permutations, Beta samples, noise).
    """
    y_l: torch.Tensor
    views_l: list[torch.Tensor]
    views_u: list[torch.Tensor]
    gen: torch.Generator
    rng: np.random.Generator
    y_u: torch.Tensor | None = None  # hidden labels: analysis only, never used in training
    ys_l: list[torch.Tensor] | None = None  # segmentation: the label map of each labeled view
    # a second labeled batch drawn independently of the first (methods with ``labels_extra``:
    # the adversarial discriminator's real maps); labels only, of a weak view
    y_l_extra: torch.Tensor | None = None
    # one batch drawn from all training images (``hparams["pooled_batches"]``, Mean Teacher's
    # CIFAR-10 runner): views_l and views_u are the same views, y_l is -1 where unlabeled
    pooled: bool = False
    # weak labels of the unlabeled images (methods with ``weak_labels``, chapter 7): the box
    # label map of the unlabeled view (moved with it) and the image-level classes (n, C) bool
    w_u: torch.Tensor | None = None
    tags_u: torch.Tensor | None = None

    @property
    def x_l(self) -> torch.Tensor:
        return self.views_l[0]

    @property
    def x_u(self) -> torch.Tensor:
        return self.views_u[0]


@dataclass
class DataSpec:
    num_classes: int
    in_channels: int
    classes: tuple[str, ...] = field(default_factory=tuple)
    task: str = "classification"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    ignore_index: int = 255


class SemiMethod(nn.Module):
    """Base of every method. Subclasses set ``name``, ``views_l``, ``views_u`` and implement
    :meth:`training_step`; most also override :meth:`recipe` with their paper's values."""

    name = "base"
    views_l = 1  # augmented views of each labeled image per step
    views_u = 0  # augmented views of each unlabeled image per step (0: no unlabeled data)
    labels_extra = False  # a second, independently drawn labeled batch (Batch.y_l_extra)
    weak_labels = False  # the unlabeled images' weak labels (Batch.w_u, Batch.tags_u)
    extra_hparams: tuple[str, ...] = ()  # hyper-parameters read when given, in no recipe
    paper = ""

    def __init__(self, cfg, spec: DataSpec):
        super().__init__()
        self.cfg, self.spec = cfg, spec
        self.hp: dict[str, Any] = dict(cfg.hparams)
        self.model = self.build_model()
        self.ema_model = ema_copy(self.model) if cfg.ema_decay > 0 else None

    def build_model(self, **kw) -> nn.Module:
        """A fresh network of the configured architecture (methods with two networks, like CPS,
        call it twice). Segmentation models take [0, 1] images and normalise inside."""
        if self.spec.task == "segmentation":
            return normalized_segmentation_model(self.cfg.arch, self.spec.num_classes,
                                                 self.spec.mean, self.spec.std,
                                                 encoder_weights=self.cfg.encoder_weights,
                                                 weights_path=self.cfg.weights_path, **kw)
        return create_model(self.cfg.arch, self.spec.num_classes, self.spec.in_channels,
                            self.cfg.bn_momentum)

    # -- the contract -------------------------------------------------------------------------
    tasks: tuple[str, ...] = ("classification",)

    @classmethod
    def supports(cls, task: str) -> bool:
        return task in cls.tasks

    @classmethod
    def recipe(cls, profile: str, dataset: str) -> dict[str, Any]:
        """Config values of this method's paper recipe for a profile (``hparams`` nested)."""
        return {}

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def ema_pairs(self, step: int) -> list[tuple[nn.Module, nn.Module, float]]:
        """(average, source, decay) triples the engine updates after each optimizer step."""
        return [(self.ema_model, self.model, self.cfg.ema_decay)] if self.ema_model else []

    def after_step(self, step: int) -> dict[str, Any]:
        """Called by the engine after the optimizer step and the EMA updates; a method with a
        second player (a discriminator) updates it here. Returns terms to log."""
        return {}

    def extra_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers the method owns besides the engine's; the engine checkpoints them and
        applies the run's learning-rate schedule to them."""
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _encoders(self) -> list[nn.Module]:
        """The encoders of the segmentation networks the method holds (none for
        classification)."""
        return [m.encoder for m in self.modules() if m is not self
                and isinstance(getattr(m, "encoder", None), nn.Module)]

    def head_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters outside the segmentation networks' encoders (decoder and
        classifier): the group the paper recipes train at ``hparams["head_lr_mult"]`` times the
        learning rate. Empty for classification."""
        encoders = {id(p) for e in self._encoders() for p in e.parameters()}
        if not encoders:
            return []
        return [p for p in self.trainable_parameters() if id(p) not in encoders]

    def encoder_norm_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the normalisation layers (batch, layer and group norm)
        inside the segmentation networks' encoders: the group Dual Teacher's official optimiser
        keeps out of weight decay (``hparams["no_decay_norm"]``). Empty for classification."""
        norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
        ids = {id(p) for e in self._encoders() for layer in e.modules()
               if isinstance(layer, norms) for p in layer.parameters(recurse=False)}
        return [p for p in self.trainable_parameters() if id(p) in ids]

    def eval_models(self) -> dict[str, nn.Module]:
        """Models evaluated at each evaluation; the first one is the reported one."""
        out = {}
        if self.ema_model is not None:
            out["ema"] = self.ema_model
        out["model"] = self.model
        return out

    def tracked_labels(self, x: torch.Tensor, tags: torch.Tensor | None = None
                       ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Label pairs to track besides the model pairs, computed by the method itself on the
        tracked images ``x`` (model input, eval mode): e.g. the adversarial method's
        discriminator-kept pseudo labels against all of them. ``tags``: the images'
        image-level weak labels (methods with ``weak_labels``)."""
        return {}

    def agreement_pairs(self) -> dict[str, tuple[nn.Module, nn.Module]]:
        """Pairs of models whose pseudo labels the tracker compares over training."""
        if self.ema_model is not None:
            return {"ema-vs-model": (self.ema_model, self.model)}
        return {}


class StudentTeacher:
    """Mixin for a method whose ``self.teacher`` is an EMA of ``self.model`` at decay
    ``hparams["ema"]``, and whose student is evaluated first (the teacher beside it)."""

    def ema_pairs(self, step):
        return [(self.teacher, self.model, self.hp["ema"])]

    def eval_models(self):
        return {"student": self.model, "teacher": self.teacher}

    def agreement_pairs(self):
        return {"teacher-vs-student": (self.teacher, self.model)}
