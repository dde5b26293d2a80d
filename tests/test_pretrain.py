"""Greedy layer-wise pre-training: autoencoders, tied weights, CD-k against an exact RBM
gradient, the stack finder and its errors, History rows."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from trainlab.engine.pretraining import (
    PRETRAINERS,
    TiedDecoder,
    cd_k,
    corrupt,
    linear_stack,
    pretrain,
)
from trainlab.nn import mlp
from trainlab.train import History, LambdaCallback, Trainer


def _low_rank(n=512, d=16, r=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, r, generator=g)
    a = torch.randn(r, d, generator=g) / math.sqrt(r)
    return z @ a + 0.05 * torch.randn(n, d, generator=g)


# -- autoencoders -----------------------------------------------------------------------------
@pytest.mark.parametrize("method,kw", [
    ("autoencoder", {}),
    ("autoencoder", {"tied": False}),
    ("denoising", {}),
    ("denoising", {"corruption": "gaussian", "noise": 0.1}),
])
def test_autoencoder_reconstruction_decreases(method, kw):
    torch.manual_seed(0)
    x = _low_rank(n=256)
    model = mlp(16, [8, 6], 2, activation="tanh")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hist = pretrain(model, x, method, steps=60, log_every=30, batch_size=64, lr=2e-2, **kw)
    curves = hist.pretrain_curves()
    assert list(curves) == ["block1", "block2"]
    for layer, (steps, values) in curves.items():
        assert steps == [0, 30, 60]
        assert values[-1] < 0.5 * values[0], (layer, values)
    # the hidden layers changed, the output layer was left for fine-tuning
    after = model.state_dict()
    assert not torch.equal(before["block1.linear.weight"], after["block1.linear.weight"])
    assert not torch.equal(before["block2.linear.weight"], after["block2.linear.weight"])
    assert torch.equal(before["head.weight"], after["head.weight"])


def test_reconstruction_recomputed_independently():
    """The recorded clean reconstruction of the first layer equals a float64 recomputation
    from the weights: with a tied decoder x̂ = Wᵀ tanh(Wx + c) + b, so b is the one unknown;
    it is read off the decoder the trainer built (the only parameter it adds)."""
    torch.manual_seed(1)
    x = _low_rank(n=200)
    model = mlp(16, [8], 2, activation="tanh")
    captured = {}
    real = TiedDecoder.__init__

    def spy(self, linear):
        real(self, linear)
        captured["dec"] = self

    TiedDecoder.__init__ = spy
    try:
        hist = pretrain(model, x, "autoencoder", steps=60, log_every=60, lr=1e-2)
    finally:
        TiedDecoder.__init__ = real
    w = model.block1.linear.weight.detach().double()
    c = model.block1.linear.bias.detach().double()
    b = captured["dec"].bias.detach().double()
    xd = x.double()
    rec = torch.tanh(xd @ w.t() + c) @ w + b
    want = ((rec - xd) ** 2).mean().item()
    assert hist.pretrain[-1]["recon_loss"] == pytest.approx(want, rel=1e-4)


def test_tied_decoder_shares_the_encoder_weight():
    lin = nn.Linear(5, 3)
    dec = TiedDecoder(lin)
    assert [n for n, _ in dec.named_parameters()] == ["bias"]  # no weight of its own
    assert dec.weight.data_ptr() == lin.weight.data_ptr()  # a view, not a copy
    assert dec.weight.shape == (5, 3)
    # gradient through the decoder path lands in the encoder's weight, and equals the
    # gradient of the explicit formula h W + b (float64)
    h = torch.randn(4, 3, dtype=torch.float64)
    lin = lin.double()
    dec = TiedDecoder(lin)
    target = torch.randn(4, 5, dtype=torch.float64)
    ((dec(h) - target) ** 2).sum().backward()
    w = lin.weight.detach().clone().requires_grad_(True)
    ((h @ w + dec.bias.detach() - target) ** 2).sum().backward()
    torch.testing.assert_close(lin.weight.grad, w.grad)
    # one optimizer step on the decoder's loss alone moves the encoder's weight
    old = lin.weight.detach().clone()
    torch.optim.SGD([lin.weight], lr=0.1).step()
    assert not torch.equal(old, lin.weight.detach())


def test_tied_pretraining_adds_only_a_bias(monkeypatch):
    """With tied=True the optimizer of a layer holds the encoder's parameters plus one
    visible bias (no decoder matrix); with tied=False a decoder matrix too."""
    import trainlab.engine.pretraining as pretraining

    seen = []
    real = pretraining.build_optimizer

    def spy(spec, params, lr=None, **kw):
        params = list(params)
        seen.append([tuple(p.shape) for p in params])
        return real(spec, params, lr=lr, **kw)

    monkeypatch.setattr(pretraining, "build_optimizer", spy)  # the name pretrain calls
    x = _low_rank(n=64)
    pretrain(mlp(16, [8], 2), x, "autoencoder", steps=2, tied=True)
    pretrain(mlp(16, [8], 2), x, "autoencoder", steps=2, tied=False)
    assert seen[0] == [(8, 16), (8,), (16,)]
    assert seen[1] == [(8, 16), (8,), (16, 8), (16,)]


def test_corruption_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(200_000)
    m = corrupt(x, "mask", 0.3, generator=g)
    frac = (m == 0).float().mean().item()
    se = math.sqrt(0.3 * 0.7 / x.numel())
    assert abs(frac - 0.3) < 5 * se
    assert set(m.unique().tolist()) == {0.0, 1.0}  # masking noise does not rescale
    gz = corrupt(torch.zeros(200_000), "gaussian", 0.5, generator=g)
    assert abs(gz.std().item() - 0.5) < 0.005 and abs(gz.mean().item()) < 0.005
    assert corrupt(x, "mask", 0.0) is x


# -- RBM and CD-k ---------------------------------------------------------------------------
def _states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _exact_rbm(w, c, b):
    """Joint p(v, h) of a Bernoulli RBM by enumerating every state, from the energy
    E(v, h) = -bᵀv - cᵀh - hᵀWv (float64)."""
    V, H = _states(w.shape[1]), _states(w.shape[0])
    energy = -(V @ b)[:, None] - (H @ c)[None, :] - (H @ w @ V.t()).t()
    p = torch.exp(-energy)
    return V, H, p / p.sum()


def _tiny_rbm():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.8
    c = torch.randn(3, generator=g, dtype=torch.float64) * 0.5
    b = torch.randn(4, generator=g, dtype=torch.float64) * 0.5
    data = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 0]],
                        dtype=torch.float64)
    return w, c, b, data


def test_cd_k_approaches_the_exact_log_likelihood_gradient():
    """With long chains (k = 30) from many copies of the data, CD-k's estimate matches the
    exact gradient of the mean negative log-likelihood, computed by enumerating the 2^4 x 2^3
    states: -∂/∂W mean log p(v) = E_model[h vᵀ] - mean_data E[h | v] vᵀ."""
    w, c, b, data = _tiny_rbm()
    V, H, p = _exact_rbm(w, c, b)
    model_hv = torch.einsum("vh,hi,vj->ij", p, H, V)  # E_model[h vᵀ]
    model_h, model_v = p.sum(0) @ H, p.sum(1) @ V
    ph_data = torch.sigmoid(data @ w.t() + c)
    exact_w = model_hv - ph_data.t() @ data / len(data)
    exact_c = model_h - ph_data.mean(0)
    exact_b = model_v - data.mean(0)

    reps = 5000
    v0 = data.repeat(reps, 1)
    g = torch.Generator().manual_seed(0)
    res = cd_k(v0, w, c, b, k=30, generator=g)
    # standard error of a mean of N terms bounded by 1 in absolute value: <= 0.5 / sqrt(N)
    tol = 5 * 0.5 / math.sqrt(len(v0))
    torch.testing.assert_close(res.grad_weight, exact_w, atol=tol, rtol=0)
    torch.testing.assert_close(res.grad_hidden_bias, exact_c, atol=tol, rtol=0)
    torch.testing.assert_close(res.grad_visible_bias, exact_b, atol=tol, rtol=0)
    assert exact_w.abs().max() > 5 * tol  # the gradient is far from zero: the test can fail


def test_cd_1_estimator_expectation_is_exact():
    """E[CD-1] by enumeration: the positive term is deterministic (p(h|v0) v0ᵀ); the
    negative term averages p(h|v1) v1ᵀ over h0 ~ p(h|v0), v1 ~ p(v|h0)."""
    w, c, b, data = _tiny_rbm()
    V, H = _states(4), _states(3)
    neg = torch.zeros(3, 4, dtype=torch.float64)
    for v0 in data:
        ph0 = torch.sigmoid(w @ v0 + c)
        p_h0 = torch.prod(H * ph0 + (1 - H) * (1 - ph0), dim=1)           # (8,)
        pv = torch.sigmoid(H @ w + b)                                       # (8, 4)
        p_v1 = torch.prod(V[None] * pv[:, None] + (1 - V[None]) * (1 - pv[:, None]), -1)
        ph1 = torch.sigmoid(V @ w.t() + c)                                  # (16, 3)
        stat = torch.einsum("vi,vj->vij", ph1, V)                           # (16, 3, 4)
        neg += torch.einsum("h,hv,vij->ij", p_h0, p_v1, stat)
    neg /= len(data)
    pos = torch.sigmoid(data @ w.t() + c).t() @ data / len(data)
    want = neg - pos
    v0 = data.repeat(10000, 1)
    res = cd_k(v0, w, c, b, k=1, generator=torch.Generator().manual_seed(1))
    tol = 5 * 0.5 / math.sqrt(len(v0))
    torch.testing.assert_close(res.grad_weight, want, atol=tol, rtol=0)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_cd_gradient_is_the_free_energy_difference(visible):
    """Given the chain's end v_k, CD's estimate is ∂/∂θ [mean F(v0) - mean F(vk)], with the
    free energy written out here: F(v) = -bᵀv - Σ softplus(Wv + c) (Bernoulli) or
    ||v - b||²/2 - Σ softplus(Wv + c) (Gaussian); checked with autograd in float64."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.3
    c = torch.randn(3, generator=g, dtype=torch.float64) * 0.3
    b = torch.randn(5, generator=g, dtype=torch.float64) * 0.3
    v0 = (torch.rand(7, 5, generator=g, dtype=torch.float64) > 0.5).double()
    if visible == "gaussian":
        v0 = torch.randn(7, 5, generator=g, dtype=torch.float64)
    res = cd_k(v0, w, c, b, k=2, visible=visible, generator=g)
    if visible == "bernoulli":
        assert set(res.v_k.unique().tolist()) <= {0.0, 1.0}
    params = [t.clone().requires_grad_(True) for t in (w, c, b)]
    W, C, B = params

    def free(v):
        soft = torch.log1p(torch.exp(v @ W.t() + C)).sum(-1)
        vis = -(v @ B) if visible == "bernoulli" else 0.5 * ((v - B) ** 2).sum(-1)
        return vis - soft

    (free(v0).mean() - free(res.v_k).mean()).backward()
    torch.testing.assert_close(res.grad_weight, W.grad)
    torch.testing.assert_close(res.grad_hidden_bias, C.grad)
    torch.testing.assert_close(res.grad_visible_bias, B.grad)


def test_rbm_pretraining_lowers_reconstruction_error():
    torch.manual_seed(0)
    # binary data from two prototypes with flipped bits: an RBM learns them
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(2, 12, generator=g) > 0.5).float()
    x = protos[torch.randint(0, 2, (400,), generator=g)]
    flip = torch.rand(x.shape, generator=g) < 0.05
    x = torch.where(flip, 1 - x, x)
    model = mlp(12, [6], 2, activation="sigmoid")
    hist = pretrain(model, x, "rbm", steps=150, log_every=50, optimizer="sgd", lr=0.5, k=1)
    _, values = hist.pretrain_curves()["block1"]
    assert values[-1] < 0.5 * values[0], values


def test_rbm_warnings():
    x = torch.randn(64, 6)  # not in [0, 1]
    with pytest.warns(UserWarning, match=r"Bernoulli visible units on data .*visible='gaussian'"):
        pretrain(mlp(6, [4], 2, activation="sigmoid"), x, "rbm", steps=2)
    with pytest.warns(UserWarning, match="treats layer 'block1'.s hidden units as sigmoid"):
        pretrain(mlp(6, [4], 2, activation="tanh"), x, "rbm", steps=2, visible="gaussian")


# -- which models ---------------------------------------------------------------------------
def test_user_stack_of_linear_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 4),
                          nn.Sigmoid(), nn.Linear(4, 2))
    prefix, hidden, head = linear_stack(model)
    assert [h.name for h in hidden] == ["1+2", "3+4"] and head.name == "5"
    assert [type(m) for m in prefix] == [nn.Flatten]
    head_w = model[5].weight.detach().clone()
    w1 = model[1].weight.detach().clone()
    hist = pretrain(model, _low_rank().reshape(512, 4, 4), "autoencoder", steps=10)
    assert list(hist.pretrain_curves()) == ["1+2", "3+4"]
    assert torch.equal(model[5].weight, head_w) and not torch.equal(model[1].weight, w1)


def test_maxout_mlp_pretrains_untied_only():
    model = mlp(16, [8], 2, activation=("maxout", {"k": 2}))
    with pytest.raises(ValueError, match=r"tied decoder .* block1 are maxout units.*tied=False"):
        pretrain(model, _low_rank(n=32), "autoencoder", steps=1)
    with pytest.raises(ValueError, match=r"an RBM needs plain nn.Linear layers"):
        pretrain(model, _low_rank(n=32), "rbm", steps=1)
    hist = pretrain(model, _low_rank(n=64), "autoencoder", steps=3, tied=False)
    assert list(hist.pretrain_curves()) == ["block1"]


def test_unsupported_models_name_the_supported_ones():
    from trainlab.nn import convnet, preact_resnet

    supported = r"pre-training needs a stack of Linear layers: an mlp from trainlab.models.builders"
    cases = [
        (convnet(1, [4], 2), r"ConvNet, its child 'block1' holds a Conv2d at 'conv'"),
        (preact_resnet(8, 2, 1, widths=(4,)), r"PreActResNet, which holds a Conv2d at 'stem'"),
        (nn.Sequential(nn.Linear(3, 2)), r"has 1 Linear layer\(s\) and so no hidden layer"),
        (nn.GRU(3, 4), r"GRU, which is a GRU"),
        (nn.Sequential(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3)), nn.Linear(3, 1)),
         r"child '0' is not one Linear layer followed by elementwise modules"),
    ]
    for model, what in cases:
        with pytest.raises(ValueError, match=supported + ".*Received: .*" + what):
            pretrain(model, torch.randn(4, 3), steps=1)


def test_shape_mismatch_names_both_shapes():
    model = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"layer '2' expects codes of shape \(N, 5\), but "
                                         r"receives shape \(2, 4\)"):
        pretrain(model, torch.randn(8, 6), steps=1)


@pytest.mark.parametrize("kw,match", [
    ({"noise": 1.0}, r"noise of the 'mask' corruption .* in \[0, 1\)\. Received: noise=1\.0"),
    ({"corruption": "salt", "noise": 0.1}, r"corruption must be one of \('mask', 'gaussian'\)\. "
                                          r"Received: corruption='salt'"),
    ({"k": 0}, r"k must be an integer >= 1\. Received: k=0"),
    ({"steps": 0}, r"steps must be an integer >= 1\. Received: steps=0"),
    ({"loss": "l1"}, r"loss must be one of \('mse', 'bce'\)\. Received: loss='l1'"),
    ({"visible": "poisson"}, r"visible must be one of .* Received: visible='poisson'"),
])
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        pretrain(mlp(4, [3], 2), torch.randn(8, 4), **kw)


def test_unknown_method_lists_close_matches():
    with pytest.raises(ValueError, match=r"Unknown pretrain 'denoisng'.*denoising"):
        pretrain(mlp(4, [3], 2), torch.randn(8, 4), "denoisng")
    assert {"autoencoder", "denoising", "rbm"} <= set(PRETRAINERS.names())


# -- History and fine-tuning -------------------------------------------------------------------
def test_history_rows_and_round_trip():
    hist = pretrain(mlp(16, [8, 4], 2), _low_rank(n=64), "denoising", steps=20, log_every=10)
    row = hist.pretrain[0]
    assert set(row) >= {"method", "layer", "step", "train_loss", "recon_loss", "time"}
    assert row["method"] == "denoising" and row["train_loss"] is None  # step 0: no window
    assert [(r["layer"], r["step"]) for r in hist.pretrain] == [
        ("block1", 0), ("block1", 10), ("block1", 20), ("block2", 0), ("block2", 10),
        ("block2", 20)]
    again = History()
    again.load_state_dict(hist.state_dict())
    assert again.pretrain == hist.pretrain
    assert hist.final()["pretrain.block2.recon_loss"] == hist.pretrain[-1]["recon_loss"]
    assert hist.pretrain_csv().splitlines()[0].startswith("method,layer,step,train_loss")


def test_fine_tuning_starts_from_the_pretrained_weights():
    torch.manual_seed(0)
    x = _low_rank(n=128)
    y = (x[:, 0] > 0).long()
    model = mlp(16, [8], 2, activation="tanh")
    init = {k: v.clone() for k, v in model.state_dict().items()}
    pretrain(model, x, "autoencoder", steps=30)
    pretrained = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {}
    cb = LambdaCallback(on_fit_begin=lambda t: seen.update(
        {k: v.clone() for k, v in t.model.state_dict().items()}))
    Trainer(model, "sgd", lr=0.1, callbacks=[cb]).fit((x, y), steps=5, batch_size=32)
    for k in pretrained:
        torch.testing.assert_close(seen[k], pretrained[k], rtol=0, atol=0)
    assert not torch.equal(init["block1.linear.weight"], pretrained["block1.linear.weight"])
    assert not torch.equal(model.block1.linear.weight, pretrained["block1.linear.weight"])


def test_should_stop_keeps_layers_so_far():
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] >= 3

    hist = pretrain(mlp(16, [8, 4], 2), _low_rank(n=64), steps=50, should_stop=stop)
    assert {r["layer"] for r in hist.pretrain} == {"block1"}
    assert hist.pretrain[-1]["step"] == 3
