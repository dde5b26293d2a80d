"""init_model on models trainlab did not build: recurrent gates, attention, embeddings, free
parameters, tied and shared weights (tests/zoo.py), against the fan formulas in float64."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from trainlab import init_model
from zoo import ZOO


def _xavier_bound(fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out))


def _check_uniform_block(w: torch.Tensor, bound: float, packed_bound: float) -> None:
    """All |w| <= bound, and the largest |w| beyond the bound a packed (whole-tensor) init
    would give: with n >= 96 draws, P(max|w| < packed) = (packed/bound)^n < 1e-15 here."""
    a = w.detach().double().abs()
    assert a.max() <= bound + 1e-7
    assert a.max() > packed_bound


def _quiet_init(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return init_model(model, *args, **kwargs)


def test_lstm_weights_are_initialized_gate_by_gate():
    model, _, _ = ZOO["lstm"]()  # LSTM(6, 16, num_layers=2)
    init_model(model, "xavier_uniform", generator=0)
    lstm = model.lstm
    for name, fan_in in (("weight_ih_l0", 6), ("weight_hh_l0", 16), ("weight_ih_l1", 16),
                         ("weight_hh_l1", 16)):
        w = getattr(lstm, name)
        assert w.shape[0] == 4 * 16
        for k in range(4):  # i, f, g, o: each an (H, in) matrix with its own fans
            _check_uniform_block(w[16 * k:16 * (k + 1)], _xavier_bound(fan_in, 16),
                                 _xavier_bound(fan_in, 64))
    for name in ("bias_ih_l0", "bias_hh_l0", "bias_ih_l1", "bias_hh_l1"):
        assert torch.count_nonzero(getattr(lstm, name)) == 0


def test_gru_gate_std_matches_he_normal_per_gate():
    model, _, _ = ZOO["gru"]()  # GRU(6, 16), batch_first
    init_model(model, "he_normal", generator=1)
    w = model.gru.weight_hh_l0.detach().double()
    assert w.shape == (48, 16)
    want = math.sqrt(2.0 / 16)  # fan_in of each (16, 16) gate block
    for k in range(3):  # r, z, n: 256 draws each, the std's relative SE is 1/sqrt(512) = 4.4%
        assert w[16 * k:16 * (k + 1)].std().item() == pytest.approx(want, rel=0.2)


def test_attention_in_proj_is_three_matrices():
    model, _, _ = ZOO["transformer"]()  # d = 16, 2 layers
    init_model(model, "xavier_uniform", generator=0,
               overrides={"embed": None, "cls_token": None, "pos_embed": None})
    for layer in model.encoder.layers:
        w = layer.self_attn.in_proj_weight
        assert w.shape == (48, 16)
        for k in range(3):  # q, k, v: fan_in = fan_out = 16 (packed: fan_out would be 48)
            _check_uniform_block(w[16 * k:16 * (k + 1)], _xavier_bound(16, 16),
                                 _xavier_bound(16, 48))
        assert torch.count_nonzero(layer.self_attn.in_proj_bias) == 0
        # out_proj is an nn.Linear: set as one
        assert layer.self_attn.out_proj.weight.abs().max() <= _xavier_bound(16, 16) + 1e-7


def test_embeddings_and_free_parameters_are_named_in_one_warning():
    model, _, _ = ZOO["transformer"]()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.warns(UserWarning) as rec:
        init_model(model, "xavier_uniform", generator=0)
    assert len(rec) == 1
    msg = str(rec[0].message)
    for name in ("embed.weight", "cls_token", "pos_embed"):
        assert name in msg
        assert torch.equal(dict(model.named_parameters())[name], before[name])
    assert "overrides=" in msg
    # norms' scale and shift are left by rule, without a word
    assert "norm.weight" not in msg and "norm1" not in msg and "norm2" not in msg
    assert torch.equal(model.norm.weight, before["norm.weight"])


def test_overrides_reach_embeddings_free_parameters_and_single_gates():
    model, _, _ = ZOO["transformer"]()
    _quiet_init(model, "xavier_uniform", generator=0, overrides={
        "embed": ("normal", {"std": 0.02}), "pos_embed": ("normal", {"std": 0.02}),
        "cls_token": "zeros"})
    assert model.embed.weight.std().item() == pytest.approx(0.02, rel=0.15)  # 800 draws
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.2)      # 208 draws
    assert torch.count_nonzero(model.cls_token) == 0

    model, _, _ = ZOO["lstm"]()
    _quiet_init(model, "orthogonal", generator=0, overrides={"lstm.weight_hh_l0.f": "zeros"})
    w = model.lstm.weight_hh_l0.detach().double()
    assert torch.count_nonzero(w[16:32]) == 0  # the forget gate
    for k in (0, 2, 3):  # the other gates: each block orthogonal on its own
        q = w[16 * k:16 * (k + 1)]
        assert torch.allclose(q @ q.T, torch.eye(16, dtype=torch.float64), atol=1e-5)


def test_tied_weight_is_initialized_once_by_its_linear():
    model, _, _ = ZOO["tied"]()
    assert model.out.weight is model.embed.weight
    _quiet_init(model, "xavier_uniform", generator=0)  # no warning: the Linear sets it
    _check_uniform_block(model.out.weight, _xavier_bound(16, 40), 0.9 * _xavier_bound(16, 40))
    assert model.out.weight is model.embed.weight


def test_shared_module_and_seeds():
    a, _, _ = ZOO["shared"](seed=0)
    b, _, _ = ZOO["shared"](seed=1)
    _quiet_init(a, "he_normal", generator=5)
    _quiet_init(b, "he_normal", generator=5)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_an_unknown_pattern_names_gates_and_free_parameters():
    model, _, _ = ZOO["transformer"]()
    with pytest.raises(ValueError, match=r"matches no layer.*'cls_token'.*lstm\.weight_hh_l0\.f"):
        init_model(model, "xavier_uniform", overrides={"cls_tokn": "zeros"})


@pytest.mark.parametrize("cell, gates", [(nn.LSTMCell, 4), (nn.GRUCell, 3), (nn.RNNCell, 1)])
def test_recurrent_cells_too(cell, gates):
    m = nn.Sequential(cell(5, 12))
    _quiet_init(m, "xavier_uniform", generator=0)
    w = m[0].weight_ih
    for k in range(gates):
        assert w[12 * k:12 * (k + 1)].abs().max() <= _xavier_bound(5, 12) + 1e-7
    assert torch.count_nonzero(m[0].bias_hh) == 0
