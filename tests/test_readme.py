"""README.md's commands (and docs/USING.md's): the mapping tests/fresh_clone.sh runs them with
(tests/readme_commands.py), a clean clone in which they run as printed and must leave git status
clean, and README.md's result table, which the results files must give."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import readme_commands as rc  # noqa: E402


def test_every_command_the_readme_shows_is_run_or_left_out_with_a_reason():
    cmds = rc.shown(rc.README.read_text())
    assert "make book" in cmds and "make test" in cmds and "make lab" in cmds
    assert any(" run --method " in c for c in cmds) and any(" reproduce " in c for c in cmds)
    for c in cmds:
        cmd, why = rc.runnable(c)
        assert why
        if cmd is not None and ("run " in cmd or "reproduce " in cmd) and "--dry-run" not in cmd:
            assert "--profile smoke" in cmd, cmd  # training here is always the smoke profile


def test_training_commands_become_smoke_runs_and_foreign_data_is_left_out():
    cmd, _ = rc.runnable(".venv/bin/python -m semibook run --method cps --dataset fashion-scenes "
                         "--labels 20 --profile full --seed 1")
    assert cmd.endswith("--profile smoke --seed 1 --yes")
    assert rc.runnable(".venv/bin/python -m semibook run --method cps --dataset voc "
                       "--labels 1322 --profile paper")[0] is None
    assert rc.runnable("make gpu-check")[0] == "make gpu-check DRY=1"
    assert rc.runnable("make lab")[0] is None  # a server: tests/test_make.py
    assert rc.runnable("sudo apt-get install graphviz")[0] is None
    assert "--quick" in rc.runnable(".venv/bin/python -m semibook bench --steps 100")[0]


def test_as_printed_changes_only_the_bench_sizes_and_leaves_long_commands_out():
    bench = ".venv/bin/python -m semibook bench --out x.json"
    assert rc.as_printed(bench)[0] == bench + rc.BENCH_TINY  # the report's place as printed
    run = ".venv/bin/python -m semibook run --method mixmatch --profile full --seed 0"
    assert rc.as_printed(run) == (run, "as printed")
    assert rc.as_printed(".venv/bin/python -m semibook run --method cps --dataset voc")[0] is None
    assert rc.as_printed("make reproduce TABLE=classification DRY=1")[0] == \
        "make -o .venv/.installed reproduce TABLE=classification DRY=1"
    for long in ("make book", "make test", "make lab", "make gpu-check"):
        assert rc.as_printed(long)[0] is None


def test_the_readme_commands_as_printed_leave_a_clean_clone_unchanged(tmp_path, monkeypatch):
    """A newcomer's clone: every command README.md and docs/USING.md print, run as printed
    (bench at its tiny sizes), exits 0 and leaves ``git status`` clean: no command rewrites a
    committed file or leaves one behind. Run folders and the bench report go where they go by
    default, outside the clone (here into this test's temporary cache)."""
    clone = rc.clean_clone(rc.README.parent, tmp_path / "clone", Path(sys.prefix))
    for var in ("SEMIBOOK_RESULTS", "SEMIBOOK_SPLITS"):  # the clone's own results/ and splits/
        monkeypatch.delenv(var, raising=False)
    # the data as a newcomer's machine has it (Debian's dataset-fashion-mnist)
    data = Path("/usr/share/datasets/fashion-mnist")
    if not data.is_dir():
        pytest.skip("needs Fashion-MNIST in /usr/share/datasets/fashion-mnist")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ran = []
    for shown in rc.user_commands(clone):
        cmd, why = rc.as_printed(shown)
        if cmd is None:
            continue
        r = subprocess.run(["bash", "-c", cmd], cwd=clone, env=env, capture_output=True,
                           text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        ran.append(cmd)
    assert any(" bench" in c for c in ran) and any(" run " in c for c in ran)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", f"the README's commands changed the clone:\n{status}"


def test_the_readme_result_table_is_what_the_results_files_give(monkeypatch, tmp_path):
    """README.md's table is written by ``python -m semibook report --readme`` from the committed
    results files, never typed: it must equal what they give today, and the figure must have
    been drawn from the same numbers. Writing again into a copy changes nothing; a stale table
    is replaced."""
    from semibook import headline
    monkeypatch.delenv("SEMIBOOK_RESULTS")  # the committed results/
    h = headline.headline()
    text = rc.README.read_text()
    block = text.split(headline.START)[1].split(headline.END)[0]
    assert block.strip() == headline.markdown(h).strip()
    fig = rc.README.parent / headline.FIGURE
    assert f"]({headline.FIGURE})" in text and headline._figure_digest(fig) == headline._digest(h)
    readme, copy = tmp_path / "README.md", tmp_path / "results.png"
    readme.write_text(text)
    copy.write_bytes(fig.read_bytes())
    assert headline.write_readme(readme, copy) == []  # up to date: nothing written
    readme.write_text(text.replace(block, "\n| typed | 99.9 |\n"))
    copy.unlink()
    assert headline.write_readme(readme, copy) == [str(readme), str(copy)]
    assert readme.read_text() == text and headline._figure_digest(copy) == headline._digest(h)
