"""The calibration's candidates against the committed calibration results and the profile."""

import json

import semibook as sb
from semibook import calibration as cal
from semibook.engine.results import config_diff
from semibook.paths import ROOT


def test_each_committed_calibration_file_is_a_run_of_its_candidate():
    files = sorted((ROOT / "results" / "calibration").glob("*.json"))
    assert files
    known = {cal.results_path(t, c, m, n).name: (t, c, m, n)
             for t in cal.CANDIDATES for c in cal.CANDIDATES[t] for m, n in cal.runs(t)}
    for f in files:
        res = json.loads(f.read_text())
        task, cand, method, labels = known[f.name]  # a file of a candidate still listed
        assert res["finished"] and res["candidate"] == cand
        assert not config_diff(cal.config(task, cand, method, labels), res["config"]), f.name


def test_exactly_one_candidate_per_task_is_the_full_profile():
    for task in cal.CANDIDATES:
        for method, labels in cal.runs(task):
            want = sb.make_config(method, cal.DATASET[task], labels, 0, "full")
            same = [c for c in cal.CANDIDATES[task]
                    if not want.diff(cal.config(task, c, method, labels).to_dict())]
            assert len(same) == 1, (task, method, same)


def test_calibration_table_reads_every_role(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMIBOOK_RESULTS", str(ROOT / "results"))
    rows = cal.table("segmentation")
    assert [r["candidate"] for r in rows] == list(cal.CANDIDATES["segmentation"])
    md = cal.markdown("segmentation", rows[-1]["candidate"])
    assert "**(chosen)**" in md and md.count("\n| ") == len(rows)
