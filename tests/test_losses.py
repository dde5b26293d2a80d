"""Losses against float64 loops of the lecture's formulas; penalties skip biases and norms."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.losses import (
    LOSSES,
    PENALTIES,
    L2Penalty,
    MulticlassHingeLoss,
    SquaredErrorLoss,
    cross_entropy,
    l1_penalty,
    l2_penalty,
    mse,
    multiclass_hinge,
    penalized_parameters,
)


def batch(n=16, c=5, seed=0, scale=2.0):  # float64 scores with gradient, class indices
    g = torch.Generator().manual_seed(seed)
    s = (scale * torch.randn(n, c, generator=g, dtype=torch.float64)).requires_grad_()
    y = torch.randint(0, c, (n,), generator=g)
    return s, y


def reduce(values, reduction):
    if reduction == "mean":
        return sum(values) / len(values)
    if reduction == "sum":
        return sum(values)
    return values


# -- float64 loops of the formulas ----------------------------------------------------------
def ce_loop(s, y):
    s = s.detach()
    out = []
    for i in range(s.shape[0]):
        row = [float(v) for v in s[i]]
        out.append(-row[int(y[i])] + math.log(sum(math.exp(v) for v in row)))
    return out


def hinge_loop(s, y, delta=1.0):
    s = s.detach()
    out = []
    for i in range(s.shape[0]):
        yi = int(y[i])
        out.append(sum(max(0.0, float(s[i, j]) - float(s[i, yi]) + delta)
                       for j in range(s.shape[1]) if j != yi))
    return out


def mse_loop(s, y):
    s = s.detach()
    out = []
    for i in range(s.shape[0]):
        out.append(0.5 * sum((float(s[i, c]) - (1.0 if c == int(y[i]) else 0.0)) ** 2
                             for c in range(s.shape[1])))
    return out


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_formula(reduction):
    s, y = batch()
    got = cross_entropy(s, y, reduction=reduction)
    want = torch.tensor(reduce(ce_loop(s, y), reduction), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # documented: log-softmax followed by the negative log-likelihood, i.e. torch's
    torch.testing.assert_close(got, F.nll_loss(F.log_softmax(s, 1), y, reduction=reduction))
    torch.testing.assert_close(got, F.cross_entropy(s, y, reduction=reduction))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("delta", [1.0, 2.5, 0.0])
def test_hinge_matches_formula(reduction, delta):
    s, y = batch(n=32, c=7, seed=1)
    got = multiclass_hinge(s, y, margin=delta, reduction=reduction)
    want = torch.tensor(reduce(hinge_loop(s, y, delta), reduction), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_hinge_is_c_times_torch_multi_margin_loss():
    s, y = batch(n=20, c=6, seed=2)
    ours = multiclass_hinge(s, y)
    torch_ = F.multi_margin_loss(s, y, margin=1.0)  # divides each L_i by C = 6
    torch.testing.assert_close(ours, 6 * torch_, rtol=1e-12, atol=0)
    assert not math.isclose(ours.item(), torch_.item())


def test_hinge_gradient_matches_lecture():
    # dL_i/ds_j = 1[s_j - s_y + 1 > 0] for j != y; dL_i/ds_y = -(number of such j); / N
    s, y = batch(n=10, c=4, seed=3)
    multiclass_hinge(s, y).backward()
    s_, want = s.detach(), torch.zeros_like(s)
    for i in range(10):
        yi = int(y[i])
        for j in range(4):
            if j != yi and float(s_[i, j]) - float(s_[i, yi]) + 1 > 0:
                want[i, j] += 1 / 10
                want[i, yi] -= 1 / 10
    torch.testing.assert_close(s.grad, want, rtol=0, atol=1e-15)


def test_hinge_zero_when_margin_met():
    s = torch.tensor([[5.0, 1.0, 3.9], [0.0, 0.0, 10.0]])
    y = torch.tensor([0, 2])
    assert multiclass_hinge(s, y).item() == 0.0
    assert multiclass_hinge(s, y, margin=2.0).item() == pytest.approx(0.9 / 2)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_formula(reduction):
    s, y = batch(n=12, c=10, seed=4)
    got = mse(s, y, reduction=reduction)
    want = torch.tensor(reduce(mse_loop(s, y), reduction), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_mse_convention_and_gradient():
    s, y = batch(n=12, c=10, seed=5)
    onehot = F.one_hot(y, 10).double()
    loss = mse(s, y)
    torch.testing.assert_close(loss, (10 / 2) * F.mse_loss(s, onehot), rtol=1e-12, atol=0)
    torch.testing.assert_close(mse(s, onehot), loss)  # float target of the same shape
    loss.backward()
    torch.testing.assert_close(s.grad, (s - onehot).detach() / 12, rtol=1e-12, atol=1e-15)


def test_registry_builds_modules():
    s, y = batch()
    assert isinstance(LOSSES.build("ce"), nn.CrossEntropyLoss)
    torch.testing.assert_close(LOSSES.build("softmax")(s, y), cross_entropy(s, y))
    hinge = LOSSES.build("svm", margin=2.0)
    assert isinstance(hinge, MulticlassHingeLoss) and "margin=2.0" in repr(hinge)
    torch.testing.assert_close(hinge(s, y), multiclass_hinge(s, y, 2.0))
    assert isinstance(LOSSES.build("mse"), SquaredErrorLoss)
    torch.testing.assert_close(LOSSES.build("squared_error", reduction="sum")(s, y),
                               mse(s, y, "sum"))
    for entry in LOSSES:
        assert entry.description and entry.reference


@pytest.mark.parametrize("call,exc,msg", [
    (lambda s, y: multiclass_hinge(s, y, reduction="avg"), ValueError,
     "reduction must be one of ('mean', 'sum', 'none'). Received: reduction='avg'"),
    (lambda s, y: cross_entropy(s, y, reduction="avg"), ValueError,
     "reduction must be one of ('mean', 'sum', 'none'). Received: reduction='avg'"),
    (lambda s, y: mse(s, y, reduction="Mean"), ValueError,
     "reduction must be one of ('mean', 'sum', 'none'). Received: reduction='Mean'"),
    (lambda s, y: multiclass_hinge(s, y + 10), ValueError,
     "multiclass_hinge: target class indices must lie in [0, 4] (C = 5 scores). Received: "
     "a target of 1"),
    (lambda s, y: multiclass_hinge(s, y.float()), TypeError,
     "multiclass_hinge needs integer class indices as target. Received: dtype torch.float32"),
    (lambda s, y: multiclass_hinge(s[0], y), ValueError,
     "multiclass_hinge needs scores of shape (N, C). Received: shape (5,)"),
    (lambda s, y: multiclass_hinge(s, y[:3]), ValueError,
     "multiclass_hinge needs target class indices of shape (N,) = (16,). Received: shape (3,)"),
    (lambda s, y: multiclass_hinge(s, y, margin=-1.0), ValueError,
     "margin must be a non-negative finite number. Received: margin=-1.0"),
    (lambda s, y: mse(s, torch.zeros(16, 4)), ValueError,
     "mse with a float target needs it to have the scores' shape (16, 5). "
     "Received: shape (16, 4)"),
    (lambda s, y: mse(s, y - 1), ValueError,
     "mse: target class indices must lie in [0, 4] (C = 5 scores). Received: a target of -1"),
    (lambda s, y: LOSSES.build("hinje"), ValueError,
     "Unknown loss 'hinje'. Did you mean 'hinge'"),
])
def test_loss_errors(call, exc, msg):
    s, y = batch()
    with pytest.raises(exc, match=re.escape(msg)):
        call(s.float(), y)


# -- penalties ------------------------------------------------------------------------------
class Maxout(nn.Module):
    def __init__(self, d_in, d_out, k=2):
        super().__init__()
        self.d_out, self.k = d_out, k
        self.linear = nn.Linear(d_in, d_out * k)

    def forward(self, x):
        return self.linear(x).view(-1, self.d_out, self.k).amax(-1)


class ScaleNorm(nn.Module):
    """A normalization layer torch does not know (found by its class name)."""

    def __init__(self, d):
        super().__init__()
        self.gain = nn.Parameter(torch.full((d,), 1.5))

    def forward(self, x):
        return self.gain * x / x.norm(dim=-1, keepdim=True)


def model_with_everything():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(36, 8),
        nn.LayerNorm(8), Maxout(8, 6), nn.GroupNorm(2, 6), ScaleNorm(6),
        nn.Linear(6, 3, bias=False),
    ).double()


WEIGHTS = ["0.weight", "3.weight", "5.linear.weight", "8.weight"]
BIASES = ["0.bias", "3.bias", "5.linear.bias"]
NORMS = ["1.weight", "1.bias", "4.weight", "4.bias", "6.weight", "6.bias", "7.gain"]


def params(model, names):
    d = dict(model.named_parameters())
    return [d[n] for n in names]


def test_penalized_parameters_selection():
    m = model_with_everything()
    assert [n for n, _ in penalized_parameters(m)] == WEIGHTS
    assert sorted(n for n, _ in penalized_parameters(m, include_bias=True)) == sorted(
        WEIGHTS + BIASES)
    assert sorted(n for n, _ in penalized_parameters(m, include_norm=True)) == sorted(
        WEIGHTS + NORMS)


def test_penalized_layers_are_the_weight_layers_and_norms_are_is_norm():
    # the weight layers of trainlab.nn.kinds: Bilinear and Embedding weights are penalized too;
    # trainlab's own norms (LayerNorm, recurrent LN) count as norms
    from trainlab.nn.kinds import weight_layers
    from trainlab.nn.norms import LayerNorm
    from trainlab.nn.recurrent import RecurrentLayerNorm

    m = nn.ModuleDict({"embed": nn.Embedding(5, 4), "bil": nn.Bilinear(4, 4, 3),
                       "ln": LayerNorm(3), "rln": RecurrentLayerNorm(3, shift=True),
                       "head": nn.Linear(3, 2)})
    assert [n for n, _ in penalized_parameters(m)] == [
        f"{n}.weight" for n, _ in weight_layers(m)] == ["embed.weight", "bil.weight",
                                                        "head.weight"]
    assert [n for n, _ in penalized_parameters(m, include_bias=True)] == [
        "embed.weight", "bil.weight", "bil.bias", "head.weight", "head.bias"]
    assert sorted(n for n, _ in penalized_parameters(m, include_norm=True)) == sorted(
        ["embed.weight", "bil.weight", "head.weight", "ln.weight", "ln.bias", "rln.weight",
         "rln.bias"])


@pytest.mark.parametrize("include_bias", [False, True])
@pytest.mark.parametrize("include_norm", [False, True])
def test_penalties_match_formula(include_bias, include_norm):
    m = model_with_everything()
    for p in m.parameters():  # non-trivial norm parameters
        p.data.add_(0.1)
    names = WEIGHTS + (BIASES if include_bias else []) + (NORMS if include_norm else [])
    flat = [float(v) for p in params(m, names) for v in p.detach().flatten()]
    lam = 0.3
    l1 = l1_penalty(m, lam, include_bias=include_bias, include_norm=include_norm)
    l2 = l2_penalty(m, lam, include_bias=include_bias, include_norm=include_norm)
    assert l1.item() == pytest.approx(lam * sum(abs(v) for v in flat), rel=1e-12)
    assert l2.item() == pytest.approx(lam * 0.5 * sum(v * v for v in flat), rel=1e-12)


def test_penalty_gradients_skip_biases_and_norms():
    m = model_with_everything()
    lam = 0.25
    l2_penalty(m, lam).backward()
    for p in params(m, WEIGHTS):
        torch.testing.assert_close(p.grad, lam * p.detach(), rtol=1e-12, atol=0)
    for p in params(m, BIASES + NORMS):
        assert p.grad is None
    m.zero_grad(set_to_none=True)
    l1_penalty(m, lam).backward()
    for p in params(m, WEIGHTS):
        torch.testing.assert_close(p.grad, lam * p.detach().sign(), rtol=0, atol=0)
    for p in params(m, BIASES + NORMS):
        assert p.grad is None


def test_l2_penalty_with_sgd_equals_weight_decay():
    lam, lr = 0.1, 0.05
    a = model_with_everything()
    b = copy.deepcopy(a)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1])
    opt_a = torch.optim.SGD(a.parameters(), lr=lr)
    decay = {id(t) for _, t in penalized_parameters(b)}
    opt_b = torch.optim.SGD([
        {"params": [p for p in b.parameters() if id(p) in decay], "weight_decay": lam},
        {"params": [p for p in b.parameters() if id(p) not in decay], "weight_decay": 0.0},
    ], lr=lr)
    for _ in range(3):
        opt_a.zero_grad()
        (cross_entropy(a(x), target) + l2_penalty(a, lam)).backward()
        opt_a.step()
        opt_b.zero_grad()
        cross_entropy(b(x), target).backward()
        opt_b.step()
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-14, msg=n)


def test_lecture_regularizer_is_l2_penalty_with_twice_lambda():
    m = nn.Linear(5, 3).double()
    lam = 0.01
    lecture = lam * (m.weight ** 2).sum()  # R(W) = λ Σ_k W_k²
    torch.testing.assert_close(l2_penalty(m, 2 * lam), lecture, rtol=1e-14, atol=0)


def test_shared_weight_counted_once_and_parametrized_weight():
    lin = nn.Linear(4, 4)
    m = nn.Sequential(lin, nn.Tanh(), lin)
    assert l2_penalty(m).item() == pytest.approx(0.5 * (lin.weight ** 2).sum().item())
    from torch.nn.utils.parametrizations import weight_norm

    wn = weight_norm(nn.Linear(6, 3))
    assert l1_penalty(wn).item() == pytest.approx(wn.weight.abs().sum().item(), rel=1e-6)
    l1_penalty(wn).backward()
    assert wn.parametrizations.weight.original1.grad is not None


def test_penalty_registry():
    m = model_with_everything()
    pen = PENALTIES.build("l2", weight=0.1)
    assert isinstance(pen, L2Penalty) and "weight=0.1" in repr(pen)
    torch.testing.assert_close(pen(m), l2_penalty(m, 0.1))
    torch.testing.assert_close(PENALTIES.build("lasso", include_bias=True)(m),
                               l1_penalty(m, include_bias=True))


@pytest.mark.parametrize("call,exc,msg", [
    (lambda m: l2_penalty(m, weight=-1.0), ValueError,
     "weight must be a non-negative finite number. Received: weight=-1.0"),
    (lambda m: l1_penalty(m, weight=float("nan")), ValueError,
     "weight must be a non-negative finite number. Received: weight=nan"),
    (lambda m: l2_penalty(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3))), ValueError,
     "l2_penalty found no weight to penalize in Sequential: it sums over the weights of "
     "nn.Linear, nn.Bilinear, nn.Conv1d/2d/3d, nn.ConvTranspose1d/2d/3d, nn.Embedding and "
     "trainlab's WhitenedLinear layers"),
    (lambda m: l1_penalty(m.parameters()), TypeError,
     "l1_penalty needs an nn.Module. Received: generator"),
    (lambda m: PENALTIES.build("ridg"), ValueError,
     "Unknown penalty 'ridg'. Did you mean 'ridge'?"),
])
def test_penalty_errors(call, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        call(model_with_everything())


def test_hinge_default_margin_is_one_on_every_path():
    """Lecture 001's Σ_{j≠y} max(0, s_j − s_y + 1): the function, the class and the registry's
    build path all default to Δ = 1 (a mutant class default 0.9 survived the suite)."""
    from trainlab.losses import LOSSES, MulticlassHingeLoss, multiclass_hinge

    s = torch.tensor([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]],
                     dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    want = sum(max(0.0, float(s[i, j] - s[i, y[i]] + 1.0)) for i in range(3) for j in range(3)
               if j != y[i]) / 3  # 2.9, 0, 12.9 -> 5.2667 (CS231n's example)
    assert want == pytest.approx((2.9 + 0.0 + 12.9) / 3)
    assert MulticlassHingeLoss().margin == 1.0
    assert LOSSES.build("hinge").margin == 1.0
    for loss in (multiclass_hinge, MulticlassHingeLoss(), LOSSES.build("hinge")):
        assert float(loss(s, y)) == pytest.approx(want, rel=1e-12)
