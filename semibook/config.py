"""Run configuration and the three profiles: smoke, full and paper.

A run is described by one flat :class:`Config`. :func:`make_config` fills it from
three layers, later ones winning:

1. the profile's engine sizes (steps, model, evaluation),
2. the method's own recipe for that profile (``Method.recipe``),
3. explicit overrides from the caller (notebook or CLI).

``smoke`` exercises the code path end to end in seconds on a 2-core CPU; its numbers mean
nothing and the book never reports them. ``full`` is the experiment the book reports.
``paper`` is the paper's recipe and schedule.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .checks import (DEVICES, ConfigError, NonFiniteLossError, check_device, check_field,  # noqa: F401
                     check_seed, choose, did_you_mean)

PROFILES = ("smoke", "full", "paper")


@dataclass
class Config:
    method: str
    dataset: str = "fashion-mnist"
    labels: int = 250
    seed: int = 0
    profile: str = "full"
    # model
    arch: str = "wrn-28-2"
    # classification: batch norm's running-statistics momentum (PyTorch's sense); 0.001 is
    # MixMatch's (TensorFlow decay 0.999), made for a million steps
    bn_momentum: float = 0.001
    # segmentation: the encoder's pretrained weights ("imagenet": timm's default for the encoder,
    # fetched into the Hugging Face cache; None: random) and a weights file placed by hand
    encoder_weights: str | None = None
    weights_path: str | None = None
    # schedule and optimisation
    steps: int = 1000
    batch_l: int = 64
    batch_u: int = 64
    optimizer: str = "adam"  # adam | adamw (decoupled weight_decay) | sgd
    lr: float = 0.002
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0  # coupled (L2 in the gradient), for SGD recipes
    decoupled_wd: float = 0.0  # after each step, kernels *= 1 - decoupled_wd * lr (MixMatch)
    lr_schedule: str = "constant"  # constant | cosine | poly | mean_teacher
    ema_decay: float = 0.0  # engine-owned EMA of the model used for evaluation (0: none)
    # evaluation and bookkeeping
    eval_every: int = 100
    eval_size: int = 0  # 0: the whole test set
    eval_subset: int = 0  # >0: intermediate evaluations on a fixed subset of this many images
    validation: int = 0  # >0: tuning: hold out this many training images and evaluate on them
    eval_batch: int = 512
    eval_crop: int = 0  # segmentation: sliding-window evaluation with this window (0: whole image)
    eval_stride: int = 0  # the windows' step (0: two thirds of the window)
    checkpoint_every: int = 0  # 0: at every evaluation
    log_every: int = 10
    skip_nonfinite: bool = False  # skip steps whose loss is NaN/inf (counted in the history)
    track_size: int = 1024  # unlabeled images on which pseudo-label agreement is tracked
    # data
    data_root: str | None = None
    augment_pad: int = 4
    # segmentation's weak view rescales by a factor drawn from [augment_scale_min, augment_scale_max]
    augment_scale_min: float = 0.5
    augment_scale_max: float = 2.0
    crop_size: int = 0  # segmentation: the training views' side in pixels (0: the image's)
    # speed (engine.step.speed_options): "auto" is on for CUDA only; CPU results do not change
    precision: str = "auto"  # auto (bf16 autocast on CUDA) | bf16 | fp32
    channels_last: str = "auto"  # auto | on | off: NHWC memory format for models and images
    fused_optimizer: str = "auto"  # auto | on | off: one fused kernel for the optimizer step
    compile: bool = False  # torch.compile the networks (in place)
    # method hyper-parameters (names as in DESIGN.md: T, lambda_u, ...)
    hparams: dict[str, Any] = field(default_factory=dict)

    @property
    def augment_scale(self) -> tuple[float, float]:
        """The weak view's rescale range, (min, max)."""
        return self.augment_scale_min, self.augment_scale_max

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def diff(self, other: dict[str, Any]) -> list[str]:
        """The field names whose values differ from ``other`` (a config dict)."""
        mine = self.to_dict()
        return sorted(k for k in set(mine) | set(other) if mine.get(k) != other.get(k))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# The CPU speed setting measured fastest with the loss curves inside the seed-to-seed spread
# (``python -m semibook bench --levers``, results/bench/levers/cpu.json): bf16 autocast,
# channels-last tensors and the fused optimizer. CUDA's "auto" is the same setting. The ``full``
# profile runs with it; ``--fast`` (or these overrides) opts in elsewhere.
FAST: dict[str, Any] = dict(precision="bf16", channels_last="on", fused_optimizer="on")


# The fields every config semibook has written holds (config.json, results files, checkpoints)
IDENTITY = ("method", "dataset", "labels", "seed", "profile", "steps", "hparams")


def is_semibook_config(d: Any) -> bool:
    """Whether ``d`` (a parsed config.json) is a config semibook wrote: a JSON object whose
    keys are all :class:`Config` fields (of this version or an earlier one, which lacked some),
    holding the identity fields with values of their types."""
    if not isinstance(d, dict) or not set(IDENTITY) <= set(d):
        return False
    if not set(d) <= {f.name for f in dataclasses.fields(Config)}:
        return False
    return (all(isinstance(d[k], str) for k in ("method", "dataset", "profile"))
            and all(isinstance(d[k], int) and not isinstance(d[k], bool)
                    for k in ("labels", "seed", "steps"))
            and isinstance(d["hparams"], dict))


# Engine sizes per task and profile. The method's recipe (``Method.recipe``) adds its own values.
PROFILE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "classification": {
        "smoke": dict(arch="wrn-10-1", steps=24, batch_l=16, batch_u=16, eval_every=12,
                      eval_size=256, log_every=4, track_size=128),
        # Sized to a 2-core CPU: a WRN-16-1, 3,000 steps of 32 + 32 images, with the CPU speed
        # setting (FAST). Every label reaches 90 % there (a WRN-10-1 stopped at 87.5 %: too
        # little room above the semi-supervised methods). Batch norm's running statistics and
        # the weight EMAs average over about 100 steps (momentum 0.01, decay 0.99; the methods'
        # recipes set the decays), as the papers' 0.001 and 0.999 do over 1,000 of their
        # million steps. Intermediate evaluations score a fixed subset of 2,000 test images
        # (a point within about one point of the whole set's), the last one every image.
        "full": dict(arch="wrn-16-1", steps=3000, batch_l=32, batch_u=32, eval_every=500,
                     eval_size=0, eval_subset=2000, log_every=50, bn_momentum=0.01, **FAST),
        "paper": dict(arch="wrn-28-2", steps=2**20, batch_l=64, batch_u=64, eval_every=1024,
                      eval_size=0, log_every=100, checkpoint_every=1024),
    },
    "segmentation": {
        # the full profile's model (a third cheaper than the ResNet-18 U-Net it had), so the
        # code path CI checks is the reported one
        "smoke": dict(arch="unet-r10t", steps=10, batch_l=4, batch_u=4, eval_every=5,
                      eval_size=64, eval_batch=64, log_every=5, track_size=16),
        # Sized to a 2-core CPU: a U-Net on a timm ResNet-10-T, 3,000 steps of 8 + 8 crops of
        # 48 x 48 pixels from the 64 x 64 scenes, with the CPU speed setting (FAST), evaluated
        # on whole scenes every 500 steps in batches of 32 (the CPU's faster size), agreement
        # tracked on 128 unlabeled scenes; intermediate evaluations on a fixed subset of 250 of
        # the 1,000 test scenes, the last one on all of them.
        "full": dict(arch="unet-r10t", steps=3000, batch_l=8, batch_u=8, crop_size=48,
                     eval_every=500, eval_size=0, eval_subset=250, eval_batch=32, log_every=25,
                     track_size=128, **FAST),
        # the papers fine-tune ImageNet-pretrained encoders; each method's recipe sets its
        # official run's optimiser, schedule, batch and length (the supervised baseline keeps these)
        "paper": dict(arch="deeplabv3plus-r101", steps=40000, batch_l=8, batch_u=8,
                      eval_every=2000, eval_size=0, eval_batch=8, log_every=100,
                      track_size=64, checkpoint_every=1000, encoder_weights="imagenet"),
    },
}


def _methods():
    from .methods import METHODS
    return METHODS


# Hyper-parameters the engine reads for any method (batches, schedules, optimizer groups)
ENGINE_HPARAMS = ("zca", "flip", "pooled_batches", "warmup_steps", "warmup_ratio", "poly_power",
                  "adam_beta2_rampup", "head_lr_mult", "no_decay_norm", "rampup_frac",
                  "rampdown_frac", "rampup_steps", "burn_in")


def declared_hparams(cls) -> set[str]:
    """The hyper-parameter names a method class takes: those its recipes set, in any profile
    and on any dataset of its tasks, its ``extra_hparams`` and the engine's."""
    from .data import DATASETS, dataset_info
    names = set(ENGINE_HPARAMS) | set(getattr(cls, "extra_hparams", ()))
    for profile in PROFILES:
        for d in DATASETS:
            if cls.supports(dataset_info(d).task):
                names |= set(cls.recipe(profile, d).get("hparams", {}))
    return names


def _check_values(cls, method: str, task: str, values: dict[str, Any],
                  hparams: dict[str, Any]) -> None:
    """Every value a config is made of, before any file is written: known field names, their
    types and ranges, and hyper-parameter names the method declares (one line each, with the
    closest known name)."""
    fields = {f.name for f in dataclasses.fields(Config)} - {"method", "hparams"}
    for k in values:
        if k not in fields:
            raise ConfigError(f"unknown config field {k!r}{did_you_mean(k, fields)}; the fields "
                              f"are those of semibook.config.Config")
    for k, v in values.items():
        check_field(k, v)
    known = declared_hparams(cls)
    for k, v in hparams.items():
        if k not in known:
            raise ConfigError(f"{method} has no hyper-parameter {k!r}{did_you_mean(k, known)}; "
                              f"its hyper-parameters: {', '.join(sorted(known))}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"hyper-parameter {k} must be finite, got {v!r}")
    if values.get("weights_path") is not None and task != "segmentation":
        raise ConfigError(f"--weights (weights_path) loads a segmentation encoder's weights; "
                          f"{values.get('dataset')} is a {task} dataset: leave it out")


def make_config(method: str, dataset: str = "fashion-mnist", labels: int = 250, seed: int = 0,
                profile: str | None = None, *, tuned: bool = True, **overrides: Any) -> Config:
    """Build a validated config. ``profile=None`` reads ``$SEMIBOOK_PROFILE`` (default ``full``).

    In the ``full`` profile on the embedded datasets the method's recipe is followed by the
    trial its hyper-parameter sweep chose (:data:`semibook.sweeps.CHOSEN`); ``tuned=False``
    gives the recipe alone (the sweep's own starting point)."""
    from .data import DATASETS, dataset_info
    from .methods import get_method_class

    profile = profile or os.environ.get("SEMIBOOK_PROFILE", "full")
    choose("profile", profile, PROFILES)
    check_seed(seed)
    cls = get_method_class(method)
    choose("dataset", dataset, DATASETS)
    info = dataset_info(dataset)
    if not isinstance(labels, int) or labels <= 0:
        raise ConfigError(f"label count must be a positive integer, got {labels!r}")
    if info.task == "classification" and labels % info.num_classes:
        raise ConfigError(f"label count {labels} is not divisible by the {info.num_classes} classes "
                          f"of {dataset}; choose a multiple of {info.num_classes}")
    if labels > info.train_size:
        raise ConfigError(f"label count {labels} is larger than the {info.train_size} training "
                          f"images of {dataset}")
    if not cls.supports(info.task):
        raise ConfigError(f"method {method!r} has no {info.task} version; for {dataset} choose "
                          f"one of: {', '.join(m for m, c in _methods().items() if c.supports(info.task))}")
    values: dict[str, Any] = dict(PROFILE_DEFAULTS[info.task][profile])
    recipe = cls.recipe(profile, dataset)
    hparams = dict(recipe.pop("hparams", {}))
    values.update(recipe)
    if tuned and profile == "full":
        from .sweeps import DATASET as TUNED_ON, chosen_overrides
        if TUNED_ON[info.task] == dataset:
            chosen = chosen_overrides(info.task, method)
            hparams.update(chosen.pop("hparams", {}))
            values.update(chosen)
    given = overrides.pop("hparams", {}) or {}
    if not isinstance(given, dict) or not all(isinstance(k, str) for k in given):
        raise ConfigError(f"hparams must be a dict of names to values, got {given!r}")
    hparams.update(given)
    values.update(overrides)
    _check_values(cls, method, info.task, {"dataset": dataset, "labels": labels, "seed": seed,
                                           "profile": profile, **values}, hparams)
    cfg = Config(method=method, dataset=dataset, labels=labels, seed=seed, profile=profile,
                 hparams=hparams, **values)
    _check_choices(cfg, info.task)
    return cfg


def _check_choices(cfg: Config, task: str) -> None:
    """The fields chosen from lists (model, optimizer, schedule, speed settings)."""
    from .models import ARCHS, SEGMENTATION_MODELS
    from .models.wrn import parse_wrn
    if task == "segmentation":
        choose("segmentation model", cfg.arch, SEGMENTATION_MODELS)
    elif not cfg.arch.startswith("wrn-"):
        choose("architecture", cfg.arch, ARCHS)
    else:
        parse_wrn(cfg.arch)
    choose("optimizer", cfg.optimizer, ("adam", "adamw", "sgd"))
    choose("lr schedule", cfg.lr_schedule, ("constant", "cosine", "poly", "mean_teacher"))
    choose("precision", cfg.precision, ("auto", "bf16", "fp32"))
    for name in ("channels_last", "fused_optimizer"):
        choose(name.replace("_", " ") + " setting", getattr(cfg, name), ("auto", "on", "off"))
    if not cfg.augment_scale_min <= cfg.augment_scale_max:
        raise ConfigError(f"augment scale range must satisfy 0 < min <= max, got "
                          f"[{cfg.augment_scale_min}, {cfg.augment_scale_max}]")


def check_config(cfg: Config) -> Config:
    """:func:`make_config`'s checks of every value, on a config made otherwise (by hand, or
    changed with ``dataclasses.replace``): ``fit`` runs them before it claims a folder."""
    from .data import DATASETS, dataset_info
    from .methods import get_method_class
    choose("profile", cfg.profile, PROFILES)
    choose("dataset", cfg.dataset, DATASETS)
    cls, task = get_method_class(cfg.method), dataset_info(cfg.dataset).task
    values = {k: v for k, v in cfg.to_dict().items() if k not in ("method", "hparams")}
    if not isinstance(cfg.hparams, dict):
        raise ConfigError(f"hparams must be a dict of names to values, got {cfg.hparams!r}")
    _check_values(cls, cfg.method, task, values, cfg.hparams)
    _check_choices(cfg, task)
    return cfg
