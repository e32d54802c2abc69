"""Issue 28, the user's files: nothing is written or read through a link out of a run folder,
a folder is semibook's only by its marker or a config that semibook wrote (never by file names
alone), a disk that fills at any moment ends in one line naming the file, and writers of one
path each write whole files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from semibook.engine import rundir
from semibook.engine.checkpoint import load_checkpoint
from tests.test_reliability_cli import RUN, cli, one_line, snapshot, stopped_run  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def _users_file(tmp: Path) -> Path:
    f = tmp / "thesis.txt"
    f.write_text("three years of work\n")
    return f


@pytest.mark.parametrize("name", [rundir.LOCK, "checkpoint.pt", "history.jsonl",
                                  "config.json", "results.json"])
def test_a_run_folder_file_that_is_a_link_is_refused(name, tmp_path, stopped_run, fake_fashion):
    run, mine = tmp_path / "run", _users_file(tmp_path)
    shutil.copytree(stopped_run, run)
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(mine)
    for extra in (["--resume"], ["--overwrite"]):
        line = one_line(cli([*RUN, "--data-root", fake_fashion, "--run-dir", run, *extra],
                            tmp_path), 2)
        assert f"{run / name} is a symbolic link (to {mine})" in line and "--run-dir" in line
        assert mine.read_text() == "three years of work\n" and (run / name).is_symlink()


def test_a_lone_lock_link_in_a_new_folder_is_refused(tmp_path, fake_fashion):
    run, mine = tmp_path / "run", _users_file(tmp_path)
    run.mkdir()
    (run / rundir.LOCK).symlink_to(mine)
    line = one_line(cli([*RUN, "--data-root", fake_fashion, "--run-dir", run], tmp_path), 2)
    assert "symbolic link" in line and mine.read_text() == "three years of work\n"


def test_a_users_config_and_results_are_not_a_run_folder(tmp_path, fake_fashion):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "config.json").write_text('{"lr": 0.1, "model": "resnet"}\n')
    (d / "results.json").write_text('{"acc": 0.93}\n')
    before = snapshot(d)
    for extra in ([], ["--resume"], ["--overwrite"]):
        line = one_line(cli([*RUN, "--data-root", fake_fashion, "--run-dir", d, *extra],
                            tmp_path), 2)
        assert "neither semibook's marker" in line and "--overwrite" not in line, line
        assert snapshot(d) == before


def test_a_users_lock_named_file_is_left_alone(tmp_path, fake_fashion):
    d = tmp_path / "mine"
    d.mkdir()
    (d / rundir.LOCK).write_text("my lock notes\n")
    line = one_line(cli([*RUN, "--data-root", fake_fashion, "--run-dir", d], tmp_path), 2)
    assert f"{d / rundir.LOCK} is not a semibook lock file" in line
    assert (d / rundir.LOCK).read_text() == "my lock notes\n"


def test_torn_temporary_files_of_a_killed_process_are_removed_on_resume(tmp_path, stopped_run,
                                                                        fake_fashion):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    (run / "checkpoint.pt.k3x9_q.tmp").write_bytes(b"torn")
    (run / "history.jsonl.tmp").write_bytes(b"torn")  # an earlier version's single name
    r = cli([*RUN, "--data-root", fake_fashion, "--run-dir", run, "--resume"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


@pytest.mark.parametrize("limit", [40, 600, 1000, 100_000])
def test_a_disk_that_fills_at_any_moment_is_one_line_naming_the_file(limit, tmp_path,
                                                                     fake_fashion):
    """No file may grow past ``limit`` bytes (the split file and the marker, config.json, the
    history's appends, the 1.3 MB checkpoint in turn fail): one line naming the file, exit 2, no temporary file, and
    ``--resume`` advised only where the run folder holds the run."""
    run = tmp_path / "run"
    r = cli([*RUN, "--data-root", fake_fashion, "--run-dir", run], tmp_path,
            ("--file-limit", str(limit)))
    line = one_line(r, 2)
    assert "File too large" in line and "Traceback" not in line and "enforce fail" not in line
    named = line.removeprefix("error: ").split(": ")[0]
    assert Path(named).is_absolute() and Path(named).parent.is_dir(), line
    assert not [p for p in tmp_path.rglob("*.tmp")]
    if (run / rundir.MARKER).exists():
        assert "--resume" in line
    else:
        assert "--resume" not in line and "run the command again" in line
    if limit == 100_000:  # the checkpoint's own write: torch.save's error, made the disk's
        assert named == str(run / "checkpoint.pt") and not (run / "checkpoint.pt").exists()
        r = cli([*RUN, "--data-root", fake_fashion, "--run-dir", run, "--resume"], tmp_path)
        assert r.returncode == 0, r.stderr  # the advice works once the disk has room
        assert load_checkpoint(run / "checkpoint.pt")["step"] == 4


WRITER = """
import sys
from semibook.engine.checkpoint import atomic_write_text
path, mark = sys.argv[1], sys.argv[2]
for i in range(300):
    atomic_write_text(path, mark * 5000 + "\\n")
print("ok")
"""


def test_two_writers_of_one_path_both_succeed_and_the_file_is_whole(tmp_path):
    out = tmp_path / "results.json"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(out), m], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in "ab"]
    for p in procs:
        o, e = p.communicate(timeout=120)
        assert p.returncode == 0 and o.strip() == "ok", e[-500:]
    assert out.read_text() in ("a" * 5000 + "\n", "b" * 5000 + "\n")
    assert os.listdir(tmp_path) == ["results.json"]


def test_sigterm_is_taken_as_ctrl_c_is(tmp_path, fake_fashion):
    """``kill`` stops the run at the end of the step: one line naming the last checkpoint,
    status 143, and ``--resume`` continues."""
    import signal
    from tests.test_reliability_cli import stop_a_long_run
    assert "terminated (SIGTERM)" in stop_a_long_run(tmp_path, fake_fashion, signal.SIGTERM, 143)


def test_closed_standard_output_is_not_a_traceback(tmp_path, fake_fashion):
    """Standard output closed from the start (``>&-``): the run trains, exit 0, nothing on
    stderr; its reader gone mid-run (a broken pipe) is not blamed on the run folder."""
    run = tmp_path / "run"
    args = [*RUN, "--data-root", fake_fashion, "--run-dir", run]
    args.remove("--quiet")
    env = {**os.environ, "SEMIBOOK_NO_DOWNLOAD": "1",
           **{v: str(tmp_path / v.lower()) for v in ("SEMIBOOK_RUNS", "SEMIBOOK_SPLITS")}}
    r = subprocess.run([sys.executable, "-m", "semibook", *map(str, args)], cwd=ROOT, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       pass_fds=(), close_fds=True, timeout=120,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert (run / "results.json").exists()
    rd, wr = os.pipe()
    os.close(rd)  # the reader is gone before the first line is written
    r = subprocess.run([sys.executable, "-m", "semibook", *map(str, args), "--overwrite"],
                       cwd=ROOT, env=env, stdout=wr, stderr=subprocess.PIPE, text=True,
                       timeout=120)
    os.close(wr)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "broken pipe" in lines[0], r.stderr
    assert str(run) not in lines[0]


def test_resume_refuses_a_split_file_changed_since_the_checkpoint(tmp_path, stopped_run,
                                                                  fake_fashion):
    from semibook.data import load_dataset
    from semibook.data.splits import make_split, write_split
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    y = load_dataset("fashion-mnist", str(fake_fashion)).y_train
    other = make_split(y, 20, 7, 10, "fashion-mnist")  # another draw of 20 labels
    split = tmp_path / "semibook_splits" / "fashion-mnist_20_seed0.json"
    write_split(other, split)
    before = snapshot(run)
    line = one_line(cli([*RUN, "--data-root", fake_fashion, "--run-dir", run, "--resume"],
                        tmp_path), 2)
    assert f"{split}: the split file has changed since this run's checkpoint" in line
    assert "--overwrite" in line and snapshot(run) == before


def test_resume_on_changed_code_needs_consent_which_the_results_record(tmp_path, stopped_run,
                                                                       fake_fashion,
                                                                       monkeypatch):
    from semibook.engine import results
    from semibook.engine.fit import fit
    from semibook.config import ConfigError
    from tests.test_reliability_cli import ENV_DIRS, base_config
    for v in ENV_DIRS:
        monkeypatch.setenv(v, str(tmp_path / v.lower()))
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    was = load_checkpoint(run / "checkpoint.pt")["code_sha256"]
    assert was == results._code_commit()["code_sha256"]  # the fixture ran this very code
    monkeypatch.setitem(results._IMPORTED, "code_sha256", "e" * 64)  # the loss edited, say
    monkeypatch.setitem(results._IMPORTED, "git_dirty", True)
    before = snapshot(run)
    with pytest.raises(ConfigError, match=r"checkpoint\.pt: semibook's code has changed since "
                                          r"this checkpoint .*--allow-code-change"):
        fit(base_config(fake_fashion), run, resume=True, progress=False, device="cpu")
    assert snapshot(run) == before
    res = fit(base_config(fake_fashion), run, resume=True, progress=False, device="cpu",
              allow_code_change=True)
    segs = [r for r in res["history"] if r["kind"] == "segment"]
    assert [(r["step"], r["code_sha256"]) for r in segs] == [(0, was), (2, "e" * 64)]
    assert all(r["split_sha256"] == res["split_sha256"] for r in segs)
    assert [(s["step"], s["code_sha256"], s["git_dirty"]) for s in res["code_changed"]] == [
        (0, was, segs[0]["git_dirty"]), (2, "e" * 64, True)]
    assert res["code_sha256"] == was  # the code the run started from, as before


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.pop("optimizer"), "the checkpoint has no 'optimizer'"),
    (lambda s: s.pop("elapsed_s"), "the checkpoint has no 'elapsed_s'"),
    (lambda s: s.update(step=-1), "step -1, outside 0..4"),
    (lambda s: s.update(step="2"), "has a damaged 'step'"),
])
def test_a_checkpoint_missing_a_key_or_with_a_bad_step_is_one_line(edit, words, tmp_path,
                                                                   stopped_run, fake_fashion):
    from semibook.engine.checkpoint import save_checkpoint
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    state = load_checkpoint(run / "checkpoint.pt")
    edit(state)
    save_checkpoint(run / "checkpoint.pt", state)
    before = snapshot(run)
    line = one_line(cli([*RUN, "--data-root", fake_fashion, "--run-dir", run, "--resume"],
                        tmp_path), 2)
    assert f"{run / 'checkpoint.pt'}:" in line and words in line and "--overwrite" in line
    assert snapshot(run) == before
