"""The chapters' computed paragraphs and figures: the runs' shared setup, the predicted maps."""
import matplotlib
import pytest
import torch

import semibook as sb
from semibook.report import setup_markdown

matplotlib.use("Agg")


def test_setup_says_what_the_runs_share_from_their_configs():
    # the recipes alone (tuned=False): their sweeps may choose different learning rates
    cfgs = {m: sb.make_config(m, "fashion-scenes", 50, 0, "full", steps=700, crop_size=40,
                              tuned=False) for m in ("supervised", "cps", "cps_cutmix")}
    text = setup_markdown(cfgs)
    assert text.startswith("All 3 runs share the split file `splits/fashion-scenes_50_seed0.json`")
    assert "700 steps of 8 labeled + 8 unlabeled crops of 40 x 40 pixels" in text
    assert f"Adam at {cfgs['cps'].lr:g} with a poly schedule" in text
    assert "read from the finished results file" in text and "differ" not in text


def test_setup_lists_what_differs_and_says_smoke_numbers_mean_nothing():
    cfgs = {"supervised": sb.make_config("supervised", "fashion-mnist", 250, 0, "smoke"),
            "mixmatch": sb.make_config("mixmatch", "fashion-mnist", 250, 0, "smoke",
                                       steps=30)}
    text = setup_markdown(cfgs)
    assert text.startswith("Both runs share")
    assert "steps of" not in text  # not shared, so not claimed
    assert "They differ in `steps`: 24 (supervised), 30 (mixmatch)" in text
    assert "its numbers mean nothing" in text


def test_predicted_maps_come_from_the_results_and_refuse_other_scenes():
    from semibook.engine.evaluate import encode
    from semibook.pictures import show_predictions

    class Data:
        x_test = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
        y_test = torch.randint(0, 3, (6, 8, 8))
    pred = torch.randint(0, 3, (4, 8, 8), dtype=torch.uint8)
    res = {"samples": {"test_index": [1, 3, 4, 5], "test_pred": encode(pred)}}
    fig = show_predictions({"a": res, "b": res}, Data(), n=3)
    assert len(fig.axes) == 3 * 4  # rows: scenes; columns: scene, truth, a, b
    shown = fig.axes[3].images[0].get_array()  # row 0, column "b"
    assert shown.shape[:2] == (8, 8)
    other = {"samples": {"test_index": [0, 3, 4, 5], "test_pred": encode(pred)}}
    with pytest.raises(ValueError, match="other test scenes"):
        show_predictions({"a": res, "b": other}, Data(), n=3)


def test_setup_says_an_engine_ema_of_zero_is_the_teachers_own():
    cfgs = {m: sb.make_config(m, "fashion-mnist", 250, 0, "full")
            for m in ("supervised", "mean_teacher")}
    text = setup_markdown(cfgs)
    assert "mean_teacher 0.0" not in text and "0.0 (mean_teacher)" not in text
    own = cfgs["mean_teacher"].hparams["ema_after"]
    assert f"none, its teacher's own decay {own:g} (mean_teacher)" in text
    assert "Mean Teacher's sigmoid ramp-up and ramp-down (mean_teacher)" in text


def test_confidence_maps_come_from_the_results_and_say_when_missing():
    from semibook.engine.evaluate import encode
    from semibook.pictures import show_confidence_maps

    class Data:
        x_train = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
        y_train = torch.randint(0, 3, (6, 8, 8))
    dconf = torch.full((4, 8, 8), 51, dtype=torch.uint8)  # 0.2 everywhere
    dconf[:, :4] = 255
    res = {"samples": {"track_index": [5, 1, 2, 3], "track_pseudo": encode(dconf * 0),
                       "track_dconf": encode(dconf)}}
    fig = show_confidence_maps(res, Data(), n=2, tau=0.5)
    maps = [ax for ax in fig.axes if ax.images and ax.images[0].get_cmap().name == "gray"]
    assert len(maps) == 2 and maps[0].images[0].get_array()[0, 0] == 1.0
    assert maps[0].images[0].get_array()[7, 0] == pytest.approx(0.2)
    # most_kept: the tracked scene with the largest share at or above tau comes first
    full = dconf.clone()
    full[2] = 255
    fig = show_confidence_maps({"samples": {**res["samples"], "track_dconf": encode(full)}},
                               Data(), n=1, tau=0.5, most_kept=True, vmax=0.5)
    m = [ax for ax in fig.axes if ax.images and ax.images[0].get_cmap().name == "gray"][0]
    assert (m.images[0].get_array() == 1.0).all() and m.images[0].get_clim() == (0, 0.5)
    del res["samples"]["track_dconf"]
    with pytest.raises(ValueError, match="track_dconf"):
        show_confidence_maps(res, Data())


def test_agreement_figures_put_item_pixels_first_and_fit_the_column():
    from semibook.viz import PAIR_LABELS, agreement_grid, plot_agreement_split

    def row(step, fg):
        per = {"0": {"agree": 1.0, "agree_correct": 1.0, "n": 70},
               "2": {"agree": fg, "agree_correct": fg / 2, "n": 30}}
        return {"kind": "eval", "step": step, "agreement": {"confident-mask": {
            "agree": 0.7 + 0.3 * fg, "agree_correct": 0.7 + 0.15 * fg,
            "agree_wrong": 0.15 * fg, "disagree": 0.3 - 0.3 * fg, "n": 100, "per_class": per}}}
    hist = [row(100, 0.2), row(200, 0.6)]
    fig = plot_agreement_split(hist, "confident-mask", labels=PAIR_LABELS["confident-mask"])
    items, every = fig.axes[:2]
    assert items.get_title() == "item pixels" and every.get_title().startswith("all pixels")
    # the item panel's top band (dropped) at step 200 is 1 - 0.6 of the item pixels
    assert fig.get_size_inches()[0] * fig.dpi <= 750
    grid = agreement_grid({f"m{i}": {"history": hist} for i in range(4)}, ncols=3, background=0)
    assert grid.get_size_inches()[0] * 100 <= 750
    assert sum(ax.get_visible() for ax in grid.axes) == 4
    # one legend for the grid, outside the panels: the mask's bands named beside agreement's
    assert not any(ax.get_legend() for ax in grid.axes)
    names = [t.get_text() for t in grid.legends[0].get_texts()]
    assert names[0] == "agree, correct\n(a mask: kept, correct)" and "dropped" in names[2]


def test_diagrams_are_drawn_from_their_dot_source():
    import shutil
    from semibook.paths import ROOT
    from semibook.pictures import diagram_svg
    names = sorted(p.stem for p in (ROOT / "book" / "diagrams").glob("*.dot"))
    assert {"mixmatch", "mean_teacher", "adversarial", "cps", "dual_teacher"} <= set(names)
    if shutil.which("dot") is None:
        pytest.skip("graphviz's dot is not installed")
    svg = diagram_svg("mixmatch")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "MixUp" in svg


def test_a_segmentation_grid_names_ignored_pixels_only_where_a_map_has_them():
    from semibook.pictures import show_segmentation
    img = torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8)
    plain = torch.zeros(8, 8, dtype=torch.long)
    holed = plain.clone()
    holed[:2] = 255
    names = lambda fig: [t.get_text() for t in fig.legends[0].get_texts()]  # noqa: E731
    assert names(show_segmentation({"scene": [img], "map": [holed]}, 1, ["bg", "top"])) == \
        ["bg", "top", "ignored"]
    assert names(show_segmentation({"scene": [img], "map": [plain]}, 1, ["bg", "top"])) == \
        ["bg", "top"]


def test_an_agreement_split_can_cut_its_axis_to_show_thin_bands():
    from semibook.viz import PAIR_LABELS, plot_agreement_split
    hist = [{"kind": "eval", "step": s, "miou": 0.3, "agreement": {"confident-mask": {
        "agree": 0.05, "agree_correct": 0.04, "agree_wrong": 0.01, "disagree": 0.95, "n": 10,
        "per_class": {"0": {"agree": 0.05, "agree_correct": 0.04, "n": 5},
                      "1": {"agree": 0.05, "agree_correct": 0.04, "n": 5}}}}} for s in (1, 2)]
    fig = plot_agreement_split(hist, "confident-mask", labels=PAIR_LABELS["confident-mask"],
                               ymax=25)
    assert fig.axes[0].get_ylim() == (0, 25) and "cut at 25%" in fig.axes[0].get_ylabel()
    assert plot_agreement_split(hist, "confident-mask").axes[0].get_ylim() == (0, 100)
