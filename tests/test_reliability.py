"""Reliability: a run killed at any moment resumes to the very weights and history of an
unbroken run; non-finite losses stop (or are skipped and counted); bad input is one line on the
command line, exits non-zero and overwrites nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import semibook as sb
from semibook.config import ConfigError
from semibook.engine.checkpoint import load_checkpoint, save_checkpoint
from semibook.checks import NonFiniteLossError
from semibook.engine.fit import fit, prepare
from tests.conftest import computed

ROOT = Path(__file__).resolve().parents[1]

# Runs the real CLI in a fresh process after installing test doubles: the tiny fashion-scenes
# loader (conftest.tiny_scenes_loader) and, with --nan-at, a supervised step whose loss is NaN.
DRIVER = """
import sys
args = sys.argv[1:]
if args[0] == "--scenes":
    import semibook.data as data
    from tests.conftest import tiny_scenes_loader
    data._LOADERS["fashion-scenes"] = tiny_scenes_loader(args[1])
    args = args[2:]
if args[0] == "--nan-at":
    from semibook.methods.supervised import Supervised
    bad, orig = int(args[1]), Supervised.training_step
    def step(self, batch, s):
        loss, logs = orig(self, batch, s)
        return (loss * float("nan") if s == bad else loss), logs
    Supervised.training_step = step
    args = args[2:]
from semibook.__main__ import main
sys.exit(main(args))
"""


def cli(args, prefix=(), wait=True):
    cmd = [sys.executable, "-c", DRIVER, *prefix, *args] if prefix else \
        [sys.executable, "-m", "semibook", *args]
    p = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if not wait:
        return p
    out, err = p.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def assert_same(a, b, where="state"):
    """Exact equality of nested checkpoint / results structures."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), (where, set(a) ^ set(b))
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def same_run(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    for key in ("step", "config", "method", "optimizer", "extra_optimizers", "log_sums",
                "log_count"):
        assert_same(ca[key], cb[key], key)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert ra["finished"] and rb["finished"]
    assert_same(computed(ra["history"]), computed(rb["history"]), "history")
    for key in ("best", "last", "samples", "split_sha256"):
        assert_same(ra.get(key), rb.get(key), key)


CASES = {
    # classification: the EMA teacher, the agreement history, Adam's moments
    "mean_teacher-fashion": (["--method", "mean_teacher", "--dataset", "fashion-mnist",
                              "--labels", "20", "--steps", "8", "--eval-every", "4"], False),
    # segmentation: a U-Net student and its EMA teacher, SGD with the poly schedule
    "mean_teacher-scenes": (["--method", "mean_teacher", "--dataset", "fashion-scenes",
                             "--labels", "16", "--steps", "4", "--eval-every", "2"], True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_then_resume_equals_an_unbroken_run(case, isolated, fake_fashion):
    args, scenes = CASES[case]
    args = ["run", *args, "--profile", "smoke", "--eval-size", "0", "--data-root",
            str(fake_fashion), "--quiet", "--no-results", "--device", "cpu"]
    prefix = ("--scenes", str(fake_fashion)) if scenes else ()
    whole, broken = isolated / "whole", isolated / "broken"
    ref = cli([*args, "--run-dir", str(whole)], prefix, wait=False)
    victim = cli([*args, "--run-dir", str(broken)], prefix, wait=False)
    ckpt = broken / "checkpoint.pt"
    deadline = time.time() + 240
    while victim.poll() is None and not ckpt.exists() and time.time() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    steps = int(args[args.index("--steps") + 1])
    assert load_checkpoint(ckpt)["step"] < steps and not (broken / "results.json").exists()
    # what a kill inside a checkpoint write or a history write leaves behind: a torn temporary
    # file next to the last good checkpoint, a torn last history line
    raw = ckpt.read_bytes()
    (broken / "checkpoint.pt.tmp").write_bytes(raw[: len(raw) // 2])
    with open(broken / "history.jsonl", "a") as f:
        f.write('{"kind": "train", "st')
    resumed = cli([*args, "--run-dir", str(broken), "--resume"], prefix)
    assert resumed.returncode == 0, resumed.stderr
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    same_run(whole, broken)
    assert not (broken / "checkpoint.pt.tmp").exists()  # the resume's claim removed it


def test_a_write_interrupted_midway_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"config": {"method": "m"}, "step": 1, "w": torch.ones(3)})
    real = torch.save

    def dies_midway(obj, f):  # writes part of the file, then Ctrl-C
        real(obj, f)
        f.truncate(f.tell() // 2)
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"config": {"method": "m"}, "step": 2, "w": torch.zeros(3)})
    monkeypatch.setattr(torch, "save", real)
    state = load_checkpoint(path, "m")
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    # the torn temporary file is removed (only a killed process leaves one; see the test above)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def cfg_for(method, tiny, **kw):
    return sb.make_config(method, "fashion-mnist", 20, 0, "smoke",
                          **{**tiny, "steps": 8, "eval_every": 8, "log_every": 4, **kw})


def test_resume_between_two_log_rows_keeps_their_averages(tiny, tmp_path):
    # checkpoints every 2 steps, train rows every 4: the resumed run must average the same
    # steps into its row at step 4 as the unbroken run
    cfg = cfg_for("supervised", tiny, checkpoint_every=2)
    whole = fit(cfg, tmp_path / "whole", progress=False, device="cpu")
    fit(cfg, tmp_path / "parts", progress=False, device="cpu", stop_after=3)
    assert load_checkpoint(tmp_path / "parts" / "checkpoint.pt")["log_count"] == 2
    resumed = fit(cfg, tmp_path / "parts", resume=True, progress=False, device="cpu")
    rows = [[r for r in res["history"] if r["kind"] == "train"] for res in (whole, resumed)]
    assert rows[0] == rows[1] and [r["step"] for r in rows[0]] == [4, 8]


def nan_at(monkeypatch, steps):
    from semibook.methods.supervised import Supervised
    orig = Supervised.training_step

    def step(self, batch, s):
        loss, logs = orig(self, batch, s)
        return (loss * float("nan") if s in steps else loss), logs
    monkeypatch.setattr(Supervised, "training_step", step)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    nan_at(monkeypatch, {5})
    cfg = cfg_for("supervised", tiny, checkpoint_every=2)
    with pytest.raises(NonFiniteLossError) as e:
        fit(cfg, tmp_path / "r", progress=False, device="cpu")
    msg = str(e.value)
    assert "step 5" in msg and "loss=nan" in msg and "loss_sup=" in msg
    assert str(tmp_path / "r" / "checkpoint.pt") in msg and "\n" not in msg
    state = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["method"].values() if v.is_floating_point())


def test_skipped_non_finite_steps_change_nothing_and_are_counted(tiny, tmp_path, monkeypatch):
    nan_at(monkeypatch, set(range(8)))  # every step: the weights must stay as initialised
    cfg = cfg_for("supervised", tiny, skip_nonfinite=True)
    res = fit(cfg, tmp_path / "r", progress=False, device="cpu")
    assert res["finished"] and res["skipped_nonfinite"] == 8
    assert [r["skipped_nonfinite"] for r in res["history"] if r["kind"] == "train"] == [4, 4]
    fresh = prepare(cfg, torch.device("cpu"))[0].method.state_dict()
    assert_same(load_checkpoint(tmp_path / "r" / "checkpoint.pt")["method"], fresh)


def test_skipped_steps_are_counted_where_they_happen(tiny, tmp_path, monkeypatch):
    nan_at(monkeypatch, {1, 6})
    res = fit(cfg_for("supervised", tiny, skip_nonfinite=True), tmp_path / "r", progress=False,
              device="cpu")
    train = [r for r in res["history"] if r["kind"] == "train"]
    assert [r["skipped_nonfinite"] for r in train] == [1, 1] and res["skipped_nonfinite"] == 2
    assert all(r["loss"] == r["loss"] for r in train)  # averages over the finite steps only


def one_line_error(r, code=2):
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_cli_non_finite_loss_is_one_line(isolated, fake_fashion):
    run = isolated / "r"
    r = cli(["run", "--method", "supervised", "--labels", "20", "--profile", "smoke", "--steps",
             "6", "--eval-every", "2", "--data-root", str(fake_fashion), "--quiet",
             "--run-dir", str(run)], prefix=("--nan-at", "3"))
    line = one_line_error(r, code=3)
    assert "step 3" in line and "loss_sup=" in line and "--skip-nonfinite" in line
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 2


def test_cli_unknown_architecture_lists_the_choices(isolated, fake_fashion):
    line = one_line_error(cli(["run", "--method", "supervised", "--arch", "resnet-50",
                               "--data-root", str(fake_fashion)]))
    assert "'resnet-50'" in line and "wrn-28-2" in line
    line = one_line_error(cli(["run", "--method", "supervised", "--dataset", "fashion-scenes",
                               "--arch", "vgg"]))
    assert "'vgg'" in line and "unet-r18" in line
    assert not (isolated / "runs").exists()


def _config(fake_fashion, **kw):
    return sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke",
                          data_root=str(fake_fashion), **kw)


def test_cli_run_folder_with_another_config_is_refused(isolated, fake_fashion):
    run = isolated / "r"
    run.mkdir()
    (run / "config.json").write_text(_config(fake_fashion, steps=99).to_json())
    (run / "history.jsonl").write_text('{"kind": "train", "step": 1}\n')
    before = snapshot(run)
    line = one_line_error(cli(["run", "--method", "supervised", "--labels", "20", "--profile",
                               "smoke", "--data-root", str(fake_fashion), "--run-dir", str(run)]))
    assert str(run) in line and "differs in: steps" in line and "--overwrite" in line
    assert snapshot(run) == before
    line = one_line_error(cli(["run", "--method", "supervised", "--labels", "20", "--profile",
                               "smoke", "--data-root", str(fake_fashion), "--run-dir", str(run),
                               "--resume"]))
    assert "differs in: steps" in line and snapshot(run) == before


def test_cli_checkpoint_of_another_method_is_refused(isolated, fake_fashion):
    run = isolated / "r"
    run.mkdir()
    cfg = _config(fake_fashion)
    (run / "config.json").write_text(cfg.to_json() + "\n")
    other = sb.make_config("mean_teacher", "fashion-mnist", 20, 0, "smoke")
    save_checkpoint(run / "checkpoint.pt", {"config": other.to_dict(), "step": 4, "method": {}})
    before = snapshot(run)
    line = one_line_error(cli(["run", "--method", "supervised", "--labels", "20", "--profile",
                               "smoke", "--data-root", str(fake_fashion), "--run-dir", str(run),
                               "--resume"]))
    assert str(run / "checkpoint.pt") in line and "'mean_teacher'" in line
    assert "'supervised'" in line and snapshot(run) == before


def test_checkpoint_of_another_shape_names_the_tensor(tiny, tmp_path):
    cfg = cfg_for("supervised", tiny, steps=2, eval_every=2)
    fit(cfg, tmp_path / "r", progress=False, device="cpu", stop_after=2)
    path = tmp_path / "r" / "checkpoint.pt"
    state = load_checkpoint(path)
    key = next(k for k, v in state["method"].items() if v.ndim == 4)
    state["method"][key] = torch.zeros(3, 3, 3, 3)
    save_checkpoint(path, state)
    with pytest.raises(ConfigError, match=rf"{key} has shape \(3, 3, 3, 3\).*expects"):
        fit(cfg, tmp_path / "r", resume=True, progress=False, device="cpu")
    del state["method"][key]
    save_checkpoint(path, state)
    with pytest.raises(ConfigError, match=rf"1 tensors missing.*missing {key}"):
        fit(cfg, tmp_path / "r", resume=True, progress=False, device="cpu")


def test_unreadable_checkpoint_is_one_line(tiny, tmp_path):
    cfg = cfg_for("supervised", tiny, steps=2, eval_every=2)
    fit(cfg, tmp_path / "r", progress=False, device="cpu", stop_after=2)
    path = tmp_path / "r" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ConfigError, match="cannot load checkpoint") as e:
        fit(cfg, tmp_path / "r", resume=True, progress=False, device="cpu")
    assert "\n" not in str(e.value)


def test_split_file_with_ids_outside_the_data_is_refused(tmp_path):
    from semibook.data.splits import read_split
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"train_size": 10, "labeled": [1, 2, 10]}))
    with pytest.raises(ConfigError, match=r"s\.json: labeled ids outside 0\.\.9"):
        read_split(bad)
    bad.write_text(json.dumps({"train_size": 10, "labeled": [1, 1]}))
    with pytest.raises(ConfigError, match="repeat"):
        read_split(bad)


def test_ctrl_c_in_the_loop_is_taken_at_the_step_end_and_a_second_one_at_once(terminal_sigint):
    """Python's own SIGINT handler raises wherever the program is, and inside a finaliser that
    exception is printed and dropped; while the loop trains, the first Ctrl-C is recorded and
    raised by the loop between steps, and a second one raises at once."""
    from semibook.engine import interrupt
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupt.deferred() as ctrl_c:
        os.kill(os.getpid(), signal.SIGINT)
        ctrl_c_seen_mid_step = sum(range(1000))  # the step goes on: no exception here
        assert ctrl_c.requested and ctrl_c_seen_mid_step == 499500
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.check()
        with pytest.raises(KeyboardInterrupt):  # the second Ctrl-C: now
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10**6):  # the handler runs between bytecodes
                pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupt.deferred() as ctrl_c:  # a new loop starts with no request
        ctrl_c.check()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # where Ctrl-C is ignored, it stays ignored
    with interrupt.deferred() as ctrl_c:
        os.kill(os.getpid(), signal.SIGINT)
        ctrl_c.check()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
