import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "semibook", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def tree(path: Path):
    return sorted(p.relative_to(path) for p in path.rglob("*")) if path.exists() else []


@pytest.mark.parametrize("args,names", [
    (["--method", "fixmatch"], ["supervised", "mixmatch", "mean_teacher"]),
    (["--method", "mixmatch", "--dataset", "mnist"], ["fashion-mnist", "cifar10"]),
    (["--method", "mixmatch", "--profile", "huge"], ["smoke", "full", "paper"]),
    (["--method", "mixmatch", "--labels", "255"], ["multiple of 10"]),
    (["--method", "mixmatch", "--labels", "70000"], ["larger than the 60000"]),
    (["--method", "mixmatch", "--labels", "-10"], ["positive"]),
])
def test_bad_input_is_one_line_naming_the_choices_and_writes_nothing(args, names, isolated,
                                                                     fake_fashion):
    r = cli("run", *args, "--data-root", str(fake_fashion))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in names:
        assert n in lines[0]
    assert "Traceback" not in r.stderr
    for sub in ("runs", "results", "splits"):
        assert tree(isolated / sub) == []


def test_missing_data_is_one_line_and_writes_nothing(isolated, tmp_path):
    # CIFAR-10 has no system folder and downloads are off in the tests: every place fails.
    r = cli("run", "--method", "supervised", "--dataset", "cifar10", "--data-root",
            str(tmp_path / "none"), "--profile", "smoke")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "CIFAR-10 not found" in r.stderr and str(tmp_path / "none") in r.stderr
    assert tree(isolated / "runs") == [] and tree(isolated / "splits") == []


def test_run_writes_run_folder_and_results_file(isolated, fake_fashion):
    r = cli("run", "--method", "supervised", "--profile", "smoke", "--steps", "4",
            "--eval-every", "2", "--data-root", str(fake_fashion), "--labels", "20")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["method"] == "supervised" and summary["last"]["step"] == 4
    run = isolated / "runs" / "fashion-mnist-20" / "supervised-seed0-smoke"
    for name in ("config.json", "history.jsonl", "checkpoint.pt", "results.json"):
        assert (run / name).exists()
    assert tree(isolated / "results") == []  # smoke numbers are never reported
    res = json.loads((run / "results.json").read_text())
    for key in ("config", "split_file", "split_sha256", "git_commit", "device", "versions",
                "elapsed_s", "history", "best", "last", "started_at"):
        assert key in res
    # a second run into the same folder is refused without --resume/--overwrite
    again = cli("run", "--method", "supervised", "--profile", "smoke", "--steps", "4",
                "--eval-every", "2", "--data-root", str(fake_fashion), "--labels", "20")
    assert again.returncode == 2 and "--resume" in again.stderr


def test_full_profile_run_writes_results_file(isolated, fake_fashion):
    r = cli("run", "--method", "supervised", "--profile", "full", "--steps", "2",
            "--eval-every", "2", "--data-root", str(fake_fashion), "--labels", "20",
            "--quiet")
    assert r.returncode == 0, r.stderr
    files = list((isolated / "results").glob("*.json"))
    assert [f.name for f in files] == ["fashion-mnist_20_supervised_seed0_full.json"]
    assert json.loads(files[0].read_text())["overrides"]["steps"] == 2
