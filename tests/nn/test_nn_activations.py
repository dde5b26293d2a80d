"""Activations: registry-driven contract tests, ActivationInfo rules and gains, every error.

Formula checks against independently typed float64 references, equality with torch's modules
and gradchecks live in ``test_nn_act_formulas.py``.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from trainlab.nn import functional as TF
from trainlab.nn.activations import (
    ACTIVATIONS,
    ActivationInfo,
    LeakyReLU,
    Maxout,
    ThresholdRule,
    activation_info,
    maxout_gain,
)
from trainlab.registry import Registry

NAMES = ACTIVATIONS.names()
WIDTH = 6


def build(name: str, **kwargs) -> nn.Module:
    """Build a registered activation; layers that replace Linear get (WIDTH, WIDTH)."""
    if ACTIVATIONS.get(name).meta["replaces_linear"]:
        return ACTIVATIONS.build(name, WIDTH, WIDTH, **kwargs)
    return ACTIVATIONS.build(name, **kwargs)


def inputs(name: str, *, dtype=torch.float32, seed: int = 0) -> list[torch.Tensor]:
    """Inputs each activation must accept: 2-D always, 4-D for element-wise ones."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(5, WIDTH, generator=g, dtype=dtype)]
    if not ACTIVATIONS.get(name).meta["replaces_linear"]:
        xs.append(torch.randn(2, 3, 4, 5, generator=g, dtype=dtype))
    else:
        xs.append(torch.randn(2, 3, WIDTH, generator=g, dtype=dtype))
    return xs


def expected_shape(name: str, x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)  # maxout is built WIDTH -> WIDTH, so every shape is kept


def perturb_(m: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


# -- the registry -------------------------------------------------------------------------
def test_registry_holds_every_activation_of_the_issue():
    wanted = {
        "sigmoid",
        "tanh",
        "softsign",
        "relu",
        "relu6",
        "leaky_relu",
        "prelu",
        "rrelu",
        "noisy_relu",
        "elu",
        "selu",
        "gelu",
        "gelu_tanh",
        "silu",
        "swish",
        "softplus",
        "maxout",
        "identity",
    }
    assert wanted <= set(NAMES)
    assert Registry.family_of("activation") is ACTIVATIONS


@pytest.mark.parametrize("name", NAMES)
def test_entry_is_described_and_carries_its_info(name):
    e = ACTIVATIONS.get(name)
    assert e.description
    info = e.meta["info"]
    assert isinstance(info, ActivationInfo)
    assert info.name == name
    assert e.meta["gain"] == info.gain and e.meta["output_range"] == info.output_range
    lo, hi = info.output_range
    assert lo < hi
    assert math.isfinite(info.gain) and info.gain > 0
    assert info.notes


def test_lookup_normalizes_and_aliases():
    assert isinstance(ACTIVATIONS.build("Leaky-ReLU"), LeakyReLU)
    assert isinstance(ACTIVATIONS.build("LRELU"), LeakyReLU)
    assert type(ACTIVATIONS.build("logistic")).__name__ == "Sigmoid"
    assert type(ACTIVATIONS.build("linear")).__name__ == "Identity"
    assert ACTIVATIONS.build("gelu_tanh").approximate == "tanh"


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"Unknown activation 'rellu'.*'relu'"):
        ACTIVATIONS.get("rellu")


def test_both_leaky_slopes_reachable_by_name():
    assert ACTIVATIONS.build("leaky_relu").negative_slope == 0.01  # torch's default
    m = ACTIVATIONS.build(("leaky_relu", {"negative_slope": 0.1}))  # the lectures' max(0.1x, x)
    assert m.negative_slope == 0.1
    m = ACTIVATIONS.build({"name": "leaky_relu", "negative_slope": TF.LECTURE_LEAKY_SLOPE})
    x = torch.tensor([-2.0, 3.0])
    assert torch.equal(m(x), torch.tensor([-0.2, 3.0]))


# -- contract tests over every registered name -----------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("train", [True, False])
def test_shape_kept(name, train):
    m = build(name).train(train)
    for x in inputs(name):
        assert tuple(m(x).shape) == expected_shape(name, x)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("train", [True, False])
def test_no_nan_at_extremes(name, train):
    m = build(name).train(train)
    torch.manual_seed(0)
    vals = torch.tensor([-1e4, -30.0, -1.0, 0.0, 1.0, 30.0, 1e4])
    x = vals.repeat(WIDTH, 1).T.contiguous().requires_grad_(True)  # (7, WIDTH)
    y = m(x)
    assert torch.isfinite(y).all(), y
    y.sum().backward()
    assert torch.isfinite(x.grad).all(), x.grad
    for p in m.parameters():
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradient_flows(name):
    m = build(name).train()
    torch.manual_seed(0)
    x = torch.randn(16, WIDTH, requires_grad=True)
    m(x).pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    torch.manual_seed(1)
    a = build(name)
    perturb_(a, seed=2)
    torch.manual_seed(3)
    b = build(name)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = inputs(name)[0]
    assert torch.equal(a(x), b(x))
    assert a.state_dict().keys() == b.state_dict().keys()


@pytest.mark.parametrize("name", NAMES)
def test_dtype_move_float64(name):
    m = build(name).to(torch.float64).eval()
    for p in m.parameters():
        assert p.dtype == torch.float64
    for x in inputs(name, dtype=torch.float64):
        assert m(x).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_device_move_cuda(name):
    m = build(name).eval()
    x = inputs(name)[0]
    y_cpu = m(x)
    m = m.to("cuda")
    y = m(x.to("cuda"))
    assert y.device.type == "cuda"
    torch.testing.assert_close(y.cpu(), y_cpu, rtol=1e-5, atol=1e-5)
    m.train()
    assert torch.isfinite(m(x.to("cuda"))).all()


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_deterministic(name):
    m = build(name).eval()
    for x in inputs(name):
        torch.manual_seed(0)
        y1 = m(x)
        torch.manual_seed(1)
        y2 = m(x)
        assert torch.equal(y1, y2)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("train", [True, False])
def test_output_in_declared_range(name, train):
    m = build(name).train(train).to(torch.float64)
    lo, hi = activation_info(name).output_range
    torch.manual_seed(0)
    x = torch.cat(
        [
            torch.randn(2000, WIDTH, dtype=torch.float64) * 5,
            torch.linspace(-40, 40, 4001, dtype=torch.float64).repeat(WIDTH, 1).T,
        ]
    )
    y = m(x)
    assert y.min() >= lo - 1e-9 and y.max() <= hi + 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_info_of_default_instance_equals_registry_info(name):
    assert activation_info(build(name)) == activation_info(name)


@pytest.mark.parametrize("name", NAMES)
def test_repr_and_deepcopy(name):
    m = build(name)
    assert type(m).__name__ in repr(m)
    m2 = copy.deepcopy(m)
    x = inputs(name)[0]
    m.eval(), m2.eval()
    assert torch.equal(m(x), m2(x))


@pytest.mark.parametrize("name", NAMES)
def test_rules_are_callables_on_outputs_or_none(name):
    info = activation_info(name)
    h = torch.randn(3, 4)
    for rule in (info.saturated, info.dead):
        assert rule is None or callable(rule)
        if rule is not None:
            mask = rule(h)
            assert mask.dtype == torch.bool and mask.shape == h.shape


@pytest.mark.parametrize("name", NAMES)
def test_hist_range_inside_output_range(name):
    info = activation_info(name)
    (lo, hi), (hlo, hhi) = info.output_range, info.hist_range
    assert lo <= hlo < hhi <= hi
    assert math.isfinite(hlo) and math.isfinite(hhi)


def test_hist_range_values():
    assert activation_info("sigmoid").hist_range == (0.0, 1.0)
    assert activation_info("tanh").hist_range == (-1.0, 1.0)
    assert activation_info("relu6").hist_range == (0.0, 6.0)
    assert activation_info("relu").hist_range == (0.0, 4.0)
    assert activation_info("leaky_relu").hist_range == (-4.0, 4.0)
    assert activation_info("elu").hist_range == (-1.0, 4.0)


def test_threshold_rule_compares_by_value_and_prints():
    a, b = ThresholdRule(0.03, 0.97), ThresholdRule(0.03, 0.97)
    assert a == b and hash(a) == hash(b)
    assert repr(a) == "ThresholdRule(h <= 0.03 or h >= 0.97)"
    assert repr(ThresholdRule(at_or_below=0.0)) == "ThresholdRule(h <= 0)"
    assert not ThresholdRule()(torch.randn(5)).any()


# -- saturation and dead rules -------------------------------------------------------------
def test_sigmoid_saturation_rule():
    h = torch.tensor([0.0, 0.02, 0.03, 0.031, 0.5, 0.969, 0.97, 1.0])
    got = activation_info("sigmoid").saturated(h)
    assert got.tolist() == [True, True, True, False, False, False, True, True]
    assert activation_info("sigmoid").dead is None


@pytest.mark.parametrize("name", ["tanh", "softsign"])
def test_tanh_softsign_saturation_rule(name):
    h = torch.tensor([-1.0, -0.97, -0.96, 0.0, 0.96, 0.97, 0.99])
    got = activation_info(name).saturated(h)
    assert got.tolist() == [True, True, False, False, False, True, True]


def test_tanh_saturation_thresholds_in_input_terms():
    # Documented: tanh saturates at |x| >= 2.09, sigmoid at |x| >= 3.48, softsign at |x| >= 32.3.
    assert math.tanh(2.09) < 0.97 < math.tanh(2.10)
    assert 1 / (1 + math.exp(-3.47)) < 0.97 < 1 / (1 + math.exp(-3.48))
    assert 32 / 33 < 0.97 < 33 / 34


@pytest.mark.parametrize("name", ["relu", "noisy_relu", "relu6"])
def test_rectifier_dead_rule(name):
    h = torch.tensor([0.0, 1e-7, 2.0, 6.0])
    assert activation_info(name).dead(h).tolist() == [True, False, False, False]


def test_relu6_saturated_at_cap():
    h = torch.tensor([0.0, 5.99, 6.0])
    assert activation_info("relu6").saturated(h).tolist() == [False, False, True]


def test_relu_dead_mask_matches_zero_derivative():
    x = torch.randn(1000, requires_grad=True)
    h = nn.functional.relu(x)
    h.sum().backward()
    assert torch.equal(activation_info("relu").dead(h), x.grad == 0)


def test_elu_selu_softplus_saturation_rules():
    elu = activation_info(nn.ELU(alpha=2.0))
    assert elu.saturated(torch.tensor([-1.95, -1.93, 0.0])).tolist() == [True, False, False]
    lam, alpha = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
    selu = activation_info("selu")
    assert selu.output_range[0] == pytest.approx(-lam * alpha)
    edge = -0.97 * lam * alpha
    assert selu.saturated(torch.tensor([edge - 1e-3, edge + 1e-3])).tolist() == [True, False]
    sp = activation_info(nn.Softplus(beta=2.0))
    assert sp.saturated(torch.tensor([0.01, 0.02])).tolist() == [True, False]
    for info in (elu, selu, sp):
        assert info.dead is None


@pytest.mark.parametrize(
    "name",
    ["leaky_relu", "prelu", "rrelu", "elu", "selu", "gelu", "silu", "swish", "maxout", "identity"],
)
def test_never_dead(name):
    assert activation_info(name).dead is None


@pytest.mark.parametrize(
    "name",
    [
        "relu",
        "leaky_relu",
        "prelu",
        "rrelu",
        "noisy_relu",
        "gelu",
        "silu",
        "swish",
        "maxout",
        "identity",
    ],
)
def test_never_saturated(name):
    assert activation_info(name).saturated is None


def test_flags():
    assert activation_info("maxout").replaces_linear
    assert activation_info("rrelu").stochastic and activation_info("noisy_relu").stochastic
    assert activation_info("prelu").learnable and activation_info("maxout").learnable
    assert activation_info(ACTIVATIONS.build("swish", learnable=True)).learnable
    assert not activation_info("relu").stochastic


# -- gains ---------------------------------------------------------------------------------
def test_gains_against_lectures_and_torch():
    calc = nn.init.calculate_gain
    assert activation_info("relu").gain == pytest.approx(math.sqrt(2)) == calc("relu")
    assert activation_info("tanh").gain == 1.0  # Glorot/LeCun; torch says 5/3
    assert calc("tanh") == pytest.approx(5 / 3)
    assert activation_info("sigmoid").gain == 1.0 == calc("sigmoid")
    assert activation_info("selu").gain == 1.0
    assert activation_info("identity").gain == 1.0 == calc("linear")
    assert activation_info("softsign").gain == 1.0
    for a in (0.0, 0.01, 0.1, 0.3):
        g = activation_info(LeakyReLU(a)).gain
        assert g == pytest.approx(math.sqrt(2 / (1 + a * a)))
        assert g == pytest.approx(calc("leaky_relu", a))
    assert activation_info("prelu").gain == pytest.approx(math.sqrt(2 / (1 + 0.25**2)))
    l, u = 1 / 8, 1 / 3
    ea2 = (u**3 - l**3) / (3 * (u - l))  # E[a^2] for a ~ U(l, u), computed another way
    assert activation_info("rrelu").gain == pytest.approx(math.sqrt(2 / (1 + ea2)))
    for name in ("gelu", "silu", "swish", "softplus", "elu", "noisy_relu", "relu6"):
        assert activation_info(name).gain == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_maxout_gain_keeps_second_moment(k):
    g = torch.Generator().manual_seed(k)
    z = torch.randn(400_000, k, generator=g, dtype=torch.float64)
    m2 = z.max(dim=1).values.pow(2).mean().item()  # Monte Carlo E[max of k N(0,1)]^2
    assert maxout_gain(k) == pytest.approx(1 / math.sqrt(m2), rel=6e-3)
    assert activation_info(Maxout(3, 2, k=k)).gain == maxout_gain(k)


def test_maxout_holds_its_pieces_in_an_inner_linear():
    m = Maxout(5, 3, k=4)
    assert isinstance(m.linear, nn.Linear)
    assert m.linear.in_features == 5 and m.linear.out_features == 12
    assert m.weight is m.linear.weight and m.bias is m.linear.bias
    assert list(m.state_dict()) == ["linear.weight", "linear.bias"]
    assert [n for n, c in m.named_modules() if isinstance(c, nn.Linear)] == ["linear"]
    assert torch.all(m.bias == 0)
    bound = maxout_gain(4) * math.sqrt(3 / 5)
    assert m.weight.abs().max() <= bound
    assert Maxout(5, 3, bias=False).bias is None


def test_maxout_layer_at_init_preserves_second_moment():
    torch.manual_seed(0)
    m = Maxout(512, 512, k=3)
    x = torch.randn(256, 512)
    y = m(x)
    assert y.pow(2).mean().item() == pytest.approx(1.0, rel=0.08)


# -- activation_info on torch's own modules and other objects -----------------------------
@pytest.mark.parametrize(
    ("module", "name"),
    [
        (nn.Sigmoid(), "sigmoid"),
        (nn.Tanh(), "tanh"),
        (nn.Softsign(), "softsign"),
        (nn.ReLU(), "relu"),
        (nn.ReLU6(), "relu6"),
        (nn.LeakyReLU(), "leaky_relu"),
        (nn.PReLU(), "prelu"),
        (nn.RReLU(), "rrelu"),
        (nn.ELU(), "elu"),
        (nn.SELU(), "selu"),
        (nn.GELU(), "gelu"),
        (nn.GELU(approximate="tanh"), "gelu_tanh"),
        (nn.SiLU(), "silu"),
        (nn.Softplus(), "softplus"),
        (nn.Identity(), "identity"),
    ],
)
def test_activation_info_on_torch_modules(module, name):
    assert activation_info(module) == activation_info(name)
    assert activation_info(type(module)) == activation_info(type(module)())  # defaults


def test_activation_info_reads_torch_settings():
    assert activation_info(nn.LeakyReLU(0.1)).gain == pytest.approx(math.sqrt(2 / 1.01))
    assert activation_info(nn.ELU(alpha=0.5)).output_range == (-0.5, math.inf)
    assert activation_info(nn.PReLU(init=0.1)).gain == pytest.approx(math.sqrt(2 / 1.01))
    assert activation_info(nn.RReLU(0.1, 0.1)).gain == pytest.approx(math.sqrt(2 / 1.01))
    ht = activation_info(nn.Hardtanh(-2.0, 2.0))
    assert ht.output_range == (-2.0, 2.0) and ht.saturated(torch.tensor([2.0])).item()
    assert activation_info(nn.CELU()).output_range == (-1.0, math.inf)
    assert activation_info(nn.Mish()).output_range[0] == pytest.approx(-0.30884, abs=1e-5)


def test_activation_info_on_other_objects():
    info = activation_info("tanh")
    assert activation_info(info) is info
    assert activation_info(nn.Linear(2, 2)) is None  # probes walk any model
    assert activation_info(nn.Sequential(nn.ReLU())) is None
    assert activation_info(nn.Conv1d) is None and activation_info(5) is None
    with pytest.raises(ValueError, match=r"Linear is not a known activation\. Known: .*relu"):
        activation_info(nn.Linear(2, 2), strict=True)
    with pytest.raises(ValueError, match=r"Conv1d is not a known activation"):
        activation_info(nn.Conv1d, strict=True)
    with pytest.raises(TypeError, match=r"Received: 5 of type int"):
        activation_info(5, strict=True)
    with pytest.raises(ValueError, match=r"Unknown activation 'tanhh'.*'tanh'"):
        activation_info("tanhh")


def test_activation_info_of_specs():
    assert activation_info(("leaky_relu", {"negative_slope": 0.1})).gain == pytest.approx(
        math.sqrt(2 / 1.01)
    )
    assert activation_info({"name": "maxout", "k": 3}).gain == maxout_gain(3)
    assert activation_info({"name": "elu", "alpha": 2.0}).output_range == (-2.0, math.inf)
    assert activation_info(("gelu_tanh", {})) == activation_info(nn.GELU(approximate="tanh"))
    # constructor-only settings (here PReLU's channel count) are accepted and ignored
    assert activation_info(("prelu", {"num_parameters": 8})) == activation_info("prelu")
    with pytest.raises(ValueError, match=r"Unknown activation 'mxout'.*'maxout'"):
        activation_info({"name": "mxout"})


def test_activation_info_walks_a_model():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), build("relu"))
    names = [i.name for m in model if (i := activation_info(m)) is not None]
    assert names == ["tanh", "relu"]


# -- every error message --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (
            lambda: LeakyReLU(1.5),
            r"negative_slope must be in \[0, 1\)\. Received: "
            r"negative_slope=1\.5\.",
        ),
        (
            lambda: LeakyReLU(-0.1),
            r"negative_slope must be in \[0, 1\)\. Received: "
            r"negative_slope=-0\.1\.",
        ),
        (
            lambda: ACTIVATIONS.build("leaky_relu", negative_slope=1.0),
            r"negative_slope must be in \[0, 1\)\. Received: negative_slope=1\.0\.",
        ),
        (
            lambda: ACTIVATIONS.build("prelu", init=1.2),
            r"init must be in \[0, 1\)\. Received: init=1\.2\.",
        ),
        (
            lambda: ACTIVATIONS.build("prelu", num_parameters=0),
            r"num_parameters must be an integer >= 1\. Received: num_parameters=0\.",
        ),
        (
            lambda: ACTIVATIONS.build("rrelu", lower=0.5, upper=0.2),
            r"lower must be <= upper, both in \[0, 1\)\. Received: lower=0\.5, upper=0\.2\.",
        ),
        (
            lambda: ACTIVATIONS.build("rrelu", upper=1.0),
            r"upper must be in \[0, 1\)\. Received: upper=1\.0\.",
        ),
        (
            lambda: ACTIVATIONS.build("rrelu", lower=-0.1),
            r"lower must be in \[0, 1\)\. Received: lower=-0\.1\.",
        ),
        (
            lambda: ACTIVATIONS.build("noisy_relu", sigma=-1.0),
            r"sigma must be in \[0, inf\)\. Received: sigma=-1\.0\.",
        ),
        (
            lambda: ACTIVATIONS.build("elu", alpha=0.0),
            r"alpha must be in \(0, inf\)\. Received: alpha=0\.0\.",
        ),
        (
            lambda: ACTIVATIONS.build("softplus", beta=-1.0),
            r"beta must be in \(0, inf\)\. Received: beta=-1\.0\.",
        ),
        (
            lambda: ACTIVATIONS.build("softplus", threshold=0),
            r"threshold must be in \(0, inf\)\. Received: threshold=0\.",
        ),
        (
            lambda: ACTIVATIONS.build("swish", beta=-2.0),
            r"beta must be in \[0, inf\)\. Received: beta=-2\.0\.",
        ),
        (
            lambda: ACTIVATIONS.build("swish", beta=float("nan")),
            r"beta must be in \[0, inf\)\. Received: beta=nan\.",
        ),
        (
            lambda: ACTIVATIONS.build("swish", num_parameters=3),
            r"num_parameters > 1 needs learnable=True.*Received: num_parameters=3, "
            r"learnable=False\.",
        ),
        (
            lambda: ACTIVATIONS.build("gelu", approximate="tan"),
            r"approximate must be one of \('none', 'tanh'\)\. Received: approximate='tan'\.",
        ),
        (
            lambda: ACTIVATIONS.build("maxout", 4, 4, k=1),
            r"k must be an integer >= 2 .*Received: k=1\.",
        ),
        (
            lambda: ACTIVATIONS.build("maxout", 4, 4, k=2.5),
            r"k must be an integer >= 2 .*Received: k=2\.5\.",
        ),
        (
            lambda: ACTIVATIONS.build("maxout", 4, 4, k=True),
            r"k must be an integer >= 2 .*Received: k=True\.",
        ),
        (
            lambda: ACTIVATIONS.build("maxout", 0, 4),
            r"in_features must be an integer >= 1\. Received: in_features=0\.",
        ),
        (
            lambda: ACTIVATIONS.build("maxout", 4, -1),
            r"out_features must be an integer >= 1\. Received: out_features=-1\.",
        ),
        (
            lambda: LeakyReLU("0.1"),
            r"negative_slope must be a real number in \[0, 1\)\. Received: negative_slope='0\.1'\.",
        ),
    ],
)
def test_constructor_errors(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (
            lambda x: TF.leaky_relu(x, 2.0),
            r"negative_slope must be in \[0, 1\)\. Received: negative_slope=2\.0\.",
        ),
        (
            lambda x: TF.rrelu(x, 0.3, 0.2),
            r"lower must be <= upper.*Received: lower=0\.3, upper=0\.2\.",
        ),
        (
            lambda x: TF.noisy_relu(x, sigma=-0.5),
            r"sigma must be in \[0, inf\)\. Received: sigma=-0\.5\.",
        ),
        (lambda x: TF.elu(x, alpha=-1.0), r"alpha must be in \(0, inf\)\. Received: alpha=-1\.0\."),
        (
            lambda x: TF.gelu(x, "erf"),
            r"approximate must be one of \('none', 'tanh'\)\. Received: approximate='erf'\.",
        ),
        (lambda x: TF.swish(x, -1.0), r"beta must be in \[0, inf\)\. Received: beta=-1\.0\."),
        (lambda x: TF.softplus(x, beta=0.0), r"beta must be in \(0, inf\)\. Received: beta=0\.0\."),
        (lambda x: TF.maxout_pool(x, 1), r"k must be an integer >= 2\. Received: k=1\."),
        (
            lambda x: TF.maxout_pool(x, 4),
            r"the size of dim 1 must be a multiple of k=4\. Received: shape \(2, 6\)\.",
        ),
    ],
)
def test_functional_errors(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(torch.randn(2, 6))


def test_input_shape_errors():
    with pytest.raises(
        ValueError,
        match=r"PReLU\(num_parameters=3\) expects inputs of shape "
        r"\(N, 3, \.\.\.\).*Received: shape \(2, 4\)\.",
    ):
        ACTIVATIONS.build("prelu", num_parameters=3)(torch.randn(2, 4))
    with pytest.raises(
        ValueError,
        match=r"Swish\(num_parameters=3\) expects .*Received: "
        r"shape \(5,\)\.",
    ):
        ACTIVATIONS.build("swish", learnable=True, num_parameters=3)(torch.randn(5))
    with pytest.raises(
        ValueError,
        match=r"Maxout\(in_features=4\) expects inputs of shape "
        r"\(\.\.\., 4\)\. Received: shape \(2, 5\)\.",
    ):
        ACTIVATIONS.build("maxout", 4, 3)(torch.randn(2, 5))


# -- the registry entry is the one place an activation's info lives ------------------------
@pytest.mark.parametrize("name", NAMES)
def test_activation_info_is_the_registry_entry(name):
    e = ACTIVATIONS.get(name)
    info = e.meta["info"]
    assert activation_info(name) is info
    for alias in e.aliases:
        assert activation_info(alias) is info
    assert activation_info(build(name)) == info  # the Module at the entry's defaults
    assert activation_info((name, {})) == info
    assert e.meta["info_for"](**e.defaults) == info
    for torch_cls in e.meta["torch"]:  # torch's Module of the same activation, default settings
        assert activation_info(torch_cls()) == info
        assert activation_info(torch_cls) == info
    # the classes hold no copy of it
    assert not hasattr(e.factory, "info_for") and not hasattr(e.factory, "activation_info")


def test_module_settings_are_read_through_the_entry():
    assert activation_info(ACTIVATIONS.build("leaky_relu", negative_slope=0.2)) == \
        ACTIVATIONS.get("leaky_relu").meta["info_for"](negative_slope=0.2)
    assert activation_info(nn.LeakyReLU(0.2)) == activation_info(LeakyReLU(0.2))
    swish = ACTIVATIONS.build("swish", beta=2.0, learnable=True)
    assert activation_info(swish) == ACTIVATIONS.get("swish").meta["info_for"](2.0, True)
    assert activation_info(Maxout(4, 3, k=3)).gain == pytest.approx(maxout_gain(3))
    assert activation_info(ACTIVATIONS.build("gelu_tanh")).name == "gelu_tanh"
