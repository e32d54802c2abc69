"""The shared training engine: ``fit`` runs any method, ``run`` adds the run folder and results.

The engine owns the loop, optimizer and schedule, EMA updates, evaluation every N steps, the
history (JSON lines), checkpoints and exact ``resume``, seeding, the device (cuda, then mps, then
cpu), bf16 autocast on CUDA, and the progress display (a tqdm bar on a terminal, plain lines
otherwise, e.g. in a notebook).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import ConfigError, NonFiniteLossError
from ..config import Config
from ..data import ImageSet, load_dataset
from ..data.splits import Split, load_or_make_split, make_split
from ..data.transforms import Whitening, normalize, pad_crop_flip, paired_scale_crop_flip
from ..metrics import SegmentationMeter, sliding_window_logits
from ..methods import get_method_class
from ..methods.base import Batch, DataSpec, SemiMethod
from ..models import ema_update
from ..paths import ROOT, results_dir, runs_dir
from ..tracking import agreement
from . import distributed, interrupt, rundir
from .checkpoint import atomic_write_text, load_checkpoint, load_weights, save_checkpoint
from .schedules import set_step_hparams
from .seed import (device_name, host_info, numpy_rng, pick_device, seed_everything, step_seed,
                   torch_generator)


class StepData:
    """Batches as a pure function of (seed, step): epoch e of a set is a permutation drawn from
    (seed, e), and step s takes positions s*B ... s*B+B-1 of the endless concatenation."""

    def __init__(self, data: ImageSet, split: Split, cfg: Config, device: torch.device,
                 weak_labels: bool = False):
        self.cfg, self.device, self.mean, self.std = cfg, device, data.mean, data.std
        self.pad_mode, self.task = data.info.pad_mode, data.info.task
        self.ignore_index = data.info.ignore_index
        lab = torch.as_tensor(split.labeled)
        unl = torch.as_tensor(split.unlabeled)
        self.x_l, self.y_l = data.x_train[lab].to(device), data.y_train[lab].to(device)
        self.x_u, self.y_u = data.x_train[unl].to(device), data.y_train[unl].to(device)
        # weak labels (chapter 7): the unlabeled images' box maps and class lists, and the class
        # lists of every training image (the tracked images' for the method's read-outs)
        self.tags = self.w_u = self.tags_u = None
        if weak_labels:
            if data.weak is None:
                raise ConfigError(f"{cfg.method} learns from weak labels (boxes and image-level "
                                  f"classes), which only fashion-scenes provides, not "
                                  f"{data.info.name}")
            weak = data.weak()
            self.tags = weak.tags
            self.w_u, self.tags_u = weak.maps[unl].to(device), weak.tags[unl].to(device)
        # hparams zca (Mean Teacher's CIFAR-10 paper recipe): whitened inputs, not standardised
        self.whiten = Whitening(data.x_train).to(device) if cfg.hparams.get("zca") else None
        self._perms: dict[tuple[int, int], torch.Tensor] = {}
        self.dist = distributed.current()  # several processes: each keeps its share of a batch
        self.memory_format = torch.channels_last if speed_options(cfg, device)["channels_last"] \
            else torch.contiguous_format

    def _perm(self, which: int, n: int, epoch: int) -> torch.Tensor:
        """Epoch ``epoch``'s order of stream ``which``: 0 labeled, 1 unlabeled, 2 the second
        labeled stream (its own random stream, so it is independent of stream 0)."""
        key = (which, epoch)
        if key not in self._perms:
            if len(self._perms) > 8:
                self._perms.clear()
            g = torch_generator(self.cfg.seed, 2 * epoch + which, "data") if which < 2 else \
                torch_generator(self.cfg.seed, epoch, "data-extra")
            self._perms[key] = torch.randperm(n, generator=g).to(self.device)
        return self._perms[key]

    def indices(self, which: int, n: int, batch: int, step: int) -> torch.Tensor:
        """Slices of the epochs' permutations, which live on the device (copied once per
        epoch), so a step's indices need no host-to-device copy."""
        parts, pos, end = [], step * batch, (step + 1) * batch
        while pos < end:
            epoch, off = divmod(pos, n)
            take = min(n - off, end - pos)
            parts.append(self._perm(which, n, epoch)[off:off + take])
            pos += take
        return torch.cat(parts)

    def views(self, x: torch.Tensor, k: int, gen: torch.Generator) -> list[torch.Tensor]:
        """k augmented views (padding in pixel space, so zeros are the black background),
        each standardised afterwards."""
        if self.whiten is not None:  # whitened, then translated and flipped, as in the code
            xw = self.whiten(x)
            return [pad_crop_flip(xw, gen, self.cfg.augment_pad, mode=self.pad_mode)
                    for _ in range(k)]
        xf = x.float().div_(255)
        return [normalize(pad_crop_flip(xf, gen, self.cfg.augment_pad, mode=self.pad_mode),
                          self.mean, self.std, scaled=True) for _ in range(k)]

    def seg_views(self, x: torch.Tensor, y: torch.Tensor, k: int, gen: torch.Generator):
        """k weak views (scale, crop, flip) of images in [0, 1] with their label maps."""
        xf = x.float().div_(255)
        # hparams flip False (paper recipes only): AdvSemiSeg's command runs without mirroring
        flip = self.cfg.hparams.get("flip", True)
        pairs = [paired_scale_crop_flip(xf, y, gen, self.cfg.augment_scale, flip=flip,
                                        ignore_index=self.ignore_index, crop=self.cfg.crop_size)
                 for _ in range(k)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def pooled_batch(self, step: int, views: int, gen: torch.Generator) -> Batch:
        """``batch_u`` images drawn from all training images, labeled and unlabeled alike (the
        Mean Teacher CIFAR-10 runner's ``n_labeled_per_batch='vary'``): as many labeled ones
        per batch as the draw brings, ``y_l`` -1 on the others."""
        if not hasattr(self, "_x_all"):
            self._x_all = torch.cat([self.x_l, self.x_u])
            self._y_all = torch.cat([self.y_l, self.y_u])
        n_l = len(self.x_l)
        idx = self.indices(1, len(self._x_all), self.cfg.batch_u, step)
        y = self._y_all[idx]
        y_l = torch.where(idx < n_l, y, torch.full_like(y, -1))
        vs = self.views(self._x_all[idx], views, gen)
        if self.dist.active:
            vs, y_l, y = (distributed.shard(v, self.dist) for v in (vs, y_l, y))
        rank = self.dist.rank
        return Batch(y_l=y_l, views_l=vs, views_u=vs, y_u=y, pooled=True,
                     gen=torch_generator(self.cfg.seed, step, "method", rank),
                     rng=numpy_rng(self.cfg.seed, step, "method", rank))

    def batch(self, step: int, views_l: int, views_u: int, labels_extra: bool = False) -> Batch:
        gen = torch_generator(self.cfg.seed, step, "augment")
        if self.cfg.hparams.get("pooled_batches"):
            return self.pooled_batch(step, max(views_l, views_u), gen)
        il = self.indices(0, len(self.x_l), self.cfg.batch_l, step)
        iu = self.indices(1, len(self.x_u), self.cfg.batch_u, step) if views_u else None
        ys_l = w_u = tags_u = None
        if self.task == "segmentation":
            vl, ys_l = self.seg_views(self.x_l[il], self.y_l[il], views_l, gen)
            y_l = ys_l[0]
            maps_u = self.y_u[iu] if self.w_u is None else \
                torch.stack([self.y_u[iu], self.w_u[iu].long()], 1)  # one geometry for both
            vu, y_u = self.seg_views(self.x_u[iu], maps_u, views_u, gen) if views_u \
                else ([], [None])
            y_u = y_u[0]
            if self.w_u is not None:
                y_u, w_u, tags_u = y_u[:, 0], y_u[:, 1], self.tags_u[iu]
        else:
            vl, y_l = self.views(self.x_l[il], views_l, gen), self.y_l[il]
            vu, y_u = (self.views(self.x_u[iu], views_u, gen), self.y_u[iu]) if views_u \
                else ([], None)
        y_x = None
        if labels_extra:  # a second labeled batch, drawn on its own (weak view, labels only)
            ix = self.indices(2, len(self.x_l), self.cfg.batch_l, step)
            gx = torch_generator(self.cfg.seed, step, "augment-extra")
            if self.task == "segmentation":
                y_x = self.seg_views(self.x_l[ix], self.y_l[ix], 1, gx)[1][0]
            else:
                y_x = self.y_l[ix]
        if self.memory_format is torch.channels_last:
            vl, vu = ([v.contiguous(memory_format=torch.channels_last) for v in vs]
                      for vs in (vl, vu))
        if self.dist.active:  # the global batch was drawn and augmented; keep this rank's share
            vl, vu, y_l, y_u, ys_l, y_x, w_u, tags_u = (
                distributed.shard(v, self.dist) for v in (vl, vu, y_l, y_u, ys_l, y_x, w_u, tags_u))
        rank = self.dist.rank
        return Batch(y_l=y_l, views_l=vl, views_u=vu,
                     gen=torch_generator(self.cfg.seed, step, "method", rank),
                     rng=numpy_rng(self.cfg.seed, step, "method", rank), y_u=y_u, ys_l=ys_l,
                     y_l_extra=y_x, w_u=w_u, tags_u=tags_u)


def encode(t: torch.Tensor) -> dict[str, Any]:
    """A small uint8 tensor as JSON: shape and base64 bytes."""
    import base64
    return {"shape": list(t.shape), "b64": base64.b64encode(t.to(torch.uint8).numpy().tobytes())
            .decode()}


def decode(d: dict[str, Any]) -> torch.Tensor:
    import base64
    raw = np.frombuffer(base64.b64decode(d["b64"]), dtype=np.uint8).copy()
    return torch.from_numpy(raw.reshape(d["shape"]))


def _fixed_subset(n: int, size: int, salt: int) -> torch.Tensor:
    """A fixed, seed-independent subset (so every run is evaluated on the same images)."""
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(salt))
    return idx[:size] if 0 < size < n else torch.arange(n)


@torch.no_grad()
def predict(model: nn.Module, x_uint8: torch.Tensor, prep, batch: int,
            device: torch.device, window: tuple[int, int, int] | None = None,
            bf16: bool | None = None) -> torch.Tensor:
    """Predicted labels (class ids, or label maps) of ``model`` in eval mode over uint8
    images; ``prep`` turns a uint8 batch into the model's input; ``window`` = (crop, stride,
    classes) evaluates segmentation with sliding windows. Returned on the CPU."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(x_uint8), batch):
        x = prep(x_uint8[i:i + batch].to(device))
        with _autocast(device, bf16):
            logits = sliding_window_logits(model, x, *window) if window else model(x)
        out.append(logits.argmax(1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def speed_options(cfg: Config, device: torch.device) -> dict[str, bool]:
    """The run's speed options resolved for ``device``. ``auto`` turns bf16 autocast,
    channels-last and the fused optimizer on for CUDA only: on the CPU they would cost time or
    change the numbers, and CPU runs stay bit-exact. ``compile`` is off unless asked for."""
    cuda = device.type == "cuda"
    on = lambda v: cuda if v == "auto" else v == "on"
    return {"bf16": cuda if cfg.precision == "auto" else cfg.precision == "bf16",
            "channels_last": on(cfg.channels_last), "fused": on(cfg.fused_optimizer),
            "compile": bool(cfg.compile)}


def _autocast(device: torch.device, bf16: bool | None = None):
    """bf16 autocast: on CUDA by default, elsewhere only when asked (``bf16=True``)."""
    on = device.type == "cuda" if bf16 is None else bf16
    return torch.autocast(device.type if on else "cpu", dtype=torch.bfloat16, enabled=on)


def _code_commit() -> dict[str, Any]:
    """The commit of the code this process runs: read when this module was imported, so that
    a checkout or an edit made while a long process trains is not recorded as the code it
    ran."""
    return dict(_IMPORTED)


def _git_commit() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        # uncommitted changes to the package's code (not to notebooks, whose outputs change
        # whenever a chapter runs)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "semibook"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip() != ""
        return {"git_commit": commit or None, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


_IMPORTED = _git_commit()  # see _code_commit


def _versions() -> dict[str, str]:
    import torchvision
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "numpy": np.__version__}


class Progress:
    """tqdm on a terminal; plain lines (at evaluations) when output is not a terminal."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stdout.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True)

    def step(self, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if logs:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in list(logs.items())[:4]})

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_optimizer(cfg: Config, params: list[nn.Parameter],
                    device: torch.device | None = None,
                    head: list[nn.Parameter] | None = None,
                    no_decay: list[nn.Parameter] | None = None) -> torch.optim.Optimizer:
    """The run's optimizer; fused (one kernel for all parameters) where ``speed_options`` says
    so for ``device``. With ``hparams["head_lr_mult"]`` (paper recipes only), the parameters
    in ``head`` form a second group whose learning rate is that multiple of the run's. With
    ``hparams["no_decay_norm"]`` (Dual Teacher's paper recipe), the parameters in ``no_decay``
    (the encoder's normalisation layers) form a group without weight decay."""
    kw = {"fused": True} if device is not None and speed_options(cfg, device)["fused"] else {}
    mult = cfg.hparams.get("head_lr_mult")
    if mult is not None or cfg.hparams.get("no_decay_norm"):
        heads = {id(p) for p in head or ()} if mult is not None else set()
        plain = {id(p) for p in no_decay or ()} if cfg.hparams.get("no_decay_norm") else set()
        groups = [({"lr_mult": 1.0}, [p for p in params if id(p) not in heads | plain]),
                  ({"lr_mult": 1.0, "weight_decay": 0.0}, [p for p in params if id(p) in plain]),
                  ({"lr_mult": float(mult or 1.0), "lr": cfg.lr * (mult or 1.0)},
                   [p for p in params if id(p) in heads and id(p) not in plain])]
        params = [g | {"params": ps} for g, ps in groups if ps]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay, **kw)


def train_step(trainer: "Trainer", opt: torch.optim.Optimizer, step: int,
               data: Any = None) -> tuple[torch.Tensor, dict[str, Any], float, bool]:
    """One training step, as ``fit`` runs it: this step's seeds and learning rate, the batch,
    the method's loss under the run's precision, backward, optimizer, decoupled weight decay,
    EMA updates and the method's after-step. No host synchronisation unless
    ``cfg.skip_nonfinite`` (deciding to skip needs the loss's value). ``data`` replaces the
    run's batch source (anything with ``batch(step, views_l, views_u)``; the benchmark's
    reference loader). Returns (loss, logs as tensors or floats, lr, updated)."""
    cfg, method, device = trainer.cfg, trainer.method, trainer.device
    torch.manual_seed(step_seed(cfg.seed, step, "global"))
    lr = set_step_hparams(opt, cfg, step, method.extra_optimizers().values())
    batch = (data or trainer.data).batch(step, method.views_l, method.views_u,
                                         method.labels_extra)
    method.train()
    # a skipped step must not leave its forward passes' batch-norm statistics behind either
    saved = [b.detach().clone() for b in method.buffers()] if cfg.skip_nonfinite else None
    with _autocast(device, trainer.bf16):
        loss, logs = (trainer.step_fn or method.training_step)(batch, step)
    if cfg.skip_nonfinite and not distributed.all_finite(loss):
        with torch.no_grad():
            for b, old in zip(method.buffers(), saved):
                b.copy_(old)
        return loss.detach(), logs, lr, False  # no update of any weight, EMA or second player
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if cfg.decoupled_wd:
        with torch.no_grad():
            torch._foreach_mul_(trainer.decay, 1.0 - cfg.decoupled_wd * lr)
    for avg, src, d in method.ema_pairs(step):
        ema_update(avg, src, d)
    return loss.detach(), {"loss": loss.detach(), **logs, **method.after_step(step)}, lr, True


@dataclass
class Trainer:
    """Everything one run holds in memory; ``fit`` drives it."""
    cfg: Config
    method: SemiMethod
    data: StepData
    test_x: torch.Tensor
    test_y: torch.Tensor
    track_x: torch.Tensor
    track_y: torch.Tensor
    image_set: ImageSet
    device: torch.device
    step_fn: Any = None  # runs method.training_step; inside DistributedDataParallel when wrapped
    test_index: Any = None  # positions of test_x in the test set, of track_x in the train set
    track_index: Any = None

    @cached_property
    def decay(self) -> list[nn.Parameter]:
        """The kernels (conv and dense weights) that decoupled weight decay shrinks."""
        return [p for p in self.method.trainable_parameters() if p.ndim > 1]

    @property
    def bf16(self) -> bool:
        """Whether this run computes in bf16 autocast (training and evaluation alike)."""
        return speed_options(self.cfg, self.device)["bf16"]

    @property
    def segmentation(self) -> bool:
        return self.image_set.info.task == "segmentation"

    @property
    def metric(self) -> str:
        """The reported metric: test accuracy, or mean IoU for segmentation."""
        return "miou" if self.segmentation else "acc"

    def prep(self, x_uint8: torch.Tensor) -> torch.Tensor:
        if self.segmentation:  # segmentation models normalise inside
            return x_uint8.float().div_(255)
        if self.data.whiten is not None:
            return self.data.whiten(x_uint8)
        return normalize(x_uint8, self.image_set.mean, self.image_set.std)

    def score(self, pred: torch.Tensor) -> dict[str, Any]:
        if not self.segmentation:
            return {"acc": (pred == self.test_y).float().mean().item()}
        meter = SegmentationMeter(self.image_set.info.num_classes,
                                  self.image_set.info.ignore_index)
        meter.update(pred, self.test_y)
        res = meter.compute()
        return {"miou": res["miou"], "iou": res["iou"]}

    @torch.no_grad()
    def samples(self, n: int = 8) -> dict[str, Any]:
        """What a chapter shows without the weights: the evaluated model's label maps on the
        first ``n`` test images, and the first tracked model's confidence (max softmax,
        quantised to 1/255) and pseudo labels on the first ``n`` tracked unlabeled images."""
        model = next(iter(self.method.eval_models().values()))
        pairs = self.method.agreement_pairs()
        teacher = next(iter(pairs.values()))[0] if pairs else model
        k = min(n, len(self.test_x))
        out = {"test_index": (self.test_index[:k].tolist() if self.test_index is not None
                              else list(range(k))),
               "test_pred": encode(predict(model, self.test_x[:n], self.prep, n, self.device,
                                                  bf16=self.bf16)),
               "track_model": next(iter(pairs), "model")}
        was = teacher.training
        teacher.eval()
        x = self.prep(self.track_x[:n].to(self.device))
        with _autocast(self.device, self.bf16):
            conf, pseudo = F.softmax(teacher(x).float(), 1).max(1)
        teacher.train(was)
        if self.track_index is not None:
            out["track_index"] = self.track_index[:n].tolist()
        out["track_conf"] = encode((conf * 255).round().byte().cpu())
        out["track_pseudo"] = encode(pseudo.byte().cpu())
        return out

    def evaluate(self, step: int) -> dict[str, Any]:
        cfg, out = self.cfg, {"kind": "eval", "step": step}
        names = list(self.method.eval_models())
        window = None
        if self.segmentation and cfg.eval_crop:
            window = (cfg.eval_crop, cfg.eval_stride or max(1, cfg.eval_crop * 2 // 3),
                      self.image_set.info.num_classes)
        for i, (name, model) in enumerate(self.method.eval_models().items()):
            scores = self.score(predict(model, self.test_x, self.prep, cfg.eval_batch,
                                        self.device, window, self.bf16))
            if i == 0:
                out.update(scores)
            else:
                out[f"{self.metric}_{name}"] = scores[self.metric]
        out["eval_model"] = names[0]
        agree = {}
        ignore = self.image_set.info.ignore_index if self.segmentation else None
        for pair, (a, b) in self.method.agreement_pairs().items():
            pa = predict(a, self.track_x, self.prep, cfg.eval_batch, self.device, bf16=self.bf16)
            pb = predict(b, self.track_x, self.prep, cfg.eval_batch, self.device, bf16=self.bf16)
            agree[pair] = agreement(pa, pb, self.track_y, self.method.spec.num_classes, ignore)
        if self.segmentation:
            x = self.prep(self.track_x.to(self.device))
            tags = None
            if getattr(self.data, "tags", None) is not None and self.track_index is not None:
                tags = self.data.tags[torch.as_tensor(self.track_index)].to(self.device)
            with _autocast(self.device, self.bf16):
                labels = self.method.tracked_labels(x, tags)
            for pair, (pa, pb) in labels.items():
                agree[pair] = agreement(pa, pb, self.track_y, self.method.spec.num_classes, ignore)
        if agree:
            out["agreement"] = agree
        return out


def prepare(cfg: Config, device: torch.device | None = None,
            image_set: ImageSet | None = None) -> tuple[Trainer, Split]:
    """Load data and split, build the method on the device. Raises before anything is written
    when the data is missing or the split does not fit. An ``image_set`` given (the benchmark's
    images of the paper shapes) is used as it is, with a split drawn in memory."""
    device = device or pick_device()
    given = image_set is not None
    image_set = image_set if given else load_dataset(cfg.dataset, cfg.data_root)
    info = image_set.info
    if cfg.labels > len(image_set.y_train):
        raise ConfigError(f"label count {cfg.labels} is larger than the {len(image_set.y_train)} "
                          f"training images found in {image_set.source}")
    # the models first: a model that cannot be built (pretrained weights out of reach) stops
    # the run before a split file is written (splits draw from their own seeded generator)
    seed_everything(step_seed(cfg.seed, 0, "init"))
    spec = DataSpec(info.num_classes, info.in_channels, info.classes, info.task,
                    image_set.mean, image_set.std, info.ignore_index)
    method = get_method_class(cfg.method)(cfg, spec).to(device)
    if method.views_u and cfg.labels >= len(image_set.y_train):
        raise ConfigError(f"label count {cfg.labels} leaves no unlabeled image of the "
                          f"{len(image_set.y_train)} training images in {image_set.source}, and "
                          f"{cfg.method} trains on unlabeled images; choose fewer labels, or the "
                          f"supervised method")
    if given:
        split = make_split(image_set.y_train, cfg.labels, cfg.seed, info.num_classes, info.name,
                           balanced=image_set.y_train.ndim == 1)
    else:
        split = load_or_make_split(cfg.dataset, image_set.y_train, cfg.labels, cfg.seed,
                                   info.num_classes)
    opts = speed_options(cfg, device)
    if opts["channels_last"]:
        method.to(memory_format=torch.channels_last)
    if opts["compile"]:  # in place, so state_dict keys and EMA copies stay as they are
        for net in method.children():
            for m in (net if isinstance(net, nn.ModuleList) else [net]):
                m.compile()
    data = StepData(image_set, split, cfg, device, weak_labels=method.weak_labels)
    ti = _fixed_subset(len(image_set.y_test), cfg.eval_size, salt=2024)
    ki = _fixed_subset(len(split.unlabeled), cfg.track_size, salt=2025)
    unl = torch.as_tensor(split.unlabeled)[ki]
    trainer = Trainer(cfg, method, data, image_set.x_test[ti], image_set.y_test[ti],
                      image_set.x_train[unl], image_set.y_train[unl], image_set, device,
                      test_index=ti, track_index=unl)
    return trainer, split


def config_diff(cfg: Config, old: dict[str, Any]) -> list[str]:
    """Fields in which ``cfg`` differs from a stored config (fields added to :class:`Config`
    since it was written take their defaults)."""
    if not isinstance(old, dict):
        return sorted(cfg.to_dict())
    try:
        old = Config.from_dict(old).to_dict()
    except (ConfigError, TypeError):
        pass
    return cfg.diff(old)


# Options a run may change when it is resumed (recorded in its history): they change what
# happens to a bad step, not what a good one computes. Results files still match on them.
RESUMABLE_CHANGES = ("skip_nonfinite",)


def resume_diff(cfg: Config, old: dict[str, Any]) -> list[str]:
    """The fields of ``config_diff`` that forbid continuing a run of ``old`` as ``cfg``."""
    return [k for k in config_diff(cfg, old) if k not in RESUMABLE_CHANGES]


def fit(cfg: Config, run_dir: Path | str, resume: bool = False, overwrite: bool = False,
        progress: bool = True, device: torch.device | str | None = None,
        stop_after: int | None = None) -> dict[str, Any]:
    """Train ``cfg`` in ``run_dir`` and return the results dict (also written as results.json).

    ``stop_after`` ends the process's work after that many steps (as a crash would), leaving the
    checkpoint to ``resume`` from; used by the tests.
    """
    run_dir = Path(run_dir)
    device = device if isinstance(device, torch.device) else pick_device(device)
    ranks, device = distributed.setup(device)  # torchrun: join the group; rank 0 writes
    differs = lambda old: resume_diff(cfg, old)  # noqa: E731
    if ranks.main:  # reads only: a folder in use, foreign or of another run stops here
        rundir.probe_lock(run_dir)
    if ranks.main or not overwrite:
        rundir.inspect(run_dir, resume, overwrite, differs)
    trainer, split = prepare(cfg, device)  # fails before anything is written
    distributed.check(cfg, trainer.method, ranks)
    distributed.barrier()  # every rank has seen the folder as it was before rank 0 writes
    lock = rundir.claim(run_dir, resume, overwrite, differs) if ranks.main else None
    try:
        return _train(cfg, trainer, split, run_dir, resume, ranks, device, progress, stop_after)
    except OSError as e:  # a full disk under the history's appends: name the folder at least
        if e.filename is None:
            e.filename = str(run_dir)
        raise
    finally:
        if lock is not None:
            lock.release()


def _history_until(hist_path: Path, start: int) -> list[str]:
    """The history's lines up to step ``start`` (the checkpoint's): what was logged after it is
    dropped, and so is a last line torn by a kill. Any other line that is not a history row
    stops the resume with one line."""
    try:
        lines = hist_path.read_bytes().split(b"\n")
    except OSError as e:
        raise ConfigError(f"{hist_path}: cannot read the history ({e.strerror})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    kept = []
    for i, raw in enumerate(lines, 1):
        try:
            row = json.loads(raw.decode("ascii"))
            step = row["step"] if isinstance(row, dict) else None
        except (ValueError, KeyError):
            step = None
        if step is None or isinstance(step, bool) or not isinstance(step, int):
            if i == len(lines):  # torn by a kill while it was written
                break
            raise ConfigError(f"{hist_path}: line {i} is not a history row (a JSON object with "
                              f"an integer step); the run cannot continue exactly: pass "
                              f"--overwrite to start it again")
        if step <= start:
            kept.append(raw.decode("ascii"))
    return kept


def _changed_options(cfg: Config, old: dict[str, Any], kept: list[str],
                     start: int) -> list[str]:
    """History rows recording the options (RESUMABLE_CHANGES) that this resume changes: each
    option's value as the checkpoint's config holds it, or as an earlier resume from the same
    checkpoint recorded it, against ``cfg``'s."""
    was = {k: old.get(k, getattr(Config, k)) for k in RESUMABLE_CHANGES}
    for row in map(json.loads, kept):
        if row.get("kind") == "option" and row["step"] == start:
            was.update({k: row[k] for k in RESUMABLE_CHANGES if k in row})
    now = {k: getattr(cfg, k) for k in RESUMABLE_CHANGES if getattr(cfg, k) != was[k]}
    return [json.dumps({"kind": "option", "step": start, **now})] if now else []


def _train(cfg: Config, trainer: Trainer, split: Split, run_dir: Path, resume: bool,
           ranks: distributed.Dist, device: torch.device, progress: bool,
           stop_after: int | None) -> dict[str, Any]:
    """``fit`` in its claimed run folder: load the checkpoint to resume from (before writing
    anything), then train, log, checkpoint and write results.json."""
    method = trainer.method
    opt = build_optimizer(cfg, method.trainable_parameters(), device, method.head_parameters(),
                          method.encoder_norm_parameters())
    hist_path, ckpt_path = run_dir / "history.jsonl", run_dir / "checkpoint.pt"
    start, elapsed_before, started_at = 0, 0.0, datetime.now(timezone.utc).isoformat()
    code = _code_commit()  # the code this run starts from (kept across resumes)
    # the current logging window (steps since the last train row), checkpointed with the rest
    sums: dict[str, torch.Tensor] = {}
    count = skipped = 0
    kept = None  # the history to continue, on a resume
    option_rows = []  # options changed on this resume (RESUMABLE_CHANGES)
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, cfg.method)
        diff = resume_diff(cfg, state["config"])
        if diff:
            raise ConfigError(f"{ckpt_path}: checkpoint of a different config (differs in: "
                              f"{', '.join(diff)})")
        load_weights(method, state["method"], ckpt_path, f"{cfg.method} models")
        load_weights(opt, state["optimizer"], ckpt_path, "optimizer")
        for name, o in method.extra_optimizers().items():
            load_weights(o, state["extra_optimizers"][name], ckpt_path, f"{name} optimizer")
        start, elapsed_before, started_at = state["step"], state["elapsed_s"], state["started_at"]
        code = state.get("code", code)
        sums = {k: v.to(device) for k, v in state.get("log_sums", {}).items()}
        count, skipped = state.get("log_count", 0), state.get("log_skipped", 0)
        if ranks.main:
            kept = _history_until(hist_path, start) if hist_path.exists() else []
            option_rows = _changed_options(cfg, state["config"], kept, start)
    if ranks.main:  # the checks are done: the run's first write is the marker
        rundir.mark(run_dir)
        atomic_write_text(run_dir / "config.json", cfg.to_json() + "\n")
        if kept is not None:
            atomic_write_text(hist_path, "".join(ln + "\n" for ln in kept + option_rows))
        elif hist_path.exists():
            hist_path.unlink()
    trainer.step_fn = distributed.wrap(method, ranks, device, trainer.segmentation)

    def checkpoint(step: int) -> None:
        if not ranks.main:
            return
        save_checkpoint(ckpt_path, {"step": step, "config": cfg.to_dict(),
                                    "method": method.state_dict(), "optimizer": opt.state_dict(),
                                    "extra_optimizers": {k: o.state_dict() for k, o in
                                                         method.extra_optimizers().items()},
                                    "elapsed_s": elapsed_before + time.time() - t0,
                                    "started_at": started_at, "code": code,
                                    "log_sums": dict(sums), "log_count": count,
                                    "log_skipped": skipped})

    bad = torch.full((), -1, dtype=torch.long, device=device)

    def stop_if_nonfinite() -> None:
        first = distributed.first_bad(bad)  # the same answer on every rank
        if first >= 0:
            terms = ", ".join(f"{k}={float(v) / max(count, 1):.4g}" for k, v in sums.items())
            how = (f"last good checkpoint: {ckpt_path}; to skip such steps, continue it with "
                   f"--resume --skip-nonfinite" if ckpt_path.exists() else
                   "no checkpoint yet; to skip such steps, run again with --skip-nonfinite")
            raise NonFiniteLossError(
                f"non-finite loss at step {first} (means of the steps since the last log: "
                f"{terms}); {how}")

    t0 = time.time()
    bar = Progress(cfg.steps, start, progress and ranks.main)
    bar.line(f"{cfg.method} on {cfg.dataset} ({cfg.labels} labels, seed {cfg.seed}, profile "
             f"{cfg.profile}): {cfg.steps} steps on {device_name(device)}; data: "
             f"{trainer.image_set.source}")
    with (open(hist_path if ranks.main else os.devnull, "a") as hist,
          interrupt.deferred() as ctrl_c):
        for step in range(start, cfg.steps):
            if stop_after is not None and step - start >= stop_after:
                break
            loss, logs, lr, updated = train_step(trainer, opt, step)
            if not updated:
                skipped += 1
            else:
                if not cfg.skip_nonfinite:  # the first bad step, kept on the device (no sync)
                    bad = torch.where(torch.isfinite(loss) | (bad >= 0), bad, step)
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + torch.as_tensor(v, dtype=torch.float32).detach()
                count += 1
            done = step + 1
            if done % cfg.log_every == 0 or done % cfg.eval_every == 0 or done == cfg.steps or (
                    cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
                stop_if_nonfinite()  # before anything of this window is written
            if done % cfg.log_every == 0 or done == cfg.steps:
                sums = distributed.average(sums)  # several processes: the global batch's means
                row = {"kind": "train", "step": done, "lr": lr,
                       **{k: float(v) / count for k, v in sums.items()}}
                if cfg.skip_nonfinite:
                    row["skipped_nonfinite"] = skipped
                hist.write(json.dumps(row) + "\n")
                bar.step({k: row[k] for k in sums})
                sums, count, skipped = {}, 0, 0
            else:
                bar.step({})
            if (done % cfg.eval_every == 0 or done == cfg.steps) and ranks.main:
                row = trainer.evaluate(done)
                row["elapsed_s"] = round(elapsed_before + time.time() - t0, 2)
                hist.write(json.dumps(row) + "\n")
                hist.flush()
                key = trainer.metric
                bar.line(f"step {done:>7}/{cfg.steps}  {key} {row[key]:.4f}  "
                         + "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                                     if k.startswith(key + "_"))
                         + f"  ({row['elapsed_s']:.0f} s)")
                checkpoint(done)
            elif cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
                hist.flush()
                checkpoint(done)
            ctrl_c.check()  # Ctrl-C stops here, between steps (see engine/interrupt.py)
    stop_if_nonfinite()
    bar.close()
    if not ranks.main:  # rank 0 evaluates and writes
        return {"rank": ranks.rank, "finished": None}
    history = [json.loads(ln) for ln in hist_path.read_text().splitlines() if ln]
    finished = bool(history) and any(r["kind"] == "eval" and r["step"] == cfg.steps
                                     for r in history)
    results = make_results(cfg, history, split, device, started_at,
                           elapsed_before + time.time() - t0, finished, trainer.metric, code)
    if finished and trainer.segmentation:
        results["samples"] = trainer.samples()
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=1) + "\n")
    return results


def make_results(cfg: Config, history: list[dict], split: Split, device: torch.device,
                 started_at: str, elapsed: float, finished: bool,
                 metric: str = "acc", code: dict[str, Any] | None = None) -> dict[str, Any]:
    evals = [r for r in history if r["kind"] == "eval"]
    best = max(evals, key=lambda r: r[metric]) if evals else None
    from ..config import make_config
    default = make_config(cfg.method, cfg.dataset, cfg.labels, cfg.seed, cfg.profile).to_dict()
    overrides = {k: v for k, v in cfg.to_dict().items() if default.get(k) != v}
    return {
        "method": cfg.method, "dataset": cfg.dataset, "labels": cfg.labels, "seed": cfg.seed,
        "profile": cfg.profile, "overrides": overrides, "finished": finished,
        "config": cfg.to_dict(),
        "split_file": str(split.path.relative_to(ROOT)) if split.path and
        split.path.is_relative_to(ROOT) else str(split.path),
        "split_sha256": split.sha256, **(code or _code_commit()), "device": device_name(device),
        "host": host_info(), "versions": _versions(), "started_at": started_at,
        "elapsed_s": round(elapsed, 1),
        "history": history,
        "skipped_nonfinite": sum(r.get("skipped_nonfinite", 0) for r in history
                                 if r["kind"] == "train"),
        "metric": metric,
        "last": {k: evals[-1][k] for k in evals[-1] if k.startswith(metric)} | {
            "step": evals[-1]["step"]} if evals else None,
        "best": {metric: best[metric], "step": best["step"]} if best else None,
    }


def result_name(cfg: Config) -> str:
    return f"{cfg.dataset}_{cfg.labels}_{cfg.method}_seed{cfg.seed}_{cfg.profile}.json"


def default_run_dir(cfg: Config) -> Path:
    return runs_dir() / f"{cfg.dataset}-{cfg.labels}" / f"{cfg.method}-seed{cfg.seed}-{cfg.profile}"


def run(cfg: Config, run_dir: Path | str | None = None, resume: bool = False,
        overwrite: bool = False, progress: bool = True, save_results: bool | None = None,
        device: str | None = None) -> dict[str, Any]:
    """Train one configured run in its run folder; a finished run of the full or paper profile
    also writes ``results/<dataset>_<labels>_<method>_seed<seed>_<profile>.json``."""
    run_dir = Path(run_dir or default_run_dir(cfg))
    results = fit(cfg, run_dir, resume=resume, overwrite=overwrite, progress=progress,
                  device=device)
    if results.get("finished") and results.get("skipped_nonfinite", 0) >= cfg.steps:
        raise NonFiniteLossError(
            f"every one of the {cfg.steps} steps had a non-finite loss and was skipped, so the "
            f"weights are as initialised ({run_dir / 'results.json'}); no results file was "
            f"written: look for the cause (data, learning rate) and run again with --overwrite")
    if save_results is None:
        save_results = cfg.profile != "smoke"
    if save_results and results.get("finished"):
        out = results_dir() / result_name(cfg)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(results, indent=1) + "\n")
        results["results_file"] = str(out)
    return results


def load_results(path: Path | str | None = None, **match: Any) -> list[dict[str, Any]]:
    """Results files under ``results/`` (or ``path``) whose fields equal ``match``."""
    base = Path(path) if path else results_dir()
    if path is None and not base.exists():  # no results folder yet: no results
        return []
    files = sorted(base.glob("*.json")) if base.is_dir() else [base]
    out = []
    for f in files:
        try:
            r = json.loads(f.read_text())
            if not isinstance(r, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
            raise ConfigError(f"{f}: not a readable results file ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:100]}); restore it from git, or delete it "
                              f"(its run is then trained again)") from None
        if all(r.get(k) == v for k, v in match.items()):
            r["results_file"], r["loaded"] = str(f), True
            r["profile_changes"] = profile_changes(r)
            out.append(r)
    return out



def same_config(results: dict[str, Any], cfg: Config) -> bool:
    """Whether a results file was written by a run of exactly ``cfg`` (fields added to
    :class:`Config` since the file was written take their defaults)."""
    return not config_diff(cfg, results.get("config") or {})


def finished_results(cfg: Config) -> dict[str, Any] | None:
    """The finished results file (``results/``, written by a real run) of exactly ``cfg``, or
    None."""
    return next((r for r in load_results(method=cfg.method, dataset=cfg.dataset,
                                         labels=cfg.labels, seed=cfg.seed, profile=cfg.profile)
                 if r.get("finished") and same_config(r, cfg)), None)


class ResultsMissingError(ConfigError):
    """Load-only mode (``$SEMIBOOK_LOAD_ONLY``) found no results file for a config."""


def run_or_load(cfg: Config, progress: bool = True) -> dict[str, Any]:
    """What a chapter calls: the finished results file of exactly this config if one exists
    (``results/``, written by a real run), else train now. Smoke runs always train and are never
    saved as results. With ``$SEMIBOOK_LOAD_ONLY`` set (CI's check of the committed chapters), a
    missing results file is an error, never an hour of training."""
    found = finished_results(cfg) if cfg.profile != "smoke" else None
    if found:
        return found
    if cfg.profile != "smoke" and os.environ.get("SEMIBOOK_LOAD_ONLY"):
        raise ResultsMissingError(
            f"no finished results file for {result_name(cfg)} (exactly this config) in "
            f"{results_dir()}, and $SEMIBOOK_LOAD_ONLY forbids training; run: "
            f".venv/bin/python -m semibook run --method {cfg.method} --dataset {cfg.dataset} "
            f"--labels {cfg.labels} --profile {cfg.profile} --seed {cfg.seed}")
    if cfg.profile != "smoke" and pick_device().type == "cpu":
        print(f"note: no finished results file for this {cfg.method} config in "
              f"{results_dir()}; training it here, {cfg.steps} steps on the CPU (the full "
              f"profile: minutes; paper: days; SEMIBOOK_PROFILE=smoke checks the code path in "
              f"seconds)", flush=True)
    res = run(cfg, overwrite=True, progress=progress)
    res["loaded"] = False
    return res


def _shown_path(path: str) -> str:
    """A results file's path as a reader finds it: from the results folder's parent (the
    repository, ``results/...``) where it lies inside, else the file's name."""
    f, base = Path(path).resolve(), results_dir().resolve().parent
    return str(f.relative_to(base)) if f.is_relative_to(base) else f.name


def _profile_diff(res: dict[str, Any]) -> list[str] | None:
    """The fields in which a run's config differs from what its profile gives today (None:
    the profile cannot build that config today)."""
    from ..config import make_config
    try:
        today = make_config(res["method"], res["dataset"], res["labels"], res["seed"],
                            res["profile"])
    except (ConfigError, KeyError):
        return None
    return config_diff(today, res.get("config") or {})


def _differs_from_profile(res: dict[str, Any]) -> bool:
    """Whether a run's config differs from what its profile gives today (a run made with
    overrides that the profile has since adopted does not)."""
    return _profile_diff(res) != []


def profile_changes(res: dict[str, Any]) -> list[str]:
    """The fields in which the run's profile has changed since the run, other than those the
    run set itself (its overrides): empty for a run of today's profile. A chapter that shows an
    earlier profile's runs says so (``provenance``, the results tables)."""
    diff = _profile_diff(res)
    if diff is None:
        return ["(the profile no longer builds this config)"]
    return [k for k in diff if k not in (res.get("overrides") or {})]


def provenance(res: dict[str, Any]) -> str:
    """One line saying where a result comes from: profile, device, commit, time, file."""
    how = f"loaded from {_shown_path(res['results_file'])}" if res.get("loaded") else "trained now"
    warn = "  [smoke profile: checks the code path only; not a result]" \
        if res["profile"] == "smoke" else ""
    over = f", overrides {res['overrides']}" if res.get("overrides") and _differs_from_profile(res) \
        else ""
    commit = (res.get("git_commit") or "unknown")[:8] + ("+changes" if res.get("git_dirty") else "")
    changed = res.get("profile_changes")
    if changed:
        over += f" (as it was then: today's differs in {', '.join(changed)})"
    return (f"{res['method']}: {how}; profile {res['profile']}{over}; {res['config']['steps']} "
            f"steps on {res['device']}; commit {commit}; {res['elapsed_s']:.0f} s{warn}")
