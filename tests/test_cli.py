import json
import os
import shutil
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
    (["--method", "mixmach"], ["did you mean 'mixmatch'? choose one of: supervised"]),
    (["--method", "mixmatch", "--dataset", "fasion-mnist"], ["did you mean 'fashion-mnist'?"]),
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
            "--eval-every", "2", "--data-root", str(fake_fashion), "--labels", "20", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["method"] == "supervised" and summary["last"]["step"] == 4
    run = isolated / "runs" / "fashion-mnist-20" / "supervised-seed0-smoke"
    assert summary["run_dir"] == str(run) and summary["results_file"] is None
    for name in ("config.json", "history.jsonl", "checkpoint.pt", "results.json"):
        assert (run / name).exists()
    assert tree(isolated / "results") == []  # smoke numbers are never reported
    res = json.loads((run / "results.json").read_text())
    for key in ("config", "split_file", "split_sha256", "git_commit", "device", "versions",
                "elapsed_s", "history", "best", "last", "started_at"):
        assert key in res
    # the finished run asked again: its summary, exit 0, nothing trained or rewritten
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    args = ("run", "--method", "supervised", "--profile", "smoke", "--steps", "4",
            "--eval-every", "2", "--data-root", str(fake_fashion), "--labels", "20")
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == "supervised on fashion-mnist, 20 labels, seed 0, " \
                                           "profile smoke"
    assert f"run folder:   {run}" in again.stdout and "last accuracy" in again.stdout
    assert "already finished (its run folder)" in again.stdout and "--overwrite" in again.stdout
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before
    # a run that did not finish is still refused without --resume/--overwrite
    res["finished"] = False
    (run / "results.json").write_text(json.dumps(res))
    stopped = cli(*args)
    assert stopped.returncode == 2 and "--resume" in stopped.stderr


def test_full_profile_run_writes_results_file(isolated, fake_fashion):
    r = cli("run", "--method", "supervised", "--profile", "full", "--steps", "2",
            "--eval-every", "2", "--data-root", str(fake_fashion), "--labels", "20",
            "--quiet")
    assert r.returncode == 0, r.stderr
    files = list((isolated / "results").glob("*.json"))
    # overrides (--steps): a name of its own, never the profile's (issue 28)
    assert len(files) == 1 and files[0].name.startswith(
        "fashion-mnist_20_supervised_seed0_full-custom-")
    assert json.loads(files[0].read_text())["overrides"]["steps"] == 2
    # asked again, with the run folder and then with the results file alone: its summary,
    # exit 0, the results file unchanged
    before = files[0].read_bytes()
    for where in ("its run folder", "its results file"):
        if where == "its results file":
            shutil.rmtree(isolated / "runs")
        again = cli("run", "--method", "supervised", "--profile", "full", "--steps", "2",
                    "--eval-every", "2", "--data-root", str(fake_fashion), "--labels", "20")
        assert again.returncode == 0, again.stderr
        assert f"already finished ({where})" in again.stdout
        assert f"results file: {files[0]}" in again.stdout
        assert files[0].read_bytes() == before
    assert "run folder:   none here" in again.stdout


def test_help_is_fast_lists_the_choices_and_imports_no_torch():
    code = ("import sys, semibook.__main__ as m; h = m._parser(['run']).format_subparser_help "
            "if False else None; p = m._parser(['run']); "
            "import contextlib, io; buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    try: p.parse_args(['run', '--help'])\n"
            "    except SystemExit: pass\n"
            "print('torch' in sys.modules); print(buf.getvalue())")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    first, helptext = r.stdout.split("\n", 1)
    assert first == "False"  # no torch for --help
    top = subprocess.run([sys.executable, "-m", "semibook", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60).stdout
    assert "python -m semibook run" in top and "``" not in top  # no reST quotes
    for name in ("classification: supervised, mixmatch, mean_teacher", "cps_cutmix",
                 "fashion-scenes (segmentation)", "smoke, full, paper", "--json", "--yes"):
        assert name in " ".join(helptext.split()), name


def test_catalog_matches_the_registries():
    from semibook.catalog import DATASET_TASKS, METHOD_TASKS
    from semibook.data import DATASETS, dataset_info
    from semibook.methods import METHODS
    assert {m: c.tasks for m, c in METHODS.items()} == METHOD_TASKS
    assert {d: dataset_info(d).task for d in DATASETS} == DATASET_TASKS


def test_run_ends_with_a_human_summary(isolated, fake_fashion):
    r = cli("run", "--method", "supervised", "--profile", "smoke", "--steps", "4",
            "--eval-every", "2", "--data-root", str(fake_fashion), "--labels", "20", "--quiet")
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip().splitlines()
    assert out[0] == "supervised on fashion-mnist, 20 labels, seed 0, profile smoke"
    assert out[1].startswith("  last accuracy ") and "% at step 4; best " in out[1]
    run = isolated / "runs" / "fashion-mnist-20" / "supervised-seed0-smoke"
    assert out[2] == f"  run folder:   {run}"
    assert out[3] == "  results file: none (smoke runs are never saved as results)"
    assert out[4].startswith("  elapsed:      ") and out[4].endswith(" s")


def test_full_profile_on_the_cpu_says_how_long_from_a_results_file(isolated, fake_fashion):
    args = ["run", "--method", "supervised", "--profile", "full", "--steps", "2",
            "--eval-every", "2", "--data-root", str(fake_fashion), "--labels", "20", "--quiet",
            "--device", "cpu"]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert "no results file of this method, model and step count to time it from" in first.stdout
    assert "results file: " + str(isolated / "results") in first.stdout
    second = cli(*args[:-2], "--labels", "30", "--device", "cpu")  # another split, same steps
    assert second.returncode == 0, second.stderr
    assert "steps, about " in second.stdout and "as measured in " in second.stdout
