"""Batches: the per-step data and its augmented views, a pure function of (seed, step)."""

from __future__ import annotations


import torch

from ..checks import ConfigError
from ..config import Config
from ..data import ImageSet
from ..data.splits import Split
from ..data.transforms import Whitening, normalize, pad_crop_flip, paired_scale_crop_flip
from ..methods.base import Batch
from . import distributed
from .seed import numpy_rng, torch_generator
from .step import speed_options



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
