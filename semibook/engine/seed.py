"""Seeding and the device.

Every random draw of a training step comes from generators derived from (seed, step), so a step
does not depend on how many steps ran before it in this process. That makes ``--resume`` exact
without saving RNG states: step s after a resume draws what step s drew in an unbroken run.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ..checks import ConfigError, check_device

STREAMS = {"data": 1, "augment": 2, "method": 3, "init": 4, "global": 5,
           "data-extra": 6, "augment-extra": 7}  # the second labeled batch (Batch.y_l_extra)


def _entropy(seed: int, step: int, stream: str, rank: int) -> list[int]:
    # rank 0 (and a single process) draws exactly what it drew before ranks existed
    return [seed, step, STREAMS[stream]] + ([rank] if rank else [])


def step_seed(seed: int, step: int, stream: str, rank: int = 0) -> int:
    """A 63-bit seed for (run seed, step, stream[, rank of a multi-process run]), mixed by
    numpy's SeedSequence."""
    ss = np.random.SeedSequence(_entropy(seed, step, stream, rank))
    return int(ss.generate_state(1, dtype=np.uint64)[0]) & (2**63 - 1)


def torch_generator(seed: int, step: int, stream: str, rank: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, step, stream, rank))


def numpy_rng(seed: int, step: int, stream: str, rank: int = 0) -> np.random.Generator:
    return np.random.default_rng(_entropy(seed, step, stream, rank))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str | None = None) -> torch.device:
    """cuda, then mps, then cpu (or the one asked for, which must be present: one line
    otherwise)."""
    if name:
        device = torch.device(check_device(name))
        if device.type == "cuda" and (not torch.cuda.is_available() or (
                device.index or 0) >= torch.cuda.device_count()):
            raise ConfigError(f"--device {name}: torch sees no such CUDA GPU "
                              f"({torch.cuda.device_count()} visible); use --device cpu, or "
                              f"leave --device out for the best one present")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                         and torch.backends.mps.is_available()):
            raise ConfigError(f"--device {name}: this machine has no MPS (Apple GPU) device; "
                              f"use --device cpu, or leave --device out")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def host_info(cpuinfo: str | None = None) -> dict:
    """The processor a run's times were measured on: its model name, family and model numbers
    and widest vector instructions (from ``/proc/cpuinfo`` where there is one), and the cores.
    This project's 2-core machine has run the same config at step times a factor of two apart
    on different days, so a results file's ``elapsed_s`` is read beside this."""
    import platform
    info: dict = {"machine": platform.machine(), "cpu_count": os.cpu_count()}
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return info | {"cpu": platform.processor() or "unknown"}
    first = cpuinfo.split("\n\n")[0]
    fields = dict(ln.split(":", 1) for ln in first.splitlines() if ":" in ln)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    info["cpu"] = fields.get("model name", platform.processor() or "unknown")
    if "cpu family" in fields:
        info["cpu"] += f" (family {fields['cpu family']} model {fields.get('model', '?')})"
    info["vector"] = next((f for f in ("avx512f", "avx2", "avx", "sse4_2", "asimd", "neon")
                           if f in flags), "none known")
    return info


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"{device.type} ({platform.machine()}, {torch.get_num_threads()} threads)"
