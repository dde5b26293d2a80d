"""The doctor on nets whose activations are functions (``x = torch.tanh(layer(x))``, the way
much user code is written) and its symmetry rule: units are symmetric only when nothing can
ever make them differ (equal incoming *and* outgoing weights), never an output layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.doctor import diagnose


class FunctionalNet(nn.Module):
    """``depth`` Linear layers in a ModuleList, ``f`` applied as a function between them."""

    def __init__(self, std: float | str | None, f=torch.tanh, depth: int = 12, d_in: int = 40,
                 width: int = 100, n_out: int = 10, bias: float = 0.0) -> None:
        super().__init__()
        dims = [d_in] + [width] * (depth - 1) + [n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.f = f
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for layer in self.layers:
                if std == "xavier":
                    nn.init.xavier_uniform_(layer.weight, generator=g)
                elif std == "he":
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=g)
                elif std is not None:
                    layer.weight.normal_(0.0, std, generator=g)
                layer.bias.fill_(bias)

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = self.f(layer(x))
        return self.layers[-1](x)


@pytest.fixture(scope="module")
def batch():
    """MNIST-1D-like: 256 examples of 40 features, 10 classes."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(256, 40, generator=g), torch.randint(0, 10, (256,), generator=g)


_ANY = object()


def _finding(d, kind, layer=_ANY):
    """The first finding of ``kind`` (at ``layer``; ``None``: the model's, as the Jacobian's)."""
    return next((f for f in d.findings if f.kind == kind and (layer is _ANY or f.layer == layer)),
                None)


def test_functional_tanh_small_init_is_vanishing(batch):
    d = diagnose(FunctionalNet(0.01), batch)
    assert d.healthy is False, str(d)
    grad = _finding(d, "vanishing_gradients", "layers.0")  # depth ratio, naming both ends
    assert grad is not None and "layers.10" in grad.evidence, str(d)
    act = _finding(d, "vanishing_activations", "layers.10")
    assert act is not None and "outputs s" in act.evidence
    jac = _finding(d, "vanishing_gradients", None)  # the input-output Jacobian rule
    assert jac is not None and "JACOBIAN_SV_MIN" in jac.evidence
    assert d.context["input_output_jacobian_rms"] < 1e-9
    # the rows are the weight layers; what follows them was identified from the values
    rows = {r["layer"]: r for r in d.rows}
    assert rows["layers.0"]["out_std"] == pytest.approx(0.01 * 40 ** 0.5, rel=0.1)
    assert all(rows[f"layers.{k}"]["follows"] == "Tanh() (inferred)" for k in range(11))
    assert "follows" not in rows["layers.11"]  # the output layer: nothing follows it
    text = d.to_text()
    assert "out std" in text and "no activation module recognized" in text
    assert "No problem found" not in text


def test_functional_tanh_unit_init_is_exploding_and_saturated(batch):
    d = diagnose(FunctionalNet(1.0), batch)
    grad = _finding(d, "exploding_gradients", "layers.0")
    assert grad is not None and "layers.10" in grad.evidence, str(d)
    assert _finding(d, "exploding_gradients", None) is not None  # the Jacobian: ~1e4
    assert d.context["input_output_jacobian_rms"] > 1e3
    sat = {f.layer for f in d.findings if f.kind == "saturation"}
    assert sat == {f"layers.{k}" for k in range(11)}, str(d)
    assert "Tanh(), identified from the values" in _finding(d, "saturation").evidence


@pytest.mark.parametrize("std", [0.01, 1.0])
def test_function_or_module_same_verdict(batch, std):
    """Written with ``nn.Tanh`` modules, the same net gets the same kinds of finding."""
    fn = FunctionalNet(std)
    mod = nn.Sequential()
    for layer in fn.layers[:-1]:
        mod.extend([layer, nn.Tanh()])
    mod.append(fn.layers[-1])
    kinds_fn = diagnose(fn, batch, jacobian=False).kinds()
    kinds_mod = diagnose(mod, batch, jacobian=False).kinds()
    assert kinds_fn == kinds_mod and kinds_fn


@pytest.mark.parametrize("f, init", [(torch.tanh, "xavier"), (torch.relu, "he"),
                                     (lambda x: nn.functional.relu(x, inplace=True), "he")],
                         ids=["tanh-xavier", "relu-he", "inplace-relu-he"])
def test_healthy_functional_nets_are_healthy(batch, f, init):
    d = diagnose(FunctionalNet(init, f=f, depth=6), batch)
    assert d.healthy is True, str(d)
    assert not d.not_applied
    expected = "Tanh()" if init == "xavier" else "ReLU()"  # in-place: sampled before it ran
    assert d.rows[0]["follows"] == f"{expected} (inferred)"


def test_functional_relu_dead_units_are_found(batch):
    d = diagnose(FunctionalNet("he", f=torch.relu, depth=4, bias=-5.0), batch, jacobian=False)
    dead = [f for f in d.findings if f.kind == "dead_units"]
    assert dead and dead[0].layer == "layers.0" and "ReLU()" in dead[0].evidence, str(d)


def test_init_fix_follows_the_inferred_activation(batch):
    d = diagnose(FunctionalNet(0.01, f=torch.relu, depth=6), batch, jacobian=False,
                 try_fixes=["init"])
    fix = d.fix_results[0]
    assert "vanishing_gradients" in d.kinds() and fix.applied
    assert "'he_normal' (for the relu identified from the values)" in fix.note
    assert fix.after.healthy is True, str(fix.after)


def lecun_tanh(x):
    return 1.7159 * torch.tanh(2 * x / 3)  # LeCun 1998's scaled tanh: no module to recognize


def test_unrecognized_function_lists_the_rules_not_applied(batch, tmp_path):
    d = diagnose(FunctionalNet("xavier", f=lecun_tanh, depth=6), batch)
    assert not d.findings and d.healthy is None, str(d)
    why = d.not_applied["saturation, dead_units"]
    assert "no activation module recognized" in why and "layers.0" in why
    text = d.to_text()
    assert "rules not applied" in text and "saturation, dead_units" in text
    assert "some rules could not be applied" in text and "No problem found." not in text
    html = d.to_html(tmp_path / "d.html").read_text()
    assert "rule not applied" in html and "no activation module recognized" in html
    # the rules that need no function still fire
    d = diagnose(FunctionalNet(0.01, f=lecun_tanh), batch)
    assert {"vanishing_activations", "vanishing_gradients"} <= d.kinds(), str(d)
    assert "saturation, dead_units" in d.not_applied


def test_functional_conv_net_rows_and_the_pooled_last_layer():
    class Conv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(torch.relu(self.c2(torch.relu(self.c1(x)))).mean((2, 3)))

    torch.manual_seed(0)
    d = diagnose(Conv(), (torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))), jacobian=False)
    rows = {r["layer"]: r for r in d.rows}
    assert rows["c1"]["follows"] == "ReLU() (inferred)"
    # after c2 comes a mean over the map: the function cannot be read from fc's input
    assert "c2" in d.not_applied["saturation, dead_units"]
    assert "shape" in d.not_applied["saturation, dead_units"]


def test_no_weight_layer_at_all_is_no_verdict():
    class FreeParameters(nn.Module):  # x @ W: nothing for the layer probes to watch
        def __init__(self) -> None:
            super().__init__()
            self.w, self.v = nn.Parameter(0.3 * torch.randn(8, 8)), nn.Parameter(torch.randn(8, 3))

        def forward(self, x):
            return torch.tanh(x @ self.w) @ self.v

    torch.manual_seed(0)
    d = diagnose(FreeParameters(), (torch.randn(16, 8), torch.randint(0, 3, (16,))))
    assert not d.rows and d.healthy is None
    assert any("no weight layer" in why for why in d.not_applied.values())


# -- symmetry --------------------------------------------------------------------------------
def _const(layer: nn.Module, value: float) -> nn.Module:
    with torch.no_grad():
        layer.weight.fill_(value)
        layer.bias.zero_()
    return layer


@pytest.fixture(scope="module")
def small():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 32, generator=g), torch.randint(0, 10, (64,), generator=g)


def test_constant_hidden_layer_followed_by_constant_layer_is_symmetric(small):
    torch.manual_seed(0)
    m = nn.Sequential(_const(nn.Linear(32, 16), 0.1), nn.Tanh(), _const(nn.Linear(16, 16), 0.1),
                      nn.Tanh(), nn.Linear(16, 10))
    d = diagnose(m, small, jacobian=False)
    sym = [f for f in d.findings if f.kind == "symmetric_units"]
    assert [f.layer for f in sym] == ["0"], str(d)  # "2" feeds a random layer: it breaks
    assert "equal outgoing weights in 2" in sym[0].evidence and sym[0].fixes == ["init"]
    # written with functions, and as convolutions
    fn = FunctionalNet(None, depth=4, d_in=32, width=16)
    _const(fn.layers[0], 0.1), _const(fn.layers[1], 0.1)
    d = diagnose(fn, small, jacobian=False)
    assert [f.layer for f in d.findings if f.kind == "symmetric_units"] == ["layers.0"], str(d)
    conv = nn.Sequential(_const(nn.Conv2d(3, 8, 3, padding=1), 0.05), nn.ReLU(),
                         _const(nn.Conv2d(8, 8, 3, padding=1), 0.05), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    d = diagnose(conv, (torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))), jacobian=False)
    assert [f.layer for f in d.findings if f.kind == "symmetric_units"] == ["0"], str(d)


@pytest.mark.parametrize("case", ["zero-head", "constant-head", "zero-hidden-random-next",
                                  "constant-hidden-random-next"])
def test_equal_incoming_weights_alone_are_not_symmetry(small, case):
    """Output units get different gradients through their labels; hidden units with equal
    incoming weights through their different outgoing weights (timm, Fixup and ViT
    zero-initialize the head)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                      nn.Linear(16, 10))
    value = 0.0 if case.startswith("zero") else 0.1
    _const(m[4] if case.endswith("head") else m[2], value)
    d = diagnose(m, small)
    assert "symmetric_units" not in d.kinds(), str(d)
    assert not any("symmetry not judged" in n for n in d.notes)
    if case == "zero-head":
        assert any("Jacobian rule not applied" in n and "all zero" in n for n in d.notes)
        assert d.healthy is None  # below a zero head no gradient flows: no verdict on it
        reason = d.not_applied["vanishing_gradients, exploding_gradients (depth ratio)"]
        assert "4's weights are all zero" in reason and "steps=1" in reason
        assert diagnose(m, small, steps=1).healthy is True  # after one step: judged, fine


def test_symmetry_not_claimed_where_the_consumer_is_unknown(small):
    class TwoBranches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = _const(nn.Linear(32, 16), 0.1), nn.Linear(32, 16)
            self.head = _const(nn.Linear(32, 10), 0.1)

        def forward(self, x):
            return self.head(torch.cat([torch.tanh(self.a(x)), torch.tanh(self.b(x))], 1))

    d = diagnose(TwoBranches(), small, jacobian=False)
    assert "symmetric_units" not in d.kinds(), str(d)
    assert any(n.startswith("symmetry not judged at a:") for n in d.notes), d.notes
