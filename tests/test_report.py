"""The chapters' computed paragraphs and figures: the runs' shared setup, the predicted maps."""
import matplotlib
import pytest
import torch

import semibook as sb
from semibook.report import setup_markdown

matplotlib.use("Agg")


def test_setup_says_what_the_runs_share_from_their_configs():
    cfgs = {m: sb.make_config(m, "fashion-scenes", 50, 0, "full", steps=700, crop_size=40)
            for m in ("supervised", "cps", "cps_cutmix")}
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
    from semibook.viz import show_predictions

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
    with pytest.raises(ValueError, match="other validation scenes"):
        show_predictions({"a": res, "b": other}, Data(), n=3)


def test_setup_says_an_engine_ema_of_zero_is_the_teachers_own():
    cfgs = {m: sb.make_config(m, "fashion-mnist", 250, 0, "full")
            for m in ("supervised", "mean_teacher")}
    text = setup_markdown(cfgs)
    assert "mean_teacher 0.0" not in text and "0.0 (mean_teacher)" not in text
    own = cfgs["mean_teacher"].hparams["ema_after"]
    assert f"none, its teacher's own decay {own:g} (mean_teacher)" in text
