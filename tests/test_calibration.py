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
    # the candidates vary the task and the sizes; the schedule is the tuning's
    sizes = cal.SIZES
    for task in cal.CANDIDATES:
        for method, labels in cal.runs(task):
            want = sb.make_config(method, cal.DATASET[task], labels, 0, "full",
                                  validation=cal.VALIDATION[task]).to_dict()
            same = [c for c in cal.CANDIDATES[task] if all(
                cal.config(task, c, method, labels).to_dict()[k] == want[k] for k in sizes)]
            assert len(same) == 1, (task, method, same)
            assert cal.chosen(task) == same[0]


def test_calibration_runs_score_on_held_out_training_images():
    for task in cal.CANDIDATES:
        for c in cal.CANDIDATES[task]:
            for method, labels in cal.runs(task):
                cfg = cal.config(task, c, method, labels)
                assert cfg.validation == cal.VALIDATION[task] > 0 and cfg.seed == 0


def test_calibration_table_reads_every_role(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMIBOOK_RESULTS", str(ROOT / "results"))
    rows = cal.table("segmentation")
    assert [r["candidate"] for r in rows] == list(cal.CANDIDATES["segmentation"])
    md = cal.markdown("segmentation", rows[-1]["candidate"])
    assert "**(chosen)**" in md and md.count("\n| ") == len(rows)


def test_every_method_gets_as_many_trials_as_the_supervised_baseline():
    from semibook.tuning import SWEEPS
    for task, methods in SWEEPS.items():
        n = len(methods["supervised"])
        assert {m: len(t) for m, t in methods.items()} == {m: n for m in methods}, task


def test_tuning_trials_are_scored_on_held_out_training_images_and_the_first_is_official():
    from semibook.tuning import LABELS, SWEEPS, VALIDATION, config
    for task, methods in SWEEPS.items():
        for method, trials in methods.items():
            first, *rest = trials
            official = sb.make_config(method, {"classification": "fashion-mnist",
                                               "segmentation": "fashion-scenes"}[task],
                                      LABELS[task], 0, "full", tuned=False)
            cfg = config(task, method, first)
            assert cfg.validation == VALIDATION[task] and cfg.labels == LABELS[task]
            assert cfg.hparams == official.hparams and cfg.lr == official.lr
            for trial in rest:  # each other trial changes something
                assert config(task, method, trial).to_dict() != cfg.to_dict(), trial


def test_tune_writes_one_results_file_per_trial_and_the_table_marks_the_best(tiny, monkeypatch,
                                                                             tmp_path):
    from semibook import tuning
    sweeps = {"classification": {"supervised": {"as is": {}, "lr 0.004": dict(lr=0.004)}}}
    monkeypatch.setattr(tuning, "SWEEPS", sweeps)
    monkeypatch.setattr(tuning, "LABELS", {"classification": 20})
    monkeypatch.setattr(tuning, "VALIDATION", {"classification": 50})
    real = tuning.make_config
    monkeypatch.setattr(tuning, "make_config", lambda *a, **kw: real(
        *a[:4], "smoke", **{**kw, **tiny, "steps": 4, "eval_every": 2}))
    lines = []
    tuning.tune("classification", echo=lines.append)
    assert lines == ["training supervised: as is", "training supervised: lr 0.004"]
    res = tuning.result("classification", "supervised", "lr 0.004")
    assert res["trial"] == "lr 0.004" and res["config"]["validation"] == 50
    rows = tuning.table("classification")
    best = max(rows, key=lambda r: r["last"])
    assert [r["chosen"] for r in rows] == [r is best for r in rows]
    assert "(chosen)" in tuning.markdown("classification")
    lines.clear()
    tuning.tune("classification", echo=lines.append)  # nothing left to run
    assert lines == ["done     supervised: as is", "done     supervised: lr 0.004"]


def test_the_profile_applies_exactly_the_trials_the_committed_sweeps_chose(monkeypatch):
    from semibook import tuning
    monkeypatch.setenv("SEMIBOOK_RESULTS", str(ROOT / "results"))
    for task in tuning.SWEEPS:
        assert tuning.CHOSEN[task] == tuning.choices(task), task


def test_full_profile_is_the_chosen_trial_without_the_validation_split(monkeypatch):
    from semibook import tuning
    task, method = "segmentation", "cps_cutmix"
    trial = list(tuning.SWEEPS[task][method])[3]
    before = sb.make_config(method, "fashion-scenes", 20, 0, "full")
    monkeypatch.setitem(tuning.CHOSEN, task, {method: trial})
    got = sb.make_config(method, "fashion-scenes", 20, 0, "full").to_dict()
    want = tuning.config(task, method, trial).to_dict()
    # the trials score every validation image; the profile's runs a subset until the last
    assert got == {**want, "validation": 0, "eval_subset": before.eval_subset}
    assert got != before.to_dict()
    # the recipe alone, the user's other datasets and the other profiles are untouched
    assert sb.make_config(method, "fashion-scenes", 20, 0, "full", tuned=False) == before
    assert sb.make_config(method, "fashion-scenes-v1", 20, 0, "full").hparams == before.hparams
    # a caller's override still wins over the chosen trial
    hp = {**got["hparams"], "burn_in": 7}
    assert sb.make_config(method, "fashion-scenes", 20, 0, "full", hparams=hp).hparams["burn_in"] == 7


def test_room_reads_each_finished_candidate_against_the_targets(monkeypatch):
    def fake(task, cand, method, labels):
        top = labels > 100
        v = {"wrn-10-1, 3000 steps, 32+32, cosine": (0.55, 0.875),
             "wrn-16-1, 3000 steps, 32+32, cosine": (0.71, 0.905)}.get(cand)
        return None if v is None else {"metric": "acc", "last": {"acc": v[top]}, "elapsed_s": 10.0}
    monkeypatch.setattr(cal, "result", fake)
    found = cal.room("classification")
    assert len(found) == 2  # a candidate not run yet is left out
    rows = {r["candidate"].split(",")[0]: r for r in found}
    assert not rows["wrn-10-1"]["ceiling_met"] and rows["wrn-10-1"]["room_met"]
    assert rows["wrn-16-1"]["ceiling_met"] and not rows["wrn-16-1"]["room_met"]
    assert abs(rows["wrn-16-1"]["room"] - 0.195) < 1e-9


def test_the_targets_are_read_on_the_benchmark_s_test_runs_too():
    from semibook import calibration, reproduce
    run = lambda v: {"metric": "acc", "last": {"acc": v}}  # noqa: E731
    got = {"table": reproduce.get_table("classification"), "ceiling": [run(0.89), run(0.894)],
           "by_labels": {40: {"supervised": [run(0.55), run(0.53)]}}}
    assert calibration.test_room(got, "classification") == (
        "classification, the benchmark's runs on the test set: ceiling 89.2% over 2 seeds "
        "(target 90: NOT met), 35.2 points above supervised-only at 40 labels over 2 seeds "
        "(target 20: met)")
    assert calibration.test_room({**got, "ceiling": []}, "classification") is None
