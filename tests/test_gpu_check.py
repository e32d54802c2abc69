"""The prepared GPU check, ``tools/gpu_check.py``: its CPU dry run (what ``make gpu-check DRY=1``
runs) end to end on the tiny Fashion-MNIST tree, and its stage machinery (limits, the stages
file rewritten after every stage)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_prints_the_device_command_and_writes_every_stage(isolated, fake_fashion):
    out, carry = isolated / "out", isolated / "carry"
    r = subprocess.run([sys.executable, str(SCRIPT), "dry", "--offline", "--into", str(carry),
                        "--data-src", str(fake_fashion), "--out", str(out), "--work",
                        str(isolated / "work"), "--tasks", "classification"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    printed = dict(ln.split(": ", 1) for ln in r.stdout.splitlines()
                   if ln.startswith(("command: ", "carry: ", "timeout_s: ")))
    command, carried = printed["command"], printed["carry"].split()
    assert len(command) < 2000 and "tools/gpu_check.py run" in command and '"$OUT"' in command
    assert carried == [".whl", ".gpu-data"] and int(printed["timeout_s"]) <= 600
    for name in carried:  # ignored, so they travel only when a call carries them
        assert subprocess.run(["git", "check-ignore", "-q", f"{name}/"], cwd=ROOT).returncode == 0
    assert "segmentation-models-pytorch 0.6" in r.stdout and "NOT downloaded" in r.stdout
    total = re.search(r"^  total +([0-9.]+) MiB$", r.stdout, re.M)
    assert total and float(total.group(1)) < 64
    copied = carry / ".gpu-data" / "fashion-mnist"
    assert sorted(p.name for p in copied.iterdir()) == sorted(p.name
                                                             for p in fake_fashion.iterdir())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()

    state = json.loads((out / "gpu-check.json").read_text())
    assert state["finished"] and state["mode"] == "dry" and state["data"] == str(copied)
    assert state["code"]["git_commit"] == state["code"]["prepared_from"]["git_commit"] == head
    stages = {s["name"]: s for s in state["stages"]}
    assert list(stages) == ["install", "env", "tests", "smoke", "bench", "reproduce"]
    assert stages["install"]["status"] == "skipped (no wheels carried)"
    assert {n: s["status"] for n, s in stages.items() if n != "install"} == dict.fromkeys(
        ["env", "tests", "smoke", "bench", "reproduce"], "ok")
    tests = stages["tests"]["tests"]
    assert len(tests) >= 9 and all(t["outcome"] == "skipped" and "CUDA" in t["message"]
                                   for t in tests.values())
    assert any("resume_is_exact_on_cuda" in name for name in tests)
    smoke = stages["smoke"]["runs"]
    assert [s["method"] for s in smoke] == ["supervised", "mixmatch", "mean_teacher"]
    assert all(s["rc"] == 0 and s["steps"] == 2 and s["device"].startswith("cpu")
               for s in smoke)
    assert set(stages["bench"]["cases"]) == {"mixmatch-paper", "cps-paper", "supervised-full",
                                             "mixmatch-full", "mean_teacher-full"}
    runs = stages["reproduce"]["runs"]
    from semibook.reproduce import TABLE_LABELS
    first = f"fashion-mnist_{TABLE_LABELS['classification'][0]}_supervised_seed0"
    assert [(x["run"], x["status"]) for x in runs] == [(first, "done")]

    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.json", "cuda-tests.xml", "gpu-check.json", "gpu-check.log",
                     "results-dry-cpu.tar.gz"]
    # the dry run's cut-down runs (overrides) have results names of their own (issue 28)
    from semibook.config import make_config
    from semibook.engine.results import result_name
    n = TABLE_LABELS["classification"][0]
    dry_name = result_name(make_config("supervised", "fashion-mnist", n, 0, "full", steps=2,
                                       eval_every=2, eval_size=64))
    assert "_full-custom-" in dry_name
    with tarfile.open(out / "results-dry-cpu.tar.gz") as tar:
        assert tar.getnames() == [
            f"results/dry-cpu/{dry_name}",
            "results/dry-cpu/bench.json",
            # the bench's cases train on 250 labels, the table's runs on its smallest split
            *sorted(["splits/fashion-mnist_250_seed0.json",
                     f"splits/fashion-mnist_{n}_seed0.json"])]  # splits in name order
        res = json.load(tar.extractfile(tar.getnames()[0]))
    assert res["finished"] and res["config"]["steps"] == 2 and res["device"].startswith("cpu")
    assert not (ROOT / "results" / "dry-cpu").exists()


def _args(tmp_path, budget, **kw) -> argparse.Namespace:
    return argparse.Namespace(out=str(tmp_path / "out"), work=str(tmp_path / "work"),
                              carry_root=str(tmp_path), budget=budget, dry=True,
                              tasks=["classification"], jobs=None, max_runs=None, **kw)


def test_a_stage_is_stopped_at_its_limit_and_the_stages_file_follows(gpu_check, tmp_path):
    check = gpu_check.Check(_args(tmp_path, budget=16))
    stages_file = tmp_path / "out" / "gpu-check.json"
    seen = []

    def slow(rec, limit):  # asks for 60 s, gets what the budget leaves (16 - 10 reserved)
        seen.append(json.loads(stages_file.read_text())["stages"][-1]["status"])
        rec["status"] = check.status(check.sh(["sleep", "60"], limit))

    rec = check.stage("tests", slow)
    assert seen == ["running"]  # the file said which stage was running while it ran
    assert rec["status"] == "timeout" and rec["limit_s"] <= 6 and rec["wall_s"] < 20
    assert json.loads(stages_file.read_text())["stages"] == [rec]
    rec = check.stage("smoke", slow)  # nothing left of the budget: not started
    assert rec["status"].startswith("skipped") and "wall_s" not in rec
    assert [s["status"] for s in json.loads(stages_file.read_text())["stages"]] == [
        "timeout", rec["status"]]

    def broken(rec, limit):
        raise RuntimeError("a bug in a stage")

    check.deadline += 60
    rec = check.stage("bench", broken)  # the next stages still run
    assert rec["status"] == "error"
    assert "a bug in a stage" in (tmp_path / "out" / "gpu-check.log").read_text()


def test_a_dry_runs_limits_scale_with_the_load_and_a_cpu_run_says_why_it_stops(
        gpu_check, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check.os, "getloadavg", lambda: (3.0, 2.0, 1.0))
    monkeypatch.setattr(gpu_check.os, "cpu_count", lambda: 2)
    assert gpu_check.dry_scale() == {"load_1min": 3.0, "cpus": 2, "factor": 2.5}
    monkeypatch.setattr(gpu_check.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert gpu_check.dry_scale()["factor"] == 1.0  # idle: the idle limits
    monkeypatch.setattr(gpu_check.os, "getloadavg", lambda: (40.0, 2.0, 1.0))
    assert gpu_check.dry_scale()["factor"] == gpu_check.DRY_SCALE_MAX  # bounded
    check = gpu_check.Check(_args(tmp_path / "a", budget=1000, scale={"factor": 2.5}))
    rec = check.stage("smoke", lambda rec, limit: None)
    assert rec["limit_s"] == round(2.5 * gpu_check.STAGE_BUDGET["smoke"][1])
    assert "limits x2.5 of the idle ones" in check.summary()
    # a GPU run on a machine without CUDA: the env stage says why, and what to run instead
    check = gpu_check.Check(_args(tmp_path / "b", budget=1000, scale=None))
    check.dry = False

    def probe(cmd, limit):  # the probe's answer on a CPU machine
        Path(cmd[-1]).write_text(json.dumps({"cuda": False}))
        return 0
    monkeypatch.setattr(check, "sh", probe)
    rec = check.stage("env", check.probe)
    assert rec["status"] == "failed" and "make gpu-check DRY=1" in rec["reason"]
    assert "torch.cuda.is_available() is False" in check.summary()
    check.state.pop("stop")  # (a stop skips the later stages)
    monkeypatch.setattr(check, "sh", lambda cmd, limit: 1)  # the probe itself failed
    assert "probe failed (exit status 1" in check.stage("env", check.probe)["reason"]


def test_a_timed_out_test_stage_keeps_the_outcomes_pytest_printed(gpu_check):
    printed = ("tests/test_cuda.py::test_a[supervised] PASSED   [ 11%]\n"
               "tests/test_cuda.py::test_b XFAIL (a kernel has no deterministic version)\n"
               "tests/test_cuda.py::test_c FAILED   [ 33%]\n"
               "tests/test_cuda.py::test_d \nTerminated\n")
    assert gpu_check.verbose_outcomes(printed) == {
        "tests/test_cuda.py::test_a[supervised]": {"outcome": "passed", "message": ""},
        "tests/test_cuda.py::test_b": {"outcome": "xfailed", "message": ""},
        "tests/test_cuda.py::test_c": {"outcome": "failed", "message": ""}}
