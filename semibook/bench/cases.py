"""The bench's cases and the reference's data.

The case table (:class:`Case`, :data:`CASES`, :data:`FULL_CASES`: every method at the ``full``
profile on the book's data, and the two paper shapes on random images), a case's config
(:func:`case_config`, with :func:`synthetic_set`'s random images of a paper's shape) and its
reference's (:func:`reference_config`: every speed option off), the models and optimizer of a
config (``_setup``), and the reference's batches: images augmented one at a time on the CPU in
``DataLoader`` workers (:class:`PerSampleSet`), copied to the device each step
(:class:`ReferenceData`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import Config, ConfigError, make_config
from ..data import DatasetInfo, ImageSet, dataset_info
from ..data.transforms import normalize, pad_crop_flip, paired_scale_crop_flip
from ..engine.evaluate import Trainer
from ..engine.fit import prepare
from ..engine.step import build_optimizer
from ..engine.seed import numpy_rng, torch_generator
from ..methods.base import Batch


@dataclass(frozen=True)
class Case:
    """One benchmarked configuration. ``shape``: (channels, size, classes) of random images for
    the paper shapes (None: the book's own data)."""
    method: str
    dataset: str
    labels: int
    profile: str = "full"
    overrides: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, int, int] | None = None
    quick: dict[str, Any] = field(default_factory=dict)  # overrides of the --quick version
    note: str = ""


_SEG = dict(dataset="fashion-scenes", labels=50)
CASES: dict[str, Case] = {
    "supervised-full": Case("supervised", "fashion-mnist", 250),
    "mixmatch-full": Case("mixmatch", "fashion-mnist", 250),
    "mean_teacher-full": Case("mean_teacher", "fashion-mnist", 250),
    "seg-supervised-full": Case("supervised", **_SEG),
    "seg-mean_teacher-full": Case("mean_teacher", **_SEG),
    "adversarial-full": Case("adversarial", **_SEG),
    "cps-full": Case("cps", **_SEG),
    "cps_cutmix-full": Case("cps_cutmix", **_SEG),
    "dual_teacher-full": Case("dual_teacher", **_SEG),
    "soft_teacher-full": Case("soft_teacher", **_SEG),
    "dual_branch-full": Case("dual_branch", **_SEG),
    "dual_branch_teacher-full": Case("dual_branch_teacher", **_SEG),
    "mixmatch-paper": Case("mixmatch", "cifar10", 250, "paper", shape=(3, 32, 10),
                           quick=dict(arch="wrn-10-1", batch_l=8, batch_u=8),
                           note="WRN-28-2, 32x32 RGB, 64 labeled + 64 unlabeled (K=2); random "
                                "images"),
    # random encoder weights, as results/bench/cpu.json was measured: the step time does not
    # depend on them, and the paper profile's ImageNet weights need a network
    "cps-paper": Case("cps", "fashion-scenes", 16, "paper", shape=(3, 512, 21),
                      overrides=dict(arch="deeplabv3plus-r50", batch_l=8, batch_u=8,
                                     encoder_weights=None),
                      quick=dict(arch="unet-r18", batch_l=2, batch_u=2, size=64),
                      note="DeepLabV3+ ResNet-50, 512x512 RGB, 8 labeled + 8 unlabeled, 21 "
                           "classes; random images and encoder weights"),
}
FULL_CASES = [n for n, c in CASES.items() if c.shape is None]


def synthetic_set(info: DatasetInfo, n_train: int, seed: int = 0) -> ImageSet:
    """Random uint8 images (and labels or label maps) of a dataset's shape."""
    g = torch.Generator().manual_seed(seed)
    c, s, k = info.in_channels, info.size, info.num_classes
    x = torch.randint(0, 256, (n_train + 8, c, s, s), dtype=torch.uint8, generator=g)
    if info.task == "segmentation":  # blocks of 32x32 pixels per class
        y = torch.randint(0, k, (n_train + 8, 1, max(1, s // 32), max(1, s // 32)), generator=g)
        y = torch.nn.functional.interpolate(y.float(), size=(s, s), mode="nearest")[:, 0].long()
    else:
        y = torch.arange(n_train + 8) % k
    return ImageSet(info, x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                    f"random images of shape {c}x{s}x{s}", (0.5,) * c, (0.25,) * c)


def case_config(name: str, quick: bool = False, data_root: str | None = None,
                **extra: Any) -> tuple[Config, ImageSet | None]:
    """The config of a case (and its random images for a paper shape)."""
    if name not in CASES:
        raise ConfigError(f"unknown bench case {name!r}; choose from: {', '.join(CASES)}")
    case = CASES[name]
    over = {**case.overrides, **(case.quick if quick else {}), **extra}
    size = over.pop("size", None)
    profile = "smoke" if quick and case.shape is None else case.profile
    if data_root and case.shape is None:
        over["data_root"] = data_root
    cfg = make_config(case.method, case.dataset, case.labels, over.pop("seed", 0), profile,
                      **over)
    if case.shape is None:
        return cfg, None
    c, s, k = case.shape
    base = dataset_info(case.dataset)
    info = dataclasses.replace(base, name=f"{name}-shape", in_channels=c, size=size or s,
                               num_classes=k, classes=tuple(f"c{i}" for i in range(k)))
    n_train = max(4 * (cfg.batch_l + cfg.batch_u), 2 * cfg.labels)
    return cfg, synthetic_set(info, n_train)


def reference_config(cfg: Config) -> Config:
    """The same run with every speed option off: eager fp32, NCHW, default optimizer."""
    return dataclasses.replace(cfg, precision="fp32", channels_last="off",
                               fused_optimizer="off", compile=False)


class PerSampleSet(torch.utils.data.Dataset):
    """The reference's data: one image at a time, ``views`` augmented views of it made on the
    CPU (the engine's own augmentation functions, applied to a batch of one). ``tags``: each
    image's class list, returned third (the weak-label methods')."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, views: int, trainer: Trainer,
                 tags: torch.Tensor | None = None):
        self.x, self.y, self.views, self.tags = x, y, views, tags
        d = trainer.data
        self.seg, self.mean, self.std = d.task == "segmentation", d.mean, d.std
        self.pad, self.pad_mode, self.ignore = trainer.cfg.augment_pad, d.pad_mode, d.ignore_index
        self.scale, self.crop = trainer.cfg.augment_scale, trainer.cfg.crop_size

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        xf = self.x[i:i + 1].float().div_(255)
        if self.seg:
            pairs = [paired_scale_crop_flip(xf, self.y[i:i + 1], g, self.scale,
                                            ignore_index=self.ignore, crop=self.crop)
                     for _ in range(self.views)]
            out = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
            return out if self.tags is None else (*out, self.tags[i])
        views = [normalize(pad_crop_flip(xf, g, self.pad, mode=self.pad_mode), self.mean,
                           self.std, scaled=True) for _ in range(self.views)]
        return torch.cat(views), self.y[i]


class ReferenceData:
    """Batches the way the public code makes them: a shuffling ``DataLoader`` per set with
    worker processes, pinned memory on CUDA, each batch copied to the device."""

    def __init__(self, trainer: Trainer, views_l: int, views_u: int, workers: int):
        cfg, d, self.device = trainer.cfg, trainer.data, trainer.device
        self.seed, pin = cfg.seed, trainer.device.type == "cuda"

        def loader(x, y, views, batch, tags=None):
            ds = PerSampleSet(x.cpu(), y.cpu(), views, trainer,
                              None if tags is None else tags.cpu())
            sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=2**31 - 1)
            return iter(torch.utils.data.DataLoader(
                ds, batch_size=batch, sampler=sampler, num_workers=workers, pin_memory=pin,
                drop_last=True, persistent_workers=workers > 0))
        self.it_l = loader(d.x_l, d.y_l, views_l, cfg.batch_l)
        # the weak-label methods' box maps ride with the label maps, one geometry for both, as
        # in the engine's batches
        self.weak = getattr(d, "w_u", None) is not None
        y_u = torch.stack([d.y_u, d.w_u.long()], 1) if self.weak else d.y_u
        self.it_u = loader(d.x_u, y_u, views_u, cfg.batch_u, d.tags_u if self.weak else None) \
            if views_u else None

    def _next(self, it):
        x, y, *tags = next(it)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return list(x.unbind(1)), y, (tags[0].to(self.device) if tags else None)

    def batch(self, step: int, views_l: int, views_u: int, labels_extra: bool = False) -> Batch:
        vl, y, _ = self._next(self.it_l)
        ys_l = list(y.unbind(1)) if y.ndim == 4 else None
        y_l = ys_l[0] if ys_l else y
        vu, y_u, w_u, tags_u = [], None, None, None
        if self.it_u is not None:
            vu, yu, tags_u = self._next(self.it_u)
            y_u = yu[:, 0] if yu.ndim >= 4 else yu
            if self.weak:
                y_u, w_u = y_u[:, 0], y_u[:, 1]
        y_x = None
        if labels_extra:  # the official code's second iterator over the labeled set
            y_x = self._next(self.it_l)[1]
            y_x = y_x[:, 0] if y_x.ndim == 4 else y_x
        return Batch(y_l=y_l, views_l=vl, views_u=vu,
                     gen=torch_generator(self.seed, step, "method"),
                     rng=numpy_rng(self.seed, step, "method"), y_u=y_u, ys_l=ys_l, y_l_extra=y_x,
                     w_u=w_u, tags_u=tags_u)


def _setup(cfg: Config, image_set: ImageSet | None, device: torch.device):
    trainer, _ = prepare(cfg, device, image_set)
    opt = build_optimizer(cfg, trainer.method.trainable_parameters(), device)
    return trainer, opt
