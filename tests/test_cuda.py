"""What only a CUDA GPU can check: the speed options keep the numbers, resume stays exact, the
multi-process path and ``torch.compile`` run. Marked ``cuda`` and skipped without a GPU;
``tools/gpu_check.py`` runs them first on a lent device (``make gpu-check``).

Every comparison runs the engine's own step (:func:`semibook.engine.step.train_step`, what
``fit`` runs) on the tiny data of ``conftest.py``, with the options switched through the
config fields ``precision``, ``channels_last``, ``fused_optimizer`` and ``compile``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import semibook as sb
from semibook.engine.checkpoint import load_checkpoint
from semibook.engine.step import build_optimizer, train_step
from semibook.engine.fit import fit, prepare
from tests.conftest import computed

# cuBLAS is deterministic only with a fixed workspace, read when its first handle is made; set
# here, at collection, before any test touches the GPU (nothing changes on the CPU)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# bf16 keeps 8 bits of mantissa (a relative rounding error of 2**-9 per operation). From the
# same weights and batch the first loss must agree with fp32's within 1%; over 20 steps the
# two trajectories drift apart, and each loss must stay within 15% of fp32's, 5% on average.
# (Measured with bf16 autocast on the CPU, where the same test can be forced: the first losses
# agree to 1e-4, and CPS, the widest drift of the three methods, ends 6% apart at most and 2.2%
# on average over the 20 steps.)
BF16_FIRST_RTOL, BF16_STEP_RTOL, BF16_MEAN_RTOL = 0.01, 0.15, 0.05

ALL_OFF = dict(precision="fp32", channels_last="off", fused_optimizer="off")


def _config(method: str, tiny: dict, tiny_scenes: dict, **over) -> sb.Config:
    if method in ("cps", "adversarial", "dual_teacher"):
        return sb.make_config(method, "fashion-scenes", 16, 0, "smoke", **{**tiny_scenes, **over})
    return sb.make_config(method, "fashion-mnist", 20, 0, "smoke", **{**tiny, **over})


def step_losses(cfg: sb.Config, device: torch.device, steps: int) -> list[float]:
    """The losses of the first ``steps`` training steps of ``cfg`` on ``device``."""
    tr, _ = prepare(cfg, device)
    opt = build_optimizer(cfg, tr.method.trainable_parameters(), device)
    return [float(train_step(tr, opt, s)[0]) for s in range(steps)]


def relative_gaps(ref: list[float], other: list[float]) -> list[float]:
    return [abs(a - b) / max(abs(a), 1e-8) for a, b in zip(ref, other)]


@pytest.mark.parametrize("method", ["supervised", "mixmatch", "cps"])
def test_bf16_and_channels_last_keep_the_fp32_losses_over_20_steps(method, tiny, tiny_scenes):
    base = _config(method, tiny, tiny_scenes, steps=20, **ALL_OFF)
    fast = dataclasses.replace(base, precision="bf16", channels_last="on")
    ref, got = step_losses(base, CUDA, 20), step_losses(fast, CUDA, 20)
    gaps = relative_gaps(ref, got)
    assert all(map(math.isfinite, ref + got)), (ref, got)
    assert gaps[0] <= BF16_FIRST_RTOL, (ref[0], got[0])
    assert max(gaps) <= BF16_STEP_RTOL, list(zip(ref, got))
    assert sum(gaps) / len(gaps) <= BF16_MEAN_RTOL, list(zip(ref, got))
    assert ref != got  # bf16 really ran: its rounding shows in the losses


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fused_optimizer_step_equals_the_unfused_one(optimizer, tiny):
    """From the same weights and the same gradients, ten steps of the fused optimizer (one
    kernel for all parameters) land where the default (foreach) one does, to float rounding."""
    cfg = sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke", optimizer=optimizer,
                         lr=0.05, weight_decay=5e-4, **tiny)
    params = prepare(cfg, CUDA)[0].method.trainable_parameters()
    copies = [[p.detach().clone().requires_grad_() for p in params] for _ in range(2)]
    fused = build_optimizer(dataclasses.replace(cfg, fused_optimizer="on"), copies[0], CUDA)
    plain = build_optimizer(dataclasses.replace(cfg, fused_optimizer="off"), copies[1], CUDA)
    assert fused.param_groups[0]["fused"] and not plain.param_groups[0].get("fused")
    g = torch.Generator(device=CUDA).manual_seed(0)
    for _ in range(10):
        for a, b in zip(*copies):
            a.grad = torch.randn(a.shape, generator=g, device=CUDA)
            b.grad = a.grad.clone()
        fused.step()
        plain.step()
    moved = 0
    for p, a, b in zip(params, *copies):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a - b).abs().max()
        moved += not torch.equal(a, p)
    assert moved == len(params)
    for sa, sb_ in zip(fused.state.values(), plain.state.values()):
        for k in sa:
            assert torch.allclose(torch.as_tensor(sa[k]).float(), torch.as_tensor(sb_[k]).float(),
                                  rtol=1e-5, atol=1e-7), k


def _same_checkpoints(a: Path, b: Path) -> list[str]:
    """The names of the tensors (weights, buffers, optimizer state) that differ."""
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    bad = [k for k, v in ca["method"].items() if not torch.equal(v, cb["method"][k])]
    for i, (sa, sb_) in enumerate(zip(ca["optimizer"]["state"].values(),
                                      cb["optimizer"]["state"].values())):
        bad += [f"optimizer state {i} {k}" for k in sa
                if not torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb_[k]))]
    return bad


@pytest.mark.parametrize("method", ["mean_teacher", "cps"])
def test_resume_is_exact_on_cuda_with_deterministic_kernels(method, tiny, tiny_scenes, tmp_path):
    """With the CUDA defaults (bf16, channels-last, fused optimizer) and PyTorch's deterministic
    kernels, a run stopped after 4 steps and resumed ends bit for bit where an unbroken run
    does. Where some kernel has no deterministic version, PyTorch names it and this test says
    so (xfail) instead of comparing runs that could not match."""
    cfg = _config(method, tiny, tiny_scenes, steps=8, eval_every=4, log_every=2)
    torch.use_deterministic_algorithms(True)
    try:
        whole = fit(cfg, tmp_path / "whole", progress=False, device="cuda")
        fit(cfg, tmp_path / "again", progress=False, device="cuda")
        fit(cfg, tmp_path / "parts", progress=False, device="cuda", stop_after=4)
        resumed = fit(cfg, tmp_path / "parts", resume=True, progress=False, device="cuda")
    except RuntimeError as e:
        if "deterministic" not in str(e):
            raise
        pytest.xfail(f"a kernel has no deterministic CUDA version: {str(e).splitlines()[0]}")
    finally:
        torch.use_deterministic_algorithms(False)
    differ = _same_checkpoints(tmp_path / "whole", tmp_path / "again")
    assert not differ, f"two unbroken runs differ (a kernel is not deterministic): {differ[:5]}"
    assert resumed["finished"]
    assert not _same_checkpoints(tmp_path / "whole", tmp_path / "parts")
    assert computed(whole["history"]) == computed(resumed["history"])


# Under torchrun with one process the engine would train as a single process (world size 1 is
# not distributed), so this driver takes the multi-process path anyway: it joins an NCCL group
# of one, shards (into one share), converts batch norm to SyncBatchNorm and wraps the step in
# DistributedDataParallel, and writes what it built.
SYNC_DRIVER = """
import json, sys
import torch.distributed as dist
import torch.nn as nn
import semibook.data as data
from tests.conftest import tiny_scenes_loader
data._LOADERS["fashion-scenes"] = tiny_scenes_loader(sys.argv[2])
from semibook.engine import distributed
if sys.argv[1] == "ddp":
    distributed.Dist.active = property(lambda self: True)
wrap = distributed.wrap
def recording(method, d, device, segmentation):
    step = wrap(method, d, device, segmentation)
    norms = [type(m).__name__ for m in method.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with open(sys.argv[3], "w") as f:
        json.dump({"norms": norms, "step": type(step).__name__, "world": d.world,
                   "backend": dist.get_backend() if dist.is_initialized() else None,
                   "device": str(device)}, f)
    return step
distributed.wrap = recording
from semibook.__main__ import main
sys.exit(main(sys.argv[4:]))
"""


def test_one_process_torchrun_trains_with_syncbatchnorm(isolated, fake_fashion):
    if not torch.distributed.is_nccl_available():
        pytest.skip("this PyTorch has no NCCL")
    driver = isolated / "sync_driver.py"
    driver.write_text(SYNC_DRIVER)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def train(how: str, launcher: list[str]) -> tuple[dict, dict]:
        args = [str(driver), how, str(fake_fashion), str(isolated / f"{how}.json"), "run",
                "--method", "supervised", "--dataset", "fashion-scenes", "--labels", "16",
                "--profile", "smoke", "--steps", "6", "--eval-every", "6", "--device", "cuda",
                "--quiet", "--json", "--run-dir", str(isolated / how)]
        r = subprocess.run(launcher + args, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return (json.loads((isolated / f"{how}.json").read_text()),
                json.loads((isolated / how / "results.json").read_text()))

    built, res = train("ddp", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                               "--nproc_per_node", "1"])
    assert built["backend"] == "nccl" and built["world"] == 1 and built["device"] == "cuda:0"
    assert built["step"] == "DistributedDataParallel"
    assert built["norms"] and set(built["norms"]) == {"SyncBatchNorm"}
    assert res["finished"] and 0 <= res["last"]["miou"] <= 1
    # the same run in one plain process: SyncBatchNorm over one process normalises with the
    # batch's own statistics, so the losses agree up to the GPU's non-deterministic kernels
    plain, one = train("plain", [sys.executable])
    assert plain["step"] == "method" and "SyncBatchNorm" not in plain["norms"]
    losses = lambda h: [row["loss"] for row in h if row["kind"] == "train"]
    assert losses(res["history"]) == pytest.approx(losses(one["history"]), rel=2e-2)


def test_compile_runs_a_methods_step(tiny):
    """``compile=True`` compiles the networks in place; its steps train like the eager ones
    (the same first loss to bf16 rounding, finite losses after)."""
    cfg = sb.make_config("mean_teacher", "fashion-mnist", 20, 0, "smoke", **tiny)
    eager = step_losses(cfg, CUDA, 3)
    compiled_cfg = dataclasses.replace(cfg, compile=True)
    tr, _ = prepare(compiled_cfg, CUDA)
    nets = [m for m in tr.method.children() if isinstance(m, nn.Module)]
    assert nets and all(getattr(m, "_compiled_call_impl", None) is not None for m in nets)
    opt = build_optimizer(compiled_cfg, tr.method.trainable_parameters(), CUDA)
    before = [p.detach().clone() for p in tr.method.trainable_parameters()]
    losses = [float(train_step(tr, opt, s)[0]) for s in range(3)]
    assert all(map(math.isfinite, losses)), losses
    assert losses[0] == pytest.approx(eager[0], rel=BF16_FIRST_RTOL)
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.method.trainable_parameters()))
