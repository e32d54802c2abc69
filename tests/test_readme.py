"""README.md's commands: tests/fresh_clone.sh runs each (tests/readme_commands.py turns them
into the forms that finish here); these tests check that mapping without running them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import readme_commands as rc  # noqa: E402


def test_every_command_the_readme_shows_is_run_or_left_out_with_a_reason():
    cmds = rc.shown(rc.README.read_text())
    assert "make book" in cmds and "make test" in cmds
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
    assert "--quick" in rc.runnable(".venv/bin/python -m semibook bench --steps 100")[0]
