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
