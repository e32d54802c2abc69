"""Each method's random draws as its paper's official code makes them (issue: method fidelity).

Each test fails on the behaviour it replaced: one MixUp weight per batch, a single CutMix box
for CPS, the discriminator's real maps taken from the step's own labeled batch, and a
batch-wide confidence weight for Dual Teacher's CutMix branch.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import semibook as sb
from semibook.data.mixing import box_masks, cutmix_boxes, mixup, mixup_weight
from semibook.engine.fit import prepare


# -- MixMatch: one λ' per example ---------------------------------------------------------------

def test_mixup_applies_each_examples_own_weight():
    x1, x2 = torch.rand(4, 1, 3, 3), torch.rand(4, 1, 3, 3)
    y1, y2 = torch.eye(4), torch.eye(4).flip(0)
    lam = np.array([0.5, 0.6, 0.9, 1.0])
    xm, ym = mixup(x1, y1, x2, y2, lam)
    for i, a in enumerate(lam):
        assert torch.allclose(xm[i], a * x1[i] + (1 - a) * x2[i])
        assert torch.allclose(ym[i], a * y1[i] + (1 - a) * y2[i])
    per_example = mixup_weight(np.random.default_rng(0), 0.75, 1000)
    assert per_example.shape == (1000,) and per_example.min() >= 0.5
    assert per_example.std() > 0.1  # Beta(0.75, 0.75) folded at 0.5: widely spread


def test_mixmatch_draws_one_mixup_weight_per_example(tiny, monkeypatch):
    import semibook.methods.mixmatch as mm
    seen = {}

    def spy(x1, y1, x2, y2, lam):
        seen["lam"], seen["n"] = lam, len(x1)
        return mixup(x1, y1, x2, y2, lam)
    monkeypatch.setattr(mm, "mixup", spy)
    cfg = sb.make_config("mixmatch", "fashion-mnist", 20, 0, "smoke", **tiny)
    tr, _ = prepare(cfg, torch.device("cpu"))
    m = tr.method.train()
    _, logs = m.training_step(tr.data.batch(3, 1, 2), 3)
    lam = np.asarray(seen["lam"])
    assert lam.shape == (seen["n"],) and seen["n"] == cfg.batch_l * 3  # labeled + K=2 views
    assert len(np.unique(lam)) == len(lam)  # a batch-wide weight would repeat one value
    assert lam.min() >= 0.5 and logs["lam"] == pytest.approx(lam.mean())


# -- CPS with CutMix: three boxes combined by XOR -------------------------------------------------

def test_box_masks_mix_a_quarter_on_average_and_stay_inside_their_share():
    g = torch.Generator().manual_seed(0)
    m = box_masks(3000, 64, 64, g)
    assert m.shape == (3000, 1, 64, 64) and set(m.unique().tolist()) <= {0.0, 1.0}
    area = m.mean((1, 2, 3))
    assert 0.23 < area.mean() < 0.27  # the official generator: about 0.25
    assert area.max() <= 0.5 + 3 * 2 / 64  # never more than the drawn share (rounding aside)
    # a single box of the same share mixes far more: the old mask measured about 0.37
    assert cutmix_boxes(3000, 64, 64, g).mean() > 0.33
    # one box: its share is the drawn proportion
    one = box_masks(500, 64, 64, g, n_boxes=1).mean((1, 2, 3))
    assert 0.22 < one.min() and one.max() < 0.53


def test_box_masks_overlapping_boxes_cancel():
    g = torch.Generator().manual_seed(1)
    assert box_masks(4, 8, 8, g, prop=(1.0, 1.0), n_boxes=1).min() == 1  # the whole image
    # four boxes of a quarter each (half the height, half the width) in a 2x2 image: each box
    # is one pixel at a random place; XOR leaves a pixel 1 only where an odd number landed
    m = box_masks(2000, 2, 2, g, prop=(1.0, 1.0), n_boxes=4)
    assert 0 < m.mean() < 0.5  # a union of four random pixels would cover more than 0.5


def test_cps_cutmix_mixes_with_the_xor_box_mask(tiny_scenes, monkeypatch):
    import semibook.methods.cps as cps
    masks = []
    orig = cps.mix_with_mask

    def spy(mask, a, b):
        masks.append(mask)
        return orig(mask, a, b)
    monkeypatch.setattr(cps, "mix_with_mask", spy)
    cfg = sb.make_config("cps_cutmix", "fashion-scenes", 16, 0, "smoke",
                         **{**tiny_scenes, "batch_u": 32})
    tr, _ = prepare(cfg, torch.device("cpu"))
    m = tr.method.train()
    areas = []
    for step in range(4):
        masks.clear()
        m.training_step(tr.data.batch(step, 1, 1), step)
        assert len(masks) == 3 and all(k is masks[0] for k in masks)  # images and both labels
        areas.append(masks[0].mean().item())
    assert 0.19 < np.mean(areas) < 0.31  # a single box would give about 0.37


# -- Adversarial: D's real maps from an independently drawn labeled batch ---------------------

def test_adversarial_real_maps_come_from_a_second_labeled_batch(tiny_scenes, monkeypatch):
    cfg = sb.make_config("adversarial", "fashion-scenes", 16, 0, "smoke",
                         **{**tiny_scenes, "steps": 8})
    tr, _ = prepare(cfg, torch.device("cpu"))
    m = tr.method.train()
    differs = 0
    for step in range(4):
        batch = tr.data.batch(step, 1, 1, m.labels_extra)
        assert batch.y_l_extra is not None and batch.y_l_extra.shape == batch.y_l.shape
        differs += not torch.equal(batch.y_l_extra, batch.y_l)
        inputs = []
        forward = m.D.forward

        def spy(x):
            inputs.append(x.detach().clone())
            return forward(x)
        with monkeypatch.context() as mp:
            mp.setattr(m.D, "forward", spy)
            loss, _ = m.training_step(batch, step)
            loss.backward()
            inputs.clear()
            m.after_step(step)
        (both,) = inputs  # after_step: one pass of D over the fake maps, then the real ones
        real = both[len(batch.y_l):]
        k = m.spec.num_classes
        valid = (batch.y_l_extra != 255)[:, None]
        want = F.one_hot(batch.y_l_extra.clamp(max=k - 1), k).permute(0, 3, 1, 2).float() * valid
        assert torch.equal(real, want)
    assert differs == 4  # drawn independently: never the step's own labeled maps
    # the second stream is reproducible from (seed, step), like every batch
    again = prepare(cfg, torch.device("cpu"))[0].data.batch(2, 1, 1, True)
    assert torch.equal(again.y_l_extra, tr.data.batch(2, 1, 1, True).y_l_extra)
    # methods that do not ask for it get none
    assert tr.data.batch(0, 1, 1).y_l_extra is None


@pytest.mark.parametrize("d_remain", [False, True])
def test_adversarial_d_remain_adds_every_unlabeled_pixel_to_the_fake_maps(tiny_scenes,
                                                                         monkeypatch, d_remain):
    """AdvSemiSeg's ``D_remain`` (on in the official code and in ``paper``): D's fake maps are
    the labeled softmax maps, ignored pixels left out, and then every unlabeled pixel; the loss
    is one mean over them."""
    from semibook.losses import masked_bce_with_logits
    hp = {"d_remain": True} if d_remain else {}
    cfg = sb.make_config("adversarial", "fashion-scenes", 16, 0, "smoke",
                         **{**tiny_scenes, "steps": 8, "hparams": hp})
    tr, _ = prepare(cfg, torch.device("cpu"))
    m = tr.method.train()
    batch = tr.data.batch(0, 1, 1, m.labels_extra)
    batch.y_l[:, :3] = 255  # some ignored labeled pixels
    B = batch.x_l.shape[0]
    loss, _ = m.training_step(batch, 0)
    loss.backward()
    with torch.no_grad():
        p = F.softmax(m.model(torch.cat([batch.x_l, batch.x_u])).float(), 1)
    inputs, outputs = [], []
    forward = m.D.forward

    def spy(x):
        inputs.append(x.detach().clone())
        outputs.append(forward(x))
        return outputs[-1]
    monkeypatch.setattr(m.D, "forward", spy)
    got = m.after_step(0)["loss_d"]
    n_fake = len(inputs[0]) - len(batch.y_l_extra)  # one pass: the fake maps, then the real
    fake, d_fake = inputs[0][:n_fake], outputs[0][:n_fake].detach()
    valid = (batch.y_l != 255)[:, None]
    if d_remain:
        assert torch.allclose(fake, p, atol=1e-5)  # labeled, then unlabeled
        valid = torch.cat([valid, torch.ones_like(valid[:len(batch.x_u)])])
    else:
        assert torch.allclose(fake, p[:B], atol=1e-5)
    want = masked_bce_with_logits(d_fake, 0.0, valid)
    bce = F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake), reduction="none")
    assert torch.isclose(want, bce[valid.expand_as(bce)].mean())
    # the returned D loss is (fake + real) / 2 with that fake term
    real_term = masked_bce_with_logits(outputs[0][n_fake:].detach(), 1.0,
                                       (batch.y_l_extra != 255)[:, None])
    assert torch.isclose(got, (want + real_term) / 2)


# -- Dual Teacher: the CutMix branch's weight per image, from the unmixed confidences ---------

def test_dual_teacher_cutmix_weight_is_per_image_from_unmixed_confidences(tiny_scenes,
                                                                          monkeypatch):
    import semibook.methods.dual_teacher as dt
    cfg = sb.make_config("dual_teacher", "fashion-scenes", 16, 0, "smoke",
                         **{**tiny_scenes, "steps": 4, "hparams": {"turn_steps": 4}})
    tr, _ = prepare(cfg, torch.device("cpu"))
    m = tr.method.train()
    assert m.schedule[0] == "cutmix"
    batch = tr.data.batch(1, 1, 1)
    n = batch.x_u.shape[0]
    # a teacher whose confidence on image i is high on exactly i/n of its rows
    conf_rows = torch.zeros(n, 64, 64)
    for i in range(n):
        conf_rows[i, : 64 * i // n] = 1.0

    class Teacher(torch.nn.Module):
        def forward(self, x):
            logits = torch.zeros(x.shape[0], m.spec.num_classes, 64, 64)
            logits[:, 1] = conf_rows[: x.shape[0]] * 20.0  # confident class 1, else uniform
            return logits
    m.teachers[0] = Teacher()
    ce_seen = {}
    orig_ce = F.cross_entropy

    def spy(inp, target, *a, **kw):
        out = orig_ce(inp, target, *a, **kw)
        if kw.get("reduction") == "none" and inp.shape[0] == n and target.ndim == 3:
            ce_seen.setdefault("ce", out.detach())
        return out
    monkeypatch.setattr(dt.F, "cross_entropy", spy)
    _, logs = m.training_step(batch, 1)
    w = torch.tensor([64 * i // n / 64 for i in range(n)])  # confident share of each image
    ce = ce_seen["ce"]
    expected = (w[:, None, None] * ce)[ce > 0].mean()
    assert float(logs["loss_mix"]) == pytest.approx(float(expected), rel=1e-5)
    # logged: the mean of the per-image weights
    assert float(logs["conf_share"]) == pytest.approx(float(w.mean()), rel=1e-6)


def test_adversarial_one_pass_of_d_over_two_batches_equals_two_passes(tiny_scenes):
    """The method runs D once over concatenated batches: D has no batch statistics, so each
    map's output is what a pass of its own gives."""
    cfg = sb.make_config("adversarial", "fashion-scenes", 16, 0, "smoke", **tiny_scenes)
    tr, _ = prepare(cfg, torch.device("cpu"))
    D = tr.method.D
    a, b = torch.rand(3, 5, 32, 32).softmax(1), torch.rand(2, 5, 32, 32).softmax(1)
    one = D(torch.cat([a, b]))
    assert torch.allclose(one[:3], D(a), atol=1e-6) and torch.allclose(one[3:], D(b), atol=1e-6)
