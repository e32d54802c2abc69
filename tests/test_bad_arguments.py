"""Issue 28: every command's bad argument is one line and exit 2 (bench, calibrate), a split
file's ids are integers or refused as such, and a disk's refusal names the command's own
option."""

from __future__ import annotations

import errno
import json

import pytest

from semibook.__main__ import _os_error, main
from semibook.config import ConfigError
from semibook.data.splits import read_split


@pytest.mark.parametrize("args, words", [
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--warmup", "-3"], "--warmup must be at least 0, got -3"),
    (["--batch", "-3"], "--batch must be at least 1, got -3"),
    (["--batch", "0"], "--batch must be at least 1, got 0"),
    (["--ref-workers", "-2"], "--ref-workers must be at least 0, got -2"),
    (["--curve", "-1"], "--curve must be at least 0"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bench_refuses_bad_numbers_in_one_line(args, words, capsys):
    assert main(["bench", "--quick", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_bench_refuses_an_out_file_it_cannot_extend(tmp_path, capsys):
    out = tmp_path / "report.json"
    out.write_text('{"cases": {"trunc')
    assert main(["bench", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{out}: not a bench report" in err[0] and "--out" in err[0]
    assert out.read_text() == '{"cases": {"trunc'


def test_calibrate_and_tune_bad_choices_are_one_line(capsys):
    assert main(["calibrate", "classification", "--candidates", "bogus"]) == 2
    assert main(["calibrate", "classification", "--methods", "bogus"]) == 2
    assert main(["tune", "classification", "--methods", "bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("error: unknown ") for e in err), err


def test_a_read_only_disk_names_the_commands_own_option():
    e = OSError(errno.EROFS, "Read-only file system", "/ro/bench.json")
    assert _os_error(e, "bench").endswith("choose another --out, on a writable disk")
    assert "--run-dir" in _os_error(e, "run") and "--run-dir" not in _os_error(e, "bench")
    full = OSError(errno.ENOSPC, "No space left on device", "/x/config.json")
    assert "--resume" not in _os_error(full, "run") and "--resume" in _os_error(
        full, "run", "continue with the same command and --resume")


@pytest.mark.parametrize("labeled, words", [
    ([1, 169.5], "labeled holds 169.5"),
    ([True, 2], "labeled holds True"),
    ([[1, 2], [3, 4]], "labeled holds [1, 2]"),
    ("1,2", "labeled holds '1,2'"),
])
def test_split_ids_must_be_integers(labeled, words, tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"train_size": 200, "labeled": labeled}))
    with pytest.raises(ConfigError) as e:
        read_split(f)
    assert words in str(e.value) and "repeat" not in str(e.value)


@pytest.mark.parametrize("argv, words", [
    (["run", "--method", "supervised", "--steps", "10.5"], "invalid int value: '10.5'"),
    (["bench", "--steps", "x"], "python -m semibook bench: argument --steps"),
    (["calibrate", "regression"], "invalid choice: 'regression'"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_argparse_refusals_are_one_line(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert words in err[0] and "--help" in err[0]


def test_allow_code_change_is_an_option_of_run_and_reproduce(capsys):
    from semibook.__main__ import _parser
    args = _parser(["run"]).parse_args(["run", "--method", "supervised", "--resume",
                                        "--allow-code-change"])
    assert args.allow_code_change and args.resume
    assert main(["reproduce", "classification", "--dry-run", "--seeds", "0",
                 "--allow-code-change"]) == 0
    assert "0 of 7 runs done, 7 to run" in capsys.readouterr().out


def test_bench_levers_refuse_bad_numbers_too(capsys):
    assert main(["bench", "--levers", "--quick", "--rounds", "0"]) == 2
    assert main(["bench", "--levers", "--quick", "--warmup", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --rounds must be at least 1, got 0",
                   "error: --warmup must be at least 0, got -1"]
