"""Recurrent cells with norms: equations in float64, torch equality, per-step statistics."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call

from trainlab.nn import build_model, seq_classifier
from trainlab.nn.recurrent import (
    LSTM,
    RECURRENT_NORMS,
    RNN,
    FrameBatchNorm,
    LSTMCell,
    RNNCell,
    SequenceBatchNorm,
    frame_batch_norm,
)

D64 = torch.float64
NORMS = ["none", "bn_frame", "bn_seq", "ln"]
EPS = 1e-5


# -- independent float64 reference of the papers' equations ------------------------------------
def _bn(v, gamma, beta, stats=None):
    """BN of (B, C) with the batch's biased statistics, or the given (mean, var)."""
    mu, var = (v.mean(0), v.var(0, unbiased=False)) if stats is None else stats
    out = gamma * (v - mu) / torch.sqrt(var + EPS)
    return out if beta is None else out + beta


def _ln(v, gamma, beta):
    mu = v.mean(-1, keepdim=True)
    var = v.var(-1, unbiased=False, keepdim=True)
    out = gamma * (v - mu) / torch.sqrt(var + EPS)
    return out if beta is None else out + beta


def _p(m, name):
    t = getattr(m, name)
    return None if t is None else t.detach().double()


def _reference(layer, x, stats=None):
    """Run the cell's equations step by step (Cooijmans 2017 / Laurent 2016 / Ba 2016).

    ``stats``: None for batch statistics (training), else a function (slot, t) -> (mean, var)
    for eval. Returns the hidden states (B, T, H) and the per-step batch means/variances of
    each BN input, keyed by slot.
    """
    cell = layer.cell
    lstm = isinstance(cell, LSTMCell)
    norm = cell.norm
    x = x.double()
    B, T, _ = x.shape
    H = cell.hidden_size
    W_ih, W_hh = _p(cell, "weight_ih"), _p(cell, "weight_hh")
    b = _p(cell, "bias_ih") + _p(cell, "bias_hh")
    h = torch.zeros(B, H, dtype=D64)
    c = torch.zeros(B, H, dtype=D64)
    seen = {"ih": [], "hh": [], "c": []}

    def bn(slot, v, t):
        seen[slot].append((v.mean(0), v.var(0, unbiased=True)))
        g, beta = _p(getattr(cell, f"norm_{slot}"), "weight"), _p(getattr(cell, f"norm_{slot}"),
                                                                   "bias")
        return _bn(v, g, beta, None if stats is None else stats(slot, t))

    if norm == "bn_seq":  # statistics of W_x x over the batch and all steps
        wx = x @ W_ih.T
        flat = wx.reshape(-1, wx.shape[-1])
        st = (flat.mean(0), flat.var(0, unbiased=False)) if stats is None else stats("ih", 0)
        seen["ih"].append((flat.mean(0), flat.var(0, unbiased=True)))
        seq_x = _bn(flat, _p(cell.norm_ih, "weight"), None, st).reshape(wx.shape)
    outs = []
    for t in range(T):
        wx_t, wh = x[:, t] @ W_ih.T, h @ W_hh.T
        if norm == "none":
            a = wx_t + wh + b
        elif norm == "bn_frame":
            a = bn("ih", wx_t, t) + bn("hh", wh, t) + b
        elif norm == "bn_seq":
            a = seq_x[:, t] + wh + b
        elif lstm:  # ln on both terms
            a = _ln(wx_t, _p(cell.norm_ih, "weight"), None) + _ln(
                wh, _p(cell.norm_hh, "weight"), None) + b
        else:  # Ba et al.'s LN RNN: LN of the summed pre-activation, then the bias
            a = _ln(wx_t + wh, _p(cell.norm_pre, "weight"), None) + b
        if lstm:
            i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            if norm == "bn_frame":
                cn = bn("c", c, t)
            elif norm == "ln":
                cn = _ln(c, _p(cell.norm_c, "weight"), _p(cell.norm_c, "bias"))
            else:
                cn = c
            h = torch.sigmoid(o) * torch.tanh(cn)
        else:
            h = torch.tanh(a)
        outs.append(h)
    return torch.stack(outs, 1), seen


def _randomize(m, seed=0):
    """Move every parameter away from its init, so gains and shifts matter in the tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def _layer(cls, norm, F=3, H=4, T_max=5, dtype=D64, seed=0):
    torch.manual_seed(seed)
    return _randomize(cls(F, H, norm, T_max=T_max, dtype=dtype), seed)


# -- plain equals torch -------------------------------------------------------------------------
def _copy_from_torch(ours, theirs, suffix="_l0"):
    with torch.no_grad():
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if getattr(theirs, n + suffix, None) is not None:
                getattr(ours.cell if hasattr(ours, "cell") else ours, n).copy_(
                    getattr(theirs, n + suffix))


@pytest.mark.parametrize("bias", [True, False])
def test_plain_lstm_equals_torch(bias):
    torch.manual_seed(0)
    ref = nn.LSTM(3, 5, batch_first=True, bias=bias)
    ours = LSTM(3, 5, "none", bias=bias)
    _copy_from_torch(ours, ref)
    x = torch.randn(4, 7, 3)
    h0, c0 = torch.randn(4, 5), torch.randn(4, 5)
    out, (h, c) = ours(x, (h0, c0))
    r_out, (r_h, r_c) = ref(x, (h0[None], c0[None]))
    torch.testing.assert_close(out, r_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, r_h[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, r_c[0], rtol=1e-5, atol=1e-6)
    out0, _ = ours(x)
    torch.testing.assert_close(out0, ref(x)[0], rtol=1e-5, atol=1e-6)
    # the gradients too
    out.sum().backward()
    r_out.sum().backward()
    torch.testing.assert_close(ours.cell.weight_hh.grad, ref.weight_hh_l0.grad, rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_plain_rnn_equals_torch(nonlinearity):
    torch.manual_seed(1)
    ref = nn.RNN(3, 5, batch_first=True, nonlinearity=nonlinearity)
    ours = RNN(3, 5, "none", nonlinearity=nonlinearity)
    _copy_from_torch(ours, ref)
    x, h0 = torch.randn(4, 6, 3), torch.randn(4, 5)
    out, h = ours(x, h0)
    r_out, r_h = ref(x, h0[None])
    torch.testing.assert_close(out, r_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, r_h[0], rtol=1e-5, atol=1e-6)


def test_plain_cells_equal_torch_cells():
    torch.manual_seed(2)
    ref, ours = nn.LSTMCell(3, 4), LSTMCell(3, 4)
    _copy_from_torch(ours, ref, suffix="")
    x, h, c = torch.randn(5, 3), torch.randn(5, 4), torch.randn(5, 4)
    for a, b in zip(ours(x, (h, c)), ref(x, (h, c))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    ref, ours = nn.RNNCell(3, 4), RNNCell(3, 4)
    _copy_from_torch(ours, ref, suffix="")
    torch.testing.assert_close(ours(x, h), ref(x, h), rtol=1e-5, atol=1e-6)


def test_default_init_is_torchs_uniform():
    torch.manual_seed(0)
    m = LSTM(3, 16, "bn_frame")
    bound = 1 / 16**0.5
    for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        p = getattr(m.cell, n)
        assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound
    f = LSTM(3, 4, forget_bias=1.0).cell
    assert torch.equal(f.bias_ih[4:8], torch.ones(4))
    assert torch.equal(f.bias_hh[4:8], torch.zeros(4))


# -- the papers' equations in float64 -----------------------------------------------------------
@pytest.mark.parametrize("cls", [LSTM, RNN])
@pytest.mark.parametrize("norm", NORMS)
def test_training_forward_matches_float64_reference(cls, norm):
    m = _layer(cls, norm)
    x = torch.randn(6, 4, 3, dtype=D64)
    out, _ = m(x)
    ref, _ = _reference(m, x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls", [LSTM, RNN])
def test_frame_bn_running_stats_are_per_time_step(cls):
    m = _layer(cls, "bn_frame", T_max=4)
    x = torch.randn(8, 4, 3, dtype=D64) * torch.tensor([1.0, 2.0, 3.0], dtype=D64)
    m(x)
    _, seen = _reference(m, x)
    mom = 0.1
    slots = ("ih", "hh", "c") if cls is LSTM else ("ih", "hh")
    for slot in slots:
        bn = getattr(m.cell, f"norm_{slot}")
        means = torch.stack([mu for mu, _ in seen[slot]])
        vars_ = torch.stack([v for _, v in seen[slot]])
        torch.testing.assert_close(bn.running_mean, mom * means, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(bn.running_var, (1 - mom) + mom * vars_, rtol=1e-10,
                                   atol=1e-12)
    # the step-0 recurrent input is W_hh h_0 = 0: its batch mean is 0
    assert m.cell.norm_hh.running_mean[0].abs().max() == 0
    # and the other steps differ from each other (one row per step, not shared)
    rm = m.cell.norm_ih.running_mean
    assert (rm[1:] - rm[:-1]).abs().max() > 1e-3


def test_frame_bn_eval_uses_each_steps_stats_and_the_last_beyond_T_max():
    T_max, T = 3, 6
    m = _layer(LSTM, "bn_frame", T_max=T_max)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for slot in ("ih", "hh", "c"):
            bn = getattr(m.cell, f"norm_{slot}")
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g, dtype=D64))
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g, dtype=D64) + 0.5)
    m.eval()

    def stats(slot, t):
        bn = getattr(m.cell, f"norm_{slot}")
        s = min(t, T_max - 1)
        return bn.running_mean[s].double(), bn.running_var[s].double()

    x = torch.randn(2, T, 3, dtype=D64)
    with pytest.warns(UserWarning, match=r"T_max=3 steps but received 6 steps: steps 4\.\.6 use "
                      r"the running statistics of step 3"):
        out, _ = m(x)
    ref, _ = _reference(m, x, stats)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    # eval works on one sample, and the warning came once only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out1, _ = m(x[:1])
    torch.testing.assert_close(out1, ref[:1], rtol=1e-10, atol=1e-10)


def test_frame_bn_training_beyond_T_max_uses_batch_stats_and_tracks_first_steps():
    m = _layer(RNN, "bn_frame", T_max=2)
    x = torch.randn(5, 4, 3, dtype=D64)
    with pytest.warns(UserWarning, match="T_max=2"):
        out, _ = m(x)
    ref, seen = _reference(m, x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    means = torch.stack([mu for mu, _ in seen["ih"]])
    torch.testing.assert_close(m.cell.norm_ih.running_mean, 0.1 * means[:2], rtol=1e-10,
                               atol=1e-12)


def test_frame_batch_norm_function_per_step_and_in_place_buffers():
    torch.manual_seed(0)
    x = torch.randn(7, 3, 2, dtype=D64) * torch.tensor([[1.0], [5.0], [0.2]], dtype=D64)
    rm, rv = torch.zeros(5, 2, dtype=D64), torch.ones(5, 2, dtype=D64)
    w = torch.tensor([0.5, 2.0], dtype=D64)
    y = frame_batch_norm(x, rm, rv, w, None, True, 0.5, EPS, t=1)
    for s in range(3):  # each step normalized with its own batch statistics
        torch.testing.assert_close(y[:, s], _bn(x[:, s], w, None), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rm[1 + s], 0.5 * x[:, s].mean(0), rtol=1e-12, atol=1e-12)
    assert torch.equal(rm[0], torch.zeros(2)) and torch.equal(rm[4], torch.zeros(2))
    # one step (B, C) at time t in eval: row t (clamped to T_max - 1)
    y1 = frame_batch_norm(x[:, 0], rm, rv, w, None, False, 0.5, EPS, t=9)
    torch.testing.assert_close(y1, _bn(x[:, 0], w, None, (rm[4], rv[4])), rtol=1e-12, atol=1e-12)


def test_seq_bn_statistics_over_batch_and_time():
    m = _layer(LSTM, "bn_seq")
    x = torch.randn(4, 5, 3, dtype=D64) + torch.arange(5, dtype=D64)[None, :, None]
    m(x)
    flat = (x @ m.cell.weight_ih.detach().T).reshape(-1, 16)
    torch.testing.assert_close(m.cell.norm_ih.running_mean, 0.1 * flat.mean(0), rtol=1e-10,
                               atol=1e-12)
    m.eval()
    mu, var = m.cell.norm_ih.running_mean.clone(), m.cell.norm_ih.running_var.clone()
    out, _ = m(x)
    ref, _ = _reference(m, x, lambda slot, t: (mu, var))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls", [LSTM, RNN])
@pytest.mark.parametrize("norm", NORMS)
def test_gradcheck(cls, norm):
    m = _layer(cls, norm, F=2, H=2, T_max=3)
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    x = torch.randn(3, 3, 2, dtype=D64, requires_grad=True)

    def f(x, *ps):
        return functional_call(m, dict(zip(names, ps)), (x,))[0]

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)


def test_cell_steps_equal_the_layer():
    for cls, cell_cls in ((LSTM, LSTMCell), (RNN, RNNCell)):
        for norm in NORMS:
            layer = _layer(cls, norm, T_max=4).eval()
            x = torch.randn(3, 4, 3, dtype=D64)
            out, _ = layer(x)
            state = None
            for t in range(4):
                state = layer.cell(x[:, t], state, t=t)
                h = state[0] if cell_cls is LSTMCell else state
                torch.testing.assert_close(h, out[:, t], rtol=1e-10, atol=1e-10)


# -- parameters, registry, state ------------------------------------------------------------------
def test_gamma_init_and_shift_slots():
    cell = LSTM(3, 4, "bn_frame").cell
    for slot in ("ih", "hh", "c"):
        assert torch.equal(getattr(cell, f"norm_{slot}").weight, torch.full_like(
            getattr(cell, f"norm_{slot}").weight, 0.1))
    assert cell.norm_ih.bias is None and cell.norm_hh.bias is None
    assert torch.equal(cell.norm_c.bias, torch.zeros(4))
    assert cell.norm_ih.running_mean.shape == (100, 16)
    assert torch.equal(LSTM(3, 4, "ln").cell.norm_ih.weight, torch.ones(16))
    assert torch.equal(LSTM(3, 4, "bn_seq").cell.norm_ih.weight, torch.ones(16))
    custom = LSTM(3, 4, ("bn_frame", {"gamma_init": 0.5, "momentum": 0.2}), T_max=7).cell
    assert custom.norm_hh.weight[0] == 0.5 and custom.norm_hh.momentum == 0.2
    assert custom.norm_c.running_mean.shape == (7, 4)
    names = [n for n, _ in LSTM(3, 4, "bn_seq").named_parameters()]
    assert names == ["cell.weight_ih", "cell.weight_hh", "cell.bias_ih", "cell.bias_hh",
                     "cell.norm_ih.weight"]


def test_registry():
    assert RECURRENT_NORMS.names() == ["none", "bn_frame", "bn_seq", "ln"]
    for e in RECURRENT_NORMS:
        assert e.description and e.reference
        assert set(e.meta["slots"]) == {"lstm", "rnn"}
    assert RECURRENT_NORMS.get("frame-bn").name == "bn_frame"
    assert RECURRENT_NORMS.get("plain").name == "none"
    with pytest.raises(ValueError, match=r"Unknown recurrent_norm 'bn_fram'\. Did you mean "
                       r"'bn_frame'"):
        LSTM(3, 4, "bn_fram")
    with pytest.raises(ValueError, match=r"takes no argument 'gama_init'.*Did you mean "
                       r"'gamma_init'"):
        LSTM(3, 4, ("bn_frame", {"gama_init": 0.1}))


@pytest.mark.parametrize("norm", NORMS)
def test_state_dict_round_trip_and_dtype(norm):
    m = _layer(LSTM, norm, dtype=torch.float32)
    x = torch.randn(4, 5, 3)
    m(x)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = LSTM(3, 4, norm, T_max=5)
    m2.load_state_dict(torch.load(buf))
    m.eval(), m2.eval()
    assert torch.equal(m(x)[0], m2(x)[0])
    assert m2.to(D64)(x.double())[0].dtype == D64


# -- bad input ----------------------------------------------------------------------------------
def test_bad_input_messages():
    m = LSTM(3, 4)
    with pytest.raises(ValueError, match=r"shape \(B, T, 3\)\. Received: input of shape "
                       r"\(2, 5, 6\)"):
        m(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match=r"Received: input of shape \(5, 3\)"):
        m(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, hidden_size\) = \(2, 4\) "
                       r"for an input of shape \(2, 5, 3\)\. Received: h0 of shape \(3, 4\)"):
        m(torch.randn(2, 5, 3), (torch.zeros(3, 4), torch.zeros(2, 4)))
    with pytest.raises(ValueError, match=r"c0 must have shape .* Received: c0 of shape \(2, 5\)"):
        m(torch.randn(2, 5, 3), (torch.zeros(2, 4), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match=r"h0 must have shape .*\(2, 4\).* Received: h0 of shape "
                       r"\(1, 2, 4\)"):
        RNN(3, 4)(torch.randn(2, 5, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"one time step of shape \(B, input_size\) = \(B, 3\)\. "
                       r"Received: input of shape \(2, 4\)"):
        LSTMCell(3, 4)(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"T_max must be a positive integer\. Received: T_max=0"):
        LSTM(3, 4, "bn_frame", T_max=0)
    with pytest.raises(ValueError, match=r"t \(the time step, 0-based\) must be an integer >= 0\. "
                       r"Received: t=-1"):
        LSTMCell(3, 4)(torch.randn(2, 3), t=-1)
    with pytest.raises(ValueError, match=r"nonlinearity must be one of \('tanh', 'relu'\)\. "
                       r"Received: nonlinearity='sigmoid'"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"momentum must be a number in \(0, 1\].*momentum=1\.5"):
        FrameBatchNorm(4, momentum=1.5)
    with pytest.raises(ValueError, match=r"forget_bias needs bias=True"):
        LSTM(3, 4, forget_bias=1.0, bias=False)
    with pytest.raises(ValueError, match=r"FrameBatchNorm was built for num_features=4 .* "
                       r"Received: input of shape \(2, 5\)"):
        FrameBatchNorm(4)(torch.randn(2, 5))


@pytest.mark.parametrize("norm", ["bn_frame", "bn_seq"])
def test_batch_norms_refuse_one_sample_in_training_and_name_alternatives(norm):
    m = LSTM(3, 4, norm)
    x = torch.randn(1, 1, 3)
    with pytest.raises(ValueError, match=r"input of shape \(1, 1, 16\) has a single value .*"
                       r"batch size above 1.*model\.eval\(\).*'ln'"):
        m(x)
    m.eval()
    assert m(x)[0].shape == (1, 1, 4)
    assert LSTM(3, 4, "ln")(x)[0].shape == (1, 1, 4)
    assert SequenceBatchNorm(4)(torch.randn(1, 3, 4)).shape == (1, 3, 4)  # 3 frames: fine


def test_frame_bn_module_warns_once():
    bn = FrameBatchNorm(2, T_max=2)
    with pytest.warns(UserWarning, match=r"FrameBatchNorm keeps per-time-step statistics for "
                      r"T_max=2 steps but received 3 steps"):
        bn(torch.randn(4, 2), t=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bn(torch.randn(4, 3, 2))


# -- the sequence classifier --------------------------------------------------------------------
def test_seq_classifier_names_and_mnist_rows():
    torch.manual_seed(0)
    m = seq_classifier(28, 8, 10, norm="bn_frame", steps=28)
    assert [n for n, _ in m.named_children()] == ["to_seq", "rnn1", "head"]
    assert m.rnn1.cell.T_max == 28 and m.rnn1.cell.norm == "bn_frame"
    img = torch.randn(3, 1, 28, 28)
    logits = m(img)
    assert logits.shape == (3, 10)
    # the rows of the image are the time steps: same as feeding (B, 28, 28) directly
    torch.testing.assert_close(logits, m(img[:, 0]))
    out, _ = m.rnn1(img[:, 0])
    torch.testing.assert_close(logits, m.head(out[:, -1]))


def test_seq_classifier_mnist1d_and_options():
    torch.manual_seed(0)
    m = seq_classifier(4, 6, 10, cell="rnn", norm="ln", layers=2)
    assert [n for n, _ in m.named_children()] == ["to_seq", "rnn1", "rnn2", "head"]
    assert isinstance(m.rnn2, RNN) and m.rnn2.input_size == 6
    x = torch.randn(5, 40)
    torch.testing.assert_close(m(x), m(x.reshape(5, 10, 4)))
    assert seq_classifier(1, 4)(x).shape == (5, 10)  # 40 steps of 1
    assert seq_classifier(1, 4, norm="bn_frame").rnn1.cell.T_max == 100
    b = build_model({"name": "seq_classifier", "input_size": 4, "hidden_size": 5,
                     "num_classes": 3, "norm": "bn_seq", "forget_bias": 1.0})
    assert b(x).shape == (5, 3) and b.spec["norm"] == "bn_seq"
    assert b.rnn1.cell.bias_ih[5:10].eq(1.0).all()
    assert build_model({"name": "lstm_classifier", "input_size": 2})(x).shape == (5, 10)


def test_seq_classifier_bad_input():
    m = seq_classifier(28, 4, steps=28)
    with pytest.raises(ValueError, match=r"expects \(B, 28, 28\) .* Received: input of shape "
                       r"\(2, 5, 3\)"):
        m(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=r"the 30 values of an input of shape \(2, 30\) do not "
                       r"make 28 steps of input_size=28 \(shape \(B, 784\) expected\)"):
        m(torch.randn(2, 30))
    with pytest.raises(ValueError, match=r"the 30 values of an input of shape \(2, 30\) do not "
                       r"make whole steps of input_size=4"):
        seq_classifier(4, 4)(torch.randn(2, 30))
    with pytest.raises(ValueError, match=r"cell must be one of \('lstm', 'rnn'\)\. "
                       r"Received: cell='gru'"):
        seq_classifier(4, cell="gru")
    with pytest.raises(ValueError, match=r"forget_bias is an LSTM option"):
        seq_classifier(4, cell="rnn", forget_bias=1.0)


@pytest.mark.slow
def test_seq_classifier_trains_on_a_toy_task():
    """Sign of the sum of a sequence: every variant learns it within a few dozen steps."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, 1, generator=g)
    y = (x.sum((1, 2)) > 0).long()
    for norm in NORMS:
        torch.manual_seed(0)
        m = seq_classifier(1, 6, 2, norm=norm, steps=4)
        opt = torch.optim.Adam(m.parameters(), lr=0.05)
        first = None
        for _ in range(25):
            loss = nn.functional.cross_entropy(m(x), y)
            first = first if first is not None else loss.item()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert loss.item() < 0.6 * first, f"{norm}: {first:.3f} -> {loss.item():.3f}"


def test_deepcopy_keeps_warn_state_separate():
    m = LSTM(3, 4, "bn_frame", T_max=1)
    m2 = copy.deepcopy(m)
    with pytest.warns(UserWarning):
        m(torch.randn(2, 2, 3))
    with pytest.warns(UserWarning):
        m2(torch.randn(2, 2, 3))
