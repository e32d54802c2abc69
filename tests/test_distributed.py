"""Multi-process training: ``torchrun --nproc_per_node 2 -m semibook run ...`` on the CPU with
gloo, against one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import semibook as sb
from semibook.config import ConfigError
from semibook.engine import distributed
from semibook.engine.checkpoint import load_checkpoint
from semibook.engine.distributed import Dist
from semibook.engine.fit import prepare

ROOT = Path(__file__).resolve().parents[1]

# Per-rank batch norm normalises each rank's half of the batch with that half's statistics,
# so a 2-process run of a BN network is a different computation from one process on the whole
# batch (on CUDA, SyncBatchNorm makes them the same; PyTorch has no CPU SyncBatchNorm). For the
# equivalence test the WRN's batch norm is therefore taken out (only its affine part is
# kept), in both runs:
# what remains to compare is exactly the sharding of the global batch and the gradient
# averaging of DistributedDataParallel. Plain SGD rather than the recipe's Adam: Adam's first
# steps move each weight by about lr times the sign of its gradient, so float-rounding noise in
# near-zero gradients shows up as lr-sized differences, and Adam would not notice gradients
# summed instead of averaged; SGD's update is linear in the gradient.
NO_BN = """
import sys
import torch.nn as nn
class NoNorm(nn.BatchNorm2d):  # the same parameters, no normalisation
    def forward(self, x):
        return x * self.weight[None, :, None, None] + self.bias[None, :, None, None]
nn.BatchNorm2d = NoNorm
import semibook.config as config
make_config = config.make_config
config.make_config = lambda *a, **kw: make_config(*a, **kw, optimizer="sgd", lr=0.05)
from semibook.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def run(cmd, timeout=400):
    r = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def torchrun(n, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(n), *args]


def common(fake_fashion, run_dir, method="supervised"):
    return ["run", "--method", method, "--labels", "20", "--profile", "smoke", "--steps", "4",
            "--eval-every", "4", "--eval-size", "0", "--data-root", str(fake_fashion),
            "--device", "cpu", "--quiet", "--json", "--run-dir", str(run_dir)]


def test_two_processes_equal_one_with_the_same_global_batch(isolated, fake_fashion):
    driver = isolated / "no_bn.py"
    driver.write_text(NO_BN)
    one, two = isolated / "one", isolated / "two"
    run([sys.executable, str(driver), *common(fake_fashion, one)])
    r = run(torchrun(2, str(driver), *common(fake_fashion, two)))
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("{")]) == 1  # rank 0 only
    a, b = load_checkpoint(one / "checkpoint.pt"), load_checkpoint(two / "checkpoint.pt")
    assert a["step"] == b["step"] == 4
    init = prepare(sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke",
                                  data_root=str(fake_fashion)), torch.device("cpu"))[0]
    moved = 0
    for k, v in a["method"].items():
        assert torch.allclose(v, b["method"][k], rtol=1e-4, atol=1e-6), k
        moved += not torch.equal(v, init.method.state_dict()[k]) if k in \
            init.method.state_dict() else 0
    assert moved > 0  # the runs trained
    ha = [json.loads(x) for x in (one / "history.jsonl").read_text().splitlines()]
    hb = [json.loads(x) for x in (two / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ha] == [r["step"] for r in hb]  # written once, by rank 0
    for ra, rb in zip(ha, hb):
        if ra["kind"] == "train":
            assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-4)


def test_torchrun_trains_a_teacher_method_and_writes_once(isolated, fake_fashion):
    two = isolated / "mt"
    r = run(torchrun(2, "-m", "semibook", *common(fake_fashion, two, "mean_teacher")))
    res = json.loads((two / "results.json").read_text())
    assert res["finished"] and res["last"]["step"] == 4
    evals = [x for x in res["history"] if x["kind"] == "eval"]
    assert len(evals) == 1 and "teacher-vs-student" in evals[0]["agreement"]
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("{")]) == 1
    assert sorted(p.name for p in two.iterdir()) == ["checkpoint.pt", "config.json",
                                                     "history.jsonl", "results.json",
                                                     "run.lock", "semibook-run.json"]


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_rank_shares_make_up_the_global_batch(task, tiny, tiny_scenes):
    if task == "classification":
        cfg = sb.make_config("mean_teacher", "fashion-mnist", 20, 0, "smoke", **tiny)
    else:
        cfg = sb.make_config("mean_teacher", "fashion-scenes", 16, 0, "smoke", **tiny_scenes)
    data = prepare(cfg, torch.device("cpu"))[0].data
    whole = data.batch(3, 1, 1)
    parts = []
    for rank in (0, 1):
        data.dist = Dist(rank, 2)
        parts.append(data.batch(3, 1, 1))
    for get in (lambda b: b.x_l, lambda b: b.x_u, lambda b: b.y_l, lambda b: b.y_u):
        assert torch.equal(torch.cat([get(p) for p in parts]), get(whole))
    assert len(parts[0].y_l) == cfg.batch_l // 2
    # the method's own random draws differ between ranks; rank 0 keeps the 1-process ones
    assert torch.equal(torch.rand(4, generator=parts[0].gen), torch.rand(4, generator=whole.gen))
    assert not torch.equal(torch.rand(4, generator=parts[1].gen),
                           torch.rand(4, generator=whole.gen))


def test_multi_process_runs_refuse_what_they_cannot_split(tiny_scenes, tiny):
    cfg = sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke", batch_l=5, **tiny)
    method = prepare(cfg, torch.device("cpu"))[0].method
    with pytest.raises(ConfigError, match="batch_l 5 is not divisible by the 2 processes"):
        distributed.check(cfg, method, Dist(0, 2))
    distributed.check(cfg, method, Dist(0, 1))
    cfg = sb.make_config("adversarial", "fashion-scenes", 16, 0, "smoke", **tiny_scenes)
    method = prepare(cfg, torch.device("cpu"))[0].method
    distributed.check(cfg, method, Dist(1, 2))  # a second player is synchronised, not refused


# Each rank saves its discriminator after every step of the adversarial method: the second
# player trains outside DistributedDataParallel, on each rank's share of the batch, so the ranks
# stay equal only if its gradients are averaged over them.
D_SAVER = """
import os, sys
import torch
import semibook.data as data
from tests.conftest import tiny_scenes_loader
data._LOADERS["fashion-scenes"] = tiny_scenes_loader(sys.argv[1])
from semibook.methods.adversarial import Adversarial
after = Adversarial.after_step
def saving(self, step):
    logs = after(self, step)
    torch.save({k: v.clone() for k, v in self.D.state_dict().items()},
               os.path.join(sys.argv[2], f"D_rank{os.environ.get('RANK', '0')}_step{step}.pt"))
    return logs
Adversarial.after_step = saving
from semibook.__main__ import main
sys.exit(main(sys.argv[3:]))
"""


def test_torchrun_keeps_the_discriminator_equal_on_every_rank(isolated, fake_fashion):
    driver, out = isolated / "d_saver.py", isolated / "d"
    driver.write_text(D_SAVER)
    out.mkdir()
    args = ["run", "--method", "adversarial", "--dataset", "fashion-scenes", "--labels", "16",
            "--profile", "smoke", "--steps", "3", "--eval-every", "3", "--device", "cpu",
            "--quiet", "--run-dir", str(isolated / "adv")]
    env_path = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    r = subprocess.run(torchrun(2, str(driver), str(fake_fashion), str(out), *args), cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": env_path}, capture_output=True,
                       text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((isolated / "adv" / "results.json").read_text())
    assert res["finished"] and "confident-mask" in res["history"][-1]["agreement"]
    first = torch.load(out / "D_rank0_step0.pt")
    last = {rank: torch.load(out / f"D_rank{rank}_step2.pt") for rank in (0, 1)}
    for k in first:
        assert torch.equal(last[0][k], last[1][k]), k  # the same D on both ranks
    assert any(not torch.equal(first[k], last[0][k]) for k in first)  # and it trained
