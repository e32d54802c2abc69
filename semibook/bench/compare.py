"""One case measured: our training step (:func:`semibook.engine.step.train_step`) against the
reference's, with each speed option flipped (:data:`ABLATIONS`), in :func:`bench_case`; and
whether the two train the same model (:func:`loss_curves`, :func:`curve_gaps`: their smoothed
loss curves against the gap between two seeds).
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

import numpy as np
import torch

from ..engine.evaluate import Trainer
from ..engine.step import speed_options, train_step
from .cases import CASES, ReferenceData, _setup, case_config, reference_config
from .measure import count_flops, time_steps


def _images_per_step(trainer: Trainer) -> int:
    return trainer.cfg.batch_l + (trainer.cfg.batch_u if trainer.method.views_u else 0)


def _summary(timing: dict, images: int, flops: int, rates: dict[str, float],
             options: dict[str, bool]) -> dict[str, Any]:
    """Times, throughput and MFU: against the matmul rate of the precision the step computes
    in (bf16 where autocast is on, fp32 otherwise)."""
    med = timing["median_s"]
    dtype = "bfloat16" if options.get("bf16") else "float32"
    return timing | {"images_per_s": images / med, "flops_per_step": flops,
                     "achieved_flops_per_s": flops / med, "mfu": flops / med / rates[dtype],
                     "mfu_dtype": dtype}


ABLATIONS = {"bf16": dict(precision="fp32"), "channels_last": dict(channels_last="off"),
             "fused": dict(fused_optimizer="off"), "compile": dict(compile=True)}


def bench_case(name: str, device: torch.device, steps: int, warmup: int,
               rates: dict[str, float],
               quick: bool = False, reference: bool = True, ref_workers: int = 2,
               data_root: str | None = None, ablate: bool = False,
               **extra: Any) -> dict[str, Any]:
    """Time one case: our step and (unless ``reference=False``) the reference step (``rates``:
    the device's matmul FLOP/s by dtype, ``float32`` and ``bfloat16``, for the MFU); with
    ``ablate``, also our step with each speed option flipped (bf16, channels-last and the fused
    optimizer off, compile on), one at a time."""
    cfg, image_set = case_config(name, quick, data_root, **extra)
    out: dict[str, Any] = {
        "method": cfg.method, "dataset": image_set.info.name if image_set else cfg.dataset,
        "profile": cfg.profile, "arch": cfg.arch, "batch_l": cfg.batch_l, "batch_u": cfg.batch_u,
        "note": CASES[name].note}
    # steps beyond the run's length would leave the schedules' range: keep inside it
    cfg = dataclasses.replace(cfg, steps=max(cfg.steps, warmup + steps + 2))
    trainer, opt = _setup(cfg, image_set, device)
    size = trainer.data.x_l.shape[-1]
    out.update(image_size=size, images_per_step=_images_per_step(trainer),
               options=speed_options(cfg, device))
    run = lambda s: train_step(trainer, opt, s)
    timing = time_steps(run, steps, warmup, device)
    flops = count_flops(lambda: run(warmup + steps))
    out["ours"] = _summary(timing, out["images_per_step"], flops, rates, out["options"])
    trainer = opt = run = None  # free the models before the next ones are built
    if ablate:
        out["ablation"] = {}
        for opt_name, change in ABLATIONS.items():
            acfg = dataclasses.replace(cfg, **change)
            atrainer, aopt = _setup(acfg, image_set, device)
            at = time_steps(lambda s: train_step(atrainer, aopt, s), steps, warmup, device)
            out["ablation"][opt_name] = {"change": change, "options": speed_options(acfg, device),
                                         "median_s": at["median_s"],
                                         "peak_memory_bytes": at["peak_memory_bytes"]}
            del atrainer, aopt
    if reference:
        rcfg = reference_config(cfg)
        rtrainer, ropt = _setup(rcfg, image_set, device)
        data = ReferenceData(rtrainer, rtrainer.method.views_l, rtrainer.method.views_u,
                             ref_workers)

        def ref_step(s):
            loss = train_step(rtrainer, ropt, s, data=data)[0]
            return loss.item()  # the public code logs every step's loss
        rt = time_steps(ref_step, steps, warmup, device)
        out["reference"] = _summary(rt, out["images_per_step"], flops, rates,
                                    speed_options(rcfg, device)) | {
            "data_workers": ref_workers, "options": speed_options(rcfg, device)}
        out["speedup"] = rt["median_s"] / timing["median_s"]
    return out


def loss_curves(name: str, device: torch.device, steps: int, seeds=(0, 1), quick: bool = False,
                ref_workers: int = 2, data_root: str | None = None,
                **extra: Any) -> dict[str, Any]:
    """Same numbers? Train ``steps`` steps of a case with our step and with the reference, for
    each seed; the two agree when the mean gap between their smoothed loss curves (same seed)
    is no larger than the gap between two seeds of the same path."""
    curves: dict[str, dict[int, list[float]]] = {"ours": {}, "reference": {}}
    for seed in seeds:
        cfg, image_set = case_config(name, quick, data_root, seed=seed, **extra)
        cfg = dataclasses.replace(cfg, steps=max(cfg.steps, steps))
        for path in curves:
            c = cfg if path == "ours" else reference_config(cfg)
            trainer, opt = _setup(c, image_set, device)
            data = ReferenceData(trainer, trainer.method.views_l, trainer.method.views_u,
                                 ref_workers) if path == "reference" else None
            losses = [train_step(trainer, opt, s, data=data)[0] for s in range(steps)]
            curves[path][seed] = torch.stack(losses).float().cpu().tolist()
    return curve_gaps(curves, "ours", steps, seeds)


def curve_gaps(curves: dict[str, dict[int, list[float]]], path: str, steps: int,
               seeds) -> dict[str, Any]:
    """Two training paths' loss curves (``curves[path][seed]``, the other path "reference")
    compared: the mean gap between their smoothed curves for the same seed, and the gap between
    two seeds of the same path (averaged over both paths); they agree when the first is no
    larger than the second."""
    window = max(1, steps // 20)
    smooth = lambda v: np.convolve(v, np.ones(window) / window, mode="valid")  # noqa: E731
    gap = lambda a, b: float(np.mean(np.abs(smooth(a) - smooth(b))))  # noqa: E731
    s0, s1 = seeds[0], seeds[1]
    path_gap = statistics.mean(gap(curves[path][s], curves["reference"][s]) for s in seeds)
    seed_gap = statistics.mean(gap(curves[p][s0], curves[p][s1]) for p in curves)
    return {"steps": steps, "seeds": list(seeds), "smoothing_window": window,
            f"{path}_vs_reference_gap": path_gap, "seed_to_seed_gap": seed_gap,
            "within_seed_spread": path_gap <= seed_gap,
            "curves": {p: {str(s): v for s, v in c.items()} for p, c in curves.items()}}
