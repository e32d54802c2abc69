"""The confidence-threshold explorer: numbers checked by hand, and both widget flavours."""

from __future__ import annotations

import json
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from semibook.widgets import (overlay, overlay_rgb, plot_threshold_curves,  # noqa: E402
                              threshold_explorer, threshold_stats)


def hand_case():
    """One 2 x 3 map, 3 classes. The pixel at (1, 2) is ignored (target 255).

        conf    0.95 0.80 0.60      pred   1 1 2      target  1 2 2
                0.40 0.90 0.99             0 0 1              0 1 255
    """
    conf = torch.tensor([[[0.95, 0.80, 0.60], [0.40, 0.90, 0.99]]])
    pred = torch.tensor([[[1, 1, 2], [0, 0, 1]]])
    target = torch.tensor([[[1, 2, 2], [0, 1, 255]]])
    return conf, pred, target


def test_threshold_stats_by_hand():
    conf, pred, target = hand_case()
    s = threshold_stats(conf, pred, target, [0.3, 0.7, 0.85, 0.97], num_classes=3)
    # scored pixels: conf .95 .80 .60 .40 .90; right ones: (0,0), (0,2), (1,0)
    assert s["num_pixels"] == 5 and s["class_pixels"] == [1, 2, 2]
    assert s["tau"] == [0.3, 0.7, 0.85, 0.97]
    # tau 0.3 keeps all 5 (3 right); 0.7 keeps .95 .80 .90 (1 right);
    # 0.85 keeps .95 .90 (1 right); 0.97 keeps none (the .99 pixel is ignored)
    assert s["kept"] == pytest.approx([1.0, 0.6, 0.4, 0.0])
    assert s["accuracy"][:3] == pytest.approx([3 / 5, 1 / 3, 1 / 2])
    assert math.isnan(s["accuracy"][3])
    # coverage per true class: class 0 = {(1,0) .40}, 1 = {(0,0) .95, (1,1) .90},
    # 2 = {(0,1) .80, (0,2) .60}
    assert s["class_coverage"][0] == pytest.approx([1, 1, 1])
    assert s["class_coverage"][1] == pytest.approx([0, 1, 0.5])
    assert s["class_coverage"][2] == pytest.approx([0, 1, 0])
    assert s["class_coverage"][3] == pytest.approx([0, 0, 0])
    # accuracy per true class at tau 0.7: class 1 kept (0,0) right and (1,1) wrong; class 2
    # kept (0,1) wrong; class 0 kept nothing
    acc = s["class_accuracy"][1]
    assert math.isnan(acc[0]) and acc[1:] == pytest.approx([0.5, 0.0])
    # precision per pseudo label at tau 0.7: label 1 on (0,0) right, (0,1) wrong; label 0 on
    # (1,1) wrong; label 2 never kept
    prec = s["class_precision"][1]
    assert prec[:2] == pytest.approx([0.0, 0.5]) and math.isnan(prec[2])


def test_threshold_stats_is_json_and_keeps_ties():
    conf, pred, target = hand_case()
    s = threshold_stats(conf, pred, target, [0.8], num_classes=3)
    assert s["kept"] == pytest.approx([0.6])  # conf == tau counts as kept (.95 .80 .90)
    back = json.loads(json.dumps(s))
    assert back["kept"] == s["kept"] and back["class_pixels"] == [1, 2, 2]


def test_threshold_stats_rejects_bad_labels():
    conf, pred, target = hand_case()
    with pytest.raises(ValueError, match="outside"):
        threshold_stats(conf, pred, target, [0.5], num_classes=2)


def test_kept_share_never_increases_with_tau():
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(4, 16, 16, generator=g)
    pred = torch.randint(0, 5, (4, 16, 16), generator=g)
    target = torch.randint(0, 5, (4, 16, 16), generator=g)
    target[0, :4] = 255
    taus = torch.linspace(0, 1, 41).tolist()
    s = threshold_stats(conf, pred, target, taus, num_classes=5)
    assert s["kept"][0] == 1.0
    assert all(a >= b for a, b in zip(s["kept"], s["kept"][1:]))
    for c in range(5):
        cov = [row[c] for row in s["class_coverage"]]
        assert all(a >= b for a, b in zip(cov, cov[1:]))


def data(n=3, size=8, k=11):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    conf = torch.rand(n, size, size, generator=g) * 0.5 + 0.5
    pred = torch.randint(0, k, (n, size, size), generator=g)
    target = torch.where(torch.rand(n, size, size, generator=g) < 0.7, pred,
                         torch.randint(0, k, (n, size, size), generator=g))
    return images, conf, pred, target


def test_figures_draw():
    import matplotlib.pyplot as plt

    images, conf, pred, target = data()
    rgb = overlay_rgb(images[0], conf[0], pred[0], 0.75)
    assert rgb.shape == (8, 8, 3) and 0 <= rgb.min() and rgb.max() <= 1
    dropped = (conf[0] < 0.75).numpy()
    assert (rgb[dropped].std(axis=-1) < 1e-9).all()  # dropped pixels are grey
    fig, (a, b) = plt.subplots(1, 2)
    plot_threshold_curves(threshold_stats(conf, pred, target, [0.5, 0.9], 11), ax=a, mark=0.9)
    overlay(images[0], conf[0], pred[0], 0.9, ax=b)
    # item pixels and all pixels: kept and right each, and the mark
    assert len(a.lines) == 5 and len(b.images) == 1
    plt.close(fig)


def test_static_explorer_stacks_one_panel_per_tau_and_jslinks_the_slider():
    import ipywidgets as W

    images, conf, pred, target = data()
    taus = [0.5, 0.8, 0.95]
    box = threshold_explorer(images, conf, pred, target, taus=taus, live=False, n_show=2)
    assert isinstance(box, W.VBox)
    slider, stack = box.children
    assert isinstance(stack, W.Stack) and len(stack.children) == len(taus)
    assert all("data:image/png;base64," in p.value for p in stack.children)
    assert "tau = 0.8" in stack.children[1].value
    assert isinstance(slider, W.SelectionSlider) and len(slider.options) == len(taus)
    from ipywidgets.widgets.widget_link import Link

    link = box.link
    assert isinstance(link, Link) and link._model_name == "LinkModel"  # jslink: in the browser
    assert link.source == (slider, "index") and link.target == (stack, "selected_index")
    assert stack.selected_index == slider.index == 2  # starts at 0.95, the nearest to 0.9
    # the state that gets saved in the notebook references both ends by model id
    state = link.get_state()
    assert list(state["source"]) == [f"IPY_MODEL_{slider.model_id}", "index"]
    assert list(state["target"]) == [f"IPY_MODEL_{stack.model_id}", "selected_index"]


def test_live_explorer_slider_updates_output():
    images, conf, pred, target = data()
    box = threshold_explorer(images, conf, pred, target, live=True, n_show=1, tau=0.6)
    before = box.output.outputs
    assert len(before) == 1 and "tau = 0.6:" in before[0]["data"]["text/plain"]
    box.slider.value = 0.9
    after = box.output.outputs
    assert after != before and "tau = 0.9:" in after[0]["data"]["text/plain"]
    assert "data:image/png;base64," in after[0]["data"]["text/html"]
    assert box.stats["tau"] == [0.9]


def test_live_is_detected_from_the_kernel(monkeypatch):
    # pytest runs without an IPython kernel, so the explorer falls back to the static one
    images, conf, pred, target = data()
    monkeypatch.delenv("SEMIBOOK_WIDGETS", raising=False)
    box = threshold_explorer(images, conf, pred, target, taus=[0.7], n_show=0)
    assert hasattr(box, "stack") and len(box.stack.children) == 1
    monkeypatch.setenv("SEMIBOOK_WIDGETS", "live")
    assert hasattr(threshold_explorer(images, conf, pred, target, n_show=0), "output")
    monkeypatch.setenv("SEMIBOOK_WIDGETS", "fancy")
    with pytest.raises(ValueError, match="SEMIBOOK_WIDGETS"):
        threshold_explorer(images, conf, pred, target, n_show=0)


def test_collapse_read_out_finds_a_class_whose_right_share_falls_while_agreement_rises():
    from semibook.tracking import collapsed_classes, describe_collapse

    def row(step, shirt, agree):
        per = {"0": {"agree": 0.9, "agree_correct": 0.8, "a_correct": 0.85, "n": 10},
               "1": {"agree": agree, "agree_correct": 0.1, "a_correct": shirt, "n": 10}}
        return {"kind": "eval", "step": step, "agreement": {"t-s": {"per_class": per}}}
    hist = [row(100, 0.2, 0.5), row(200, 0.6, 0.6), row(300, 0.1, 0.95)]
    found = collapsed_classes(hist, "t-s", ["coat", "shirt"])
    assert [f["class"] for f in found] == ["shirt"]
    assert found[0]["peak_step"] == 200 and found[0]["last"] == 0.1
    assert "On the tracked shirt images, the teacher was right on 60% at step 200 and on 10% at " \
        "step 300, while the two models' agreement on them went from 60% to 95%" \
        in describe_collapse(hist, "t-s", ["coat", "shirt"], "the teacher")
    # the same fall with agreement falling too is not confirmation bias
    hist[-1]["agreement"]["t-s"]["per_class"]["1"]["agree"] = 0.3
    assert collapsed_classes(hist, "t-s", ["coat", "shirt"]) == []
    assert describe_collapse(hist, "t-s", ["coat", "shirt"]).startswith("No class collapsed")


def test_threshold_stats_split_item_pixels_from_background_and_say_items_first():
    from semibook.widgets import _summary
    conf, pred, target = hand_case()  # class 0 is the background: one pixel, conf .40, right
    s = threshold_stats(conf, pred, target, [0.3, 0.7], num_classes=3)
    # item pixels: .95 (right) .80 (wrong) .60 (right) .90 (wrong)
    assert s["kept_items"] == pytest.approx([1.0, 0.75])
    assert s["accuracy_items"] == pytest.approx([0.5, 1 / 3])
    assert s["kept_background"] == pytest.approx([1.0, 0.0])
    assert s["accuracy_background"][0] == 1.0 and math.isnan(s["accuracy_background"][1])
    line = _summary(s, 1)
    assert line.startswith("tau = 0.7: item pixels (80% of the pixels): keeps 75.0%, 33.3% of "
                           "the kept ones right; background: keeps 0.0%, none kept; all 5 pixels")
    plain = threshold_stats(conf, pred, target, [0.7], num_classes=3, background=None)
    assert "kept_items" not in plain and _summary(plain, 0).startswith("tau = 0.7: all 5 pixels")


def test_chapter_table_reads_every_seed_of_the_chapters_configs(monkeypatch):
    import semibook as sb
    from semibook import report
    from semibook.engine import results as engine_results

    def res(method, labels, seed, last):
        return {"method": method, "labels": labels, "seed": seed, "metric": "acc",
                "profile": "full", "device": "cpu", "config": {"steps": 10},
                "best": {"acc": last, "step": 10}, "last": {"acc": last, "step": 10}}
    files = {("supervised", 250): [0.70, 0.72, 0.74], ("mixmatch", 250): [0.75, 0.74, 0.80],
             ("supervised", 60000): [0.90, 0.91, 0.92]}
    monkeypatch.setattr(engine_results, "finished_results", lambda c: res(
        c.method, c.labels, c.seed, files[(c.method, c.labels)][c.seed]))
    cfgs = {m: sb.make_config(m, "fashion-mnist", 250, 0, "full")
            for m in ("supervised", "mixmatch")}
    table = report.chapter_table(cfgs).splitlines()
    assert "seeds" in table[0] and "gap closed (last)" in table[0]
    assert "the gap from supervised to fully supervised (60000 labels) closed." in "\n".join(table)
    # mixmatch - supervised per seed: .05, .02, .06 -> +4.33 ± 2.08
    assert table[3].startswith("| mixmatch | 0, 1, 2 | 76.33 ± 3.21% | 76.33 ± 3.21% | "
                               "+4.33 ± 2.08 pts | +4.33 ± 2.08 pts | 23% |")
    assert table[-1].startswith("Mean ± standard deviation over the seeds listed")
    # the smoke profile's runs are never saved: the chapter's own run, one seed, said so
    smoke = {m: sb.make_config(m, "fashion-mnist", 250, 0, "smoke") for m in cfgs}
    own = {m: res(m, 250, 0, v) for m, v in (("supervised", 0.5), ("mixmatch", 0.6))}
    text = report.chapter_table(smoke, own)
    assert "| mixmatch | 60.00% (10) | 60.00% | +10.00 pts |" in text
    assert text.endswith("One seed only (seed 0): no spread is known, so a difference between "
                         "rows may be noise.")


def test_a_segmentation_collapse_is_read_on_pixels():
    from semibook.tracking import describe_collapse

    def row(step, right, agree):
        per = {"1": {"agree": agree, "a_correct": right}}
        return {"kind": "eval", "step": step, "miou": 0.3, "agreement": {"a-b": {"per_class": per}}}
    hist = [row(500, 0.54, 0.66), row(3000, 0.23, 0.94)]
    assert describe_collapse(hist, "a-b", ["background", "trouser"], "it").startswith(
        "On the tracked trouser pixels, it was right on 54% at step 500 and on 23% at step 3000")
    assert "tracked unlabeled pixels" in describe_collapse(hist[:1] * 2, "a-b", ["bg", "t"])
