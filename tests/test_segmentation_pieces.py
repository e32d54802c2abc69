import math

import pytest
import torch

from semibook.data.mixing import classmix_masks, cutmix_boxes, mix_with_mask
from semibook.metrics import SegmentationMeter, confusion_matrix, iou_per_class, mean_iou


def test_miou_against_a_hand_computed_case_with_ignored_pixels():
    target = torch.tensor([[0, 0, 1, 1],
                           [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1],
                         [2, 0, 2, 0]])  # predictions under 255 must not count
    cm = confusion_matrix(pred, target, 3, ignore_index=255)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # class 0: TP 1, FP 1 (a 2 predicted 0), FN 1 -> 1/3; class 1: 2/(2+1) ; class 2: 1/2
    iou = iou_per_class(cm)
    assert iou.tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert mean_iou(cm) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_absent_class_is_left_out_of_the_mean():
    cm = confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]), 4)
    assert math.isnan(iou_per_class(cm)[3]) and mean_iou(cm) == 1.0


def test_meter_accumulates_over_batches():
    m = SegmentationMeter(3)
    m.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    m.update(torch.tensor([[2, 2]]), torch.tensor([[2, 255]]))
    out = m.compute()
    assert out["miou"] == 1.0 and out["pixel_acc"] == 1.0 and m.cm.sum() == 3


def test_cutmix_boxes_have_the_drawn_area_and_stay_inside():
    masks = cutmix_boxes(200, 32, 48, torch.Generator().manual_seed(0), area=(0.25, 0.5))
    assert masks.shape == (200, 1, 32, 48)
    share = masks.mean(dim=(1, 2, 3))
    assert share.min() > 0.15 and share.max() < 0.6  # rounding and clamping aside
    for m in masks[:20, 0]:  # each mask is one solid rectangle
        rows, cols = m.any(1).nonzero(), m.any(0).nonzero()
        box = m[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all() and m.sum() == box.numel()


def _image_from_labels(labels):
    """An image whose every channel spells out its label map: alignment is then checkable."""
    return labels[:, None].float().repeat(1, 3, 1, 1)


def test_cutmix_keeps_image_and_label_aligned():
    g = torch.Generator().manual_seed(1)
    la, lb = torch.randint(0, 5, (6, 16, 16), generator=g), torch.randint(0, 5, (6, 16, 16), generator=g)
    mask = cutmix_boxes(6, 16, 16, g)
    img = mix_with_mask(mask, _image_from_labels(la), _image_from_labels(lb))
    lab = mix_with_mask(mask, la, lb)
    assert torch.equal(img, _image_from_labels(lab))
    assert torch.equal(lab[mask[:, 0].bool()], la[mask[:, 0].bool()])
    assert torch.equal(lab[~mask[:, 0].bool()], lb[~mask[:, 0].bool()])


def test_classmix_takes_half_the_classes_present_and_keeps_alignment():
    g = torch.Generator().manual_seed(2)
    la = torch.randint(0, 6, (4, 12, 12), generator=g)
    la[0] = torch.where(la[0] == 5, 255, la[0])  # ignored pixels are never chosen
    lb = torch.randint(0, 6, (4, 12, 12), generator=g)
    mask = classmix_masks(la, g)
    for i in range(4):
        chosen = la[i][mask[i, 0].bool()].unique()
        present = la[i].unique()
        present = present[present != 255]
        assert len(chosen) == len(present) // 2  # rounded down, as the official code and 255 not in chosen.tolist()
        for c in chosen:  # every pixel of a chosen class is in the mask
            assert mask[i, 0][la[i] == c].all()
    img = mix_with_mask(mask, _image_from_labels(la), _image_from_labels(lb))
    assert torch.equal(img, _image_from_labels(mix_with_mask(mask, la, lb)))


def test_paired_geometric_view_keeps_image_and_label_aligned():
    from semibook.data.transforms import paired_scale_crop_flip
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 11, (16, 32, 32), generator=g)
    x = y[:, None].float().repeat(1, 3, 1, 1) / 10  # the image spells out its labels
    xo, yo = paired_scale_crop_flip(x, y, g, scale=(0.5, 2.0))
    assert xo.shape == x.shape and yo.shape == y.shape
    valid = yo != 255
    assert valid.float().mean() > 0.5 and (~valid).any()  # some zoomed-out padding
    # nearest-sampled labels agree with bilinearly sampled images where the image is locally flat
    flat = (xo[:, 0] * 10 - xo[:, 0].mul(10).round()).abs() < 1e-4
    assert torch.equal(yo[valid & flat], (xo[:, 0] * 10).round().long()[valid & flat])
    assert set(yo.unique().tolist()) <= set(range(11)) | {255}


def test_paired_view_at_scale_one_without_flip_is_identity():
    from semibook.data.transforms import paired_scale_crop_flip
    y = torch.randint(0, 5, (4, 16, 16))
    x = torch.rand(4, 3, 16, 16)
    xo, yo = paired_scale_crop_flip(x, y, torch.Generator().manual_seed(0), scale=(1, 1),
                                    flip=False)
    assert torch.allclose(xo, x, atol=1e-5) and torch.equal(yo, y)


def _coordinate_scene(n: int, size: int):
    """Images whose channels 0 and 1 hold each pixel's column and row (divided by the size),
    labels naming the pixel's 8 x 8 block: a view's image tells where each pixel came from."""
    r, c = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    x = torch.stack([c / size, r / size, torch.zeros(size, size)]).repeat(n, 1, 1, 1)
    y = ((r // 8) * (size // 8) + c // 8).repeat(n, 1, 1)
    return x, y


def test_paired_view_crops_a_window_at_the_drawn_scale():
    from semibook.data.transforms import paired_scale_crop_flip
    size, crop = 48, 24
    x, y = _coordinate_scene(32, size)
    xo, yo = paired_scale_crop_flip(x, y, torch.Generator().manual_seed(1), scale=(0.75, 1.5),
                                    crop=crop)
    assert xo.shape == (32, 3, crop, crop) and yo.shape == (32, crop, crop)
    col, row = xo[:, 0] * size, xo[:, 1] * size  # where each output pixel was sampled
    inside = (yo != 255) & (col > 1) & (col < size - 2) & (row > 1) & (row < size - 2)
    assert inside.float().mean() > 0.5
    # the label is the block of the pixel the image was sampled at (nearest vs bilinear: away
    # from ties)
    away = inside & ((col - col.round()).abs() < 0.4) & ((row - row.round()).abs() < 0.4)
    want = (row.round().long() // 8) * (size // 8) + col.round().long() // 8
    assert torch.equal(yo[away], want[away])
    # one output pixel steps 1/s input pixels: the scale is one per image, within the range
    step = (col[:, 8, 9:16] - col[:, 8, 8:15]).abs()
    ok = inside[:, 8, 8:16].all(1)
    assert ok.sum() > 8
    per_image = step[ok]
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-3)
    assert ((1 / per_image[:, 0] > 0.75 - 1e-3) & (1 / per_image[:, 0] < 1.5 + 1e-3)).all()
    # without a crop the view keeps the input's size
    assert paired_scale_crop_flip(x, y, torch.Generator().manual_seed(1))[0].shape == x.shape


def test_strong_photometric_keeps_range_shape_and_is_seeded():
    from semibook.data.transforms import strong_photometric
    x = torch.rand(8, 3, 24, 24)
    a = strong_photometric(x, torch.Generator().manual_seed(3))
    b = strong_photometric(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and torch.isfinite(a).all()
    assert not torch.allclose(a, x)
    none = strong_photometric(x, torch.Generator(), p_jitter=0, p_gray=0, p_blur=0)
    assert torch.allclose(none, x)


def test_sliding_window_matches_whole_image_for_a_pointwise_model():
    from semibook.metrics import sliding_window_logits
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 5, 1)  # pointwise: a window sees what the whole image sees
    x = torch.randn(2, 3, 37, 50)
    whole = model(x)
    slid = sliding_window_logits(model, x, crop=16, stride=11, num_classes=5)
    assert slid.shape == whole.shape and torch.allclose(slid, whole, atol=1e-5)
    small = sliding_window_logits(model, x[:, :, :10, :12], crop=16, stride=8, num_classes=5)
    assert torch.allclose(small, whole[:, :, :10, :12], atol=1e-5)  # padded, then cut back


def test_sliding_window_covers_every_pixel_once_per_window():
    from semibook.metrics import sliding_window_logits

    class Ones(torch.nn.Module):
        def forward(self, t):
            return torch.ones(t.shape[0], 1, *t.shape[-2:])
    out = sliding_window_logits(Ones(), torch.zeros(1, 3, 30, 30), crop=16, stride=7,
                                num_classes=1)
    assert torch.allclose(out, torch.ones_like(out))  # averaged, not summed


def test_describe_agreement_reads_a_constructed_curve():
    from semibook.tracking import describe_agreement, foreground_shares

    def row(step, agree, correct, fg_agree, fg_correct):
        per = {"0": {"agree": 1.0, "agree_correct": 1.0, "n": 60},
               "3": {"agree": fg_agree, "agree_correct": fg_correct, "n": 40}}
        return {"kind": "eval", "step": step, "agreement": {"a-vs-b": {
            "agree": agree, "agree_correct": correct, "agree_wrong": agree - correct,
            "disagree": 1 - agree, "n": 100, "per_class": per}}}
    hist = [row(100, 0.60, 0.50, 0.0, 0.0), row(200, 0.80, 0.70, 0.5, 0.4),
            row(300, 0.85, 0.75, 0.7, 0.45), row(400, 0.905, 0.805, 0.76, 0.51)]
    text = describe_agreement(hist, "a-vs-b", background=0)
    assert "at the first evaluation (step 100) the two agree on 60.0%" in text
    assert "on 90.5%, right on 80.5%" in text and "89.0% of agreement is right" in text
    assert "Half of the rise of 30.5 points came by step 200" in text
    assert "stalled" not in text and "moved by +5.5 points and its correct part by +5.5" in text
    # the item pixels come first, then all pixels
    assert text.startswith("a-vs-b, item pixels (40.0% of the tracked pixels; background left "
                           "out): the two agree on 0.0% at the first evaluation (step 100) and "
                           "76.0% at the last (step 400), right on 51.0%")
    assert text.index("item pixels") < text.index("All pixels, background included")
    assert foreground_shares(hist[0]["agreement"]["a-vs-b"], 0)["n"] == 40
    flat = [row(100, 0.9, 0.8, 0.7, 0.6), row(200, 0.9, 0.8, 0.7, 0.6), row(300, 0.9, 0.8, 0.7, 0.6)]
    assert "stalled" in describe_agreement(flat, "a-vs-b")
    # down 10 points, back up past the start, down again: no "half of the fall by step s"
    dip = [row(100, 0.90, 0.8, 0.7, 0.6), row(200, 0.80, 0.7, 0.7, 0.6),
           row(300, 0.95, 0.8, 0.7, 0.6), row(400, 0.86, 0.7, 0.7, 0.6)]
    text = describe_agreement(dip, "a-vs-b")
    assert "Half" not in text
    assert ("did not move steadily: at its lowest 80.0% (step 200), at its highest 95.0% "
            "(step 300)") in text
    # a change whose half comes only at the last evaluation says nothing more
    late = [row(100, 0.60, 0.5, 0.7, 0.6), row(200, 0.605, 0.5, 0.7, 0.6),
            row(300, 0.70, 0.6, 0.7, 0.6)]
    assert "Half" not in describe_agreement(late, "a-vs-b")


def test_describe_guesses_reads_a_constructed_curve():
    from semibook.tracking import describe_guesses, guess_curve
    # 20 logging windows of 50 steps: accuracy rises 0.30 -> 0.66 by step 500, then holds at 0.70
    acc = [0.30 + 0.04 * i for i in range(10)] + [0.70] * 10
    hist = [{"kind": "train", "step": 50 * (i + 1), "guess_acc": a} for i, a in enumerate(acc)]
    hist += [{"kind": "eval", "step": 1000, "acc": 0.655}, {"kind": "train", "step": 1000}]
    c = guess_curve(hist)
    assert c["step"][:2] == [50, 100] and len(c["guess_acc"]) == 20
    text = describe_guesses(hist)
    assert "30.0% of the time over the first 50 steps" in text
    assert "70.0% over the last 100" in text  # the last tenth: two windows
    assert "best window: 70.0% at step 550" in text  # the first of the equal best
    assert "within two points of that end by step 550" in text  # 0.66 at step 500 is not
    assert "test accuracy at step 1000 was 65.5%" in text
    assert "logged no guessed-label accuracy" in describe_guesses(hist[-2:])


def _pair_rows(pair, values, steps=(100, 200, 300)):
    """Evaluation rows whose item pixels (class 3; background 0 always agrees) agree on
    ``values`` of them."""
    return [{"kind": "eval", "step": s, "agreement": {pair: {
        "agree": 0.5, "agree_correct": 0.4, "agree_wrong": 0.1, "disagree": 0.5, "n": 100,
        "per_class": {"0": {"agree": 1.0, "agree_correct": 1.0, "n": 60},
                      "3": {"agree": v, "agree_correct": v / 2, "n": 40}}}}}
        for s, v in zip(steps, values)]


def test_coupling_reads_item_pixel_disagreement_and_compares_methods():
    from semibook.tracking import coupling_curve, describe_coupling
    h = _pair_rows("t1", [0.5, 0.6, 0.7])
    for row, other in zip(h, _pair_rows("t2", [0.9, 0.8, 0.9])):
        row["agreement"].update(other["agreement"])
    c = coupling_curve(h, ("t1", "t2"))
    assert c["step"] == [100, 200, 300]
    assert c["disagree"] == pytest.approx([0.3, 0.3, 0.2])  # mean of 1 - agree over the pairs
    close = [{"history": _pair_rows("ts", v)} for v in ([0.9, 0.95, 0.95], [0.9, 0.93, 0.93])]
    loose = [{"history": _pair_rows("ts", v)} for v in ([0.6, 0.7, 0.7], [0.6, 0.7, 0.72])]
    text = describe_coupling({"A": (close, ("ts",)), "B": (loose, ("ts",))})
    # last third: the evaluations at step >= 200; A: seeds 5% and 7%, B: 30% and 29%
    assert "A 6.0 ± 1.4% (2 seeds); B 29.5 ± 0.7% (2 seeds)" in text
    assert "B's teachers stay further from their student than A's, by 23.5 points" in text
    noisy = [{"history": _pair_rows("ts", v)} for v in ([0.9, 0.9, 0.99], [0.5, 0.5, 0.6])]
    assert "do not show" in describe_coupling({"A": (close, ("ts",)), "N": (noisy, ("ts",))})


def test_coupling_follows_dual_teachers_active_teacher():
    """Dual Teacher's coupling is its active teacher's: the idle one is frozen since its last
    turn, further from the student by construction."""
    from semibook.methods.dual_teacher import active_pair
    from semibook.tracking import coupling_curve, describe_coupling
    h = _pair_rows("teacher1-vs-student", [0.9, 0.5, 0.9])
    for row, other in zip(h, _pair_rows("teacher2-vs-student", [0.5, 0.9, 0.5])):
        row["agreement"].update(other["agreement"])
    run = {"config": {"hparams": {"turn_steps": 100}, "labels": 20, "batch_l": 8}, "history": h}
    # the evaluations at steps 100, 200, 300 close turns 0, 1, 2: teacher 1, 2, 1
    assert [active_pair(run, s)[0][:8] for s in (100, 200, 300)] == \
        ["teacher1", "teacher2", "teacher1"]
    assert coupling_curve(h, lambda s: active_pair(run, s))["disagree"] == \
        pytest.approx([0.1, 0.1, 0.1])  # the idle teacher's 0.5 left out
    assert coupling_curve(h, ("teacher1-vs-student", "teacher2-vs-student"))["disagree"] == \
        pytest.approx([0.3, 0.3, 0.3])
    # turn_steps 0 (the paper profile): a pass over the labeled set, 20 // 8 = 2 steps
    assert active_pair({"config": {**run["config"], "hparams": {"turn_steps": 0}}}, 3)[0] \
        .startswith("teacher2")
    text = describe_coupling({"A": ([run, run], active_pair),
                              "B": ([{"history": _pair_rows("ts", [0.6, 0.7, 0.7])}] * 2, ("ts",))})
    assert "A 10.0 ± 0.0% (2 seeds)" in text


def test_describe_series_reads_a_logged_loss_against_chance():
    import math
    from semibook.tracking import describe_series
    hist = [{"kind": "train", "step": 10 * (i + 1), "loss_d": v}
            for i, v in enumerate([0.69] * 2 + [0.3] * 16 + [0.1, 0.1])]
    text = describe_series(hist, "loss_d", "D", ("chance", math.log(2)))
    assert text.startswith("D: 0.690 over the first 20 steps, 0.100 over the last 20")
    assert "lowest window 0.100 at step 190" in text
    assert "at the end 0.100, 0.593 below chance (0.693)" in text
    assert describe_series(hist, "loss_x") == "This run logged no loss_x."
