"""JacobianSpectrum against explicit Jacobians."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.probes import JacobianSpectrum, collect, jacobian_singular_values


def test_exact_matches_svdvals_of_explicit_jacobian():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4))
    h = torch.randn(3, 6)
    sv, rms, exact = jacobian_singular_values(block, h)
    assert exact
    for i in range(3):
        J = torch.autograd.functional.jacobian(lambda z: block(z), h[i])
        ref = torch.linalg.svdvals(J.double())
        assert torch.allclose(sv[i].double(), ref, rtol=1e-5, atol=1e-6)
        assert rms[i].item() == pytest.approx(ref.pow(2).mean().sqrt().item(), rel=1e-5)


def test_linear_tanh_layer_jacobian_is_diag_one_minus_h2_times_w():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), nn.Linear(4, 2))
    x = torch.randn(5, 4)
    p = JacobianSpectrum(every=1, n_examples=5).attach(model)
    p.observe(x)
    W = model[0][0].weight.detach().double()
    with torch.no_grad():
        h = model[0](x).double()
    refs = torch.stack([torch.linalg.svdvals(torch.diag(1 - h[i] ** 2) @ W) for i in range(5)])
    t = collect([p]).table(0)
    assert t["0"]["jac_sv_mean"] == pytest.approx(refs.mean().item(), rel=1e-5)
    assert t["0"]["jac_sv_max"] == pytest.approx(refs.max(1).values.mean().item(), rel=1e-5)
    assert t["0"]["jac_sv_min"] == pytest.approx(refs.min(1).values.mean().item(), rel=1e-5)
    # input-output Jacobian of the whole model
    Jio = [torch.autograd.functional.jacobian(lambda z: model(z[None])[0], x[i]) for i in range(5)]
    ref = torch.stack([torch.linalg.svdvals(J.double()) for J in Jio]).mean(0)
    spec = {s["layer"]: s for s in p.spectra()}
    assert spec["model"]["singular_values"] == pytest.approx(ref.tolist(), rel=1e-5)
    assert not any(mod._forward_pre_hooks for mod in model.modules()) or p.attached
    p.detach()
    assert not any(mod._forward_pre_hooks for mod in model.modules())
    p.clear()  # forgets rows and spectra alike
    assert p.spectra() == [] and p.records() == []


def test_randomized_top_singular_values_and_rms():
    torch.manual_seed(2)
    d = 60
    U, _ = torch.linalg.qr(torch.randn(d, d))
    V, _ = torch.linalg.qr(torch.randn(d, d))
    s = torch.logspace(1, -2, d)  # decaying spectrum, top values well separated
    lin = nn.Linear(d, d, bias=False)
    with torch.no_grad():
        lin.weight.copy_(U @ torch.diag(s) @ V.T)
    h = torch.randn(2, d)
    sv, rms, exact = jacobian_singular_values(lin, h, exact_max=8, k=12, iters=4,
                                              generator=torch.Generator().manual_seed(0))
    assert not exact and sv.shape == (2, 12)
    assert torch.allclose(sv[:, :4], s[:4].expand(2, 4), rtol=1e-3)
    true_rms = s.pow(2).mean().sqrt().item()
    # Hutchinson with k=12 Gaussian probes: a rough estimate (within a factor 2 here).
    assert 0.5 * true_rms < rms.mean().item() < 2 * true_rms


def test_jacobian_argument_errors():
    with pytest.raises(ValueError, match="n_examples must be an integer >= 1.*0"):
        JacobianSpectrum(n_examples=0)
    with pytest.raises(ValueError, match="iters must be an integer >= 0.*-1"):
        JacobianSpectrum(iters=-1)


def _explicit(fn, h):
    """Per-example Jacobians by torch.autograd.functional.jacobian (float64)."""
    return [torch.autograd.functional.jacobian(fn, h[i]).reshape(-1, h[i].numel())
            for i in range(h.shape[0])]


def test_inplace_relu_block_matches_explicit_jacobian():
    torch.manual_seed(3)
    block = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(2, 3, 3, padding=1),
                          nn.ReLU(inplace=True)).double()
    h = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    sv, rms, exact = jacobian_singular_values(block, h)  # d_in 32 < d_out 48: forward mode
    assert exact
    for i, J in enumerate(_explicit(lambda z: block(z[None].clone())[0], h)):
        ref = torch.linalg.svdvals(J)
        assert torch.allclose(sv[i].double(), ref, rtol=1e-4, atol=1e-6)


def test_lstm_randomized_uses_double_backward_and_matches_exact():
    # nn.LSTM's CPU kernel has no forward mode: the JVPs come from the double backward
    torch.manual_seed(4)
    lstm = nn.LSTM(3, 5, batch_first=True).eval()
    h = torch.randn(2, 4, 3)  # d_in 12, d_out 20
    sv_r, rms_r, exact_r = jacobian_singular_values(lstm, h, exact_max=2, k=12, iters=3)
    sv_e, rms_e, exact_e = jacobian_singular_values(lstm, h)
    assert exact_e and not exact_r and sv_r.shape == (2, 12)
    assert torch.allclose(sv_r[:, :3], sv_e[:, :3], rtol=1e-3)
    for i, J in enumerate(_explicit(lambda z: lstm(z[None])[0][0], h)):
        assert torch.allclose(sv_e[i].double(), torch.linalg.svdvals(J.double()), rtol=1e-4,
                              atol=1e-6)


def test_block_without_any_jvp_gives_rms_only_with_reason():
    # LSTM (no forward mode) then Hardsigmoid (its backward is not differentiable)
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.gate = nn.LSTM(3, 4, batch_first=True), nn.Hardsigmoid()

        def forward(self, x):
            return self.gate(self.lstm(x)[0] * 4)

    torch.manual_seed(5)
    block = Block().eval()
    h = torch.randn(2, 6, 3)  # d_in 18, d_out 24
    sv, rms, exact = jacobian_singular_values(block, h, exact_max=4, k=18)
    assert not exact and sv.shape == (2, 0)
    ref = torch.stack([torch.linalg.svdvals(J.double()) for J in
                       _explicit(lambda z: block(z[None])[0], h)])
    true_rms = ref.pow(2).mean(1).sqrt()
    assert torch.all((rms > 0.5 * true_rms) & (rms < 2 * true_rms))  # Hutchinson, k=18
    model = nn.Sequential(block)
    p = JacobianSpectrum(every=1, exact_max=4, input_output=False).attach(model)
    p.observe(h)
    t = collect([p]).table(0)
    assert set(t["0"]) == {"jac_sv_rms"}
    assert any("only the RMS" in n and "no Jacobian-vector product" in n for n in p.notes())


class _SeqFirstClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.head = nn.LSTM(3, 4), nn.Linear(4, 2)

    def forward(self, x):  # x: (T, N, F)
        return self.head(self.lstm(x)[0][-1])


def test_sequence_first_examples_not_time_steps():
    torch.manual_seed(6)
    model = _SeqFirstClassifier()
    x = torch.randn(7, 5, 3)  # T=7 time steps, N=5 examples
    with pytest.raises(ValueError, match=r"'model'.*sequence-first LSTM 'lstm'.*dim 0.*"
                                         r"batch_dim=\{'model': 1\}"):
        JacobianSpectrum(every=1).attach(model)
    p = JacobianSpectrum(every=1, n_examples=3, batch_dim=1).attach(model)
    p.observe(x)
    spec = {s["layer"]: s for s in p.spectra()}
    # the LSTM block (its own batch_first=False) and the model: 3 examples, all T steps
    refs = {"lstm": lambda z: model.lstm(z[:, None])[0][:, 0],
            "model": lambda z: model(z[:, None])[0]}
    for layer, fn in refs.items():
        Js = [torch.autograd.functional.jacobian(fn, x[:, i]).reshape(-1, 7 * 3)
              for i in range(3)]
        ref = torch.stack([torch.linalg.svdvals(J.double()) for J in Js]).mean(0)
        assert spec[layer]["singular_values"] == pytest.approx(ref.tolist(), rel=1e-4,
                                                               abs=1e-6), layer
    p.detach()
    p = JacobianSpectrum(every=1, errors="note").attach(model)  # noted, the rest goes on
    assert p.layer_names == ["lstm", "head"] and "batch_dim" in p.notes()[0]
    with pytest.raises(TypeError, match="batch_dim must be None, an int"):
        JacobianSpectrum(batch_dim="time")


def test_time_budget_skips_blocks_with_a_note():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    p = JacobianSpectrum(every=1, time_budget=0.0).attach(model)
    p.observe(torch.randn(3, 4))
    assert p.records() == []
    assert len(p.notes()) == 4 and all("time budget" in n for n in p.notes())


def test_sequence_first_transformer_layer_uses_its_own_flag():
    torch.manual_seed(7)
    layer = nn.TransformerEncoderLayer(4, nhead=2, dim_feedforward=8, dropout=0.0)  # (T, N, E)
    model = nn.Sequential(layer)
    x = torch.randn(3, 5, 4)  # T=3, N=5
    p = JacobianSpectrum(every=1, n_examples=2, batch_dim={"model": 1}).attach(model)
    p.observe(x)
    Js = [torch.autograd.functional.jacobian(lambda z: layer.eval()(z[:, None])[:, 0],
                                             x[:, i]).reshape(12, 12) for i in range(2)]
    ref = torch.stack([torch.linalg.svdvals(J.double()) for J in Js]).mean(0)
    spec = {s["layer"]: s for s in p.spectra()}
    for name in ("0", "model"):
        assert spec[name]["singular_values"] == pytest.approx(ref.tolist(), rel=1e-4, abs=1e-6)
