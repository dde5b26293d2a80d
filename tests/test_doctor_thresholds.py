"""The doctor's thresholds, tested on both sides (a mutant VANISH_RATIO 0.1 -> 0.01 survived a
suite with no case near them). Networks whose activation-std ratio is known by construction:
tanh on small inputs is the identity to 0.1 %, so with weights I, I and r·I the last hidden
activation's std is r times the first's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.doctor import EXPLODE_RATIO, VANISH_RATIO, diagnose


def _net(r: float) -> nn.Sequential:
    d = 16
    layers = []
    for scale in (1.0, 1.0, r):
        lin = nn.Linear(d, d)
        with torch.no_grad():
            lin.weight.copy_(scale * torch.eye(d))
            lin.bias.zero_()
        layers += [lin, nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(d, 3))


def _batch(scale: float):
    """Inputs of std ``scale``: every hidden std stays within tanh's linear range and above
    ACT_STD_MIN = 1e-3, so only the ratio rule can fire."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(256, 16, generator=g) * scale, torch.randint(0, 3, (256,), generator=g)


def test_documented_threshold_values():
    assert (VANISH_RATIO, EXPLODE_RATIO) == (0.1, 10.0)  # the module docstring's table


# literal ratios (not computed from the constants, so a changed constant is caught)
@pytest.mark.parametrize("r, scale, flagged", [
    (0.05, 0.1, True),    # below VANISH_RATIO = 0.1: vanishing
    (0.2, 0.1, False),    # above it: not
    (20.0, 0.002, None),  # above EXPLODE_RATIO = 10: exploding
    (5.0, 0.002, False),  # neither
])
def test_activation_ratio_thresholds(r, scale, flagged):
    x, y = _batch(scale)
    model = _net(r)
    kinds = diagnose(model, (x, y), jacobian=False).kinds()
    if flagged is None:
        assert "exploding_activations" in kinds
    else:
        assert ("vanishing_activations" in kinds) is flagged
        assert "exploding_activations" not in kinds


def test_the_constructed_ratio_is_what_the_doctor_reads():
    x, y = _batch(0.1)
    r = 0.05
    d = diagnose(_net(r), (x, y), jacobian=False)
    hidden = [row for row in d.rows if row["activation"] is not None]
    assert hidden[-1]["act_std"] / hidden[0]["act_std"] == pytest.approx(r, rel=0.02)


@pytest.mark.parametrize("lr", [0, float("nan"), float("inf")])
def test_diagnose_uses_the_one_lr_rule(lr):
    x, y = _batch(0.1)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0"):
        diagnose(_net(0.5), (x, y), lr=lr)
