"""Issue 28, results files: a run with overrides never takes its profile's results name, a
file at a results name that is not a results file is never replaced, readers skip (with one
warning naming it) any JSON of another schema, and the results folder must be a folder."""

from __future__ import annotations

import json

import pytest

import semibook as sb
import semibook.reproduce as rp
from semibook.config import ConfigError
from semibook.engine.results import load_results, result_name
from semibook.engine.run import run


def _tiny(fake_fashion, **kw):
    return sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke", **{
        "data_root": str(fake_fashion), **kw})


def test_a_run_with_overrides_never_replaces_the_profiles_result(isolated, fake_fashion,
                                                                 monkeypatch):
    monkeypatch.setenv("SEMIBOOK_DATA", str(fake_fashion))  # the profile's config, no override
    default = sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke")
    assert result_name(default) == "fashion-mnist_20_supervised_seed0_smoke.json"
    full = run(default, isolated / "a", progress=False, save_results=True, device="cpu")
    short = run(sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke", steps=4,
                               eval_every=2), isolated / "b", progress=False,
                save_results=True, device="cpu")
    assert full["results_file"] != short["results_file"]
    assert "_smoke-custom-" in short["results_file"]
    kept = json.loads((isolated / "results" / result_name(default)).read_text())
    assert kept["config"]["steps"] == 24 and kept["overrides"] == {}
    # the name depends on the overrides' values, not only on which fields they set
    assert result_name(_tiny(fake_fashion, steps=4)) != result_name(_tiny(fake_fashion, steps=5))


def test_readers_skip_json_of_another_schema_with_one_warning(isolated, capsys):
    cfg = sb.make_config("supervised", "fashion-mnist", 250, 0, "full")
    folder = isolated / "results"
    folder.mkdir()
    no_config = {"method": "supervised", "dataset": "fashion-mnist", "profile": "full"}
    (folder / "notes.json").write_text(json.dumps(no_config))
    (folder / result_name(cfg)).write_text(json.dumps({"config": cfg.to_dict(),
                                                       "finished": True}))
    (folder / "list.json").write_text("[1, 2]")
    assert load_results() == [] and load_results(method="supervised") == []
    err = capsys.readouterr().err.splitlines()
    assert sorted(err) == sorted([
        f"warning: {folder / 'notes.json'}: not a semibook results file (no labels); skipped",
        f"warning: {folder / result_name(cfg)}: not a semibook results file (no method); "
        f"skipped",
        f"warning: {folder / 'list.json'}: not a semibook results file (not a JSON object); "
        f"skipped"])
    # the table counts the file at its name as not done, never as a result (collect() read
    # its seed before), and reproduce neither runs over it nor replaces it
    got = rp.collect("classification", seeds=(0,), methods=["supervised"])
    assert got["ceiling"] == [] and got["by_labels"][250] == {}
    rows = rp.plan("classification", seeds=(0,), methods=["supervised"], labels=[250])
    assert rows[0]["status"] == "foreign" and "move it away" in rows[0]["why"]


def test_a_file_at_the_results_name_is_never_replaced(isolated, fake_fashion):
    cfg = _tiny(fake_fashion)
    out = isolated / "results" / result_name(cfg)
    out.parent.mkdir()
    out.write_text('{"my": "own notes"}\n')
    with pytest.raises(ConfigError, match="is not a semibook results file.*--no-results"):
        run(cfg, isolated / "r", progress=False, save_results=True, device="cpu")
    assert out.read_text() == '{"my": "own notes"}\n' and not (isolated / "r").exists()


def test_the_results_folder_must_be_a_folder(isolated, monkeypatch):
    f = isolated / "file"
    f.write_text("x")
    monkeypatch.setenv("SEMIBOOK_RESULTS", str(f))
    with pytest.raises(ConfigError, match=r"\(\$SEMIBOOK_RESULTS\) is not a folder"):
        rp.reproduce("classification", dry_run=True, echo=lambda s: None)


def test_calibrate_refuses_unknown_candidates_and_methods():
    from semibook.calibration import calibrate
    with pytest.raises(ConfigError, match="unknown candidate 'bogus'"):
        calibrate("classification", ["bogus"])
    with pytest.raises(ConfigError, match="unknown method 'bogus'; choose one of: supervised"):
        calibrate("classification", methods=["bogus"])


def _calibration_file(text: str):
    """The first classification candidate's supervised calibration file, holding ``text``."""
    from semibook.calibration import CANDIDATES, results_path, runs
    cand = next(iter(CANDIDATES["classification"]))
    p = results_path("classification", cand, "supervised", runs("classification")[0][1])
    p.parent.mkdir(parents=True)
    p.write_text(text)
    return cand, p


def test_a_corrupt_calibration_file_is_one_line(isolated):
    from semibook.calibration import table
    _calibration_file('{"trunc')
    with pytest.raises(ConfigError, match="not a readable results file"):
        table("classification")


def test_calibration_never_replaces_a_users_file_at_its_results_path(isolated):
    from semibook.calibration import calibrate
    cand, p = _calibration_file('{"mine": 1}\n')
    with pytest.raises(ConfigError, match="is not a semibook results file"):
        calibrate("classification", [cand], ["supervised"], echo=lambda s: None)
    assert p.read_text() == '{"mine": 1}\n' and not (isolated / "runs").exists()
