"""The builders' dropout follows Srivastava et al. with torch's rate convention (p = drop
probability, inverted scaling); mlp(activation="maxout") is a maxout network."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.nn import build_model, mlp


def test_mlp_dropout_is_a_drop_probability_with_inverted_scaling():
    model = mlp(10, [20000], 2, dropout=0.3, input_dropout=0.2)
    names = [n for n, _ in model.named_children()]
    assert names == ["flatten", "input_drop", "block1", "head"]
    assert model.input_drop.p == 0.2 and model.block1.drop.p == 0.3
    drop = model.block1.drop
    torch.manual_seed(0)
    h = torch.ones(5, 20000)
    out = drop(h)
    zeros = (out == 0).double().mean().item()
    se = math.sqrt(0.3 * 0.7 / h.numel())
    assert abs(zeros - 0.3) < 5 * se  # 30 % dropped: p is the *drop* probability
    kept = out[out != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.7))  # scaled by 1/(1-p)
    assert abs(out.mean().item() - 1.0) < 5 * math.sqrt(0.3 / 0.7 / h.numel())  # mean kept
    drop.eval()
    assert torch.equal(drop(h), h)  # eval: the full network, no rescaling


def test_block_order_puts_dropout_after_the_activation():
    model = mlp(4, [8, 8], 2, activation="tanh", dropout=0.5)
    assert [n for n, _ in model.block1.named_children()] == ["linear", "norm", "act", "drop"]
    assert mlp(4, [8], 2).spec["input_dropout"] == 0.0
    assert not any(isinstance(m, nn.Dropout) for m in mlp(4, [8], 2).modules())


def test_input_dropout_errors():
    with pytest.raises(ValueError, match=r"input_dropout must be a number in \[0, 1\)\. "
                                         r"Received: input_dropout=1\.0"):
        mlp(4, [3], 2, input_dropout=1.0)


def test_mlp_with_maxout_is_a_maxout_network():
    """Each block's unit is h_j = max_i (W_{jk+i} x + b_{jk+i}) (Goodfellow et al. 2013),
    recomputed here from the unit's weights."""
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "in_features": 6, "widths": [5, 4], "out_features": 3,
                         "activation": ("maxout", {"k": 3}), "dropout": 0.5,
                         "input_dropout": 0.2})
    unit = model.block1.linear
    assert type(unit).__name__ == "Maxout" and unit.k == 3
    assert isinstance(model.block1.act, nn.Identity)
    x = torch.randn(7, 6, dtype=torch.float64)
    w, b = unit.weight.detach().double(), unit.bias.detach().double()
    pieces = (x @ w.t() + b).reshape(7, 5, 3)
    torch.testing.assert_close(unit.double()(x), pieces.max(-1).values)
    model.eval()
    assert model.float()(x.float()).shape == (7, 3)
