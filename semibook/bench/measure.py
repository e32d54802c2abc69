"""The bench's measurements: step times after a warm-up (:func:`time_steps`: CUDA events on a
GPU, ``perf_counter`` on the CPU) with the peak memory of the timed steps (CUDA's
``max_memory_allocated``; on the CPU the process's peak resident set, reset where Linux allows),
a step's model FLOPs (:func:`count_flops`) and the device's measured matrix-multiply rate
(:func:`matmul_rate`), the denominator of the MFU.
"""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak_rss() -> bool:
    """Reset the process's peak resident set (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def time_steps(step_fn: Callable[[int], Any], steps: int, warmup: int,
               device: torch.device, first_step: int = 0) -> dict[str, Any]:
    """Run ``step_fn(step)`` for ``warmup`` steps, then time ``steps`` more: per-step times
    (CUDA events, recorded without synchronising between steps; on the CPU ``perf_counter``),
    their median and spread, the wall time per step, and the peak memory of the timed steps."""
    for i in range(warmup):
        step_fn(first_step + i)
    synchronize(device)
    first_step += warmup
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(steps)]
        t0 = time.perf_counter()
        for i, (a, b) in enumerate(events):
            a.record()
            step_fn(first_step + i)
            b.record()
        synchronize(device)
        wall = time.perf_counter() - t0
        times = [a.elapsed_time(b) / 1000 for a, b in events]
        peak, peak_kind = torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated"
    else:
        reset = _reset_peak_rss()
        times = []
        t0 = time.perf_counter()
        for i in range(steps):
            t = time.perf_counter()
            step_fn(first_step + i)
            times.append(time.perf_counter() - t)
        wall = time.perf_counter() - t0
        peak = _peak_rss_bytes()
        peak_kind = "peak RSS of the process" + ("" if reset else " (since its start)")
    q = np.percentile(times, [10, 25, 75, 90]).tolist() if times else [None] * 4
    return {"steps": steps, "warmup": warmup, "median_s": statistics.median(times),
            "p10_s": q[0], "p25_s": q[1], "p75_s": q[2], "p90_s": q[3], "min_s": min(times),
            "max_s": max(times), "wall_per_step_s": wall / steps, "peak_memory_bytes": int(peak),
            "peak_memory_kind": peak_kind}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matrix multiplications and convolutions that ``fn`` runs (forward and
    backward alike), as ``torch.utils.flop_counter.FlopCounterMode`` counts them (a
    multiply-add is 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_rate(device: torch.device, n: int | None = None, reps: int = 10,
                dtype: torch.dtype | None = None) -> dict[str, Any]:
    """The device's measured dense matrix-multiply rate (FLOP/s) in ``dtype`` (default: bf16 on
    a GPU, fp32 on the CPU); the best of ``reps`` products of two n x n matrices after a
    warm-up."""
    cuda = device.type == "cuda"
    dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
    n = n or (8192 if cuda else 4096)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    times = []
    for _ in range(reps):
        if cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            a @ b
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / 1000)
        else:
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
    flops = 2 * n ** 3
    return {"dtype": str(dtype).replace("torch.", ""), "n": n, "reps": reps,
            "best_flops_per_s": flops / min(times),
            "median_flops_per_s": flops / statistics.median(times)}
