"""init_model on models trainlab did not build: layer discovery, overrides, specs, errors."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from torch import nn

import trainlab.init as I
from trainlab.init import init_model


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Maxout(nn.Module):
    """A maxout layer as contract C1 has it: k pieces in one plain nn.Linear named linear."""

    def __init__(self, d_in: int, d_out: int, k: int = 2) -> None:
        super().__init__()
        self.k, self.d_out = k, d_out
        self.linear = nn.Linear(d_in, d_out * k)

    def forward(self, x):
        return self.linear(x).view(*x.shape[:-1], self.d_out, self.k).amax(-1)


class Net(nn.Module):
    """A user's model: Conv2d + BatchNorm + maxout + Linear, with nested names."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mix = Maxout(16, 12)
        self.head = nn.Linear(12, 10)

    def forward(self, x):
        x = self.pool(self.block2(self.block1(x))).flatten(1)
        return self.head(self.mix(x))


LAYERS = ["block1.0", "block2.0", "mix.linear", "head"]


def layer(model, name):
    return model.get_submodule(name)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_finds_every_conv_linear_and_maxout_layer():
    assert [n for n, _ in I.weight_layers(Net())] == LAYERS


def test_applies_scheme_in_module_order_with_the_generator():
    model = Net()
    model.block1[1].weight.data.fill_(2.0)  # a norm layer: must be left alone
    out = init_model(model, "he_normal", generator=0)
    assert out is model
    g = gen(0)
    for name in LAYERS:
        m = layer(model, name)
        expected = I.he_normal_(torch.empty_like(m.weight), generator=g)
        assert torch.equal(m.weight, expected), name
        assert torch.count_nonzero(m.bias) == 0, name
    assert torch.equal(model.block1[1].weight, torch.full((8,), 2.0))
    assert torch.isfinite(model(torch.randn(2, 3, 9, 9))).all()


def test_conv_weights_get_the_conv_fan():
    model = nn.Sequential(nn.Conv2d(64, 128, 3), nn.Flatten(), nn.LazyLinear(4))
    model(torch.randn(1, 64, 3, 3))  # materialize the lazy layer
    init_model(model, "he_normal", generator=1)
    std = model[0].weight.double().std().item()
    assert std == pytest.approx(math.sqrt(2.0 / (64 * 3 * 3)), rel=0.02)


def test_all_conv_kinds_found():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Conv3d(3, 4, 3), nn.ConvTranspose2d(4, 5, 3),
                          nn.ConvTranspose1d(5, 2, 3), nn.ConvTranspose3d(2, 2, 3))
    init_model(model, "zeros", bias=0.5)
    for m in model:
        assert torch.count_nonzero(m.weight) == 0
        assert torch.equal(m.bias, torch.full_like(m.bias, 0.5))


def test_every_weight_layer_but_embedding_gets_the_scheme():
    # trainlab.nn.kinds.weight_layers: Bilinear and WhitenedLinear get the scheme (fan_in of a
    # Bilinear(in1, in2, out) weight is in1 * in2); Embedding is left and named in the warning
    from trainlab.nn.natural import WhitenedLinear

    model = nn.ModuleDict({"embed": nn.Embedding(10, 4), "bil": nn.Bilinear(4, 5, 3),
                           "white": WhitenedLinear(4, 3)})
    assert [n for n, _ in I.weight_layers(model)] == ["embed", "bil", "white"]
    table = model["embed"].weight.detach().clone()
    with pytest.warns(UserWarning, match=r"left 1 parameter\(s\) as they were: embed.weight "
                      r"\(nn.Embedding\)"):
        init_model(model, "zeros", bias=0.5)
    assert torch.equal(model["embed"].weight, table)
    for name in ("bil", "white"):
        assert torch.count_nonzero(model[name].weight) == 0
        assert torch.equal(model[name].bias, torch.full_like(model[name].bias, 0.5))
    big = nn.Bilinear(40, 50, 300)
    init_model(big, "he_normal", generator=0)
    assert big.weight.double().std().item() == pytest.approx(math.sqrt(2.0 / (40 * 50)),
                                                             rel=0.02)


def test_same_seed_same_model_and_int_seed_equals_generator():
    a = init_model(Net(), "xavier_uniform", generator=3)
    b = init_model(Net(), "xavier_uniform", generator=3)
    c = init_model(Net(), "xavier_uniform", generator=gen(3))
    d = init_model(Net(), "xavier_uniform", generator=4)
    for k, v in snapshot(a).items():
        assert torch.equal(v, snapshot(b)[k]) and torch.equal(v, snapshot(c)[k])
    assert not torch.equal(a.head.weight, d.head.weight)


# -- overrides ------------------------------------------------------------------------------
def test_overrides_by_pattern():
    model = init_model(
        Net(), "he_normal", generator=0,
        overrides={"block1.*": "orthogonal", "head": ("normal", {"std": 0.01})},
    )
    w = model.block1[0].weight.reshape(8, -1)
    torch.testing.assert_close(w @ w.T, torch.eye(8), rtol=0, atol=1e-5)
    g = gen(0)  # replay: block1.0 orthogonal, block2.0 and mix he_normal, head normal
    I.orthogonal_(torch.empty(8, 3, 3, 3), generator=g)
    assert torch.equal(model.block2[0].weight, I.he_normal_(torch.empty(16, 8, 3, 3),
                                                            generator=g))
    assert torch.equal(model.mix.linear.weight, I.he_normal_(torch.empty(24, 16), generator=g))
    assert torch.equal(model.head.weight, I.normal_(torch.empty(10, 12), 0.01, generator=g))


def test_first_matching_override_wins_and_ancestors_match():
    model = init_model(Net(), "he_normal", overrides={
        "block1.0": "zeros", "block*": ("constant", {"value": 0.5}), "mix": "zeros"})
    assert torch.count_nonzero(model.block1[0].weight) == 0
    assert torch.equal(model.block2[0].weight, torch.full_like(model.block2[0].weight, 0.5))
    assert torch.count_nonzero(model.mix.linear.weight) == 0  # "mix" covers "mix.linear"


def test_override_none_leaves_the_layer():
    model = Net()
    before = snapshot(model)
    init_model(model, "zeros", bias=1.0, overrides={"head": None})
    assert torch.equal(model.head.weight, before["head.weight"])
    assert torch.equal(model.head.bias, before["head.bias"])
    assert torch.count_nonzero(model.mix.linear.weight) == 0


# -- spec forms -----------------------------------------------------------------------------
def test_spec_forms_agree():
    ref = init_model(Net(), "he_normal", mode="fan_out", generator=5)
    for spec in [("he_normal", {"mode": "fan_out"}), {"name": "he_normal", "mode": "fan_out"},
                 ("kaiming-normal", {"mode": "fan_out"})]:
        m = init_model(Net(), spec, generator=5)
        assert torch.equal(m.head.weight, ref.head.weight), spec
    # a callable that takes generator=: torch's own kaiming_normal_
    m = init_model(Net(), lambda w, generator=None: torch.nn.init.kaiming_normal_(
        w, mode="fan_out", generator=generator), generator=5)
    assert torch.equal(m.head.weight, ref.head.weight)


def test_callable_without_generator_warns_when_one_is_given():
    def ones(w):
        w.fill_(1.0)

    with pytest.warns(UserWarning, match="takes no generator= argument"):
        m = init_model(Net(), ones, generator=0)
    assert torch.equal(m.head.weight, torch.ones(10, 12))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        init_model(Net(), ones)  # no generator, no warning


def test_scheme_kwargs_and_bias_forms():
    m = init_model(Net(), "normal", std=0.5, bias=0.01, generator=0)
    assert torch.equal(m.head.bias, torch.full((10,), 0.01))
    m = init_model(Net(), "lecun_normal", bias=("normal", {"std": 0.5}), generator=0)
    assert m.head.bias.std().item() > 0.1
    model = Net()
    bias_before = model.head.bias.detach().clone()
    init_model(model, "lecun_normal", bias=None)
    assert torch.equal(model.head.bias, bias_before)


def test_parametrized_weight_is_set_through_right_inverse():
    from torch.nn.utils.parametrizations import weight_norm

    model = nn.Sequential(weight_norm(nn.Linear(20, 30)), nn.Tanh(), nn.Linear(30, 2))
    init_model(model, "xavier_normal", generator=2)
    g = gen(2)
    torch.testing.assert_close(model[0].weight, I.xavier_normal_(torch.empty(30, 20),
                                                                 generator=g))
    torch.testing.assert_close(model[2].weight, I.xavier_normal_(torch.empty(2, 30),
                                                                 generator=g))


@pytest.mark.parametrize("mode", ["wn", "cwn", "torch"])
def test_computed_weights_each_get_their_own_draw(mode):
    """A weight-normalized layer's ``weight`` is computed on every access (trainlab's WN/CWN,
    torch's parametrization): a fresh tensor, whose id() a later layer's fresh tensor can
    reuse once the first is freed. Tied-parameter detection by that id skipped layers at
    random (the draws then shifted to other layers, and the weight-norm study's results
    changed from one process to the next). Every layer must get the scheme's next draw, in
    module order, in every process."""
    from torch.nn.utils.parametrizations import weight_norm

    from trainlab.nn.weight_norm import WeightNormLinear

    def lin(i, o):
        return weight_norm(nn.Linear(i, o)) if mode == "torch" else WeightNormLinear(
            i, o, mode=mode)

    widths = [40] + [64] * 12 + [10]
    model = nn.Sequential(*[lin(a, b) for a, b in zip(widths, widths[1:])])
    init_model(model, "he_normal", generator=3)
    g = gen(3)
    for k, m in enumerate(model):
        w = I.he_normal_(torch.empty(widths[k + 1], widths[k]), generator=g)
        if mode == "cwn":  # the layer computes w with each row centred
            w = w - w.mean(1, keepdim=True)
        torch.testing.assert_close(m.weight, w, msg=f"layer {k}")


def test_hook_based_weight_norm_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates nn.utils.weight_norm
        model = nn.Sequential(nn.Linear(3, 3), nn.utils.weight_norm(nn.Linear(3, 4)))
    before = model[0].weight.detach().clone()
    with pytest.raises(ValueError, match=re.escape(
            "layer '1' (Linear): its weight is not a parameter but derived from others")):
        init_model(model, "zeros")
    assert torch.equal(model[0].weight, before)  # checked before anything changed


def test_dtypes():
    m = init_model(Net().double(), "he_uniform", generator=0)
    assert m.head.weight.dtype == torch.float64
    assert m.head.weight.abs().max().item() <= math.sqrt(6.0 / 12)
    # half precision is drawn in float32 and rounded: the float32 model's weights
    ref = init_model(Net(), "he_uniform", generator=0)
    h = init_model(Net().half(), "he_uniform", generator=0)
    assert h.head.weight.dtype == torch.float16
    torch.testing.assert_close(h.head.weight.float(), ref.head.weight, rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_seed_gives_same_weights_on_gpu():
    cpu = init_model(Net(), "orthogonal", generator=9)
    gpu = init_model(Net().cuda(), "orthogonal", generator=9)
    for k, v in snapshot(cpu).items():
        torch.testing.assert_close(snapshot(gpu)[k].cpu(), v)
    # a CUDA generator draws on the device directly
    init_model(Net().cuda(), "he_normal", generator=torch.Generator("cuda").manual_seed(0))


# -- activation= ----------------------------------------------------------------------------
class _Info:
    def __init__(self, gain):
        self.gain = gain


def test_activation_gain_with_a_stand_in_activation_info(monkeypatch):
    import trainlab.init.apply as apply

    monkeypatch.setattr(apply, "activation_info",
                        lambda name: _Info({"tanh": 5 / 3, "relu": math.sqrt(2)}[name]))
    m = init_model(Net(), "xavier_uniform", activation="tanh", generator=0)
    ref = init_model(Net(), "xavier_uniform", gain=5 / 3, generator=0)
    assert torch.equal(m.head.weight, ref.head.weight)
    m = init_model(Net(), "he_normal", activation="relu", generator=0)
    ref = init_model(Net(), "he_normal", generator=0)
    torch.testing.assert_close(m.head.weight, ref.head.weight, rtol=1e-6, atol=0)
    monkeypatch.setattr(apply, "activation_info", lambda name: _Info(None))
    with pytest.raises(ValueError, match=re.escape(
            "activation 'maxout' has no recommended gain; give gain= explicitly. "
            "Received: activation='maxout'")):
        init_model(Net(), "orthogonal", activation="maxout")


def test_activation_gain_with_trainlab_activation_info():
    from trainlab.nn import activation_info

    assert activation_info("relu").gain == pytest.approx(math.sqrt(2.0))
    m = init_model(Net(), "he_normal", activation="relu", generator=0)
    ref = init_model(Net(), "he_normal", generator=0)
    torch.testing.assert_close(m.head.weight, ref.head.weight, rtol=1e-6, atol=0)


# -- errors ---------------------------------------------------------------------------------
def test_no_layer_matched():
    msg = ("init_model found no layer to initialize in Sequential: it looks for the weight "
           "layers with a fan-in: nn.Linear, nn.Bilinear, nn.Conv1d/2d/3d, "
           "nn.ConvTranspose1d/2d/3d and trainlab's WhitenedLinear")
    with pytest.raises(ValueError, match=re.escape(msg)):
        init_model(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), "he_normal")


def test_override_that_matches_nothing_raises_before_changing_anything():
    model = Net()
    before = snapshot(model)
    msg = ("override pattern 'blok1.*' matches no layer to initialize. The layers are: "
           "'block1.0', 'block2.0', 'mix.linear', 'head'")
    with pytest.raises(ValueError, match=re.escape(msg)):
        init_model(model, "zeros", overrides={"head": "orthogonal", "blok1.*": "zeros"})
    for k, v in snapshot(model).items():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match=re.escape(
            "override pattern 'block1.0' is shadowed: the layers it matches ('block1.0') are "
            "all taken by earlier patterns (the first match wins)")):
        init_model(model, "zeros", overrides={"block*": "orthogonal", "block1.0": "zeros"})
    # a pattern that only matches a norm layer matches no layer to initialize either
    with pytest.raises(ValueError, match=re.escape("override pattern 'block1.1' matches no")):
        init_model(model, "zeros", overrides={"block1.1": "zeros"})


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(scheme="he_normall"), ValueError, "Unknown init 'he_normall'. Did you mean 'he_normal'"),
    (dict(scheme="he_normal", std=0.1), ValueError,
     "init 'he_normal' takes no argument 'std'. It takes: negative_slope, mode, gain. "
     "Received: std=0.1"),
    (dict(scheme=("normal", {"mean": 1.0})), ValueError,
     "init 'normal' takes no argument 'mean'. It takes: std. Received: mean=1.0"),
    (dict(scheme="he_normal", mode="fan_inn"), ValueError,
     "mode must be one of ('fan_in', 'fan_out', 'fan_avg'). Received: mode='fan_inn'"),
    (dict(scheme="normal", std=-1.0), ValueError,
     "std must be a non-negative number. Received: std=-1.0"),
    (dict(scheme={"std": 0.1}), ValueError,
     "The init spec given as a mapping needs a 'name' key. Received: {'std': 0.1}"),
    (dict(scheme=("normal", 0.1)), TypeError,
     "The (init name, kwargs) spec needs a mapping of kwargs. "
     "Received: ('normal', 0.1)"),
    (dict(scheme=3), TypeError, "an init must be a registered name, a (name, kwargs) pair"),
    (dict(scheme="he_normal", bias="he_normal"), ValueError,
     "bias init 'he_normal' needs a weight with fan_in/fan_out (2 or more dimensions)"),
    (dict(scheme="he_normal", bias=True), TypeError,
     "bias must be a number (constant), an init scheme, or None (leave biases). "
     "Received: bias=True"),
    (dict(scheme="normal", activation="tanh"), ValueError,
     "activation= sets a gain, but init 'normal' takes none"),
    (dict(scheme="xavier_uniform", activation="tanh", gain=2.0), ValueError,
     "give activation= or gain=, not both. Received: activation='tanh', gain=2.0"),
    (dict(scheme="he_normal", generator=-1), TypeError,
     "generator must be a torch.Generator, a non-negative integer seed or None. "
     "Received: generator=-1"),
    (dict(scheme="he_normal", overrides={1: "zeros"}), TypeError,
     "override patterns must be strings (module or parameter names, fnmatch). Received: 1"),
])
def test_error_messages(kwargs, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        init_model(Net(), **kwargs)


def test_not_a_module():
    with pytest.raises(TypeError, match="init_model needs an nn.Module. Received: Tensor"):
        init_model(torch.empty(3, 3), "he_normal")


def test_lazy_layer_not_run_yet():
    with pytest.raises(ValueError, match=re.escape(
            "layer '1' (LazyLinear) has uninitialized lazy parameters; run one forward pass")):
        init_model(nn.Sequential(nn.Linear(3, 4), nn.LazyLinear(2)), "he_normal")


def test_data_dependent_scheme_is_refused(monkeypatch):
    from trainlab.registry import Entry

    entry = Entry("fake_lsuv", lambda model, x: model, meta={"data_dependent": True})
    monkeypatch.setitem(I.INITS._entries, "fake_lsuv", entry)
    monkeypatch.setitem(I.INITS._lookup, "fake_lsuv", "fake_lsuv")
    with pytest.raises(ValueError, match="init 'fake_lsuv' is data-dependent"):
        init_model(Net(), "fake_lsuv")
