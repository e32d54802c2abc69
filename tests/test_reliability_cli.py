"""What an adversarial user meets on the command line (issue 16): each case ends with exactly one
line naming the file and the fix, a fixed exit status (2 bad input, 3 non-finite losses, 130
Ctrl-C), the folder it names unchanged and no temporary file left behind.

The table runs ``python -m semibook`` in a subprocess; the cases that need a fault the user
cannot cause on demand (a full disk, a read-only file system, NaN losses) run the same ``main``
through :data:`DRIVER`, which installs the fault first. Runs use the smoke profile on the tiny
fake Fashion-MNIST tree, and the run folder the resume cases start from is trained once per
module (in this process) and copied.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

import semibook as sb
from semibook.config import ConfigError
from semibook.data import load_dataset
from semibook.engine import rundir
from semibook.engine.checkpoint import load_checkpoint, save_checkpoint
from semibook.engine.fit import fit
from semibook.engine.results import load_results
from tests.conftest import write_idx

ROOT = Path(__file__).resolve().parents[1]
ENV_DIRS = ("SEMIBOOK_RUNS", "SEMIBOOK_RESULTS", "SEMIBOOK_SPLITS", "SEMIBOOK_CACHE")

# main() after installing a fault: --nan-at all|S,S (the supervised loss is NaN at those
# steps), --full-disk NAME (fsync of NAME's temporary file fails with ENOSPC, as a full disk
# makes a write fail), --read-only DIR (opening a file under DIR for writing fails with EROFS),
# --file-limit BYTES (no file may grow past BYTES: every write beyond fails, as on a full disk).
DRIVER = """
import builtins, errno, os, sys
args = sys.argv[1:]
while args[0] in ("--nan-at", "--full-disk", "--read-only", "--file-limit"):
    kind, arg, args = args[0], args[1], args[2:]
    if kind == "--file-limit":
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(arg), resource.RLIM_INFINITY))
    elif kind == "--nan-at":
        from semibook.methods.supervised import Supervised
        orig = Supervised.training_step
        def step(self, batch, s, orig=orig, arg=arg):
            loss, logs = orig(self, batch, s)
            bad = arg == "all" or str(s) in arg.split(",")
            return (loss * float("nan") if bad else loss), logs
        Supervised.training_step = step
    elif kind == "--full-disk":
        real_fsync = os.fsync
        def fsync(fd, name=arg + "."):
            base = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
            if base.startswith(name) and base.endswith(".tmp"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)
        os.fsync = fsync
    else:
        folder = os.path.abspath(arg)
        def refuse(path):
            if os.path.abspath(path).startswith(folder + os.sep):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        real_open, real_os_open = builtins.open, os.open
        def open_(file, mode="r", *a, **k):
            if any(c in mode for c in "wax+"):
                refuse(file)
            return real_open(file, mode, *a, **k)
        def os_open(path, flags, *a, **k):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                refuse(path)
            return real_os_open(path, flags, *a, **k)
        builtins.open, os.open = open_, os_open
from semibook.__main__ import main
sys.exit(main(args))
"""

def run_args(steps: int = 4, eval_every: int = 2) -> list[str]:
    return ["run", "--method", "supervised", "--labels", "20", "--profile", "smoke", "--steps",
            str(steps), "--eval-every", str(eval_every), "--quiet", "--no-results", "--device",
            "cpu"]


RUN = run_args()


def cli(args, tmp, faults=(), wait=True):
    """The command line in a subprocess whose runs, results, splits and cache lie in ``tmp``."""
    env = {**os.environ, **{v: str(tmp / v.lower()) for v in ENV_DIRS},
           "SEMIBOOK_NO_DOWNLOAD": "1"}
    env.pop("SEMIBOOK_DATA", None)
    cmd = [sys.executable, "-c", DRIVER, *faults, *args] if faults else \
        [sys.executable, "-m", "semibook", *args]
    cmd = [str(a) for a in cmd]
    # a process started in the background by a shell without job control (`cmd &` in a script,
    # nohup) ignores SIGINT and passes that on: the command line gets Ctrl-C as a terminal gives it
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if not wait:
        return p
    out, err = p.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def one_line(r, code: int) -> str:
    """The single line a failed command printed (stdout and stderr together)."""
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stdout + r.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes; the lock file's are the id of the process that last held it."""
    return {str(p.relative_to(folder)): b"" if p.name == rundir.LOCK else p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def base_config(fake_fashion, **kw):
    return sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke",
                          data_root=str(fake_fashion), steps=4, eval_every=2, **kw)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, fake_fashion) -> Path:
    """A run folder of ``RUN`` stopped at its checkpoint of step 2 (of 4), as semibook wrote
    them before the marker existed: config.json, checkpoint.pt, history.jsonl, results.json."""
    tmp = tmp_path_factory.mktemp("stopped")
    with pytest.MonkeyPatch.context() as mp:
        for v in ENV_DIRS:
            mp.setenv(v, str(tmp / v.lower()))
        fit(base_config(fake_fashion), tmp / "run", progress=False, device="cpu",
            stop_after=2)
    for name in (rundir.MARKER, rundir.LOCK):
        (tmp / "run" / name).unlink()
    assert sorted(os.listdir(tmp / "run")) == sorted(rundir.DATA_FILES)
    return tmp / "run"


class Evil:
    """Unpickling it runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _user_folder(tmp, ctx):
    d = tmp / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("my notes\n")
    (d / "data.csv").write_text("a,b\n1,2\n")
    (d / "config.json").write_text('{"mine": true}\n')
    return d, ["--run-dir", d, "--overwrite"]


def _files_without_config(tmp, ctx):
    d = tmp / "run"
    shutil.copytree(ctx["stopped"], d)
    (d / "config.json").unlink()
    return d, ["--run-dir", d]


def _files_without_config_overwrite(tmp, ctx):
    d, args = _files_without_config(tmp, ctx)
    return d, [*args, "--overwrite"]


def _marked_files_without_config(tmp, ctx):
    d, args = _files_without_config(tmp, ctx)
    (d / rundir.MARKER).write_text(rundir.MARKER_TEXT)
    return d, args


def _crafted_cifar(tmp, ctx):
    root = tmp / "cifar"
    shutil.copytree(ctx["cifar"], root)
    with open(root / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Evil(tmp / "ran"), b"labels": [0]}, f, protocol=2)
    return root, ["--dataset", "cifar10", "--method", "mixmatch", "--data-root", root]


def _all_labels(tmp, ctx):  # the fake tree has 400 training images
    return tmp, ["--method", "mixmatch", "--labels", "400"]


def _truncated_results(tmp, ctx):
    d = tmp / "semibook_results"  # the command's results folder (see cli)
    d.mkdir()
    text = json.dumps({"method": "supervised", "finished": True}, indent=1)
    (d / "fashion-mnist_250_supervised_seed0_full.json").write_text(text[: len(text) // 2])
    return d, ["reproduce", "classification", "--dry-run"]


def _resume_case(edit=None):
    def setup(tmp, ctx):
        d = tmp / "run"
        shutil.copytree(ctx["stopped"], d)
        if edit:
            edit(d, tmp)
        return d, ["--run-dir", d, "--resume"]
    return setup


def _bad_history_bytes(d, tmp):
    lines = (d / "history.jsonl").read_bytes().splitlines(keepends=True)
    (d / "history.jsonl").write_bytes(b"".join([b"\xff\xfe\x00garbage\n", *lines]))


def _malicious_checkpoint(d, tmp):
    save_checkpoint(d / "checkpoint.pt", {"config": {"method": "supervised"},
                                          "x": Evil(tmp / "ran")})


def _every_step_skipped(tmp, ctx):
    return tmp / "runs", ["--run-dir", tmp / "runs" / "r", "--skip-nonfinite"]


def _records_every_skip(folder, tmp):
    """The run folder records the skipped steps; no results file is written."""
    assert json.loads((folder / "r" / "results.json").read_text())["skipped_nonfinite"] == 4
    assert not (tmp / "semibook_results").exists()


@dataclass(frozen=True)
class Case:
    setup: Callable  # (tmp, ctx) -> (the folder the case is about, arguments)
    code: int  # exit status
    words: tuple[str, ...]  # what the one line must hold
    faults: tuple[str, ...] = ()  # DRIVER's options ({dir}: the folder)
    new: frozenset = frozenset()  # files the folder may gain (None: it is the run's own)
    early: bool = True  # refused before any split file or default run folder is written
    check: Callable | None = None  # more checks (folder, tmp)


RESUMED = frozenset({rundir.MARKER, rundir.LOCK})  # a resume marks an older folder as semibook's
CASES = {
    # 1. --overwrite deletes only what semibook wrote, so it refuses a folder of the user's
    "overwrite-user-folder": Case(_user_folder, 2, ("mine", "did not write", "data.csv",
                                                    "--run-dir")),
    # 2. semibook's file names without its marker or config.json: whose they are is unknown,
    # and --overwrite is refused too (issue 28: names alone never make a folder semibook's)
    "run-files-without-config": Case(_files_without_config, 2, (
        "neither semibook's marker semibook-run.json", "another --run-dir")),
    "run-files-without-config-overwrite": Case(_files_without_config_overwrite, 2, (
        "neither semibook's marker semibook-run.json", "another --run-dir")),
    # 2. in a folder with the marker, the same files are semibook's: --overwrite starts again
    "marked-run-files-without-config": Case(_marked_files_without_config, 2, (
        "no config.json", "--overwrite"), early=False),
    # 3. a crafted CIFAR-10 batch is refused without running its code
    "crafted-cifar-batch": Case(_crafted_cifar, 2, ("data_batch_1", "posix.system",
                                                    "replace it")),
    # 4. every image labeled leaves MixMatch nothing unlabeled: refused before any write
    "no-unlabeled-image": Case(_all_labels, 2, ("leaves no unlabeled image", "fewer labels")),
    # 5. a truncated results file
    "truncated-results-file": Case(_truncated_results, 2, (
        "fashion-mnist_250_supervised_seed0_full.json", "not a readable results file",
        "restore it")),
    # 5. a history file with bad bytes
    "history-with-bad-bytes": Case(_resume_case(_bad_history_bytes), 2, (
        "history.jsonl: line 1", "--overwrite"), early=False),
    # 5. a read-only run folder (a read-only file system: as root, chmod would not stop writes)
    "read-only-run-folder": Case(_resume_case(), 2, (
        "run.lock", "Read-only file system", "another --run-dir"), ("--read-only", "{dir}"),
        early=False),
    # 5. a full disk on the resume's first write: config.json's temporary file is removed
    "full-disk-on-resume": Case(_resume_case(), 2, (
        "config.json", "No space left on device", "--resume"), ("--full-disk", "config.json"),
        RESUMED, early=False),
    # 5. --seed -1, --device tpu, --device cuda without a GPU
    "negative-seed-run": Case(lambda tmp, ctx: (tmp, ["--seed", "-1"]), 2, ("non-negative",)),
    "negative-seed-reproduce": Case(lambda tmp, ctx: (tmp, [
        "reproduce", "classification", "--seeds", "0", "-1", "--dry-run"]), 2, (
        "non-negative", "-1")),
    "unknown-device": Case(lambda tmp, ctx: (tmp, ["--device", "tpu"]), 2, ("'tpu'", "cpu")),
    "cuda-without-gpu": Case(lambda tmp, ctx: (tmp, ["--device", "cuda"]), 2, (
        "no such CUDA GPU", "--device cpu")),
    # 7. the non-finite message's advice works on the stopped run (see the in-process test)
    "non-finite-loss": Case(_resume_case(), 3, (
        "step 3", "checkpoint.pt", "--resume --skip-nonfinite"), ("--nan-at", "3"), RESUMED,
        early=False),
    # 7. every step skipped is a failure, not a result
    "every-step-skipped": Case(_every_step_skipped, 3, ("every one of the 4 steps",
                                                        "results.json"), ("--nan-at", "all"),
                               None, early=False, check=_records_every_skip),
    # 8. a malicious checkpoint: refused, its code not run, no advice to unpickle it anyway
    "malicious-checkpoint": Case(_resume_case(_malicious_checkpoint), 2, (
        "checkpoint.pt: refused", "posix.system", "delete it"), early=False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_case_is_one_line_and_changes_nothing(name, tmp_path, stopped_run, fake_fashion,
                                                  fake_cifar):
    case = CASES[name]
    if name == "cuda-without-gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    folder, args = case.setup(tmp_path, {"stopped": stopped_run, "cifar": fake_cifar})
    folder.mkdir(parents=True, exist_ok=True)
    before = snapshot(folder)
    if args[0] != "reproduce":
        args = [*RUN, "--data-root", fake_fashion, *args]
    faults = [f.format(dir=folder) for f in case.faults]
    line = one_line(cli(args, tmp_path, faults), case.code)
    for w in case.words:
        assert w in line, (w, line)
    assert "weights_only" not in line and "Traceback" not in line
    if case.new is not None:
        after = snapshot(folder)
        assert set(after) - set(before) <= case.new, sorted(after)
        assert {k: after[k] for k in before} == before
    if case.check:
        case.check(folder, tmp_path)
    assert not [p for p in folder.rglob("*.tmp")]
    assert not (tmp_path / "ran").exists()  # no crafted file's code ran
    if case.early:  # nothing written where runs and splits go by default
        assert not (tmp_path / "semibook_runs").exists()
        assert not (tmp_path / "semibook_splits").exists()


def test_lock_held_by_another_process_stops_a_second_one(tmp_path, stopped_run, fake_fashion):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode()); print('locked', flush=True); time.sleep(60)"),
        str(run / rundir.LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run)
        line = one_line(cli([*RUN, "--data-root", fake_fashion, "--run-dir", run, "--resume"],
                            tmp_path), 2)
        assert f"in use by process {holder.pid}" in line and str(run / rundir.LOCK) in line
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder died without unlocking: the lock is free and the run continues
    fd = os.open(run / rundir.LOCK, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def test_full_disk_on_a_checkpoint_leaves_no_temporary_file(tmp_path, stopped_run,
                                                            fake_fashion):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    ckpt = (run / "checkpoint.pt").read_bytes()
    line = one_line(cli([*RUN, "--data-root", fake_fashion, "--run-dir", run, "--resume"],
                        tmp_path, ("--full-disk", "checkpoint.pt")), 2)
    assert f"{run / 'checkpoint.pt'}: No space left on device" in line and "--resume" in line
    assert (run / "checkpoint.pt").read_bytes() == ckpt
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]


def stop_a_long_run(tmp_path, fake_fashion, signum: int, code: int) -> str:
    """A run of 100,000 steps sent ``signum`` once its first checkpoint exists: its one line
    (status ``code``), after checking that it left no temporary file and a checkpoint."""
    run = tmp_path / "run"
    p = cli([*run_args(100000, 1), "--data-root", fake_fashion, "--run-dir", run], tmp_path,
            wait=False)
    try:
        deadline = time.time() + 60
        while p.poll() is None and not (run / "checkpoint.pt").exists() \
                and time.time() < deadline:
            time.sleep(0.02)
        p.send_signal(signum)
        out, err = p.communicate(timeout=60)
    finally:  # a run of 100,000 steps must not outlive a failed test
        if p.poll() is None:
            p.kill()
            p.wait()
    line = one_line(subprocess.CompletedProcess(p.args, p.returncode, out, err), code)
    assert str(run / "checkpoint.pt") in line and "--resume" in line
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]
    assert load_checkpoint(run / "checkpoint.pt", "supervised")["step"] >= 1
    return line


def test_ctrl_c_is_one_line_status_130_and_leaves_a_resumable_folder(tmp_path, fake_fashion):
    assert "interrupted" in stop_a_long_run(tmp_path, fake_fashion, signal.SIGINT, 130)


# In-process checks of the same code paths, where a subprocess would add only its start-up.

def test_a_folder_written_before_the_marker_resumes_and_gets_it(tmp_path, stopped_run,
                                                                fake_fashion):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    res = fit(base_config(fake_fashion), run, resume=True, progress=False, device="cpu")
    assert res["finished"] and [r["step"] for r in res["history"] if r["kind"] == "eval"] == [2, 4]
    assert (run / rundir.MARKER).read_text() == rundir.MARKER_TEXT


def test_overwrite_removes_only_semibooks_files(tmp_path, stopped_run, fake_fashion):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    (run / "checkpoint.pt.tmp").write_bytes(b"torn")
    res = fit(base_config(fake_fashion), run, overwrite=True, progress=False, device="cpu",
              stop_after=1)
    assert not res["finished"] and sorted(os.listdir(run)) == sorted(
        [rundir.MARKER, rundir.LOCK, "config.json", "history.jsonl", "results.json"])
    (run / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="keep.txt"):
        fit(base_config(fake_fashion), run, overwrite=True, progress=False, device="cpu")
    assert (run / "keep.txt").read_text() == "mine" and (run / "config.json").exists()


def test_skip_nonfinite_may_be_turned_on_when_resuming(tmp_path, stopped_run, fake_fashion):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    cfg = base_config(fake_fashion, skip_nonfinite=True)
    res = fit(cfg, run, resume=True, progress=False, device="cpu")
    assert res["finished"] and json.loads((run / "config.json").read_text())["skip_nonfinite"]
    options = [r for r in res["history"] if r["kind"] == "option"]
    assert options == [{"kind": "option", "step": 2, "skip_nonfinite": True}]
    # a results file keeps matching on the option: it is not the run without it
    from semibook.engine.results import same_config
    assert not same_config(res, base_config(fake_fashion)) and same_config(res, cfg)


def test_history_row_without_a_step_stops_the_resume(tmp_path, stopped_run, fake_fashion):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    with open(run / "history.jsonl", "r+") as f:
        rows = f.read().splitlines()
        f.seek(0)
        f.write("\n".join(['{"kind": "train"}', *rows]) + "\n")
    before = snapshot(run)
    with pytest.raises(ConfigError, match=r"history\.jsonl: line 1 is not a history row"):
        fit(base_config(fake_fashion), run, resume=True, progress=False, device="cpu")
    assert snapshot(run) == before


def test_cifar_batches_load_without_unpickling_arbitrary_objects(fake_cifar, tmp_path):
    from semibook.data.cifar import _batch, load_cifar10
    (x_tr, y_tr, x_te, y_te), _ = load_cifar10(str(fake_cifar))  # the genuine format
    assert x_tr.shape == (150, 3, 32, 32) and y_tr.tolist()[:3] == [0, 0, 0]
    x = np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072)
    for protocol in (2, 4, 5):  # numpy arrays as each protocol writes them
        (tmp_path / "b").write_bytes(pickle.dumps({b"data": x, b"labels": [3, 4]}, protocol))
        got, labels = _batch(tmp_path / "b")
        assert np.array_equal(got.reshape(2, -1), x) and labels.tolist() == [3, 4]
    marker = tmp_path / "ran"
    for evil in (Evil(marker), [Evil(marker)], {b"data": x, b"labels": Evil(marker)}):
        (tmp_path / "b").write_bytes(pickle.dumps(evil, protocol=2))
        with pytest.raises(ConfigError, match="refused global posix.system") as e:
            _batch(tmp_path / "b")
        assert "\n" not in str(e.value)
    assert not marker.exists()


def _fashion_tree(root: Path, x_train: np.ndarray, y_train: np.ndarray) -> Path:
    root.mkdir()
    write_idx(root / "train-images-idx3-ubyte.gz", x_train)
    write_idx(root / "train-labels-idx1-ubyte.gz", y_train)
    write_idx(root / "t10k-images-idx3-ubyte.gz", x_train[:20])
    write_idx(root / "t10k-labels-idx1-ubyte.gz", y_train[:20])
    return root


def test_label_values_outside_the_classes_are_refused(tmp_path):
    y = np.repeat(np.arange(10), 4)
    y[7] = 12
    x = np.random.default_rng(0).integers(0, 255, (40, 28, 28))
    root = _fashion_tree(tmp_path / "f", x, y)
    with pytest.raises(ConfigError, match=r"train-labels-idx1-ubyte\.gz: 1 label values outside "
                                          r"the 10 classes .*e\.g\. 12"):
        load_dataset("fashion-mnist", str(root))


def test_images_without_pixel_variance_are_refused(tmp_path):
    root = _fashion_tree(tmp_path / "f", np.full((40, 28, 28), 40), np.repeat(np.arange(10), 4))
    with pytest.raises(ConfigError, match="no pixel variance"):
        load_dataset("fashion-mnist", str(root))


def test_results_matching_still_counts_skip_nonfinite(tmp_path, monkeypatch):
    # only resuming ignores the option; a results file of another setting is another config
    cfg = sb.make_config("supervised", "fashion-mnist", 250, 0, "full")
    (tmp_path / "results").mkdir(exist_ok=True)
    f = tmp_path / "results" / "x.json"
    f.write_text(json.dumps({"method": "supervised", "dataset": "fashion-mnist", "labels": 250,
                             "seed": 0, "profile": "full", "finished": True, "history": [],
                             "config": {**cfg.to_dict(), "skip_nonfinite": True}}))
    from semibook.engine.resume import resume_diff
    from semibook.engine.results import same_config
    res = load_results(f)[0]
    assert not same_config(res, cfg) and resume_diff(cfg, res["config"]) == []
