"""The sweep's ablations and per-class curves read from results files (synthetic histories)."""

import pytest

from semibook import diagnosis, outcomes, tuning


def run(curve, per_class, key="class_acc", metric="acc"):
    """A results dict whose evaluations at steps 500, 1000, ... carry ``curve`` and the
    per-class scores ``per_class`` (one list per evaluation)."""
    hist = [{"kind": "train", "step": 1}]
    for i, (v, pc) in enumerate(zip(curve, per_class)):
        hist.append({"kind": "eval", "step": 500 * (i + 1), metric: v, key: pc})
    return {"metric": metric, "history": hist, "last": {metric: curve[-1]},
            "best": {metric: max(curve)}, "elapsed_s": 60.0, "finished": True}


def test_class_scores_reads_accuracy_or_iou_per_class():
    r = run([0.5, 0.6], [[0.1, 0.9], [0.2, 0.8]])
    assert diagnosis.class_scores(r) == ([500, 1000], [[0.1, 0.2], [0.9, 0.8]])
    s = run([0.3, 0.4], [[0.9, 0.1, 0.0], [0.95, 0.2, 0.1]], key="iou", metric="miou")
    assert diagnosis.class_scores(s) == ([500, 1000], [[0.9, 0.95], [0.1, 0.2], [0.0, 0.1]])
    assert diagnosis.curve(s) == ([500, 1000], [0.3, 0.4])


@pytest.fixture
def sweep(monkeypatch):
    """MixMatch's sweep with an official trial that peaks and falls as class 'shirt' collapses,
    and a chosen trial that keeps rising."""
    names = list(tuning.SWEEPS["classification"]["mixmatch"])
    files = {names[0]: run([0.60, 0.70, 0.65], [[0.7, 0.6], [0.8, 0.5], [0.85, 0.2]]),
             names[1]: run([0.55, 0.70, 0.78], [[0.6, 0.5], [0.8, 0.6], [0.85, 0.7]]),
             names[2]: run([0.50, 0.60, 0.70], [[0.5, 0.5], [0.6, 0.6], [0.7, 0.7]]),
             **{n: run([0.50, 0.60, 0.72], [[0.5, 0.5], [0.6, 0.6], [0.7, 0.7]])
                for n in names[3:]}}
    monkeypatch.setattr(tuning, "result", lambda task, m, t: files.get(t) if m == "mixmatch"
                        else None)
    return names


def test_the_ablation_names_the_peak_the_gain_and_the_class_that_collapsed(sweep):
    text = diagnosis.describe_ablation("classification", "mixmatch", ["pullover", "shirt"])
    assert f"{sweep[0]}: 65.0 at step 1500, after a peak of 70.0 at step 1000 (5.0 points lost)" \
        in text
    assert f"{sweep[1]}: 78.0 at step 1500" in text and "peak" not in text.split(";")[1]
    assert "+13.0 points for the chosen value" in text
    assert "shirt 20 -> 70" in text and "pullover" not in text  # moved by under 5 points


def test_the_ablation_says_so_when_the_official_value_won(sweep, monkeypatch):
    monkeypatch.setattr(tuning, "choices", lambda task: {"mixmatch": sweep[0]})
    text = diagnosis.describe_ablation("classification", "mixmatch", ["pullover", "shirt"])
    assert text.startswith("mixmatch: the official value was the best of its sweep")


def test_an_unfinished_sweep_is_said_to_be_unfinished(monkeypatch):
    monkeypatch.setattr(tuning, "result", lambda *a: None)
    assert "not finished" in diagnosis.describe_ablation("segmentation", "cps", ["bg"])


def test_plots_draw_one_line_per_trial_and_one_panel_per_class(sweep):
    import matplotlib
    matplotlib.use("Agg")
    ax = diagnosis.plot_trials("classification", "mixmatch", baseline=False)
    assert len(ax.get_lines()) == len(sweep) and ax.get_lines()[0].get_linestyle() == "--"
    runs = diagnosis.trials("classification", "mixmatch")
    fig = diagnosis.plot_class_scores(runs, ["pullover", "shirt"], ncols=3)
    shown = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in shown] == ["pullover", "shirt"] and len(fig.axes) == 3
    assert all(len(a.get_lines()) == len(sweep) for a in shown)


def test_a_chapters_tuning_section_shows_table_curves_panels_and_words(sweep, capsys,
                                                                         monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(
        sum(a.get_visible() for a in plt.gcf().axes)))
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj.data))
    diagnosis.show_sweep("classification", "mixmatch", ["pullover", "shirt"])
    table, curves, panels = shown
    assert table.count("\n") == len(sweep) + 1 and "**" in table  # header, rule, trials; a choice
    assert curves == 1 and panels == 2  # the trials' axes; one panel per class
    out = capsys.readouterr().out
    assert "+13.0 points for the chosen value" in out
    assert out.count("\n  ") == len(sweep)  # one line per trial


def test_the_pilot_table_gives_each_methods_gain_over_the_baseline(monkeypatch):
    names = {m: list(t) for m, t in tuning.SWEEPS["classification"].items()}
    score = {("supervised", names["supervised"][1]): 0.60, ("mixmatch", names["mixmatch"][2]): 0.75}

    def fake(task, m, t):
        v = score.get((m, t), 0.5)
        return {"metric": "acc", "last": {"acc": v}, "best": {"acc": v}, "elapsed_s": 1.0}
    monkeypatch.setattr(tuning, "result", fake)
    rows = {r["method"]: r for r in tuning.against_supervised("classification")}
    assert rows["mixmatch"]["trial"] == names["mixmatch"][2]
    assert abs(rows["mixmatch"]["gain"] - 0.15) < 1e-9
    assert abs(rows["mean_teacher"]["gain"] - (0.5 - 0.6)) < 1e-9
    md = tuning.against_markdown("classification")
    assert f"| mixmatch | {names['mixmatch'][2]} | 75.0 | +15.0 |" in md


def test_seeds_markdown_reads_each_method_seed_by_seed():
    def res(seed, last):
        return run([last], [[last]]) | {"seed": seed}
    got = {"by_labels": {40: {"supervised": [res(0, 0.49), res(1, 0.59)],
                              "mixmatch": [res(1, 0.75), res(0, 0.632)]}}}
    assert outcomes.seeds_markdown(got, 40).splitlines() == [
        "| method | seed 0 | seed 1 |", "|---|---|---|",
        "| supervised | 49.0 | 59.0 |", "| mixmatch | 63.2 | 75.0 |",
        "| gain of mixmatch | +14.2 | +16.0 |"]
    got["by_labels"][40]["mean_teacher"] = [res(1, 0.6)]  # a seed not finished: a dash
    lines = outcomes.seeds_markdown(got, 40).splitlines()
    assert "| mean_teacher | - | 60.0 |" in lines and lines[-1] == "| gain of mean_teacher | - | +1.0 |"
    assert outcomes.seeds_markdown(got, 40, ["supervised", "mean_teacher"]).splitlines()[2:] == [
        "| supervised | 49.0 | 59.0 |", "| mean_teacher | - | 60.0 |",
        "| gain of mean_teacher | - | +1.0 |"]


def test_describe_end_says_when_the_loss_jumped_in_the_last_steps():
    def res(losses, acc, raw):
        hist = [{"kind": "train", "step": 100 * (i + 1), "loss": v} for i, v in enumerate(losses)]
        hist.append({"kind": "eval", "step": 100 * len(losses), "acc": acc, "acc_model": raw})
        return {"method": "supervised", "seed": 0, "metric": "acc", "history": hist}
    jumped = outcomes.describe_end(res([1.0, 0.1, 0.001, 0.0001, 0.05], 0.49, 0.23))
    assert jumped == ("supervised, seed 0: training loss 0.00010 at its lowest (step 400), "
                      "0.0500 at step 500; at the end the evaluated model scores 49.0 % and the "
                      "raw network 23.0 %: the loss jumped in the last steps, and the network "
                      "with it.")
    assert "jumped" not in outcomes.describe_end(res([1.0, 0.1, 0.01, 0.002, 0.001], 0.6, 0.6))
    assert "jumped" not in outcomes.describe_end(res([1.0, 0.001, 0.5, 0.4, 0.3], 0.6, 0.6))


def test_a_curve_s_points_are_scored_on_the_same_images():
    from semibook.verdicts import measured_facts
    from semibook.viz import plot_accuracy
    r = run([0.50, 0.60, 0.40], [[0.5], [0.6], [0.4]])
    r["history"][-1]["subset_acc"] = 0.62  # the last point on every image fell, on the subset rose
    assert diagnosis.curve(r) == ([500, 1000, 1500], [0.50, 0.60, 0.62])
    assert diagnosis.curve(r, "class_acc")[1][-1] == [0.4]  # no subset score: the row's own
    facts = measured_facts(r, run([0.5, 0.55, 0.6], [[0.5]] * 3))
    assert facts[0].startswith("for the method, its accuracy was still rising")
    r["history"][-1]["acc_student"] = 0.45  # another model: no subset score at the last row
    for row, v in zip(r["history"][1:3], (0.30, 0.35)):
        row["acc_student"] = v
    ax = plot_accuracy({"m": r})
    line, diamond = ax.lines[:2]  # the subset's line, then the table's last score apart
    assert list(line.get_ydata()) == pytest.approx([50.0, 60.0, 62.0])
    assert list(diamond.get_xdata()) == [1500] and diamond.get_ydata()[0] == pytest.approx(40.0)
    ax = plot_accuracy({"s": r}, key="acc_student")  # its line stops at the last subset point
    assert list(ax.lines[0].get_xdata()) == [500, 1000]
    assert ax.lines[1].get_ydata()[0] == pytest.approx(45.0)
    assert ax.get_legend().get_texts()[-1].get_text() == "last, on every test image"
    ax = plot_accuracy({"s": r}, ax=plot_accuracy({"m": r}))  # two calls on one axes
    assert [t.get_text() for t in ax.get_legend().get_texts()].count(
        "last, on every test image") == 1
    plain = run([0.5, 0.6], [[0.5], [0.6]])  # no subset: every point on every image, no diamond
    assert len(plot_accuracy({"p": plain}).lines) == 1


def test_sweep_leads_read_a_folder_s_trials_and_compare_each_choice_with_the_baseline(
        monkeypatch):
    import semibook.engine.results as er

    def trial(method, name, last, labels=100):
        return run([last], [[last]]) | {"method": method, "trial": name, "labels": labels,
                                         "dataset": "fashion-mnist"}
    files = [trial("supervised", "a", 0.69), trial("supervised", "b", 0.70),
             trial("mixmatch", "x", 0.74), trial("mixmatch", "y", 0.76),
             trial("mean_teacher", "z", 0.68), {**trial("mixmatch", "w", 0.9), "finished": False}]
    monkeypatch.setattr(er, "load_results", lambda folder, **m: [
        f for f in files if all(f[k] == v for k, v in m.items())])
    got = diagnosis.sweep_leads("old", "classification")
    assert got["labels"] == [100]
    assert [(r["method"], r["trials"], r["chosen"]) for r in got["rows"]] == [
        ("supervised", 2, "b"), ("mixmatch", 2, "y"), ("mean_teacher", 1, "z")]
    assert got["rows"][0]["lead"] is None and got["rows"][1]["lead"] == pytest.approx(0.06)
    text = diagnosis.sweep_leads_markdown({"100 labels": got})
    assert "| mixmatch | 76.0 | +6.0 |" in text and "| mean_teacher | 68.0 | -2.0 |" in text


def test_a_trial_with_a_confidence_mask_says_what_share_it_kept():
    r = run([0.3, 0.35], [[0.3], [0.35]], key="iou", metric="miou")
    r["history"][1:1] = [{"kind": "train", "step": s, "conf_share": v}
                         for s, v in ((500, 1.0), (1500, 0.1), (2000, 0.04), (2500, 0.06))]
    # the last 1,000 steps of the log (it ends at 2,500: steps 1,501 to 2,500): 0.04 and 0.06
    assert diagnosis.kept_share(r) == pytest.approx(0.05)
    assert diagnosis.describe_trial("t", r).endswith(
        "its mask kept 5.0 % of the unlabeled pixels (mean over its last 1,000 steps)")
    assert diagnosis.kept_share(run([0.5], [[0.5]])) is None  # no mask logged: no claim
    assert "mask" not in diagnosis.describe_trial("t", run([0.5], [[0.5]]))


def test_the_panels_set_the_chosen_trial_against_the_one_whose_class_collapsed(
        sweep, capsys, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = {t: tuning.result("classification", "mixmatch", t) for t in sweep}

    def track(res, shirt_right, shirt_agree):  # the pair's per-class shares at each evaluation
        evals = [h for h in res["history"] if h["kind"] == "eval"]
        for h, right, agree in zip(evals, shirt_right, shirt_agree):
            h["agreement"] = {"e-m": {"per_class": {
                "0": {"agree": 0.9, "a_correct": 0.8}, "1": {"agree": agree, "a_correct": right}}}}
    for t in sweep:
        track(files[t], [0.6, 0.6, 0.6], [0.8, 0.8, 0.8])
    track(files[sweep[2]], [0.7, 0.5, 0.3], [0.5, 0.8, 0.9])  # shirt collapses: 40 points
    track(files[sweep[3]], [0.7, 0.6, 0.5], [0.5, 0.8, 0.9])  # 20 points
    assert diagnosis.worst_collapse(files, "e-m", ["pullover", "shirt"]) == sweep[2]
    assert diagnosis.worst_collapse({sweep[0]: files[sweep[0]]}, "e-m", ["p", "s"]) is None
    titles = []
    monkeypatch.setattr(plt, "show", lambda: titles.append(plt.gcf()._suptitle and [
        t.get_text() for t in plt.gcf().legends[0].get_texts()] if plt.gcf().legends else None))
    monkeypatch.setattr("IPython.display.display", lambda obj: None)
    diagnosis.show_sweep("classification", "mixmatch", ["pullover", "shirt"], pair="e-m")
    assert titles[-1] == [f"most collapsed: {sweep[2]}", f"chosen: {sweep[1]}"]
    lines = capsys.readouterr().out.splitlines()
    collapse = [ln for ln in lines if "confirmation bias" in ln]
    assert len(collapse) == 2 and collapse[0].startswith(f"  {sweep[2]}")
    assert "On the tracked shirt images, it was right on 70% at step 500 and on 30% at step " \
        "1500" in collapse[0]


def test_classes_markdown_gives_each_class_mean_over_seeds_and_the_change():
    def seeded(seed, pc):
        return {**run([0.5, 0.6], [[0.0, 0.0], pc]), "seed": seed}
    got = {"by_labels": {40: {"supervised": [seeded(0, [0.2, 0.8]), seeded(1, [0.4, 0.6])],
                              "mixmatch": [seeded(0, [0.5, 0.7]), seeded(1, [0.7, 0.7])]}}}
    text = outcomes.classes_markdown(got, 40, ["supervised", "mixmatch"], ["shirt", "bag"])
    assert text.splitlines()[0] == ("**Each class's last test accuracy (%), mean ± std over the "
                                    "seeds**")
    assert text.splitlines()[-2:] == ["| shirt | 30.0 ± 14.1 | 60.0 ± 14.1 | +30.0 |",
                                      "| bag | 70.0 ± 14.1 | 70.0 ± 0.0 | +0.0 |"]
    assert outcomes.classes_markdown(got, 250, ["supervised"], ["shirt", "bag"]) == ""


def test_describe_lead_gives_one_model_s_lead_over_another_at_each_evaluation():
    r = run([0.50, 0.60, 0.40], [[0.5], [0.6], [0.4]])
    r["history"][-1]["subset_acc"] = 0.62
    for row, v in zip(r["history"][1:], (0.45, 0.62, 0.38)):
        row["acc_student"] = v
    text = outcomes.describe_lead([r, r], "acc", "acc_student", ("the teacher", "the student"))
    assert text == ("Mean over 2 seeds, the teacher minus the student: +5.0 points at step 500, "
                    "-2.0 points at step 1000; at the last evaluation, on every test image, "
                    "40.0 % against 38.0 %.")


def test_show_seeds_draws_the_classes_of_the_seed_that_held_a_verdict_back(monkeypatch, capsys):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semibook import reproduce
    shown, tables = [], []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()._suptitle.get_text()))
    monkeypatch.setattr("IPython.display.display", lambda obj: tables.append(obj.data))

    def seeded(method, seed, last):
        r = run([0.5, last], [[0.5] * 10, [last] * 10])
        r["history"][0]["loss"] = 0.1
        return {**r, "method": method, "seed": seed}
    got = {"table": reproduce.get_table("classification"), "ceiling": [],
           "by_labels": {40: {"supervised": [seeded("supervised", s, 0.50) for s in range(3)],
                              "mixmatch": [seeded("mixmatch", s, v)
                                           for s, v in enumerate((0.70, 0.52, 0.71))],
                              "mean_teacher": [seeded("mean_teacher", s, v)
                                               for s, v in enumerate((0.60, 0.61, 0.60))]}}}
    monkeypatch.setattr(reproduce, "collect", lambda table: got)
    outcomes.show_seeds("classification", 40, ["mixmatch", "mean_teacher"])
    # mixmatch (+20, +2, +21) is not met: its seed 1 is drawn; mean_teacher (+10, +11, +10) is
    assert shown == ["mixmatch on seed 1, where it gained least: each class's test score over "
                     "training"]
    assert "| gain of mixmatch | +20.0 | +2.0 | +21.0 |" in tables[0]
    assert tables[1].startswith("**Each class's last test accuracy (%), mean ± std")
    assert capsys.readouterr().out.count("supervised, seed") == 3
