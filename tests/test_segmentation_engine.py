import numpy as np
import pytest
import torch

import semibook as sb
from semibook.data.splits import load_or_make_split
from semibook.engine.checkpoint import load_checkpoint
from semibook.engine.loop import fit, prepare


def seg_cfg(method, tiny_scenes, **kw):
    return sb.make_config(method, "fashion-scenes", 16, 0, "smoke",
                          **{**tiny_scenes, "steps": 6, "eval_every": 3, "log_every": 3, **kw})


def test_segmentation_split_is_a_seeded_subset_written_to_a_file(tmp_path):
    y = torch.zeros(50, 8, 8, dtype=torch.long)
    a = load_or_make_split("scenes", y, 10, 0, 11, tmp_path / "a")
    b = load_or_make_split("scenes", y, 10, 0, 11, tmp_path / "b")
    c = load_or_make_split("scenes", y, 10, 1, 11, tmp_path / "c")
    assert a.path.read_bytes() == b.path.read_bytes() and len(a.labeled) == 10
    assert not np.array_equal(a.labeled, c.labeled)
    assert not set(a.labeled) & set(a.unlabeled) and len(a.unlabeled) == 40


def test_segmentation_batch_views_are_aligned_and_seeded(tiny_scenes):
    cfg = seg_cfg("supervised", tiny_scenes)
    tr, _ = prepare(cfg, torch.device("cpu"))
    b = tr.data.batch(2, 2, 1)
    assert b.x_l.shape == (4, 3, 64, 64) and b.y_l.shape == (4, 64, 64)
    assert 0 <= b.x_l.min() and b.x_l.max() <= 1  # [0, 1]: the model normalises
    assert len(b.ys_l) == 2 and not torch.equal(b.ys_l[0], b.ys_l[1])
    assert set(b.y_l.unique().tolist()) <= set(range(11)) | {255}
    again = prepare(cfg, torch.device("cpu"))[0].data.batch(2, 2, 1)
    assert torch.equal(again.x_l, b.x_l) and torch.equal(again.y_u, b.y_u)


def test_segmentation_run_reports_miou_and_resumes_bit_exact(tiny_scenes, tmp_path):
    cfg = seg_cfg("supervised", tiny_scenes)
    whole = fit(cfg, tmp_path / "whole", progress=False, device="cpu")
    fit(cfg, tmp_path / "parts", progress=False, device="cpu", stop_after=3)
    resumed = fit(cfg, tmp_path / "parts", resume=True, progress=False, device="cpu")
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["method"]
    b = load_checkpoint(tmp_path / "parts" / "checkpoint.pt")["method"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    ev = [r for r in whole["history"] if r["kind"] == "eval"]
    assert whole["metric"] == "miou" and 0 <= ev[-1]["miou"] <= 1 and len(ev[-1]["iou"]) == 11
    assert whole["best"]["miou"] == max(r["miou"] for r in ev)
    assert [r["miou"] for r in ev] == [r["miou"] for r in resumed["history"] if r["kind"] == "eval"]


def test_classification_only_methods_refuse_segmentation(tiny_scenes):
    with pytest.raises(sb.ConfigError, match="no segmentation version.*supervised"):
        seg_cfg("mixmatch", tiny_scenes)
