"""Several processes, one run: ``torchrun --nproc_per_node N -m semibook run ...``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` joins the process group
(NCCL on CUDA, gloo on the CPU). Each step every rank draws the same global batch from
(seed, step) and keeps its contiguous share (:meth:`StepData.batch`), so the union over ranks
is exactly the one-process batch and the global batch size, and with it the paper's learning
rate, does not change with N. The method's ``training_step`` runs inside one
``DistributedDataParallel`` (:func:`wrap`), which averages the gradients of the networks the
engine's optimizer trains; EMA teachers have no gradients and stay plain copies, updated alike
on every rank from identical weights. Batch-norm statistics are broadcast from rank 0 before
each step; segmentation on CUDA uses ``SyncBatchNorm`` (batch statistics over the global
batch; PyTorch has no CPU version, so CPU runs keep per-rank batch statistics). Only rank 0
evaluates and writes (config, history, checkpoints, results).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from ..checks import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def current() -> Dist:
    """This process's place: from the joined process group, else from torchrun's
    environment, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group when torchrun started several processes; on CUDA each process
    takes the GPU of its local rank."""
    d = current()
    if not d.active:
        return d, device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return current(), device


def check(cfg, method, d: Dist) -> None:
    """Refuse what a multi-process run cannot do, before anything is written."""
    if not d.active:
        return
    for name, size in (("batch_l", cfg.batch_l), ("batch_u", cfg.batch_u)):
        if size % d.world:
            raise ConfigError(f"{name} {size} is not divisible by the {d.world} processes; "
                              f"the global batch is split evenly between them")


def shard(x, d: Dist):
    """This rank's contiguous share of a global batch (tensors, lists of them, None)."""
    if not d.active or x is None:
        return x
    if isinstance(x, (list, tuple)):
        return type(x)(shard(v, d) for v in x)
    n = x.shape[0] // d.world
    return x[d.rank * n:(d.rank + 1) * n]


class _Step(nn.Module):
    """Makes ``method.training_step`` the forward that DistributedDataParallel wraps, so the
    method's own attributes (``self.model``, teachers) and state_dict keys stay as they are."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, batch, step):
        return self.method.training_step(batch, step)


def wrap(method: nn.Module, d: Dist, device: torch.device, segmentation: bool):
    """The callable that runs a training step: ``method.training_step`` itself in one process,
    else the same inside DistributedDataParallel (after converting batch norm to SyncBatchNorm
    for segmentation on CUDA)."""
    if not d.active:
        return method.training_step
    if segmentation and device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(method)  # in place below the top module
    step = _Step(method)
    # A second player with its own optimizer (the adversarial discriminator) is trained outside
    # the step: DistributedDataParallel leaves its parameters alone; they start equal on every
    # rank, and the method averages their gradients itself (average_gradients) before its step.
    own = {id(p) for o in method.extra_optimizers().values() for g in o.param_groups
           for p in g["params"]}
    ignored = [(n, p) for n, p in step.named_parameters() if id(p) in own]
    if ignored:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            step, [n for n, _ in ignored])
        with torch.no_grad():
            for _, p in ignored:
                dist.broadcast(p, 0)
    ddp = nn.parallel.DistributedDataParallel(step, device_ids=None, broadcast_buffers=True)
    return ddp


def average_gradients(params) -> None:
    """Average the gradients of ``params`` over the ranks, in place (nothing in one process):
    for a second player's optimizer step, which DistributedDataParallel does not cover."""
    if not current().active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= current().world
    for g, v in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(v.view_as(g))


def all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every rank (all ranks must skip a step together)."""
    ok = torch.isfinite(loss.detach()).to(torch.int32)
    d = current()
    if d.active:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok)


def first_bad(bad: torch.Tensor) -> int:
    """The first step with a non-finite loss on any rank (-1: none), from each rank's own."""
    d = current()
    if not d.active:
        return int(bad)
    big = torch.iinfo(torch.long).max
    t = torch.where(bad >= 0, bad, torch.full_like(bad, big)).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return -1 if int(t) == big else int(t)


def barrier() -> None:
    if current().active:
        dist.barrier()


def average(sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The logged sums averaged over the ranks, so a train row describes the global batch."""
    d = current()
    if not d.active or not sums:
        return sums
    keys = list(sums)
    t = torch.stack([torch.as_tensor(sums[k], dtype=torch.float32) for k in keys])
    dist.all_reduce(t)
    return dict(zip(keys, (t / d.world).unbind()))
