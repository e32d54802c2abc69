"""`reproduce`: which runs a table holds, which it skips, and the aggregate table of its results.

The results files here are written by the real engine (tiny runs of the `full` profile on the
fake Fashion-MNIST tree); the aggregate numbers are checked against a hand computation from the
files' evaluation histories."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import semibook as sb
import semibook.reproduce as rp
import semibook.verdicts as vd
from semibook.engine.results import result_name
from semibook.config import ConfigError
from semibook.report import aggregate, results_table

ROOT = Path(__file__).resolve().parents[1]

# A table small enough to train here: 2 methods at 20 labels, the 400-image ceiling, 2 seeds.
TINY = rp.Table("tiny", "fashion-mnist", ("supervised", "mean_teacher"), (20,), full_labels=400)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def small(fake_fashion):
    return dict(data_root=str(fake_fashion), arch="wrn-10-1", steps=2, eval_every=1,
                batch_l=8, batch_u=8, eval_size=50, track_size=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small):
    """The tiny table trained once (6 runs); each test starts from a copy of its folders."""
    base = tmp_path_factory.mktemp("trained")
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in (("SEMIBOOK_RUNS", "runs"), ("SEMIBOOK_RESULTS", "results"),
                         ("SEMIBOOK_SPLITS", "splits"), ("SEMIBOOK_CACHE", "cache")):
            mp.setenv(var, str(base / sub))
        mp.setenv("SEMIBOOK_NO_DOWNLOAD", "1")
        rows = rp.reproduce(TINY, seeds=SEEDS, overrides=small, progress=False,
                            echo=lines.append)
    return base, rows, lines


def _copy(trained, isolated):
    for sub in ("runs", "results", "splits"):
        shutil.copytree(trained[0] / sub, isolated / sub)


def test_tables_hold_every_method_label_count_seed_and_the_ceiling():
    seg = rp.entries("segmentation")
    labels = rp.TABLE_LABELS["segmentation"]
    assert len(labels) >= 2  # at least two label counts per table
    methods = {"supervised", "mean_teacher", "adversarial", "cps", "cps_cutmix", "dual_teacher",
               "soft_teacher", "dual_branch", "dual_branch_teacher"}
    assert {(e.method, e.labels, e.seed) for e in seg if not e.ceiling} == {
        (m, n, s) for m in methods for n in labels for s in (0, 1, 2)}
    # the ceiling is supervised-only training on all 10,000 training scenes, named like the
    # committed results file of that run
    ceil = [e for e in seg if e.ceiling]
    assert [(e.method, e.labels, e.seed) for e in ceil] == [("supervised", 10000, s)
                                                           for s in (0, 1, 2)]
    cls = rp.entries("classification")
    assert 250 in rp.TABLE_LABELS["classification"]
    assert len(rp.TABLE_LABELS["classification"]) == 2
    assert {e.method for e in cls} == {"supervised", "mixmatch", "mean_teacher"}
    assert [e.labels for e in cls if e.ceiling] == [60000] * 3
    # filters: the ceiling belongs to `supervised`; an unknown method lists the table's ones
    only = rp.entries("segmentation", seeds=(1,), methods=["cps"])
    assert [(e.method, e.labels, e.seed) for e in only] == [("cps", n, 1) for n in labels]
    with pytest.raises(ConfigError, match="dual_teacher"):
        rp.entries("segmentation", methods=["mixmatch"])


def test_full_table_configs_are_the_full_profile():
    import semibook as sb
    row = rp.plan("classification", seeds=(0,), methods=["mixmatch"])[0]
    want = sb.make_config("mixmatch", "fashion-mnist", rp.TABLE_LABELS["classification"][0], 0,
                          "full")
    assert row["config"].profile == "full" and not want.diff(row["config"].to_dict())


def test_reproduce_trains_what_is_missing_then_skips_it(small, trained, isolated):
    _, rows, lines = trained
    assert [r["status"] for r in rows] == ["ran"] * 6
    _copy(trained, isolated)
    files = sorted(p.name for p in (isolated / "results").glob("*.json"))
    # runs with overrides (the tiny sizes) never take the profile's own results names
    assert files == sorted(result_name(sb.make_config(m, "fashion-mnist", n, s, "full", **small))
                           for m, n in (("supervised", 20), ("mean_teacher", 20),
                                        ("supervised", 400)) for s in SEEDS)
    assert all("_full-custom-" in f for f in files)
    assert "0 of 6 runs done, 6 to run" in lines
    lines = []
    stamps = {p.name: p.stat().st_mtime_ns for p in (isolated / "results").glob("*.json")}

    # everything done: nothing runs, no file is touched
    lines.clear()
    again = rp.reproduce(TINY, seeds=SEEDS, overrides=small, progress=False, echo=lines.append)
    assert [r["status"] for r in again] == ["done"] * 6
    assert "6 of 6 runs done, 0 to run" in lines
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (isolated / "results").glob("*.json")}

    # a results file of another config is stale (and would be replaced); so is one whose split
    # file has changed since (issue 28); a deleted one is missing
    cfg = sb.make_config("mean_teacher", "fashion-mnist", 20, 0, "full", **small)
    res_file = isolated / "results" / result_name(cfg)
    kept_res = res_file.read_text()
    other = json.loads(kept_res)
    other["config"]["steps"] = 3
    res_file.write_text(json.dumps(other))
    stale = rp.plan(TINY, seeds=(0,), methods=["mean_teacher"], overrides=small)
    assert [(r["status"], r["why"]) for r in stale] == [
        ("stale", "its results file holds another config")]
    res_file.write_text(kept_res)
    split = isolated / "splits" / "fashion-mnist_20_seed0.json"
    kept = split.read_text()
    split.write_text(kept.replace("[", "[ ", 1))  # the same ids, another file
    stale = rp.plan(TINY, seeds=(0,), methods=["mean_teacher"], overrides=small)
    assert stale[0]["status"] == "stale" and f"{split} has changed" in stale[0]["why"]
    split.write_text(kept)
    gone = isolated / "results" / result_name(sb.make_config("mean_teacher", "fashion-mnist", 20,
                                                             1, "full", **small))
    gone.unlink()
    lines.clear()
    third = rp.reproduce(TINY, seeds=SEEDS, overrides=small, progress=False, echo=lines.append)
    ran = [(r["entry"].method, r["entry"].labels, r["entry"].seed) for r in third
           if r["status"] == "ran"]
    assert ran == [("mean_teacher", 20, 1)]
    # the run folder of that run held this very config, so it was resumed, not retrained
    assert any(ln.startswith("[1/1] resuming mean_teacher") for ln in lines)
    assert gone.exists() and json.loads(gone.read_text())["finished"]

    # --dry-run lists and runs nothing
    gone.unlink()
    dry = rp.reproduce(TINY, seeds=SEEDS, overrides=small, dry_run=True, echo=lambda s: None)
    assert [r["status"] for r in dry].count("missing") == 1 and not gone.exists()


def _by_hand(path: Path):
    """Best and last accuracy of one results file, from its evaluation history."""
    evals = [r["acc"] for r in json.loads(path.read_text())["history"] if r["kind"] == "eval"]
    return max(evals), evals[-1]


def _mean_std(xs):
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def test_collect_and_aggregate_match_a_hand_computation(small, trained, isolated):
    _copy(trained, isolated)
    # collect() reads the results of exactly the table's configs; with `small` they match
    got = rp.collect(TINY, seeds=SEEDS)
    assert [e.method for e in got["missing"]] == ["supervised"] * 2 + ["mean_teacher"] * 2 \
        + ["supervised"] * 2  # the table's own (default) configs were never run here
    note = vd.missing_markdown(rp.collect(TINY, seeds=SEEDS)).splitlines()
    assert note[0] == "6 of 6 runs of the `tiny` table have no finished results file of the " \
        "`full` profile yet:"
    assert "| supervised (fully supervised) | 400 | 0, 1 |" in note
    assert note[-1].startswith("`.venv/bin/python -m semibook reproduce tiny` runs them")
    got = rp.collect(TINY, seeds=SEEDS, overrides=small)
    assert got["missing"] == [] and sorted(got["by_labels"]) == [20]
    assert vd.missing_markdown(got) == ""
    assert vd.table_markdown(got, 20) == results_table(
        {**got["by_labels"][20], "fully supervised (400 labels)": got["ceiling"]},
        "supervised", "fully supervised (400 labels)")
    res = {**got["by_labels"][20], "full": got["ceiling"]}
    assert list(res) == ["supervised", "mean_teacher", "full"]
    agg = aggregate(res, baseline="supervised", ceiling="full")

    hand = {}
    for name, (method, labels) in {"supervised": ("supervised", 20),
                                   "mean_teacher": ("mean_teacher", 20),
                                   "full": ("supervised", 400)}.items():
        vals = [_by_hand(isolated / "results" / result_name(
            sb.make_config(method, "fashion-mnist", labels, s, "full", **small)))
            for s in SEEDS]
        hand[name] = {"best": _mean_std([v[0] for v in vals]),
                      "last": _mean_std([v[1] for v in vals])}
    for name in hand:
        for which in ("best", "last"):
            assert agg[name][f"{which}_mean"] == pytest.approx(hand[name][which][0])
            assert agg[name][f"{which}_std"] == pytest.approx(hand[name][which][1])
        assert agg[name]["seeds"] == [0, 1] and agg[name]["n"] == 2
    b, m, c = (hand[k]["last"][0] for k in ("supervised", "mean_teacher", "full"))
    assert agg["mean_teacher"]["gain_last"] == pytest.approx(m - b)
    assert agg["supervised"]["gain_last"] is None
    if c > b:
        assert agg["mean_teacher"]["gap_last"] == pytest.approx((m - b) / (c - b))
        assert agg["full"]["gap_last"] is None  # the ceiling itself closes no share
    else:
        assert agg["mean_teacher"]["gap_last"] is None

    table = results_table(res, baseline="supervised", ceiling="full").splitlines()
    assert "seeds" in table[0] and "gap closed (last)" in table[0]
    assert "Gain: over supervised, mean ± std of the per-seed differences (in points); gap " \
        "closed: the share of the gap from supervised to full closed." in table
    mt = next(ln for ln in table if ln.startswith("| mean_teacher "))
    mean, std = hand["mean_teacher"]["last"]
    assert f"{100 * mean:.2f} ± {100 * std:.2f}%" in mt
    assert f"{100 * (m - b):+.2f} ± " in mt


def test_aggregate_of_known_numbers():
    def res(seed, best, last, metric="miou"):
        return {"seed": seed, "metric": metric, "profile": "full", "device": "cpu",
                "config": {"steps": 10}, "best": {metric: best, "step": 5},
                "last": {metric: last, "step": 10}}
    runs = {"supervised": [res(0, 0.30, 0.20), res(1, 0.40, 0.30)],
            "cps": [res(0, 0.50, 0.45), res(1, 0.50, 0.35)],
            "full": [res(0, 0.70, 0.60)]}
    agg = aggregate(runs, "supervised", "full")
    assert agg["supervised"]["last_mean"] == pytest.approx(0.25)
    assert agg["supervised"]["last_std"] == pytest.approx(math.sqrt(0.005))
    assert agg["cps"]["gain_last"] == pytest.approx(0.15)
    assert agg["cps"]["gap_last"] == pytest.approx(0.15 / 0.35)
    assert agg["cps"]["gap_best"] == pytest.approx(0.15 / 0.35)
    assert agg["full"]["last_std"] is None and agg["full"]["gap_last"] is None
    table = results_table(runs, "supervised", "full")
    # the gains: mean ± std of the per-seed differences (best: .2, .1; last: .25, .05)
    assert agg["cps"]["gain_last_sd"] == pytest.approx(math.sqrt(0.02))
    assert agg["cps"]["gain_best_sd"] == pytest.approx(math.sqrt(0.005))
    assert agg["full"]["gain_last_sd"] is None  # the ceiling has its own split
    assert ("| cps | 0, 1 | 50.00 ± 0.00% | 40.00 ± 7.07% | +15.00 ± 7.07 pts | "
            "+15.00 ± 14.14 pts | 43% |") in table
    assert table.endswith("Every run: profile `full`, 10 steps, device cpu.")
    # one run per entry: the chapters' format, best with its step and no seeds column
    single = results_table({k: v[0] for k, v in runs.items()}, "supervised").splitlines()
    assert single[0] == "| method | best mIoU (step) | last mIoU | gain (last) |"
    assert "Gain: over supervised (in points)." in single
    assert single[4] == "| full | 70.00% (5) | 60.00% | +40.00 pts |"
    # a value the runs do not share keeps its column, and only the shared ones are said below
    runs["full"][0]["config"]["steps"] = 20
    mixed = results_table({k: v[0] for k, v in runs.items()}, "supervised").splitlines()
    assert mixed[0].startswith("| method | steps | best mIoU (step) |")
    assert mixed[4].startswith("| full | 20 | 70.00% (5) |")
    assert mixed[-1] == "Every run: profile `full`, device cpu."


def test_cli_dry_run_lists_without_running(isolated):
    r = subprocess.run([sys.executable, "-m", "semibook", "reproduce", "segmentation", "--dry-run",
                        "--seeds", "2", "--methods", "supervised"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    n = len(rp.TABLE_LABELS["segmentation"]) + 1  # each label count and the ceiling
    assert lines[-1] == f"0 of {n} runs done, {n} to run"
    assert all(ln.startswith("missing  supervised") for ln in lines[:-1])
    assert "10000 labels (ceiling)  seed 2  full" in lines[-2]
    assert not (isolated / "runs").exists() and not (isolated / "results").exists()
    bad = subprocess.run([sys.executable, "-m", "semibook", "reproduce", "regression"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "classification, segmentation" in bad.stderr


def test_a_run_with_a_non_finite_loss_does_not_stop_the_table(monkeypatch, isolated):
    calls = []

    def fake_run(cfg, **kw):
        calls.append((cfg.method, cfg.labels, cfg.seed, kw["resume"], kw["overwrite"]))
        if cfg.method == "supervised" and cfg.labels == 20:
            raise rp.NonFiniteLossError("non-finite loss at step 3")
        return {"finished": True}
    monkeypatch.setattr(rp, "run", fake_run)
    lines = []
    rows = rp.reproduce(TINY, seeds=(0,), echo=lines.append)
    assert [r["status"] for r in rows] == ["failed", "ran", "ran"]
    assert calls == [("supervised", 20, 0, False, True), ("mean_teacher", 20, 0, False, True),
                     ("supervised", 400, 0, False, True)]
    assert lines[-1].startswith("1 run(s) failed: supervised")


def test_verdict_is_paired_over_seeds_and_needs_two_standard_deviations():
    def res(seed, last, metric="miou"):
        return {"seed": seed, "metric": metric, "last": {metric: last, "step": 10}}
    got = {"by_labels": {50: {"supervised": [res(0, 0.20), res(1, 0.30), res(2, 0.25)],
                              "cps": [res(0, 0.26), res(1, 0.35), res(2, 0.31)],
                              "mt": [res(0, 0.30), res(1, 0.28), res(2, 0.25)],
                              "worse": [res(0, 0.14), res(1, 0.25), res(2, 0.19)]}},
           "ceiling": [res(0, 0.60), res(1, 0.62), res(2, 0.58)]}
    v = vd.verdict(got, 50, "cps")  # per-seed gains 0.06, 0.05, 0.06: steady
    assert v["gain"] == pytest.approx(0.17 / 3) and v["shown"] is True
    assert v["gap_closed"] == pytest.approx((0.17 / 3) / (0.60 - 0.25))
    w = vd.verdict(got, 50, "mt")  # gains 0.10, -0.02, 0.00: a positive mean, but noise
    assert w["gain"] == pytest.approx(0.08 / 3) and w["shown"] is False
    assert "(met)" in vd.verdict_markdown(got, 50, "cps")
    assert "(NOT met)" in vd.verdict_markdown(got, 50, "mt")
    assert w["loss_shown"] is False and "a loss" not in vd.verdict_markdown(got, 50, "mt")
    x = vd.verdict(got, 50, "worse")  # per-seed losses 0.06, 0.05, 0.06: a steady loss
    assert x["shown"] is False and x["loss_shown"] is True
    assert "(NOT met); it is more than two standard deviations below it, a loss the seeds " \
        "agree on." in vd.verdict_markdown(got, 50, "worse")
    one = {"by_labels": {50: {"supervised": [res(0, 0.2)], "cps": [res(0, 0.3)]}}, "ceiling": []}
    assert vd.verdict(one, 50, "cps")["shown"] is False
    assert "not known yet" in vd.verdict_markdown(one, 50, "cps")
    assert vd.verdict(got, 200, "cps") is None and "no verdict" in vd.verdict_markdown(got, 200, "cps")


def test_a_verdict_not_met_gives_the_measured_facts():
    def res(seed, curve, metric="acc", agree=None):
        hist = [{"kind": "eval", "step": 100 * (i + 1), metric: v} for i, v in enumerate(curve)]
        if agree:
            hist[-1]["agreement"] = {"ema-vs-model": {"agree": agree[0], "agree_correct": agree[1]}}
        return {"seed": seed, "metric": metric, "history": hist,
                "last": {metric: curve[-1], "step": 100 * len(curve)}}
    got = {"by_labels": {250: {
        "supervised": [res(0, [0.5, 0.6, 0.70, 0.70, 0.70]), res(1, [0.5, 0.6, 0.7, 0.7, 0.66])],
        "mixmatch": [res(0, [0.3, 0.5, 0.60, 0.65, 0.71], agree=(0.8, 0.6)),
                     res(1, [0.3, 0.5, 0.6, 0.7, 0.70])]}},
        "ceiling": [res(0, [0.9] * 5)]}
    text = vd.verdict_markdown(got, 250, "mixmatch")
    # seed 0 gained +1 point and seed 1 +4: seed 0 holds the verdict back and is explained
    assert "(NOT met)" in text and "Measured on seed 0, where it gained least (+1.00), to " \
        "explain it:" in text
    assert "for the method, its accuracy was still rising at its last evaluation (step 500)" \
        in text
    assert "for supervised-only training, its accuracy was level over its last evaluations" in text
    assert ("agreed on 80.0% of the unlabeled images, and 75.0% of the labels it agreed on "
            "were right") in text
    got["by_labels"][250]["supervised"][1]["last"]["acc"] = 0.75  # now seed 1 gained least
    assert "Measured on seed 1, where it gained least (-5.00)" in \
        vd.verdict_markdown(got, 250, "mixmatch")


def test_entries_keep_only_the_label_counts_asked_for():
    seg = rp.entries("segmentation", seeds=(0,), methods=["supervised", "cps"], labels=[50])
    assert {(e.method, e.labels, e.ceiling) for e in seg} == {("supervised", 50, False),
                                                             ("cps", 50, False)}
    top = rp.entries("segmentation", seeds=(0,), methods=["supervised"], labels=[10000])
    assert [(e.labels, e.ceiling) for e in top] == [(10000, True)]
    with pytest.raises(ConfigError, match="label count"):
        rp.entries("segmentation", labels=[123])


def test_chapter_verdicts_say_how_they_count_then_one_paragraph_per_label_count(monkeypatch):
    monkeypatch.setattr(rp, "collect", lambda table, profile: {
        "table": rp.TABLES[table], "by_labels": {}, "ceiling": []})
    text = vd.chapter_verdicts("segmentation", ["cps"]).split("\n\n")
    assert text[0].startswith("Over the benchmark's seeds") and "two standard deviations" in text[0]
    assert len(text) == 1 + len(rp.TABLE_LABELS["segmentation"])
    assert all("no verdict" in t for t in text[1:])


def test_timing_sums_core_hours_against_the_limit_and_names_the_longest_run():
    t = rp.Table("seg", "fashion-scenes", ("supervised", "soft_teacher"), (20,),
                 full_labels=100)
    run = lambda m, s, secs: {"method": m, "labels": 20, "seed": s, "elapsed_s": secs,
                              "device": "cpu"}
    got = {"table": t, "by_labels": {20: {"supervised": [run("supervised", 0, 900.0)],
                                          "soft_teacher": [run("soft_teacher", 0, 600.0),
                                                           run("soft_teacher", 1, 960.0)]}},
           "ceiling": [run("supervised", 0, 900.0)], "runs": 6,
           "entries": rp.entries(t, seeds=(0, 1))}
    tm = vd.timing(got)
    assert tm["sum_s"] == 3360.0 and tm["runs"] == 4 and tm["of"] == 6 and tm["max_s"] == 960.0
    text = vd.timing_markdown({"seg": got}, budget_core_h=0.9, max_run_min=15)
    assert "| seg | 4 of 6 | 0.93 h | 0.47 h | 16.0 min (soft_teacher, 20 labels, seed 1) |" in text
    assert ("For the 4 finished runs: 0.93 core-hours (above the limit so far; the whole "
            "benchmark is not measured yet)") in text
    assert "longest run 16.0 min (above the limit)" in text and "within" not in text
    assert "0.93 core-hours (within the limit so far;" in vd.timing_markdown({"seg": got},
                                                                           budget_core_h=1.0)
    # two seeds of soft_teacher, the same work: 600 s and 960 s
    assert "differ by up to 1.60 times (soft_teacher, 20 labels: 600 s to 960 s)" in text
    one_seed = {**got, "by_labels": {20: {"supervised": [run("supervised", 0, 900.0)]}}}
    assert "differ" not in vd.timing_markdown({"seg": one_seed})


def test_contributions_compare_a_method_with_another_baseline_seed_by_seed(isolated):
    import json
    import semibook as sb
    t = rp.get_table("segmentation")
    for seed, (a, b) in enumerate([(0.30, 0.20), (0.34, 0.20)]):
        for method, value in (("dual_branch", a), ("supervised", b)):
            cfg = sb.make_config(method, t.dataset, 20, seed, "full")
            res = {"method": method, "dataset": t.dataset, "labels": 20, "seed": seed,
                   "profile": "full", "finished": True, "config": cfg.to_dict(),
                   "metric": "miou", "last": {"miou": value}, "elapsed_s": 1.0,
                   "device": "cpu", "history": []}
            path = isolated / "results" / f"fashion-scenes_20_{method}_seed{seed}_full.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(res))
    text = vd.contributions_markdown("segmentation", [
        ("dual_branch", "supervised", "the box labels"),
        ("dual_branch_teacher", "dual_branch", "the teacher")])
    # per-seed gains 10 and 14 points: mean 12, standard deviation 2.83, so shown
    assert ("**the box labels** (dual_branch against supervised, 20 labels): +12.00 mIoU "
            "points, standard deviation 2.83, seeds 0, 1; more than two standard deviations: "
            "a gain, shown.") in text
    assert "**the teacher** (dual_branch_teacher against dual_branch, 50 labels): no finished" \
        in text


def test_curve_shape_reads_rising_peaked_and_flat_curves():
    from semibook.report import curve_shape, describe_shape
    steps = [500, 1000, 1500, 2000, 2500, 3000]
    rising = [0.50, 0.60, 0.65, 0.70, 0.72, 0.75]
    peaked = [0.50, 0.70, 0.80, 0.78, 0.76, 0.74]   # MixMatch at 1000 labels, in shape
    flat = [0.50, 0.70, 0.75, 0.752, 0.751, 0.752]
    assert curve_shape(steps, rising)["shape"] == "rising"
    p = curve_shape(steps, peaked)
    assert (p["shape"], p["peak_step"]) == ("peaked", 1500) and p["fall"] == pytest.approx(0.06)
    assert curve_shape(steps, flat)["shape"] == "flat"
    assert describe_shape(steps, rising) == \
        "its accuracy was still rising at its last evaluation (step 3000)"
    assert describe_shape(steps, peaked) == \
        "its accuracy peaked at 80.00 at step 1500 and ended 6.00 points lower at step 3000"
    assert "still rising" not in describe_shape(steps, peaked)
    assert describe_shape(steps, flat, "mIoU") == \
        "its mIoU was level over its last evaluations (to step 3000)"


def test_the_conclusion_names_winners_losers_the_largest_gap_share_and_the_ceiling():
    t = rp.Table("cls", "fashion-mnist", ("supervised", "mixmatch", "mean_teacher"), (40, 250))
    run = lambda m, s, v: {"method": m, "labels": 40, "seed": s, "metric": "acc",
                           "last": {"acc": v}, "elapsed_s": 10.0, "device": "cpu"}
    sup = [run("supervised", s, v) for s, v in enumerate((0.55, 0.57, 0.56))]
    mm = [run("mixmatch", s, v) for s, v in enumerate((0.73, 0.74, 0.745))]
    mt = [run("mean_teacher", s, v) for s, v in enumerate((0.60, 0.55, 0.58))]
    got = {"table": t, "by_labels": {40: {"supervised": sup, "mixmatch": mm,
                                          "mean_teacher": mt}},
           "ceiling": [run("supervised", s, 0.90) for s in range(3)], "runs": 21,
           "entries": rp.entries(t)}
    text = vd.conclusion_markdown({"classification": got})
    assert text.startswith("**classification, 40 labels:** MixMatch beats supervised-only")
    assert "; Mean Teacher does not." in text
    # mixmatch: gain (0.18 + 0.17 + 0.185) / 3 = 0.1783 of a gap 0.90 - 0.56 = 0.34: 52%
    assert "52% (MixMatch, +17.8 points)" in text
    assert "Every label: 90.0% over 3 seeds." in text
    assert "9 of the table's 21 runs have not finished." in text
    got["by_labels"][40]["mean_teacher"] = [run("mean_teacher", s, v)  # below, every seed
                                            for s, v in enumerate((0.50, 0.52, 0.51))]
    assert ("MixMatch beats supervised-only training by more than two standard deviations; "
            "Mean Teacher ends below it by more than two standard deviations.") in \
        vd.conclusion_markdown({"classification": got})
    empty = {**got, "by_labels": {}}
    assert "**c, 40 labels:** no finished pair of runs yet." in vd.conclusion_markdown({"c": empty})


def test_the_measured_facts_name_a_class_that_collapsed_on_the_tracked_images():
    def row(step, acc, right, agree):
        per = {"0": {"agree": 0.9, "a_correct": 0.8}, "6": {"agree": agree, "a_correct": right}}
        return {"kind": "eval", "step": step, "acc": acc, "agreement": {"ema-vs-model": {
            "agree": 0.9, "agree_correct": 0.6, "per_class": per}}}
    res = {"dataset": "fashion-mnist", "metric": "acc", "last": {"acc": 0.6},
           "history": [row(500, 0.6, 0.5, 0.5), row(1000, 0.65, 0.7, 0.6), row(1500, 0.6, 0.2, 0.9)]}
    base = {"metric": "acc", "history": [row(500, 0.5, 0, 0), row(1000, 0.55, 0, 0)]}
    facts = vd.measured_facts(res, base)
    assert facts[-1] == ("on the tracked Shirt images, its right share fell from 70% (step 1000) "
                         "to 20% (step 1500) while the pair's agreement on them went from 60% to "
                         "90% (confirmation bias)")


def test_a_summary_gives_each_method_s_measured_result_and_the_class_that_collapsed(
        monkeypatch):
    def res(seed, last, collapse=False):
        per = lambda right, agree: {"agreement": {"a-b": {"per_class": {  # noqa: E731
            "1": {"agree": agree, "a_correct": right}}}}}
        hist = [{"kind": "eval", "step": 500, "miou": last, **per(0.6, 0.5)},
                {"kind": "eval", "step": 1000, "miou": last,
                 **per(0.2 if collapse else 0.6, 0.9)}]
        return {"seed": seed, "metric": "miou", "dataset": "fashion-scenes", "history": hist,
                "last": {"miou": last, "step": 1000}}
    got = {"by_labels": {20: {"supervised": [res(0, 0.30), res(1, 0.32), res(2, 0.31)],
                              "mt": [res(0, 0.40), res(1, 0.41), res(2, 0.42)],
                              "cps": [res(0, 0.29), res(1, 0.30, collapse=True), res(2, 0.30)],
                              "one": [res(0, 0.5)]}},
           "ceiling": [res(0, 0.70)]}
    monkeypatch.setattr(rp, "collect", lambda table, profile="full": got)
    lines = vd.summary_markdown("segmentation", ["mt", "cps", "one"], 20).splitlines()
    assert lines[0] == ("- mt, 20 labeled scenes: +10.0 ± 1.0 mIoU points over supervised-only "
                        "training over 3 seeds, more than two standard deviations above "
                        "supervised-only training; 26% of the gap to full supervision closed.")
    # cps: gains -0.01, -0.02, -0.01; seed 1 gained least, and its class 1 (top) collapsed
    assert lines[1].startswith("- CPS, 20 labeled scenes: -1.3 ± 0.6 mIoU points over ")
    assert lines[1].endswith("on seed 1, where it gained least, top collapsed on the tracked "
                             "unlabeled data.")
    assert lines[2] == "- one, 20 labels: not enough finished seeds for a verdict yet."


def test_the_measured_facts_give_what_a_mask_let_through_at_the_end():
    rows = [{"kind": "train", "step": s, "fg_share": v}
            for s, v in ((500, 0.5), (1500, 0.10), (2000, 0.20))]
    res = {"metric": "miou", "last": {"miou": 0.3}, "history": rows + [
        {"kind": "eval", "step": 1000, "miou": 0.2}, {"kind": "eval", "step": 2000, "miou": 0.3}]}
    facts = vd.measured_facts(res, {"metric": "miou", "history": []})
    assert facts[-1] == ("over its last 1,000 steps its teacher made 15.0% of the unlabeled "
                         "pixels foreground (item) targets")  # steps 1500 and 2000 only
    for r in rows:
        r["conf_share"] = r.pop("fg_share")
    assert vd.measured_facts(res, {"metric": "miou", "history": []})[-1] == (
        "over its last 1,000 steps its confidence mask kept 15.0% of the unlabeled pixels")


def test_versus_compares_two_methods_paired_by_seed(monkeypatch):
    def res(seed, v):
        return {"seed": seed, "metric": "miou", "last": {"miou": v, "step": 10}, "history": []}
    t = rp.Table("segmentation", "fashion-scenes", ("supervised", "a", "b"), (20,), 100)
    got = {"table": t, "ceiling": [], "by_labels": {20: {
        "a": [res(0, 0.40), res(1, 0.41), res(2, 0.42)],
        "b": [res(0, 0.38), res(1, 0.38), res(2, 0.38)]}}}
    monkeypatch.setattr(rp, "collect", lambda table, profile="full": got)
    text = vd.versus_markdown("segmentation", "a", "b")
    assert "- 20 labeled scenes: +3.0 ± 1.0 mIoU points over 3 seeds, more than two standard " \
        "deviations ahead" in text
    assert "behind" in vd.versus_markdown("segmentation", "b", "a")


def test_a_second_baseline_is_paired_by_seed_with_the_methods(monkeypatch):
    import semibook.engine.results as er
    from semibook.outcomes import baseline_ablation_markdown

    def res(seed, v, method="supervised", labels=50):
        return {"seed": seed, "metric": "miou", "labels": labels, "method": method,
                "finished": True, "last": {"miou": v, "step": 10}, "history": []}
    t = rp.Table("segmentation", "fashion-scenes", ("supervised", "adversarial"), (50,), 100)
    got = {"table": t, "ceiling": [], "by_labels": {50: {
        "supervised": [res(0, 0.50), res(1, 0.51), res(2, 0.52)],
        "adversarial": [res(0, 0.44, "adversarial"), res(1, 0.46, "adversarial"),
                        res(2, 0.46, "adversarial")]}}}
    monkeypatch.setattr(rp, "collect", lambda table, profile="full": got)
    # the second baseline scores what the method scores, seed by seed: no difference left
    alt = [res(0, 0.445), res(1, 0.455), res(2, 0.46)]
    monkeypatch.setattr(er, "load_results", lambda path=None, **m: alt)
    lines = baseline_ablation_markdown("segmentation", "x", ["adversarial"], "at lr 3e-3")
    lines = lines.splitlines()
    assert lines[0] == ("- 50 labeled scenes, supervised-only at lr 3e-3 against the "
                        "benchmark's baseline: -5.67 ± 0.29 points")
    assert lines[1].startswith("- 50 labeled scenes, adversarial training (Hung et al.): "
                               "-5.67 ± 0.58 points against the benchmark's baseline, +0.00")
    assert lines[1].endswith("(within two standard deviations)")
    assert "ahead by more" not in lines[1] and len(got["by_labels"][50]) == 2  # not modified
