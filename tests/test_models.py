import copy

import pytest
import torch
import torch.nn as nn

from semibook.config import ConfigError
from semibook.models import count_parameters, create_model, ema_copy, ema_update, frozen_bn_stats


def wrn_param_count(depth, width, c_in, classes):
    """WRN parameters counted by hand from the architecture's description."""
    n = (depth - 4) // 6
    w = [16, 16 * width, 32 * width, 64 * width]
    total = 9 * c_in * w[0]  # stem conv
    for g in range(3):
        for i in range(n):
            a, b = (w[g] if i == 0 else w[g + 1]), w[g + 1]
            total += 2 * a + 9 * a * b + 2 * b + 9 * b * b  # bn1, conv1, bn2, conv2
            if a != b:
                total += a * b  # 1x1 projection shortcut
    return total + 2 * w[3] + w[3] * classes + classes  # final bn, fc


@pytest.mark.parametrize("c_in", [1, 3])
def test_wrn_28_2_parameter_count(c_in):
    m = create_model("wrn-28-2", 10, c_in)
    assert count_parameters(m) == wrn_param_count(28, 2, c_in, 10)
    if c_in == 3:
        assert count_parameters(m) == 1_467_610  # the "1.5M" of the MixMatch paper


def test_wrn_uses_mixmatch_bn_momentum_and_any_input_size():
    m = create_model("wrn-28-2", 7, 1)
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    assert bns and all(b.momentum == 0.001 for b in bns)
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    assert create_model("wrn-10-1", 10, 3)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("arch", ["wrn-27-2", "resnet50", "wrn-4-1"])
def test_bad_architecture_names_the_valid_form(arch):
    with pytest.raises(ConfigError, match="wrn-28-2"):
        create_model(arch, 10, 3)


def test_ema_update_is_the_moving_average_and_gets_no_gradient():
    m = create_model("wrn-10-1", 10, 1)
    e = ema_copy(m)
    assert all(not p.requires_grad for p in e.parameters())
    before = [p.clone() for p in e.parameters()]
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    ema_update(e, m, 0.9)
    for b, p_e, p_m in zip(before, e.parameters(), m.parameters()):
        assert torch.allclose(p_e, 0.9 * b + 0.1 * p_m, atol=1e-6)


def test_frozen_bn_stats_keeps_running_statistics():
    m = create_model("wrn-10-1", 10, 1).train()
    state = copy.deepcopy(m.state_dict())
    with frozen_bn_stats(m):
        m(torch.randn(8, 1, 28, 28) * 5 + 3)
    for k, v in m.state_dict().items():
        if "running" in k:
            assert torch.equal(v, state[k]), k
    m(torch.randn(8, 1, 28, 28) * 5 + 3)  # outside, statistics move again
    assert not torch.equal(m.state_dict()["bn.running_mean"], state["bn.running_mean"])
    assert all(b.momentum == 0.001 for b in m.modules() if isinstance(b, nn.BatchNorm2d))
