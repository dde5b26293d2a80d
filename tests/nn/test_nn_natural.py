"""Natural neural networks: whitening, function-preserving re-estimation, Trainer callback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trainlab.nn import mlp
from trainlab.nn.natural import (
    WhitenedLinear,
    WhiteningCallback,
    reestimate_whitening,
    to_natural,
    whitened_linear,
    whitening_matrices,
)

D64 = torch.float64


def _correlated(n, d, seed=0, dtype=D64):
    """Inputs with a non-zero mean and strongly correlated, unequal-scale features."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=dtype) * torch.logspace(-1, 1, d, dtype=dtype)
    return torch.randn(n, d, generator=g, dtype=dtype) @ mix + 3.0


@pytest.mark.parametrize("whitening", ["pca", "zca"])
def test_whitening_matrices_whiten(whitening):
    x = _correlated(500, 5)
    cov = torch.cov(x.T, correction=0)
    eps = 1e-3
    U, U_inv = whitening_matrices(cov, eps, whitening)
    reg = cov + eps * torch.eye(5, dtype=D64)
    torch.testing.assert_close(U @ reg @ U.T, torch.eye(5, dtype=D64), rtol=0, atol=1e-10)
    torch.testing.assert_close(U @ U_inv, torch.eye(5, dtype=D64), rtol=0, atol=1e-10)
    # sign-free check against numpy: U^T U = (Sigma + eps I)^-1
    np.testing.assert_allclose((U.T @ U).numpy(), np.linalg.inv(reg.numpy()), rtol=1e-8,
                               atol=1e-10)
    if whitening == "zca":
        torch.testing.assert_close(U, U.T, rtol=0, atol=1e-12)


def _natural_net(dtype=D64, bias=True):
    torch.manual_seed(0)
    return to_natural(mlp(5, [7, 6], 3, activation="tanh", bias=bias).to(dtype))


@pytest.mark.parametrize("whitening", ["pca", "zca"])
def test_reestimation_keeps_the_function(whitening):
    net = _natural_net()
    for m in net.modules():
        if isinstance(m, WhitenedLinear):
            m.whitening = whitening
    x = _correlated(300, 5)
    probe = _correlated(50, 5, seed=1)
    y0 = net(probe)
    assert reestimate_whitening(net, x) == ["block1.linear", "block2.linear", "head"]
    y1 = net(probe)
    torch.testing.assert_close(y1, y0, rtol=1e-10, atol=1e-10)
    # and again from other data, after the parameters moved
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    y2 = net(probe)
    reestimate_whitening(net, _correlated(300, 5, seed=2) * 2, batch_size=64)
    torch.testing.assert_close(net(probe), y2, rtol=1e-10, atol=1e-10)
    # the whitening really changed: the first layer's U is no longer the identity
    assert (net.block1.linear.whitener - torch.eye(5, dtype=D64)).abs().max() > 0.1


def test_reestimation_keeps_the_function_in_float32():
    net = _natural_net(dtype=torch.float32)
    x = _correlated(300, 5, dtype=torch.float32)
    y0 = net(x)
    reestimate_whitening(net, x)
    torch.testing.assert_close(net(x), y0, rtol=1e-4, atol=1e-4)


def test_layer_inputs_are_whitened_after_reestimation():
    layer = WhitenedLinear(4, 2, eps=0.0, dtype=D64)
    x = _correlated(400, 4)
    layer.estimate_(x)
    z = whitened_linear(x, torch.eye(4, dtype=D64), None, layer.mean, layer.whitener)
    torch.testing.assert_close(z.mean(0), torch.zeros(4, dtype=D64), rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cov(z.T, correction=0), torch.eye(4, dtype=D64), rtol=0,
                               atol=1e-8)


def test_projection_matches_algorithm_1_in_float64():
    """The paper's Algorithm 1, lines 7-10, recomputed here with numpy."""
    torch.manual_seed(1)
    layer = WhitenedLinear(3, 2, eps=1e-2, dtype=D64)
    layer.estimate_(_correlated(100, 3, seed=4))  # start from a non-trivial Phi
    V, d = layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()
    U_old, c_old = layer.whitener.numpy().copy(), layer.mean.numpy().copy()
    x = _correlated(200, 3, seed=5).numpy()
    layer.estimate_(torch.from_numpy(x))
    W = V @ U_old  # line 7: canonical parameters
    b = d - W @ c_old
    c = x.mean(0)  # lines 8-9: new statistics
    sigma = np.cov(x.T, bias=True) + 1e-2 * np.eye(3)
    np.testing.assert_allclose(layer.mean.numpy(), c, rtol=1e-12, atol=1e-12)
    U = layer.whitener.numpy()
    np.testing.assert_allclose(U.T @ U, np.linalg.inv(sigma), rtol=1e-8, atol=1e-10)
    # line 10: V = W U^-1, d = b + V U c
    np.testing.assert_allclose(layer.weight.detach().numpy(), W @ np.linalg.inv(U), rtol=1e-8,
                               atol=1e-10)
    np.testing.assert_allclose(layer.bias.detach().numpy(), b + W @ c, rtol=1e-10, atol=1e-10)


def test_starts_as_linear_and_converts_back():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    w = WhitenedLinear.from_linear(lin)
    x = torch.randn(6, 4)
    torch.testing.assert_close(w(x), lin(x))
    w.estimate_(_correlated(100, 4, dtype=torch.float32))
    torch.testing.assert_close(w.to_linear()(x), lin(x), rtol=1e-4, atol=1e-4)
    assert w.updates == 1
    torch.manual_seed(0)
    fresh = WhitenedLinear(4, 3)
    torch.manual_seed(0)
    ref = nn.Linear(4, 3)
    assert torch.equal(fresh.weight, ref.weight) and torch.equal(fresh.bias, ref.bias)


def test_bias_free_layer_decorrelates_and_keeps_the_function():
    torch.manual_seed(0)
    layer = WhitenedLinear(4, 3, bias=False, dtype=D64)
    x = _correlated(200, 4)
    y0 = layer(x)
    layer.estimate_(x)
    torch.testing.assert_close(layer(x), y0, rtol=1e-10, atol=1e-10)
    assert torch.equal(layer.mean, torch.zeros(4, dtype=D64))
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]


def test_gradcheck():
    torch.manual_seed(0)
    layer = WhitenedLinear(3, 2, dtype=D64)
    layer.estimate_(_correlated(50, 3))
    x = torch.randn(4, 3, dtype=D64, requires_grad=True)
    V = layer.weight.detach().clone().requires_grad_()
    d = layer.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, V, d: whitened_linear(x, V, d, layer.mean, layer.whitener), (x, V, d))


def test_callback_reestimates_every_T_steps_with_the_trainer():
    from trainlab.train import Trainer

    torch.manual_seed(0)
    x = _correlated(128, 5, dtype=torch.float32)
    y = (x[:, 0] > x[:, 0].median()).long()
    net = to_natural(mlp(5, [8], 2, activation="tanh"))
    cb = WhiteningCallback(every=10, num_samples=64)
    trainer = Trainer(net, "sgd", lr=0.05, callbacks=[cb], log_every=5, progress=False)
    hist = trainer.fit((x, y), steps=30, batch_size=32)
    assert cb.steps == [0, 10, 20]
    assert net.block1.linear.updates == 3 and net.head.updates == 3
    assert hist.metrics[-1]["train_loss"] < hist.metrics[0]["train_loss"]
    state = cb.state_dict()
    cb2 = WhiteningCallback(every=10)
    cb2.load_state_dict(state)
    assert cb2.steps == [0, 10, 20]


def test_callback_warns_when_every_is_not_a_multiple_of_log_every():
    from trainlab.train import Trainer

    x = torch.randn(32, 5)
    y = torch.randint(0, 2, (32,))
    net = to_natural(mlp(5, [4], 2))
    cb = WhiteningCallback(every=7)
    with pytest.warns(UserWarning, match=r"WhiteningCallback\(every=7\) runs at logging points "
                      r"only and the Trainer logs every 5 steps"):
        Trainer(net, "sgd", lr=0.01, callbacks=[cb], log_every=5, progress=False).fit(
            (x, y), steps=15, batch_size=16)
    # logging points fall every 5 steps and at each epoch's end (2 steps): the first ones at
    # or after 7 and 14
    assert cb.steps == [0, 8, 14]


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0\. Received: eps=-1"):
        WhitenedLinear(3, 2, eps=-1)
    with pytest.raises(ValueError, match=r"whitening must be one of \('pca', 'zca'\)\. "
                       r"Received: whitening='pcaa'"):
        WhitenedLinear(3, 2, whitening="pcaa")
    with pytest.raises(ValueError, match=r"in_features=3 \(last input dim\)\. Received: input of "
                       r"shape \(2, 4\)"):
        WhitenedLinear(3, 2)(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"mean and cov must have shapes \(3,\) and \(3, 3\) .* "
                       r"Received: mean of shape \(3,\), cov of shape \(2, 2\)"):
        WhitenedLinear(3, 2).update_whitening_(torch.zeros(3), torch.eye(2))
    with pytest.raises(ValueError, match=r"at least 2 input rows .* Received: x of shape \(1, 3\)"):
        WhitenedLinear(3, 2).estimate_(torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"found no WhitenedLinear .*to_natural"):
        reestimate_whitening(mlp(3, [2], 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"every must be a positive integer\. Received: every=0"):
        WhiteningCallback(every=0)
    with pytest.warns(UserWarning, match="found no nn.Linear"):
        to_natural(nn.Sequential(nn.Tanh()))
