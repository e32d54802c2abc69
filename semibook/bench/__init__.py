"""Training-step benchmark: ``python -m semibook bench``.

For each case it times the engine's own training step (:func:`semibook.engine.step.train_step`,
what ``fit`` runs per step) after a warm-up: CUDA events on a GPU, ``perf_counter`` on the CPU
(where every operation has finished when it returns). It reports the median and spread of the
step times, images per second, peak memory (``torch.cuda.max_memory_allocated``; on the CPU the
process's peak resident set, reset per case where Linux allows), the step's model FLOPs
(``FlopCounterMode`` around one real step: every forward and backward it runs) and the model
FLOP utilisation, MFU = achieved FLOP/s / the device's measured matrix-multiply rate (bf16 on a
GPU, fp32 on the CPU).

Each case also times a *reference* step: the same config, model and loss, run the
straightforward way of the public implementations: eager float32, contiguous (NCHW) tensors, the
default optimizer, images augmented one at a time on the CPU in ``DataLoader`` workers and
copied to the device each step, and the loss read back (``loss.item()``) every step. The
speed-up is the reference's median step time over ours.

Cases: every method at the ``full`` profile on the book's data (through
:func:`semibook.engine.fit.prepare`), and the two paper shapes on random images of the paper's
size (the step time does not depend on the pixels): MixMatch with WRN-28-2 at 32x32, 64
labeled + 64 unlabeled images (K = 2); CPS with DeepLabV3+ ResNet-50 at 512x512, 8 labeled + 8
unlabeled, 21 classes (Pascal VOC). ``--quick`` shrinks every case (smoke profile, small
models): it checks the harness, its numbers mean nothing.

The report is written once, whole, when every case is measured (a stopped bench writes
nothing): to ``~/.cache/semibook/bench/<device>.json`` (outside the repository), to ``--out``,
or, with ``--update-results``, over the committed ``results/bench/<device>.json`` (the cases it
did not re-run are kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import resource
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..config import Config, ConfigError, make_config
from ..data import DatasetInfo, ImageSet, dataset_info
from ..data.transforms import normalize, pad_crop_flip, paired_scale_crop_flip
from ..engine.checkpoint import atomic_write_text
from ..engine.evaluate import Trainer
from ..engine.results import _git_commit, _versions
from ..engine.fit import prepare
from ..engine.step import build_optimizer, speed_options, train_step
from ..engine.seed import device_name, host_info, numpy_rng, pick_device, torch_generator
from ..methods.base import Batch
from ..paths import cache_dir, results_dir


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


# -- measuring --------------------------------------------------------------------------------

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


def matmul_rate(device: torch.device, n: int | None = None, reps: int = 10) -> dict[str, Any]:
    """The device's measured dense matrix-multiply rate (FLOP/s): bf16 on a GPU, fp32 on the
    CPU; the best of ``reps`` products of two n x n matrices after a warm-up."""
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
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


# -- the cases --------------------------------------------------------------------------------

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
    CPU (the engine's own augmentation functions, applied to a batch of one)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, views: int, trainer: Trainer):
        self.x, self.y, self.views = x, y, views
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
            return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
        views = [normalize(pad_crop_flip(xf, g, self.pad, mode=self.pad_mode), self.mean,
                           self.std, scaled=True) for _ in range(self.views)]
        return torch.cat(views), self.y[i]


class ReferenceData:
    """Batches the way the public code makes them: a shuffling ``DataLoader`` per set with
    worker processes, pinned memory on CUDA, each batch copied to the device."""

    def __init__(self, trainer: Trainer, views_l: int, views_u: int, workers: int):
        cfg, d, self.device = trainer.cfg, trainer.data, trainer.device
        self.seed, pin = cfg.seed, trainer.device.type == "cuda"

        def loader(x, y, views, batch):
            ds = PerSampleSet(x.cpu(), y.cpu(), views, trainer)
            sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=2**31 - 1)
            return iter(torch.utils.data.DataLoader(
                ds, batch_size=batch, sampler=sampler, num_workers=workers, pin_memory=pin,
                drop_last=True, persistent_workers=workers > 0))
        self.it_l = loader(d.x_l, d.y_l, views_l, cfg.batch_l)
        self.it_u = loader(d.x_u, d.y_u, views_u, cfg.batch_u) if views_u else None

    def _next(self, it):
        x, y = next(it)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return list(x.unbind(1)), y

    def batch(self, step: int, views_l: int, views_u: int, labels_extra: bool = False) -> Batch:
        vl, y = self._next(self.it_l)
        ys_l = list(y.unbind(1)) if y.ndim == 4 else None
        y_l = ys_l[0] if ys_l else y
        vu, y_u = [], None
        if self.it_u is not None:
            vu, yu = self._next(self.it_u)
            y_u = yu[:, 0] if yu.ndim == 4 else yu
        y_x = None
        if labels_extra:  # the official code's second iterator over the labeled set
            y_x = self._next(self.it_l)[1]
            y_x = y_x[:, 0] if y_x.ndim == 4 else y_x
        return Batch(y_l=y_l, views_l=vl, views_u=vu,
                     gen=torch_generator(self.seed, step, "method"),
                     rng=numpy_rng(self.seed, step, "method"), y_u=y_u, ys_l=ys_l, y_l_extra=y_x)


def _setup(cfg: Config, image_set: ImageSet | None, device: torch.device):
    trainer, _ = prepare(cfg, device, image_set)
    opt = build_optimizer(cfg, trainer.method.trainable_parameters(), device)
    return trainer, opt


def _images_per_step(trainer: Trainer) -> int:
    return trainer.cfg.batch_l + (trainer.cfg.batch_u if trainer.method.views_u else 0)


def _summary(timing: dict, images: int, flops: int, rate: float) -> dict[str, Any]:
    med = timing["median_s"]
    return timing | {"images_per_s": images / med, "flops_per_step": flops,
                     "achieved_flops_per_s": flops / med, "mfu": flops / med / rate}


ABLATIONS = {"bf16": dict(precision="fp32"), "channels_last": dict(channels_last="off"),
             "fused": dict(fused_optimizer="off"), "compile": dict(compile=True)}


def bench_case(name: str, device: torch.device, steps: int, warmup: int, rate: float,
               quick: bool = False, reference: bool = True, ref_workers: int = 2,
               data_root: str | None = None, ablate: bool = False,
               **extra: Any) -> dict[str, Any]:
    """Time one case: our step and (unless ``reference=False``) the reference step; with
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
    out["ours"] = _summary(timing, out["images_per_step"], flops, rate)
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
        out["reference"] = _summary(rt, out["images_per_step"], flops, rate) | {
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


def device_slug(device: torch.device) -> str:
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def run_bench(cases: list[str] | None = None, steps: int = 30, warmup: int = 5,
              device: str | torch.device | None = None, quick: bool = False,
              reference: bool = True, ref_workers: int | None = None, curve_steps: int = 0,
              data_root: str | None = None, out: Path | str | None = None,
              log: Callable[[str], None] = print, ablate: bool = False,
              update_results: bool = False, partial: Path | str | None = None,
              **extra: Any) -> dict[str, Any]:
    """Run the benchmark; return the report and write it as JSON, whole, once every case is
    measured (:func:`report_path`; cases already in that file and not re-run are kept).
    ``partial``: a file rewritten after every case, for a caller that may stop the bench."""
    if update_results and quick:
        raise ConfigError("--update-results keeps real measurements only and --quick measures "
                          "nothing; drop one of them")
    if update_results and out:
        raise ConfigError("--update-results writes results/bench/<device>.json; drop --out")
    device = device if isinstance(device, torch.device) else pick_device(device)
    cases = cases or list(CASES)
    for c in cases:
        if c not in CASES:
            raise ConfigError(f"unknown bench case {c!r}; choose from: {', '.join(CASES)}")
    ref_workers = min(4, os.cpu_count() or 1) if ref_workers is None else ref_workers
    rate = matmul_rate(device, n=512 if quick else None, reps=3 if quick else 8)
    log(f"{device_name(device)}: measured {rate['dtype']} matmul rate "
        f"{rate['best_flops_per_s'] / 1e12:.3f} TFLOP/s")
    out = report_path(device, out, update_results)
    old = json.loads(out.read_text()) if out.exists() else {}
    report = {"device": device_name(device), "device_type": device.type,
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "host": host_info(),
              "load_avg_at_start": list(os.getloadavg()), "versions": _versions(),
              **_git_commit(), "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "quick": quick, "matmul": rate,
              "cases": {k: v for k, v in old.get("cases", {}).items()
                        if old.get("quick") == quick and k not in cases}}
    for name in cases:
        t = time.perf_counter()
        res = bench_case(name, device, steps, warmup, rate["best_flops_per_s"], quick,
                         reference, ref_workers, data_root, ablate, **extra)
        res["bench_wall_s"] = round(time.perf_counter() - t, 1)
        res["matmul_flops_per_s"] = rate["best_flops_per_s"]  # what its MFU is relative to
        res["load_avg"] = list(os.getloadavg())
        res["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report["cases"][name] = res
        o = res["ours"]
        line = (f"{name:>22}: {o['median_s'] * 1e3:9.1f} ms/step  {o['images_per_s']:8.1f} img/s"
                f"  MFU {o['mfu']:6.1%}  peak {o['peak_memory_bytes'] / 2**20:7.0f} MiB")
        if "speedup" in res:
            line += (f"  | reference {res['reference']['median_s'] * 1e3:9.1f} ms/step"
                     f"  speed-up x{res['speedup']:.2f}")
        log(line)
        if partial:
            _write(Path(partial), report)
    if curve_steps:
        report["loss_curves"] = {}
        for name in cases:
            report["loss_curves"][name] = c = loss_curves(name, device, curve_steps, quick=quick,
                                                          ref_workers=ref_workers,
                                                          data_root=data_root, **extra)
            log(f"{name}: loss-curve gap ours vs reference {c['ours_vs_reference_gap']:.4f}, "
                f"seed to seed {c['seed_to_seed_gap']:.4f}")
            if partial:
                _write(Path(partial), report)
    report["load_avg_at_end"] = list(os.getloadavg())
    _write(out, report)
    log(f"wrote {out}")
    report["out"] = str(out)
    return report


def report_path(device: torch.device, out: Path | str | None = None,
                update_results: bool = False) -> Path:
    """Where the report goes: ``out``; with ``update_results`` the committed
    ``results/bench/<device>.json``; else ``bench/<device>.json`` in semibook's cache, outside
    the repository, so that no bench run rewrites a committed file unasked."""
    if out:
        return Path(out)
    folder = bench_dir() if update_results else cache_dir() / "bench"
    return folder / f"{device_slug(device)}.json"


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="time training steps against a reference; write JSON")
    b.add_argument("--cases", nargs="+", default=None, metavar="CASE",
                   help=f"default: all ({', '.join(CASES)})")
    b.add_argument("--steps", type=int, default=30, help="timed steps per case (median)")
    b.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    b.add_argument("--device", default=None)
    b.add_argument("--out", default=None, help="the report's file, written whole at the end "
                   "(default: ~/.cache/semibook/bench/<device>.json)")
    b.add_argument("--update-results", action="store_true", help="write the report over the "
                   "committed results/bench/<device>.json (cases not re-run are kept)")
    b.add_argument("--partial", default=None, metavar="PATH", help=argparse.SUPPRESS)
    b.add_argument("--quick", action="store_true", help="tiny versions of the cases (tests)")
    b.add_argument("--no-reference", action="store_true", help="time our step only")
    b.add_argument("--ref-workers", type=int, default=None,
                   help="DataLoader workers of the reference (default: min(4, CPUs))")
    b.add_argument("--curve", type=int, default=0, metavar="STEPS",
                   help="also train STEPS steps, ours and the reference, seeds 0 and 1, and "
                        "compare the loss curves")
    b.add_argument("--data-root", default=None)
    b.add_argument("--ablate", action="store_true",
                   help="also time our step with each speed option flipped, one at a time")
    b.add_argument("--levers", action="store_true",
                   help="time each CPU speed lever against the reference, interleaved, and "
                        "evaluation's share of a run (semibook/levers.py); full-profile cases")
    b.add_argument("--fast", action="store_true",
                   help="our step with the chosen CPU speed setting (semibook.config.FAST)")
    b.add_argument("--rounds", type=int, default=15, metavar="N",
                   help="with --levers: interleaved rounds (one step of each lever a round)")
    b.add_argument("--batch", type=int, default=None, metavar="B",
                   help="B labeled + B unlabeled images instead of the case's own (recorded)")


def check_args(args: argparse.Namespace) -> None:
    """The command line's values (``bench`` and ``bench --levers``), before anything is built
    or timed (one line each)."""
    from ..checks import check_device
    for name, low in (("steps", 1), ("warmup", 0), ("ref_workers", 0), ("curve", 0),
                      ("batch", 1), ("rounds", 1)):
        v = getattr(args, name, None)
        if v is not None and v < low:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {low}, got {v}")
    check_device(args.device)
    if args.out and Path(args.out).exists():
        try:
            old = json.loads(Path(args.out).read_text())
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:  # a folder, bad bytes, not JSON
            raise ConfigError(f"{args.out}: not a bench report that can be extended "
                              f"({type(e).__name__}: {' '.join(str(e).split())[:80]}); choose "
                              f"another --out, or move that file away") from None


def main(args: argparse.Namespace) -> int:
    check_args(args)
    extra = dict(batch_l=args.batch, batch_u=args.batch) if args.batch else {}
    if args.fast:  # our step with the chosen CPU speed setting (the reference stays as it is)
        from ..config import FAST
        extra.update(FAST)
    run_bench(args.cases, args.steps, args.warmup, args.device, args.quick,
              not args.no_reference, args.ref_workers, args.curve, args.data_root, args.out,
              ablate=args.ablate, update_results=args.update_results, partial=args.partial,
              **extra)
    return 0


# -- reading the reports (the book's performance appendix) ------------------------------------

def bench_dir() -> Path:
    return results_dir() / "bench"


def load_reports(folder: Path | str | None = None) -> list[dict[str, Any]]:
    """Every benchmark report (``<device>.json``) under ``results/bench/``, with its file."""
    folder = Path(folder) if folder else bench_dir()
    out = []
    for f in sorted(folder.glob("*.json")):
        r = json.loads(f.read_text())
        r["file"] = f.name
        out.append(r)
    return out


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def markdown_table(report: dict[str, Any]) -> str:
    """One report as a Markdown table: per case, our step and the reference's."""
    rows = ["| case | model | images | steps timed | ours ms/step | images/s | MFU | "
            "peak MiB | reference ms/step | speed-up |", "|" + "---|" * 10]
    for name, c in report["cases"].items():
        o, r = c["ours"], c.get("reference")
        shape = f"{c['batch_l']}+{c['batch_u'] if c['images_per_step'] > c['batch_l'] else 0}" \
                f" x {c['image_size']}²"
        rows.append(
            f"| {name} | {c['arch']} | {shape} | {o['steps']} | {o['median_s'] * 1e3:,.0f} "
            f"({o['p25_s'] * 1e3:,.0f}-{o['p75_s'] * 1e3:,.0f}) | {o['images_per_s']:,.1f} | "
            f"{o['mfu']:.1%} | {_mib(o['peak_memory_bytes'])} | "
            + (f"{r['median_s'] * 1e3:,.0f} | x{c['speedup']:.2f} |" if r else "- | - |"))
    return "\n".join(rows)
