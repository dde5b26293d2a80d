"""Model builders: names, block order, options, init, depth, registry and config errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.models.builders import (
    MODELS,
    ConvMaxout,
    build_model,
    convnet,
    mlp,
    preact_resnet,
)
from trainlab.nn.activations import Maxout
from trainlab.nn.norms import NORMS, BatchNorm, GroupNorm, LayerNorm


def _names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def _call_order(model: nn.Module, x: torch.Tensor, prefix: str) -> list[str]:
    """Names of the submodules under ``prefix`` in the order their forward ran."""
    order: list[str] = []
    handles = [
        m.register_forward_hook(lambda mod, inp, out, n=n: order.append(n))
        for n, m in model.named_modules()
        if n.startswith(prefix + ".") and n.count(".") == prefix.count(".") + 1
    ]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return order


# -- names --------------------------------------------------------------------------------------
def test_mlp_module_names_exact():
    m = mlp(6, [5, 4], 3, norm="bn", dropout=0.1)
    assert _names(m) == [
        "flatten",
        "block1", "block1.linear", "block1.norm", "block1.act", "block1.drop",
        "block2", "block2.linear", "block2.norm", "block2.act", "block2.drop",
        "head",
    ]  # fmt: skip
    assert list(m.state_dict()) == [
        "block1.linear.weight", "block1.linear.bias", "block1.norm.weight", "block1.norm.bias",
        "block1.norm.running_mean", "block1.norm.running_var", "block1.norm.num_batches_tracked",
        "block2.linear.weight", "block2.linear.bias", "block2.norm.weight", "block2.norm.bias",
        "block2.norm.running_mean", "block2.norm.running_var", "block2.norm.num_batches_tracked",
        "head.weight", "head.bias",
    ]  # fmt: skip
    assert isinstance(m.block2.norm, BatchNorm) and isinstance(m.head, nn.Linear)
    assert m(torch.randn(7, 6)).shape == (7, 3)


def test_mlp_names_are_stable_across_variants():
    """Same names with or without norm (Identity slot) and in either placement, no dropout."""
    base = _names(mlp(6, [5], 3))
    assert base == ["flatten", "block1", "block1.linear", "block1.norm", "block1.act", "head"]
    assert isinstance(mlp(6, [5], 3).block1.norm, nn.Identity)
    assert sorted(_names(mlp(6, [5], 3, norm="ln", placement="after"))) == sorted(base)


def test_convnet_module_names_exact():
    m = convnet(3, [4, 8], 5, norm="bn")
    assert _names(m) == [
        "block1", "block1.conv", "block1.norm", "block1.act", "block1.pool",
        "block2", "block2.conv", "block2.norm", "block2.act", "block2.pool",
        "gap", "flatten", "head",
    ]  # fmt: skip
    assert isinstance(m.block1.conv, nn.Conv2d) and isinstance(m.block1.pool, nn.MaxPool2d)
    assert m(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    assert m(torch.randn(2, 3, 28, 20)).shape == (2, 5)  # global average pool: any size


def test_preact_resnet_names_and_shapes():
    m = preact_resnet(8, out_features=10)
    assert _names(m)[:9] == [
        "stem", "block1", "block1.norm1", "block1.act1", "block1.conv1", "block1.norm2",
        "block1.act2", "block1.conv2", "block1.shortcut",
    ]  # fmt: skip
    assert _names(m)[-5:] == ["norm", "act", "gap", "flatten", "head"]
    assert [n for n in _names(m) if n.count(".") == 0 and n.startswith("block")] == [
        "block1",
        "block2",
        "block3",
    ]


@pytest.mark.parametrize("depth", [8, 14, 20])
def test_preact_resnet_forward_on_32x32(depth):
    torch.manual_seed(0)
    m = preact_resnet(depth, out_features=10)
    y = m(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    n = (depth - 2) // 6
    assert len([k for k in _names(m) if k.count(".") == 0 and k.startswith("block")]) == 3 * n
    # depth counts the 3x3 convolutions and the head (projections are not counted)
    convs3 = [x for x in m.modules() if isinstance(x, nn.Conv2d) and x.kernel_size == (3, 3)]
    assert len(convs3) + 1 == depth
    shortcuts = [x for x in m.modules() if isinstance(x, nn.Conv2d) and x.kernel_size == (1, 1)]
    assert len(shortcuts) == 2  # one projection at each change of shape


def test_preact_resnet20_size_matches_paper():
    # He et al. 2016 list ResNet-20 (CIFAR) at 0.27M parameters.
    n_params = sum(p.numel() for p in preact_resnet(20).parameters())
    assert 0.26e6 < n_params < 0.28e6


def test_preact_block_is_pre_activation_and_shortcut_reads_preactivated_input():
    torch.manual_seed(0)
    m = preact_resnet(8, norm="gn").eval()
    blk = m.block2  # the projection block
    x = torch.randn(2, 16, 8, 8)
    h = blk.act1(blk.norm1(x))
    want = blk.conv2(blk.act2(blk.norm2(blk.conv1(h)))) + blk.shortcut(h)
    torch.testing.assert_close(blk(x), want)
    b1 = m.block1  # identity shortcut
    want = b1.conv2(b1.act2(b1.norm2(b1.conv1(b1.act1(b1.norm1(x)))))) + x
    torch.testing.assert_close(b1(x), want)
    assert _call_order(m, torch.randn(1, 3, 16, 16), "block2") == [
        "block2.norm1", "block2.act1", "block2.conv1", "block2.norm2", "block2.act2",
        "block2.conv2", "block2.shortcut",
    ]  # fmt: skip


def test_preact_resnet_bias_only_without_norm():
    assert preact_resnet(8).block1.conv1.bias is None
    assert preact_resnet(8, norm="none").block1.conv1.bias is not None
    assert isinstance(preact_resnet(8, norm="none").block1.norm1, nn.Identity)
    assert preact_resnet(8, norm="bn", bias=True).stem.bias is not None


# -- placement ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "placement, order",
    [("before", ["linear", "norm", "act"]), ("after", ["linear", "act", "norm"])],
)
def test_mlp_placement_order_by_hooks_and_by_value(placement, order):
    torch.manual_seed(0)
    m = mlp(6, [5, 5], 2, activation="tanh", norm="bn", placement=placement, dropout=0.2)
    x = torch.randn(8, 6)
    assert _call_order(m, x, "block2") == [f"block2.{n}" for n in order + ["drop"]]
    assert [n for n, _ in m.block2.named_children()] == order + ["drop"]  # listed = run order
    m.eval()
    b = m.block1
    z = b.linear(x)
    want = b.act(b.norm(z)) if placement == "before" else b.norm(b.act(z))
    torch.testing.assert_close(b(x), want)


@pytest.mark.parametrize(
    "placement, order",
    [("before", ["conv", "norm", "act", "pool"]), ("after", ["conv", "act", "norm", "pool"])],
)
def test_convnet_placement_order(placement, order):
    m = convnet(3, [4, 4], 2, norm="gn", placement=placement, pool="avg")
    assert _call_order(m, torch.randn(2, 3, 8, 8), "block1") == [f"block1.{n}" for n in order]
    assert isinstance(m.block1.pool, nn.AvgPool2d)


def test_placement_is_validated():
    with pytest.raises(
        ValueError,
        match=r"placement must be one of \('before', 'after'\).*"
        r"Received: placement='middle'",
    ):
        mlp(4, [3], 2, placement="middle")
    with pytest.raises(ValueError, match=r"Received: placement='before_act'"):
        convnet(3, [4], 2, placement="before_act")


# -- options ------------------------------------------------------------------------------------
def test_dropout_present_only_when_asked_and_active_in_training():
    assert not any(isinstance(x, nn.Dropout) for x in mlp(4, [8, 8], 2).modules())
    m = mlp(4, [64, 64], 2, dropout=0.5)
    drops = [x for x in m.modules() if isinstance(x, nn.Dropout)]
    assert len(drops) == 2 and all(d.p == 0.5 for d in drops)
    x = torch.randn(16, 4)
    assert not torch.equal(m(x), m(x))  # training: random masks
    m.eval()
    assert torch.equal(m(x), m(x))
    c = convnet(3, [4, 4], 2, dropout=0.25)
    assert [n for n, _ in c.block1.named_children()][-1] == "drop"
    r = preact_resnet(8, dropout=0.3)
    assert isinstance(r.block1.drop, nn.Dropout) and preact_resnet(8).block1.drop is None


def test_every_norm_builds_in_each_builder():
    for name in NORMS.names():
        entry = NORMS.get(name)
        x_img = torch.randn(2, 3, 16, 16)
        assert convnet(3, [8, 16], 4, norm=name)(x_img).shape == (2, 4)
        if "preact_resnet" in entry.meta.get("models", ("preact_resnet",)):
            assert preact_resnet(8, norm=name, widths=(8, 16, 16))(x_img).shape == (2, 10)
        if entry.meta["min_rank"] <= 2:
            assert mlp(5, [8, 8], 3, norm=name)(torch.randn(4, 5)).shape == (4, 3)
    assert isinstance(mlp(5, [8], 3, norm="ln").block1.norm, LayerNorm)
    assert mlp(5, [8], 3, norm=("gn", {"groups": 2})).block1.norm.groups == 2
    assert isinstance(convnet(3, [16], 2, norm={"name": "gn"}).block1.norm, GroupNorm)


def test_mlp_rejects_norm_that_needs_spatial_positions():
    with pytest.raises(
        ValueError,
        match=r"norm 'in' needs inputs with spatial positions.*"
        r"Received: norm='in'\. Allowed in mlp: none, bn, ln, gn",
    ):
        mlp(4, [8], 2, norm="in")


def test_activation_specs_build_fresh_modules_per_block():
    m = mlp(4, [8, 8], 2, activation=("leaky_relu", {"negative_slope": 0.1}))
    assert m.block1.act.negative_slope == 0.1
    assert m.block1.act is not m.block2.act
    shared = nn.Tanh()
    m = mlp(4, [8, 8], 2, activation=shared)
    assert isinstance(m.block1.act, nn.Tanh) and m.block1.act is not shared
    m = mlp(4, [8], 2, activation=nn.ELU)
    assert isinstance(m.block1.act, nn.ELU)


def test_maxout_replaces_linear_and_act_is_identity():
    m = mlp(6, [5, 4], 3, activation=("maxout", {"k": 3}), norm="bn")
    assert isinstance(m.block1.linear, Maxout) and m.block1.linear.k == 3
    assert (m.block1.linear.in_features, m.block1.linear.out_features) == (6, 5)
    assert isinstance(m.block1.act, nn.Identity)
    assert m.block1.norm.num_features == 5
    assert m(torch.randn(4, 6)).shape == (4, 3)
    assert m.block2.linear.bias is not None
    assert mlp(6, [5], 3, activation="maxout", bias=False).block1.linear.bias is None

    c = convnet(3, [4, 6], 2, activation={"name": "maxout", "k": 3}, norm="bn")
    assert isinstance(c.block1.conv, ConvMaxout) and isinstance(c.block1.act, nn.Identity)
    assert c.block1.conv.conv.out_channels == 12 and c.block1.conv.k == 3
    assert c(torch.randn(2, 3, 8, 8)).shape == (2, 2)
    x = torch.randn(2, 3, 8, 8)
    z = c.block1.conv.conv(x)
    torch.testing.assert_close(c.block1.conv(x), z.reshape(2, 4, 3, 8, 8).amax(2))


def test_maxout_rejected_by_preact_resnet():
    with pytest.raises(
        ValueError,
        match=r"activation 'maxout' replaces the linear layer.*"
        r"preact_resnet.*mlp or convnet",
    ):
        preact_resnet(8, activation="maxout")


def test_convnet_1d_for_signals():
    m = convnet(1, [8, 8], 10, dims=1, norm="bn", pool="max")
    assert isinstance(m.block1.conv, nn.Conv1d) and isinstance(m.block1.pool, nn.MaxPool1d)
    assert m(torch.randn(4, 1, 40)).shape == (4, 10)
    assert isinstance(convnet(3, [4], 2, pool="none").block1.pool, nn.Identity)


def test_mlp_flattens_images_and_allows_linear_model():
    assert mlp(28 * 28, [16], 10)(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    lin = mlp(5, [], 2)
    assert _names(lin) == ["flatten", "head"]


def test_spec_is_recorded_and_rebuilds_the_same_model():
    m = mlp(6, [5, 4], 3, activation="tanh", norm="ln", dropout=0.1)
    assert m.spec["widths"] == [5, 4] and m.spec["norm"] == "ln"
    again = build_model({"name": "mlp", **m.spec})
    assert _names(again) == _names(m)
    r = preact_resnet(14, norm="gn")
    assert r.spec["depth"] == 14 and _names(build_model({"name": "resnet", **r.spec})) == _names(r)


def test_dtype_move():
    m = convnet(3, [4], 2, norm="bn").to(torch.float64)
    assert m(torch.randn(2, 3, 8, 8, dtype=torch.float64)).dtype == torch.float64


# -- init -----------------------------------------------------------------------------------
def test_no_init_keeps_torch_default():
    torch.manual_seed(0)
    m = mlp(50, [40], 3)
    w = m.block1.linear.weight
    bound = 1 / math.sqrt(50)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


def test_init_name_and_dict_are_applied():
    pytest.importorskip("trainlab.init", reason="trainlab.init (contract C4) not installed")
    m = mlp(400, [300, 300], 10, init={"name": "normal", "std": 0.05, "generator": 0})
    for layer in (m.block1.linear, m.block2.linear, m.head):
        assert abs(layer.weight.std().item() - 0.05) < 0.003
        assert torch.count_nonzero(layer.bias) == 0  # init_model zeroes biases by default
    again = mlp(400, [300, 300], 10, init={"name": "normal", "std": 0.05, "generator": 0})
    assert torch.equal(m.block1.linear.weight, again.block1.linear.weight)  # same seed

    m = mlp(1000, [500], 10, init="he_normal")
    assert abs(m.block1.linear.weight.std().item() - math.sqrt(2 / 1000)) < 0.002
    c = convnet(16, [32], 2, init=("normal", {"std": 0.1}))
    assert abs(c.block1.conv.weight.std().item() - 0.1) < 0.01
    mx = mlp(400, [300], 10, activation="maxout", init=("normal", {"std": 0.05}))
    assert abs(mx.block1.linear.weight.std().item() - 0.05) < 0.003  # maxout pieces too
    r = build_model({"name": "preact_resnet", "depth": 8, "init": "zeros"})
    assert torch.count_nonzero(r.block2.conv1.weight) == 0
    with pytest.raises(ValueError, match=r"init spec given as a mapping needs a 'name' key"):
        mlp(4, [3], 2, init={"std": 0.1})
    with pytest.raises(ValueError, match=r"Unknown init 'he_norml'\. Did you mean 'he_normal'"):
        mlp(4, [3], 2, init="he_norml")


# -- depth: a 50-layer MLP builds, runs and trains ---------------------------------------------
@pytest.mark.parametrize(
    "activation, norm, init",
    [("tanh", "bn", None), ("selu", "none", "lecun_normal")],  # BN; self-normalizing net
)
def test_50_layer_mlp_builds_runs_and_trains(activation, norm, init):
    if init is not None:
        pytest.importorskip("trainlab.init", reason="trainlab.init (contract C4) not installed")
    torch.manual_seed(0)
    m = mlp(2, [16] * 49, 2, activation=activation, norm=norm, init=init)
    assert sum(isinstance(x, nn.Linear) for x in m.modules()) == 50
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 2, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, f"loss {first:.3f} -> {last:.3f}"


# -- registry and build_model -------------------------------------------------------------------
def test_models_registry():
    assert MODELS.names() == ["mlp", "convnet", "preact_resnet", "seq_classifier"]
    for e in MODELS:
        assert e.description and e.reference


def test_build_model_forms():
    m = build_model({"name": "mlp", "in_features": 4, "widths": [3], "out_features": 2})
    assert _names(m)[-1] == "head" and m.head.out_features == 2
    assert build_model(("convnet", {"channels": [4]})).block1.conv.out_channels == 4
    assert isinstance(build_model("convnet"), nn.Module)
    m = build_model({"name": "MLP", "in_features": 4}, widths=[7], norm="bn")
    assert m.block1.linear.out_features == 7 and isinstance(m.block1.norm, BatchNorm)
    assert build_model({"name": "cnn", "channels": [2, 2]}).block2.conv.out_channels == 2


def test_build_model_errors():
    with pytest.raises(
        ValueError,
        match=r"Unknown key\(s\) for model 'mlp': depth, widht\. "
        r"Allowed: in_features, widths, out_features, "
        r"activation, norm, placement, dropout, init, bias",
    ):
        build_model({"name": "mlp", "in_features": 4, "widht": [3], "depth": 3})
    with pytest.raises(ValueError, match=r"Model 'mlp' needs key\(s\): in_features\. Allowed:"):
        build_model({"name": "mlp"})
    with pytest.raises(
        ValueError,
        match=r"A model spec needs a 'name' key \(one of mlp, "
        r"convnet, preact_resnet, seq_classifier\)\. Received keys: \['widths'\]",
    ):
        build_model({"widths": [3]})
    with pytest.raises(ValueError, match=r"Unknown model 'convnett'\. Did you mean 'convnet'"):
        build_model({"name": "convnett"})
    with pytest.raises(TypeError, match=r"A model spec is a name.*Received: 3 of type int"):
        build_model(3)


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: mlp(0, [3], 2),
            r"in_features must be a positive integer\. Received: "
            r"in_features=0",
        ),
        (
            lambda: mlp(4, [3], 2.0),
            r"out_features must be a positive integer\. Received: "
            r"out_features=2\.0",
        ),
        (
            lambda: mlp(4, [3, 0], 2),
            r"widths must be a sequence of positive integers\. "
            r"Received: widths=\[3, 0\]",
        ),
        (
            lambda: mlp(4, 64, 2),
            r"widths must be a sequence of positive integers \(one per "
            r"layer\)\. Received: widths=64",
        ),
        (
            lambda: mlp(4, [3], 2, dropout=1.0),
            r"dropout must be a number in \[0, 1\)\. "
            r"Received: dropout=1\.0",
        ),
        (
            lambda: mlp(4, [3], 2, activation="relu6x"),
            r"Unknown activation 'relu6x'\. Did you "
            r"mean 'relu6'",
        ),
        (
            lambda: mlp(4, [3], 2, norm="batchnrm"),
            r"Unknown norm 'batchnrm'\. Did you mean "
            r"'batchnorm'",
        ),
        (
            lambda: convnet(3, [], 2),
            r"channels must be a non-empty sequence of positive "
            r"integers\. Received: channels=\[\]",
        ),
        (
            lambda: convnet(3, [4], 2, pool="maxx"),
            r"pool must be one of \('max', 'avg', "
            r"'none'\)\. Received: pool='maxx'",
        ),
        (lambda: convnet(3, [4], 2, dims=3), r"dims must be 1 or 2\. Received: dims=3"),
        (lambda: convnet(3, [4], 2, kernel_size=0), r"kernel_size must be a positive integer"),
        (
            lambda: convnet(3, [10], 2, norm=("gn", {"groups": 4})),
            r"groups must divide num_features\. Received: groups=4, num_features=10",
        ),
        (lambda: preact_resnet(10), r"depth must be 6n \+ 2 with n >= 1.*Received: depth=10"),
        (lambda: preact_resnet(2), r"depth must be 6n \+ 2.*Received: depth=2"),
        (lambda: preact_resnet(8, widths=[]), r"widths must be a non-empty sequence"),
    ],
)
def test_bad_input_messages(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- plug-in: a norm of kind "weight" wraps the layer ------------------------------------------
def test_weight_kind_norm_plugs_in(monkeypatch):
    from trainlab.registry import Entry

    def wn(layer, dim=0):
        return nn.utils.parametrizations.weight_norm(layer, dim=dim)

    entry = Entry("wn_test", wn, description="test weight norm", meta={"kind": "weight"})
    monkeypatch.setitem(NORMS._entries, "wn_test", entry)
    monkeypatch.setitem(NORMS._lookup, "wn_test", "wn_test")
    m = mlp(4, [8, 8], 2, norm="wn_test")
    assert isinstance(m.block1.norm, nn.Identity)
    assert nn.utils.parametrize.is_parametrized(m.block1.linear, "weight")
    assert m(torch.randn(3, 4)).shape == (3, 2)
    c = convnet(3, [4], 2, norm="wn_test")
    assert nn.utils.parametrize.is_parametrized(c.block1.conv, "weight")
    r = preact_resnet(8, norm="wn_test")
    assert isinstance(r.block1.norm1, nn.Identity)
    assert nn.utils.parametrize.is_parametrized(r.block1.conv2, "weight")
    assert r(torch.randn(1, 3, 8, 8)).shape == (1, 10)


def test_built_linear_replacing_unit_cannot_be_shared():
    with pytest.raises(
        ValueError,
        match=r"already-built module; a unit that replaces the linear "
        r"layer must be given by name or class",
    ):
        mlp(4, [3], 2, activation=Maxout(4, 3))
    assert isinstance(mlp(4, [3], 2, activation=Maxout).block1.linear, Maxout)


def test_mlp_accepts_the_list_of_all_layer_sizes():
    a = mlp([784, 256, 128, 10], activation="tanh", norm="bn", init="xavier_uniform")
    names = [n for n, _ in a.named_modules() if n.endswith((".linear", "head"))]
    assert names == ["block1.linear", "block2.linear", "head"]
    assert a.block1.linear.in_features == 784 and a.head.out_features == 10
    assert a.block2.linear.out_features == 128
    b = mlp(784, [256, 128], 10)
    assert [p.shape for p in a.parameters() if p.dim() == 2] == [
        p.shape for p in b.parameters() if p.dim() == 2
    ]


def test_mlp_list_form_errors():
    with pytest.raises(ValueError, match=r"not both\. Received: \[4, 2\], widths=\[3\]"):
        mlp([4, 2], [3])
    with pytest.raises(ValueError, match=r"at least the input and output sizes\. Received: \[4\]"):
        mlp([4])
