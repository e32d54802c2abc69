"""Property tests (hypothesis) for augmentation and mixing: on any valid input, label maps keep
only valid labels and the ignore label, CutMix and ClassMix keep image and label aligned, and
no op produces NaN."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semibook.data.mixing import (classmix_masks, cutmix_boxes, interleave, mix_with_mask,
                                  mixup, mixup_weight)
from semibook.data.transforms import (gaussian_noise, normalize, pad_crop_flip,
                                      paired_scale_crop_flip, strong_photometric)

IGNORE = 255
FAST = settings(max_examples=25, deadline=None, database=None)  # no .hypothesis/ folder


@st.composite
def seg_batches(draw, max_classes=11):
    """(images in [0, 1] (n, 3, h, w), label maps (n, h, w) of 0..classes-1 and IGNORE, a
    generator): small random shapes, extreme pixel values included."""
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    classes = draw(st.integers(1, max_classes))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(["random", "zeros", "ones"]))
    x = {"random": torch.rand(n, 3, h, w, generator=g), "zeros": torch.zeros(n, 3, h, w),
         "ones": torch.ones(n, 3, h, w)}[kind]
    y = torch.randint(0, classes, (n, h, w), generator=g)
    y[torch.rand(n, h, w, generator=g) < draw(st.floats(0, 1))] = IGNORE
    return x, y, classes, torch.Generator().manual_seed(seed + 1)


@FAST
@given(seg_batches(), st.floats(0.25, 1.0), st.floats(1.0, 2.5), st.booleans())
def test_paired_views_keep_valid_labels_and_no_nan(batch, lo, hi, flip):
    x, y, classes, g = batch
    xo, yo = paired_scale_crop_flip(x, y, g, scale=(lo, max(lo, hi)), flip=flip,
                                    ignore_index=IGNORE)
    assert xo.shape == x.shape and yo.shape == y.shape
    # bilinear weights are rounded in float32: an all-ones image may come back as 1 + 1e-7
    assert torch.isfinite(xo).all() and xo.min() >= -1e-6 and xo.max() <= 1 + 1e-6
    values = set(yo.unique().tolist())
    assert values <= set(range(classes)) | {IGNORE}


@FAST
@given(st.integers(1, 3), st.integers(2, 10), st.integers(2, 10), st.integers(0, 2**31 - 1),
       st.booleans())
def test_paired_views_move_image_and_labels_together(n, h, w, seed, flip):
    # the label map is the image: every pixel whose label survives (not IGNORE) must carry
    # the image value that labels it (nearest sampling of both grids)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 11, (n, h, w), generator=g)
    x = (y.float() / 10)[:, None].expand(n, 3, h, w).contiguous()
    # scale 1: the sampling points fall on pixel centres, so bilinear equals nearest
    xo, yo = paired_scale_crop_flip(x, y, torch.Generator().manual_seed(seed + 1),
                                    scale=(1.0, 1.0), flip=flip, ignore_index=IGNORE)
    keep = yo != IGNORE
    assert torch.allclose(xo[:, 0][keep], yo[keep].float() / 10, atol=1e-5)


@FAST
@given(seg_batches(), st.floats(0, 1), st.floats(0, 0.5), st.floats(0, 1), st.floats(0, 1),
       st.floats(0, 1))
def test_strong_photometric_stays_in_range_without_nan(batch, jitter, hue, pj, pg, pb):
    x, _, _, g = batch
    if min(x.shape[2:]) <= 6:  # the blur's reflect padding needs more pixels than its radius
        x = torch.nn.functional.interpolate(x, size=(8, 8))
    out = strong_photometric(x, g, jitter=jitter, hue=hue, p_jitter=pj, p_gray=pg, p_blur=pb)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5


@FAST
@given(st.integers(1, 4), st.integers(1, 3), st.integers(2, 12), st.integers(0, 6),
       st.sampled_from(["reflect", "constant"]), st.booleans(), st.integers(0, 2**31 - 1))
def test_pad_crop_flip_keeps_pixel_values_and_shape(n, c, size, pad, mode, flip, seed):
    pad = min(pad, size - 1) if mode == "reflect" else pad  # reflect padding needs pad < size
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, size, size), generator=g).float()
    out = pad_crop_flip(x, g, pad, flip, mode=mode)
    assert out.shape == x.shape and torch.isfinite(out).all()
    allowed = set(x.unique().tolist()) | ({0.0} if mode == "constant" else set())
    assert set(out.unique().tolist()) <= allowed


@FAST
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**31 - 1), st.floats(0, 1))
def test_normalize_and_noise_are_finite(n, c, seed, std):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, 5, 5), generator=g, dtype=torch.uint8)
    z = normalize(x, [0.5] * c, [0.25] * c)
    assert torch.isfinite(z).all()
    assert torch.isfinite(gaussian_noise(z, g, std)).all()


@FAST
@given(seg_batches(), st.floats(0.01, 1.0), st.floats(0.0, 1.0))
def test_cutmix_boxes_lie_inside_the_image_and_cover_their_share(batch, a0, a1):
    x, _, _, g = batch
    n, _, h, w = x.shape
    lo, hi = sorted((a0, max(a0, a1)))
    m = cutmix_boxes(n, h, w, g, area=(lo, hi))
    assert m.shape == (n, 1, h, w) and set(m.unique().tolist()) <= {0.0, 1.0}
    for i in range(n):
        rows, cols = m[i, 0].nonzero(as_tuple=True)
        assert len(rows) >= 1  # at least one pixel, and one solid rectangle
        box = m[i, 0, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all() and box.numel() == len(rows)


@FAST
@given(seg_batches(), seg_batches())
def test_cutmix_and_classmix_keep_image_and_label_aligned(a, b):
    xa, ya, ca, g = a
    xb, yb, cb, _ = b
    # same shapes for both sources: take b's content resized to a's
    n, _, h, w = xa.shape
    yb = torch.nn.functional.interpolate(yb[:n, None].float(), size=(h, w),
                                         mode="nearest")[:, 0].long()
    if len(yb) < n:
        yb = yb.repeat(n, 1, 1)[:n]
    # images that carry their labels: channel 0 = label / 255, so alignment is checkable
    img_a = torch.cat([ya[:, None].float() / 255, xa[:, 1:]], 1)
    img_b = torch.cat([yb[:, None].float() / 255, torch.rand(n, 2, h, w, generator=g)], 1)
    for mask in (cutmix_boxes(n, h, w, g), classmix_masks(ya, g, IGNORE)):
        assert mask.shape == (n, 1, h, w)
        x_mix, y_mix = mix_with_mask(mask, img_a, img_b), mix_with_mask(mask, ya, yb)
        assert torch.equal((x_mix[:, 0] * 255).round().long(), y_mix)
        assert set(y_mix.unique().tolist()) <= set(range(max(ca, cb))) | {IGNORE}
        assert torch.isfinite(x_mix).all()


@FAST
@given(seg_batches())
def test_classmix_takes_whole_classes_about_half_of_them(batch):
    _, y, _, g = batch
    m = classmix_masks(y, g, IGNORE)[:, 0].bool()
    for i in range(len(y)):
        present = set(y[i].unique().tolist()) - {IGNORE}
        chosen = set(y[i][m[i]].unique().tolist())
        assert IGNORE not in chosen and chosen <= present
        assert len(chosen) == len(present) // 2  # rounded down, as the official code
        for c in chosen:  # every pixel of a chosen class is taken
            assert m[i][y[i] == c].all()


@FAST
@given(st.floats(0.01, 10.0), st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(2, 5))
def test_mixup_weight_and_mix_are_convex(alpha, seed, n, k):
    lam = mixup_weight(np.random.default_rng(seed), alpha)
    assert 0.5 <= lam <= 1.0
    g = torch.Generator().manual_seed(seed)
    x1, x2 = torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g)
    p1 = torch.softmax(torch.randn(n, k, generator=g), 1)
    p2 = torch.softmax(torch.randn(n, k, generator=g), 1)
    xm, pm = mixup(x1, p1, x2, p2, lam)
    assert torch.isfinite(xm).all() and torch.allclose(pm.sum(1), torch.ones(n))
    assert (xm >= torch.minimum(x1, x2) - 1e-6).all() and (xm <= torch.maximum(x1, x2) + 1e-6).all()


@FAST
@given(st.integers(1, 12), st.integers(2, 4))
def test_interleave_is_its_own_inverse(n, parts):
    batches = [torch.arange(n) + 100 * i for i in range(parts)]
    out = interleave(batches)
    assert sorted(torch.cat(out).tolist()) == sorted(torch.cat(batches).tolist())
    assert all(torch.equal(a, b) for a, b in zip(interleave(out), batches))
