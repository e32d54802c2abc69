import numpy as np
import pytest
import torch

from semibook.data.mixing import interleave, mixup, mixup_weight
from semibook.losses import sharpen, soft_cross_entropy, softmax_mse


def entropy(p):
    return -(p * p.clamp_min(1e-12).log()).sum(1)


def test_sharpen_lowers_entropy_and_keeps_rows_summing_to_one():
    p = torch.softmax(torch.randn(64, 10, generator=torch.Generator().manual_seed(0)), 1)
    q = sharpen(p, 0.5)
    assert torch.allclose(q.sum(1), torch.ones(64), atol=1e-6)
    assert (entropy(q) < entropy(p)).all()
    assert torch.equal(q.argmax(1), p.argmax(1))  # the guess keeps its class
    assert torch.allclose(sharpen(p, 1.0), p, atol=1e-6)  # T = 1 changes nothing


def test_sharpen_of_a_uniform_row_stays_uniform():
    p = torch.full((1, 4), 0.25)
    assert torch.allclose(sharpen(p, 0.5), p)


def test_mixup_weight_is_at_least_half_and_follows_beta():
    rng = np.random.default_rng(0)
    lams = np.array([mixup_weight(rng, 0.75) for _ in range(4000)])
    assert lams.min() >= 0.5 and lams.max() <= 1.0
    # max(λ, 1-λ) for λ ~ Beta(.75, .75): E = 0.5 + E|λ - 0.5|, well above 0.5 and below 1
    assert 0.7 < lams.mean() < 0.9


def test_mixup_mixes_labels_with_the_same_weight_as_images():
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(8, 3, 4, 4, generator=g), torch.randn(8, 3, 4, 4, generator=g)
    y1 = torch.nn.functional.one_hot(torch.arange(8) % 10, 10).float()
    y2 = torch.softmax(torch.randn(8, 10, generator=g), 1)
    lam = 0.8
    xm, ym = mixup(x1, y1, x2, y2, lam)
    # recover the weight from images and from labels: they must be the same
    w_img = ((xm - x2) * (x1 - x2)).sum() / ((x1 - x2) ** 2).sum()
    w_lab = ((ym - y2) * (y1 - y2)).sum() / ((y1 - y2) ** 2).sum()
    assert w_img.item() == pytest.approx(lam, abs=1e-5)
    assert w_lab.item() == pytest.approx(lam, abs=1e-5)
    assert torch.allclose(ym.sum(1), torch.ones(8))


@pytest.mark.parametrize("n,k", [(64, 3), (10, 3), (7, 2), (16, 5)])
def test_interleave_round_trips_and_mixes_every_source(n, k):
    batches = [torch.full((n, 2), float(i)) + torch.arange(n)[:, None] / 1000 for i in range(k)]
    mixed = interleave(batches)
    assert [m.shape for m in mixed] == [b.shape for b in batches]
    sources = [set(m[:, 0].floor().long().tolist()) for m in mixed]
    assert sources[0] == set(range(k))  # batch 0 (whose BN statistics count) has every source
    for i in range(1, k):
        assert sources[i] == {0, i}  # the others: their own rows and a chunk of batch 0
    rows = torch.cat(mixed)[:, 1]  # no row lost or repeated
    assert sorted(rows.tolist()) == sorted(torch.cat(batches)[:, 1].tolist())
    back = interleave(mixed)
    for a, b in zip(back, batches):
        assert torch.equal(a, b)


def test_interleave_rejects_unequal_batches():
    with pytest.raises(ValueError):
        interleave([torch.zeros(4, 1), torch.zeros(5, 1)])


def test_losses_match_their_definitions():
    logits = torch.randn(5, 3)
    t = torch.softmax(torch.randn(5, 3), 1)
    ce = -(t * torch.log_softmax(logits, 1)).sum(1).mean()
    assert soft_cross_entropy(logits, t).item() == pytest.approx(ce.item(), rel=1e-6)
    mse = ((torch.softmax(logits, 1) - t) ** 2).mean()
    assert softmax_mse(logits, t).item() == pytest.approx(mse.item(), rel=1e-6)
