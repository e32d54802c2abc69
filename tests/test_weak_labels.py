"""Chapter 7's weak labels (fashion-scenes boxes and image-level classes) and its three
methods: soft_teacher, dual_branch, dual_branch_teacher."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import semibook as sb
from semibook.config import ConfigError
from semibook.data import scenes
from semibook.data.scenes import (IGNORE_INDEX, Layer, box_label_map, boxes_from, image_tags,
                                  item_boxes, load_scene_boxes, scenes_from)
from semibook.engine.fit import fit, prepare
from semibook.methods.dual_branch_teacher import allowed_pseudo_labels
from semibook.methods.soft_teacher import soft_background_loss
from tests.conftest import seg_cfg as scene_cfg


def layer(ink: np.ndarray, top: int, left: int, label: int) -> Layer:
    return Layer(ink.astype(float), np.ones(3), top, left, label)


def test_a_box_is_the_extent_of_the_items_ink_inside_the_frame():
    ink = np.zeros((6, 6))
    ink[1:5, 2:4] = 1.0  # ink rows 1..4, columns 2..3
    ink[3, 5] = 0.2  # below the ink threshold: not part of the item
    rows = item_boxes([layer(ink, 10, 20, 3), layer(ink, -3, 26, 7)], 32)
    assert rows[0].tolist() == [3, 11, 22, 15, 24]
    # the second item sticks out at the top: its box is clipped to the frame (rows 0-1)
    assert rows[1].tolist() == [7, 0, 28, 2, 30]
    assert rows[2:].tolist() == [[-1] * 5] * 2  # two items: the other rows are empty


def test_an_item_with_no_ink_in_the_frame_has_no_box():
    ink = np.zeros((4, 4))
    ink[0, 0] = 1.0
    rows = item_boxes([layer(ink, -2, -2, 5)], 16)  # its only inked pixel is outside
    assert rows[0].tolist() == [-1] * 5


def test_every_visible_item_pixel_lies_in_a_box_of_its_class(fake_fashion):
    from semibook.data.scenes import _source
    x, y, _ = _source("train", str(fake_fashion))
    _, masks = scenes_from(x, y, "train", 12)
    boxes = boxes_from(x, y, "train", 12).numpy()
    for mask, b in zip(masks.numpy(), boxes):
        tags = image_tags(b)
        for c in np.unique(mask):
            assert tags[c]
            if c == 0:
                continue
            inside = np.zeros(mask.shape, bool)
            for label, t, l, bt, r in b:
                if label == c:
                    inside[t:bt, l:r] = True
            assert inside[mask == c].all()
        drawn = [row for row in b if row[0] >= 0]
        assert 1 <= len(drawn) <= 3  # one to three items per scene


def test_image_tags_hold_the_background_and_each_box_class():
    b = np.full((2, 4, 5), -1, np.int16)
    b[0, 0] = (3, 0, 0, 2, 2)
    b[0, 1] = (3, 4, 4, 6, 6)
    b[1, 0] = (10, 1, 1, 3, 3)
    tags = image_tags(b, 11)  # the first scenes' eleven classes
    assert tags.shape == (2, 11)
    assert np.flatnonzero(tags[0]).tolist() == [0, 3]
    assert np.flatnonzero(tags[1]).tolist() == [0, 10]


def test_box_label_map_ignores_where_boxes_of_different_classes_overlap():
    b = np.full((4, 5), -1, np.int16)
    b[0] = (2, 0, 0, 4, 4)
    b[1] = (5, 2, 2, 6, 6)  # overlaps the first at rows 2-3, columns 2-3
    b[2] = (5, 5, 5, 7, 7)  # same class as the second: their overlap keeps class 5
    m = box_label_map(b, 8)
    assert m[0, 0] == 2 and m[1, 3] == 2
    assert (m[2:4, 2:4] == IGNORE_INDEX).all()
    assert m[5, 5] == 5 and m[6, 6] == 5 and m[4, 4] == 5
    assert m[7, 0] == 0 and m[0, 7] == 0  # outside every box: background
    assert m.dtype == np.uint8


def test_scene_boxes_are_cached_and_replay_the_generator(fake_fashion, monkeypatch):
    root = str(fake_fashion)
    first = load_scene_boxes("train", 6, root=root)
    monkeypatch.setattr(scenes, "boxes_from", lambda *a, **k: pytest.fail("not cached"))
    assert torch.equal(load_scene_boxes("train", 6, root=root), first)
    from semibook.data.scenes import _source
    x, y, _ = _source("train", root)
    monkeypatch.undo()
    assert torch.equal(boxes_from(x, y, "train", 6), first)


def seg_cfg(method, tiny_scenes, **kw):
    return scene_cfg(method, tiny_scenes, **{"steps": 4, "eval_every": 2, **kw})


def test_weak_label_maps_move_with_the_unlabeled_view(tiny_scenes):
    tr, _ = prepare(seg_cfg("dual_branch", tiny_scenes), torch.device("cpu"))
    b = tr.data.batch(1, 1, 1)
    assert b.w_u.shape == b.y_u.shape and b.tags_u.shape == (len(b.y_u), 5)
    item = (b.y_u != 0) & (b.y_u != IGNORE_INDEX)
    # a visible item pixel lies in a box of its class: that class, or ignored on an overlap
    assert item.any() and ((b.w_u[item] == b.y_u[item]) | (b.w_u[item] == IGNORE_INDEX)).all()
    assert (b.w_u[b.y_u == IGNORE_INDEX] == IGNORE_INDEX).all()  # outside the image: both
    for y, tags in zip(b.y_u, b.tags_u):
        seen = y[y != IGNORE_INDEX].unique()
        assert tags[seen].all()
    # the other methods' batches are unchanged by the weak labels' presence
    plain = prepare(seg_cfg("mean_teacher", tiny_scenes), torch.device("cpu"))[0]
    p = plain.data.batch(1, 1, 1)
    assert torch.equal(p.y_u, b.y_u) and torch.equal(p.x_u, b.x_u) and p.w_u is None


def test_weak_label_methods_refuse_data_without_weak_labels(tiny_scenes, monkeypatch):
    import semibook.data as data
    monkeypatch.setattr(data, "_WEAK", {})
    with pytest.raises(ConfigError, match="weak labels"):
        prepare(seg_cfg("dual_branch", tiny_scenes), torch.device("cpu"))


def test_soft_teacher_weighs_background_pixels_by_the_teachers_background_probability():
    # three pixels: confident foreground (class 3), unconfident foreground, background
    p = torch.tensor([[0.02, 0.0, 0.03, 0.95],
                      [0.30, 0.0, 0.60, 0.10],
                      [0.80, 0.1, 0.05, 0.05]]).T.reshape(1, 4, 1, 3)
    logits = torch.randn(1, 4, 1, 3)
    loss, reads = soft_background_loss(logits, p, tau=0.9)
    ce = -F.log_softmax(logits, 1)[0, :, 0]  # (4 classes, 3 pixels)
    expected = (ce[3, 0] + 0.3 * ce[0, 1] + 0.8 * ce[0, 2]) / (1 + 0.3 + 0.8)
    assert torch.allclose(loss, expected)
    assert reads["fg_share"] == pytest.approx(1 / 3)
    assert reads["bg_weight"] == pytest.approx(0.55)


def test_allowed_pseudo_labels_never_take_a_class_the_image_lacks():
    logits = torch.zeros(2, 4, 1, 2)
    logits[:, 2] = 5.0  # class 2 wins everywhere without the restriction
    logits[:, 1] = 1.0
    tags = torch.tensor([[True, True, False, False], [True, True, True, False]])
    labels, conf, keep = allowed_pseudo_labels(logits, tags, tau=0.7)
    assert labels[0].unique().tolist() == [1] and labels[1].unique().tolist() == [2]
    e = torch.exp(torch.tensor(1.0))
    assert torch.allclose(conf[0], torch.full((1, 2), float(e / (1 + e))))
    assert keep[0].all() and keep[1].all()


def test_dual_branch_losses_reach_only_their_own_branch(tiny_scenes):
    tr, _ = prepare(seg_cfg("dual_branch", tiny_scenes), torch.device("cpu"))
    m = tr.method.train()
    batch = tr.data.batch(1, 1, 1)
    loss_strong, loss_weak, _ = m.branch_losses(batch)
    grads = lambda mod: [p.grad for p in mod.parameters()]
    loss_weak.backward(retain_graph=True)
    net = m.model
    assert all(g is None for g in grads(net.decoder) + grads(net.head))
    assert any(g is not None and g.abs().sum() > 0 for g in grads(net.encoder))
    m.zero_grad(set_to_none=True)
    loss_strong.backward()
    assert all(g is None for g in grads(net.weak_decoder) + grads(net.weak_head))
    assert torch.equal(net(batch.x_l), net.both(batch.x_l)[0])  # forward: the strong branch


def test_dual_branch_teacher_learns_from_restricted_pseudo_labels_only(tiny_scenes):
    tr, _ = prepare(seg_cfg("dual_branch_teacher", tiny_scenes), torch.device("cpu"))
    m = tr.method.train()
    batch = tr.data.batch(1, 1, 1)
    m.hp["tau"] = 0.0  # keep every pixel
    loss, logs = m.training_step(batch, 1)
    loss.backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    assert logs["keep_share"] == 1.0 and logs["loss_u"] > 0
    # the pseudo labels the student learns from lie in each image's class list
    with torch.no_grad():
        y, _, _ = allowed_pseudo_labels(m.teacher(batch.x_u), batch.tags_u, 0.0)
    for labels, tags in zip(y, batch.tags_u):
        assert tags[labels.unique()].all()
    # the restriction changes labels here: the untrained teacher's plain arg-max often names
    # a class the scene lacks
    assert (m.teacher(batch.x_u).argmax(1) != y).any()


@pytest.mark.parametrize("name,pairs", [
    ("soft_teacher", {"teacher-vs-student"}),
    ("dual_branch", {"strong-vs-weak"}),
    ("dual_branch_teacher", {"teacher-vs-student", "strong-vs-weak", "restricted-vs-plain"}),
])
def test_chapter_7_methods_train_and_track_their_pairs(name, pairs, tiny_scenes, tmp_path):
    res = fit(seg_cfg(name, tiny_scenes), tmp_path / name, progress=False, device="cpu")
    evals = [r for r in res["history"] if r["kind"] == "eval"]
    assert set(evals[-1]["agreement"]) == pairs
    assert 0 <= res["last"]["miou"] <= 1 and evals[-1]["eval_model"] in ("student", "model")
    train = [r for r in res["history"] if r["kind"] == "train"]
    assert train and all(np.isfinite(r["loss"]) for r in train)


def test_soft_teacher_batches_hold_one_labeled_image_to_four_unlabeled():
    for profile in ("smoke", "full", "paper"):
        cfg = sb.make_config("soft_teacher", "fashion-scenes", 20, 0, profile)
        assert cfg.batch_u == 4 * cfg.batch_l
    assert sb.make_config("soft_teacher", "fashion-scenes", 20, 0, "full").hparams[
        "unsup_weight"] == 4.0
