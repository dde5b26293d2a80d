"""Probes on models trainlab did not build (tests/zoo.py), checked against hooks written here."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from trainlab.nn.activations import activation_info
from trainlab.probes import ActivationStats, GradientStats, UpdateRatio, WeightStats
from zoo import ZOO

TORCH_ACTS = (nn.ReLU, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Mish, nn.LogSigmoid,
              nn.Tanh)


def _one_step(model, x, y, probes):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for p in probes:
        p.step_begin(0)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for p in probes:
        p.after_backward(0)
    opt.step()
    for p in probes:
        p.step_end(0)


def _rows(probe, quantity):
    return {layer: v for _, layer, q, v in probe.records() if q == quantity}


def _outputs(model, x, kinds):
    """Every call's output of every module of ``kinds``, by name (independent hooks)."""
    got: dict[str, list[torch.Tensor]] = {}
    hs = [m.register_forward_hook(lambda m, a, o, n=n: got.setdefault(n, []).append(
        o.detach().double().clone())) for n, m in model.named_modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return got


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_probe_runs_on_every_zoo_model(name):
    model, x, y = ZOO[name]()
    probes = [ActivationStats(every=1), GradientStats(every=1), WeightStats(every=1),
              UpdateRatio(every=1)]
    for p in probes:
        p.attach(model)
    _one_step(model, x, y, probes)
    for p in probes:
        rows = p.records()
        assert rows, f"{type(p).__name__} recorded nothing on {name}"
        assert all(torch.isfinite(torch.tensor(v)) for *_, v in rows)
        p.detach()


def test_mobilenet_every_torch_activation_is_watched():
    model, x, y = ZOO["mobilenet"]()
    acts = [n for n, m in model.named_modules() if isinstance(m, TORCH_ACTS)]
    assert len(acts) == 14
    p = ActivationStats(every=1, hist_every=0).attach(model)
    assert set(acts) <= set(p.layer_names)
    # every one of them now has an activation rule set (before: 9 of 14 unknown)
    for n, m in model.named_modules():
        if isinstance(m, TORCH_ACTS):
            assert activation_info(m) is not None, n


@pytest.mark.parametrize("module, x, saturated, dead", [
    (nn.Hardswish(), [-4.0, -3.5, -1.0, 0.5, 4.0], None, [True, True, False, False, False]),
    (nn.Hardsigmoid(), [-4.0, -1.0, 0.0, 2.0, 3.5], [True, False, False, False, True], None),
    (nn.LogSigmoid(), [-3.0, 0.0, 3.0, 3.6, 6.0], [False, False, False, True, True], None),
    (nn.Softshrink(0.5), [-1.0, -0.5, 0.2, 0.6, 2.0], None, [False, True, True, False, False]),
    (nn.Hardshrink(0.5), [-1.0, -0.5, 0.2, 0.6, 2.0], None, [False, True, True, False, False]),
    (nn.Threshold(0.1, 0.0), [-1.0, 0.05, 0.1, 0.2, 2.0], None,
     [True, True, True, False, False]),
])
def test_torch_activation_rules_follow_the_derivative(module, x, saturated, dead):
    """Saturated: derivative <= 0.03 (or exactly 0 at a clip); dead: derivative exactly 0."""
    info = activation_info(module)
    x = torch.tensor(x, dtype=torch.float64)
    h = module(x)
    for rule, want in ((info.saturated, saturated), (info.dead, dead)):
        if want is None:
            assert rule is None
        else:
            assert rule(h).tolist() == want
    # the rules agree with autograd's derivative
    xr = x.clone().requires_grad_(True)
    (d,) = torch.autograd.grad(module(xr).sum(), xr)
    if dead is not None:
        assert ((d == 0) == torch.tensor(dead)).all()
    if saturated is not None:
        assert ((d.abs() <= 0.03 + 1e-12) == torch.tensor(saturated)).all()
    lo, hi = info.output_range
    assert (h >= lo - 1e-12).all() and (h <= hi + 1e-12).all()


def test_shared_module_pools_every_call():
    model, x, y = ZOO["shared"]()
    act = ActivationStats(every=1, hist_every=0, percentiles=()).attach(model)
    grad = GradientStats(every=1, hist_every=0, layers="shared").attach(model)
    # independent: the three calls' outputs and output gradients of model.shared
    outs, gouts = [], []
    h1 = model.act.register_forward_hook(lambda m, a, o: outs.append(o.detach().double()))

    def keep(m, a, o):
        o.register_hook(lambda g: gouts.append(g.detach().double()))

    h2 = model.shared.register_forward_hook(keep)
    _one_step(model, x, y, [act, grad])
    h1.remove()
    h2.remove()
    assert len(outs) == 4 and len(gouts) == 3  # act: 1 call after inp + 3 after shared
    pooled = torch.cat(outs)
    assert _rows(act, "act_calls")["act"] == 4
    assert _rows(act, "act_std")["act"] == pytest.approx(pooled.std().item(), rel=1e-5)
    assert _rows(act, "act_mean")["act"] == pytest.approx(pooled.mean().item(), abs=1e-6)
    g = torch.cat(gouts)
    assert _rows(grad, "grad_out_calls")["shared"] == 3
    assert _rows(grad, "grad_out_std")["shared"] == pytest.approx(g.std().item(), rel=1e-5)
    assert _rows(grad, "grad_out_norm")["shared"] == pytest.approx(g.norm().item(), rel=1e-5)


def test_inplace_relu_resnet_statistics_are_the_outputs():
    model, x, y = ZOO["resnet"]()
    model.eval()  # the same BN statistics for the probe's pass and the reference pass
    ref = _outputs(model, x, nn.ReLU)
    p = ActivationStats(every=1, hist_every=0, percentiles=()).attach(model)
    p.step_begin(0)
    with torch.no_grad():
        model(x)
    p.step_end(0)
    std, calls = _rows(p, "act_std"), _rows(p, "act_calls")
    for name, outs in ref.items():
        assert std[name] == pytest.approx(torch.cat(outs).std().item(), rel=1e-5), name
        assert calls.get(name, 1) == len(outs)
    assert calls["layer1.0.relu"] == 2  # torchvision's block applies its ReLU twice


def test_recurrent_layers_are_watched_by_default():
    model, x, y = ZOO["lstm"]()
    p = ActivationStats(every=1, hist_every=0, percentiles=()).attach(model)
    assert p.layer_names == ["lstm"]
    with torch.no_grad():
        want = model.lstm(x)[0].double().std().item()  # the output sequence (T, N, H)
    _one_step(model, x, y, [p])
    assert _rows(p, "act_std")["lstm"] == pytest.approx(want, rel=1e-5)


def test_a_step_that_raised_does_not_mask_its_error():
    """The step's own error (here: in backward) must surface; the probe reports nothing for
    the unfinished step, instead of a TypeError from an unfilled buffer slot."""
    model, x, y = ZOO["shared"]()
    p = UpdateRatio(every=1).attach(model)
    p.step_begin(0)
    F.cross_entropy(model(x), y).backward()
    p.after_backward(0)
    # optimizer.step() raised here: step_end is never called
    assert p.records() == []
    p.detach()


@pytest.mark.parametrize("every", [0, "never"])
def test_every_that_never_records_is_refused(every):
    with pytest.raises(ValueError, match="every.*would never record"):
        ActivationStats(every=every)
    ActivationStats(hist_every=0)  # histograms off is fine


def test_probe_records_after_trainer_fit():
    from trainlab.train import Trainer

    model, x, y = ZOO["shared"]()
    p = ActivationStats(every=2)
    h = Trainer(model, optimizer="sgd", device="cpu", probes=[p]).fit((x, y), steps=4,
                                                                       batch_size=8)
    assert p.records() and p.records() == h.probe_records
