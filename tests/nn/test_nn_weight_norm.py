"""Weight normalization and centered weight normalization: the papers' formulas in float64,
gradcheck, the paper's backward formulas, torch's layouts, data-dependent init, builders."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.nn import (
    NORMS,
    MeanOnlyBatchNorm,
    WeightNormLinear,
    convnet,
    cwn_weight,
    is_weight_normalized,
    mlp,
    remove_weight_norm_,
    to_torch_weight_norm_state_dict,
    weight_norm_,
    weight_norm_init_,
    wn_weight,
)

D64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _unit_rows_reference(weight, transposed, groups):
    """Each output unit's weights as a list of flat float64 vectors, by explicit indexing
    (independent of the library's reshape)."""
    rows = []
    if not transposed:
        for o in range(weight.shape[0]):
            rows.append(weight[o].reshape(-1))
        return rows
    c_in, c_out_g = weight.shape[0], weight.shape[1]
    in_g = c_in // groups
    for grp in range(groups):
        for j in range(c_out_g):
            rows.append(weight[grp * in_g:(grp + 1) * in_g, j].reshape(-1))
    return rows


def _reference_weight(v, g, transposed, groups, centered):
    """w = g v/||v|| (or the centred form) per output unit, written back unit by unit."""
    w = torch.empty_like(v)
    c_in = v.shape[0]
    for o, row in enumerate(_unit_rows_reference(v, transposed, groups)):
        r = row - row.mean() if centered else row
        new = g[o] * r / torch.sqrt((r * r).sum())
        if not transposed:
            w[o] = new.reshape(w[o].shape)
        else:
            c_out_g = v.shape[1]
            grp, j = divmod(o, c_out_g)
            in_g = c_in // groups
            w[grp * in_g:(grp + 1) * in_g, j] = new.reshape(in_g, *v.shape[2:])
    return w


LAYERS = {
    "linear": (lambda: nn.Linear(6, 5), (4, 6)),
    "conv1d": (lambda: nn.Conv1d(4, 6, 3), (2, 4, 9)),
    "conv2d_grouped": (lambda: nn.Conv2d(4, 6, 3, groups=2, padding=1), (2, 4, 5, 5)),
    "conv3d": (lambda: nn.Conv3d(2, 3, 2), (2, 2, 4, 4, 4)),
    "convT1d": (lambda: nn.ConvTranspose1d(4, 3, 3), (2, 4, 6)),
    "convT2d_grouped": (lambda: nn.ConvTranspose2d(4, 6, 3, groups=2, stride=2), (2, 4, 4, 4)),
}


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("case", list(LAYERS))
def test_weight_is_the_papers_formula_per_output_unit(case, centered):
    build, shape = LAYERS[case]
    torch.manual_seed(0)
    layer = build().to(D64)
    weight_norm_(layer, centered=centered)
    with torch.no_grad():
        layer.weight_g.copy_(torch.rand(layer.weight_g.shape, generator=_gen(), dtype=D64) + 0.5)
    transposed = isinstance(layer, (nn.ConvTranspose1d, nn.ConvTranspose2d))
    groups = getattr(layer, "groups", 1)
    want = _reference_weight(layer.weight_v.detach(), layer.weight_g.detach(), transposed,
                             groups, centered)
    torch.testing.assert_close(layer.weight, want, rtol=1e-12, atol=1e-12)
    # every unit: length g and, for CWN, zero mean
    for o, row in enumerate(_unit_rows_reference(layer.weight.detach(), transposed, groups)):
        assert torch.sqrt((row * row).sum()).item() == pytest.approx(layer.weight_g[o].item())
        if centered:
            assert abs(row.mean().item()) < 1e-12
    # and the forward pass uses it
    plain = build().to(D64)
    plain.load_state_dict({"weight": want, "bias": layer.bias.detach()})
    x = torch.randn(*shape, generator=_gen(1), dtype=D64)
    torch.testing.assert_close(layer(x), plain(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", list(LAYERS))
def test_wn_at_conversion_equals_the_plain_layer_and_cwn_its_centred_weights(case):
    build, shape = LAYERS[case]
    torch.manual_seed(0)
    plain = build().to(D64)
    x = torch.randn(*shape, generator=_gen(2), dtype=D64)
    want = plain(x)
    wn = weight_norm_(copy.deepcopy(plain))
    torch.testing.assert_close(wn(x), want, rtol=1e-12, atol=1e-12)
    assert [n for n, _ in wn.named_parameters()] == ["bias", "weight_g", "weight_v"]
    assert wn.weight_g.shape == (want.shape[1],)
    cwn = weight_norm_(copy.deepcopy(plain), centered=True)
    transposed = "convT" in case
    centred = _reference_weight(plain.weight.detach(), torch.ones(want.shape[1], dtype=D64),
                                transposed, getattr(plain, "groups", 1), True)
    norms = [r.norm() for r in _unit_rows_reference(plain.weight.detach(), transposed,
                                                     getattr(plain, "groups", 1))]
    cent_norms = torch.stack([(r - r.mean()).norm() for r in _unit_rows_reference(
        plain.weight.detach(), transposed, getattr(plain, "groups", 1))])
    assert len(norms) == want.shape[1]
    torch.testing.assert_close(cwn.weight_g.detach(), cent_norms, rtol=1e-12, atol=1e-12)
    ref = copy.deepcopy(plain)
    with torch.no_grad():
        scaled = _reference_weight(centred, cent_norms, transposed, getattr(plain, "groups", 1),
                                   False)
        ref.weight.copy_(scaled)
    torch.testing.assert_close(cwn(x), ref(x), rtol=1e-12, atol=1e-12)


def test_gradcheck_wn_and_cwn():
    v = torch.randn(4, 3, 2, 2, generator=_gen(), dtype=D64, requires_grad=True)
    g = (torch.rand(4, generator=_gen(1), dtype=D64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda v, g: wn_weight(v, g), (v, g))
    assert torch.autograd.gradcheck(lambda v, g: cwn_weight(v, g), (v, g))
    vt = torch.randn(4, 3, 3, generator=_gen(2), dtype=D64, requires_grad=True)
    gt = (torch.rand(6, generator=_gen(3), dtype=D64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda v, g: cwn_weight(v, g, True, 2), (vt, gt))


def test_wn_gradient_matches_salimans_kingma_eq_3():
    """grad_g = G.v/||v||;  grad_v = g/||v|| G - g grad_g/||v||^2 v   (per row, float64)."""
    v = torch.randn(5, 7, generator=_gen(), dtype=D64, requires_grad=True)
    g = (torch.rand(5, generator=_gen(1), dtype=D64) + 0.5).requires_grad_()
    G = torch.randn(5, 7, generator=_gen(2), dtype=D64)  # dL/dw
    (wn_weight(v, g) * G).sum().backward()
    vd = v.detach()
    for i in range(5):
        n = torch.sqrt((vd[i] ** 2).sum())
        grad_g = (G[i] * vd[i]).sum() / n
        grad_v = g[i].detach() / n * G[i] - g[i].detach() * grad_g / n**2 * vd[i]
        assert g.grad[i].item() == pytest.approx(grad_g.item(), rel=1e-12)
        torch.testing.assert_close(v.grad[i], grad_v, rtol=1e-12, atol=1e-12)


def test_cwn_gradient_matches_huang_et_al_backward():
    """Huang et al. 2017 (eq. 6): with v^ = v - mean(v), u = v^/||v^||, w = g u and
    dL/du = g dL/dw:  dL/dv = (dL/du - (u . dL/du) u - mean(dL/du) 1) / ||v^||,
    dL/dg = dL/dw . u  (float64, per row)."""
    v = (torch.randn(4, 9, generator=_gen(), dtype=D64) + 0.7).requires_grad_()
    g = (torch.rand(4, generator=_gen(1), dtype=D64) + 0.5).requires_grad_()
    G = torch.randn(4, 9, generator=_gen(2), dtype=D64)
    (cwn_weight(v, g) * G).sum().backward()
    vd = v.detach()
    for i in range(4):
        vhat = vd[i] - vd[i].mean()
        n = torch.sqrt((vhat**2).sum())
        u = vhat / n
        du = g[i].detach() * G[i]
        dv = (du - (u * du).sum() * u - du.mean() * torch.ones_like(du)) / n
        torch.testing.assert_close(v.grad[i], dv, rtol=1e-12, atol=1e-12)
        assert g.grad[i].item() == pytest.approx((G[i] * u).sum().item(), rel=1e-12)


def test_setting_weight_keeps_the_function_and_the_parameters():
    layer = weight_norm_(nn.Linear(4, 3).to(D64))
    v_param = layer.weight_v
    w = torch.randn(3, 4, generator=_gen(), dtype=D64)
    layer.weight = nn.Parameter(w)  # a Parameter too, as fold and init do
    assert layer.weight_v is v_param and "weight" not in layer._parameters
    torch.testing.assert_close(layer.weight, w, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"weight must have shape \(3, 4\)\. Received: weight "
                                         r"of shape \(4, 3\)"):
        layer.weight = w.T


def test_torch_parametrization_layout_loads_both_ways():
    pw = nn.utils.parametrizations.weight_norm
    for build, shape in (LAYERS["linear"], LAYERS["conv2d_grouped"], LAYERS["convT2d_grouped"]):
        torch.manual_seed(0)
        ref = pw(build().to(D64))
        with torch.no_grad():
            ref.parametrizations.weight.original0.mul_(1.7)
        x = torch.randn(*shape, generator=_gen(), dtype=D64)
        ours = weight_norm_(build().to(D64))
        ours.load_state_dict(ref.state_dict())  # strict: every key accounted for
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)
        # and back: our layout written as torch's, into torch's layer
        with torch.no_grad():
            ours.weight_g.mul_(0.5)
        back = pw(build().to(D64))
        back.load_state_dict(to_torch_weight_norm_state_dict(ours))
        torch.testing.assert_close(back(x), ours(x), rtol=1e-12, atol=1e-12)


def test_linear_layout_maps_one_to_one_and_cwn_exports_centred_v():
    ref = nn.utils.parametrizations.weight_norm(nn.Linear(5, 3).to(D64))
    ours = weight_norm_(nn.Linear(5, 3).to(D64))
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours.weight_v, ref.parametrizations.weight.original1, rtol=0, atol=0)
    torch.testing.assert_close(ours.weight_g, ref.parametrizations.weight.original0.reshape(-1),
                               rtol=0, atol=0)
    cwn = weight_norm_(nn.Linear(5, 3).to(D64), centered=True)
    sd = to_torch_weight_norm_state_dict(cwn)
    torch.testing.assert_close(sd["parametrizations.weight.original1"].sum(1),
                               torch.zeros(3, dtype=D64), rtol=0, atol=1e-12)
    ref.load_state_dict(sd)
    x = torch.randn(4, 5, generator=_gen(), dtype=D64)
    torch.testing.assert_close(ref(x), cwn(x), rtol=1e-12, atol=1e-12)


def test_deprecated_hook_layout_and_plain_checkpoints_load():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation of its hook-based weight_norm
        old = nn.utils.weight_norm(nn.Conv2d(3, 4, 3).to(D64))
    x = torch.randn(2, 3, 5, 5, generator=_gen(), dtype=D64)
    ours = weight_norm_(nn.Conv2d(3, 4, 3).to(D64))
    ours.load_state_dict(old.state_dict())
    torch.testing.assert_close(ours(x), old(x), rtol=1e-12, atol=1e-12)
    plain = nn.Conv2d(3, 4, 3).to(D64)
    ours.load_state_dict(plain.state_dict())
    torch.testing.assert_close(ours(x), plain(x), rtol=1e-12, atol=1e-12)


def test_loading_uncentred_weights_into_cwn_warns():
    cwn = weight_norm_(nn.Linear(4, 3), centered=True)
    with pytest.warns(UserWarning, match=r"CWN centres every row, so the loaded layer computes"):
        cwn.load_state_dict(nn.Linear(4, 3).state_dict())


def test_data_dependent_init_gives_zero_mean_unit_variance_on_the_batch():
    torch.manual_seed(0)
    model = mlp(6, [16, 16], 3, norm="wn").to(D64)
    x = torch.randn(64, 6, generator=_gen(), dtype=D64) * 3 + 1
    stats = weight_norm_init_(model, x)
    assert set(stats) == {"block1.linear", "block2.linear"}
    outs = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: outs.__setitem__(n, o.detach())) for n in stats]
    model(x)
    for h in hooks:
        h.remove()
    for t in outs.values():
        torch.testing.assert_close(t.mean(0), torch.zeros(16, dtype=D64), rtol=0, atol=1e-10)
        torch.testing.assert_close(t.var(0, unbiased=False), torch.ones(16, dtype=D64),
                                   rtol=1e-6, atol=1e-6)
    conv = convnet(2, [4, 6], 2, norm="cwn").to(D64)
    xi = torch.randn(8, 2, 6, 6, generator=_gen(1), dtype=D64)
    weight_norm_init_(conv, xi, init_scale=0.5)
    t = conv.block1.conv(xi)
    torch.testing.assert_close(t.std(dim=(0, 2, 3), unbiased=False), torch.full((4,), 0.5,
                               dtype=D64), rtol=1e-6, atol=1e-6)


def test_data_dependent_init_errors():
    with pytest.raises(ValueError, match=r"more than one value per unit.*Received: output of "
                                         r"shape \(1, 8\)"):
        weight_norm_init_(mlp(3, [8], 2, norm="wn"), torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"found no weight-normalized layer"):
        weight_norm_init_(mlp(3, [8], 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"init_scale must be a positive number\. Received: "
                                         r"init_scale=0"):
        weight_norm_init_(mlp(3, [8], 2, norm="wn"), torch.randn(4, 3), init_scale=0)


def test_conversion_errors():
    with pytest.raises(TypeError, match=r"weight normalization supports nn\.Linear.*Received: "
                                        r"layer of type Embedding"):
        weight_norm_(nn.Embedding(3, 4))
    layer = weight_norm_(nn.Linear(3, 3))
    with pytest.raises(ValueError, match=r"already weight-normalized \(mode='wn'\)"):
        weight_norm_(layer)
    with pytest.raises(ValueError, match=r"mode must be one of \('wn', 'cwn', 'normprop'\)\. "
                                         r"Received: mode='xwn'"):
        weight_norm_(nn.Linear(3, 3), mode="xwn")
    with pytest.raises(ValueError, match=r"plain Parameter; this one is parametrized"):
        weight_norm_(nn.utils.parametrizations.weight_norm(nn.Linear(3, 3)))


def test_direct_construction_copy_pickle_and_removal():
    torch.manual_seed(0)
    layer = WeightNormLinear(5, 4, mode="cwn")
    assert is_weight_normalized(layer) and layer.wn_mode == "cwn"
    torch.testing.assert_close(layer.weight.sum(1), torch.zeros(4), rtol=0, atol=1e-6)
    x = torch.randn(3, 5)
    buf = io.BytesIO()
    torch.save(layer, buf)  # the class is importable: whole-module pickles work
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    torch.testing.assert_close(loaded(x), layer(x), rtol=0, atol=0)
    twin = copy.deepcopy(layer)
    want = layer(x)
    remove_weight_norm_(twin)
    assert type(twin) is nn.Linear and isinstance(twin.weight, nn.Parameter)
    torch.testing.assert_close(twin(x), want, rtol=1e-6, atol=1e-6)


def test_init_model_sets_weight_through_wn():
    """An init scheme gives a WN model the plain model's weights (g = ||w||): same seed,
    same weights; the doctor-facing names stay v and g without warnings."""
    def build(norm):
        torch.manual_seed(0)
        return mlp(6, [8, 8], 3, norm=norm, init={"name": "he_normal",
                                                  "generator": torch.Generator().manual_seed(3)})

    plain = build("none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wn = build("wn")
    for i in (1, 2):
        torch.testing.assert_close(wn.get_submodule(f"block{i}.linear").weight,
                                   plain.get_submodule(f"block{i}.linear").weight)


def test_builders_names_and_the_wn_mobn_slot():
    m = mlp(6, [8], 3, norm="wn")
    assert {"block1.linear.weight_g", "block1.linear.weight_v", "block1.linear.bias"} <= set(
        m.state_dict())
    assert isinstance(m.block1.norm, nn.Identity)
    m = mlp(6, [8], 3, norm="wn_mobn")
    assert is_weight_normalized(m.block1.linear) and isinstance(m.block1.norm, MeanOnlyBatchNorm)
    c = convnet(3, [4], 2, norm="cwn")
    assert c.block1.conv.wn_mode == "cwn"
    assert NORMS.get("wn").meta["kind"] == "weight" and NORMS.get("wn_mean_only_bn").name == \
        "wn_mobn"
    # optimizers see v and g as leaves, and a step changes the computed weight
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    before = m.block1.linear.weight.detach().clone()
    F.cross_entropy(m(torch.randn(8, 6)), torch.randint(0, 3, (8,))).backward()
    opt.step()
    assert not torch.equal(m.block1.linear.weight.detach(), before)


def test_builders_meta_pass_leaves_the_init_generator_alone():
    """The memory check builds the model on the meta device first; it must not draw from the
    generator of the init spec (it did, so a seed gave other weights than init_model gives)."""
    from trainlab.init import init_model

    for build in (lambda g: mlp(6, [8, 8], 3, init={"name": "he_normal", "generator": g}),
                  lambda g: convnet(3, [4], 2, init={"name": "he_normal", "generator": g})):
        g = torch.Generator().manual_seed(3)
        model = build(g)
        ref = build(torch.Generator().manual_seed(3))
        init_model(ref, "he_normal", generator=torch.Generator().manual_seed(3))
        for a, b in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(a, b)
