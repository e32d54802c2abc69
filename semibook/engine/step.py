"""One training step: the speed options a device resolves to, precision (autocast), the
optimizer, and ``train_step`` (seeds, learning rate, batch, loss, backward, update, EMA)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..config import Config
from ..models import ema_update
from . import distributed
from .schedules import set_step_hparams
from .seed import step_seed



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


def train_step(trainer: Any, opt: torch.optim.Optimizer, step: int,
               data: Any = None) -> tuple[torch.Tensor, dict[str, Any], float, bool]:
    """One training step of ``trainer`` (an :class:`~semibook.engine.evaluate.Trainer`), as
    ``fit`` runs it: this step's seeds and learning rate, the batch,
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
