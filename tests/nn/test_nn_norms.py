"""Normalizations: against torch's layers, against the formula in float64, and by contract."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from trainlab.nn.norms import (
    NORMS,
    BatchNorm,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    batch_norm,
    check_placement,
    default_groups,
    momentum_from_keras,
    norm_kind,
    norm_layer,
)

D64 = torch.float64


def _randomize_affine(*mods: nn.Module, seed: int = 0) -> None:
    """Give every module the same random gamma/beta (so the affine part is tested too)."""
    g = torch.Generator().manual_seed(seed)
    w = b = None
    for m in mods:
        if w is None:
            w = torch.randn(m.weight.shape, generator=g, dtype=D64) * 0.5 + 1.0
            b = torch.randn(m.bias.shape, generator=g, dtype=D64)
        with torch.no_grad():
            m.weight.copy_(w.reshape(m.weight.shape))
            m.bias.copy_(b.reshape(m.bias.shape))


def _x(*shape: int, seed: int = 0, dtype=D64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=D64) * 3.0 + 1.5).to(dtype)


# -- BN against the formula (float64) -----------------------------------------------------------
@pytest.mark.parametrize("shape", [(16, 5), (6, 5, 4, 3), (4, 5, 7)])
def test_bn_train_and_eval_match_formula_with_running_stats(shape):
    eps, m = 1e-5, 0.1
    bn = BatchNorm(shape[1], eps=eps, momentum=m).to(D64)
    _randomize_affine(bn)
    gamma = bn.weight.detach().clone()
    beta = bn.bias.detach().clone()
    dims = [0] + list(range(2, len(shape)))
    view = [1, -1] + [1] * (len(shape) - 2)
    run_mean = torch.zeros(shape[1], dtype=D64)
    run_var = torch.ones(shape[1], dtype=D64)
    for step in range(3):
        x = _x(*shape, seed=step)
        y = bn(x)
        mu = x.mean(dim=dims)
        var_b = ((x - mu.view(view)) ** 2).mean(dim=dims)  # biased: normalizes the batch
        n = x.numel() // shape[1]
        var_u = var_b * n / (n - 1)  # unbiased: goes into the running estimate
        want = gamma.view(view) * (x - mu.view(view)) / torch.sqrt(var_b.view(view) + eps)
        want = want + beta.view(view)
        torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
        run_mean = (1 - m) * run_mean + m * mu
        run_var = (1 - m) * run_var + m * var_u
        torch.testing.assert_close(bn.running_mean, run_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bn.running_var, run_var, rtol=1e-12, atol=1e-12)
    assert int(bn.num_batches_tracked) == 3

    bn.eval()
    before = bn.running_mean.clone()
    x = _x(*shape, seed=99)
    want = gamma.view(view) * (x - run_mean.view(view)) / torch.sqrt(run_var.view(view) + eps)
    torch.testing.assert_close(bn(x), want + beta.view(view), rtol=1e-12, atol=1e-12)
    # eval mode does not touch the running statistics
    torch.testing.assert_close(bn.running_mean, before, rtol=0, atol=0)


def test_bn_momentum_none_is_cumulative_average():
    bn = BatchNorm(3, momentum=None).to(D64)
    xs = [_x(8, 3, seed=s) for s in range(4)]
    for x in xs:
        bn(x)
    want = torch.stack([x.mean(0) for x in xs]).mean(0)
    torch.testing.assert_close(bn.running_mean, want, rtol=1e-12, atol=1e-12)


def test_momentum_from_keras_matches_keras_update_rule():
    assert momentum_from_keras(0.99) == pytest.approx(0.01)
    keras_m = 0.9
    bn = BatchNorm(4, momentum=momentum_from_keras(keras_m)).to(D64)
    x = _x(10, 4)
    bn(x)
    keras_running_mean = keras_m * torch.zeros(4, dtype=D64) + (1 - keras_m) * x.mean(0)
    torch.testing.assert_close(bn.running_mean, keras_running_mean, rtol=1e-12, atol=1e-12)
    with pytest.raises(
        ValueError,
        match=r"keras_momentum must be in \[0, 1\]\. Received: "
        r"keras_momentum=1\.5",
    ):
        momentum_from_keras(1.5)


# -- BN against torch's layers ------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, ref_cls",
    [
        ((8, 6), nn.BatchNorm1d),
        ((8, 6, 5), nn.BatchNorm1d),
        ((4, 6, 5, 5), nn.BatchNorm2d),
        ((2, 6, 3, 3, 3), nn.BatchNorm3d),
    ],
)
def test_bn_equals_torch_batchnorm(shape, ref_cls):
    ours, ref = BatchNorm(6), ref_cls(6)
    _randomize_affine(ours, ref)
    for step in range(2):
        x = _x(*shape, seed=step, dtype=torch.float32)
        torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    x = _x(*shape, seed=7, dtype=torch.float32)
    torch.testing.assert_close(ours(x), ref(x))


def test_bn_state_dict_is_interchangeable_with_torch():
    ours, ref = BatchNorm(4), nn.BatchNorm2d(4)
    ref(torch.randn(8, 4, 3, 3))
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    back = nn.BatchNorm1d(4)
    back.load_state_dict(ours.state_dict())
    assert isinstance(ours, nn.modules.batchnorm._BatchNorm)  # torch tools recognise it


def test_bn_single_value_per_channel_in_training_says_so():
    bn = BatchNorm(5)
    msg = (r"one value per channel \(batch size 1\).*model\.eval\(\).*does not need batch "
           r"statistics: 'ln', 'gn', 'wn', 'cwn' or 'normprop'")
    with pytest.raises(ValueError, match=r"input of shape \(1, 5\) has only " + msg):
        bn(torch.randn(1, 5))
    with pytest.raises(ValueError, match=msg):
        bn(torch.randn(1, 5, 1, 1))
    with pytest.raises(ValueError, match=msg):
        batch_norm(torch.randn(1, 5), None, None, training=True)
    bn.eval()
    assert bn(torch.randn(1, 5)).shape == (1, 5)  # eval mode uses running statistics
    assert BatchNorm(5)(torch.randn(1, 5, 2, 1)).shape == (1, 5, 2, 1)  # 2 values per channel


def test_bn_without_running_stats_uses_batch_stats_in_eval_and_checks_them():
    bn = BatchNorm(3, track_running_stats=False).eval()
    x = _x(6, 3)
    want = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps)
    torch.testing.assert_close(bn.to(D64)(x), want, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="one value per channel"):
        bn(torch.randn(1, 3, dtype=D64))


@pytest.mark.parametrize("cls", [BatchNorm, LayerNorm, GroupNorm])
def test_wrong_rank_and_channel_count_are_named(cls):
    m = cls(4)
    with pytest.raises(ValueError, match=r"rank >= 2\)\. Received: input of shape \(4,\)"):
        m(torch.randn(4))
    with pytest.raises(ValueError, match=r"num_features=4 channels.*shape \(2, 3\) with 3 chan"):
        m(torch.randn(2, 3))


@pytest.mark.parametrize("cls", [BatchNorm, LayerNorm, GroupNorm, InstanceNorm])
@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_num_features_must_be_positive_int(cls, bad):
    with pytest.raises(
        ValueError,
        match=rf"num_features must be a positive integer\. "
        rf"Received: num_features={bad!r}",
    ):
        cls(bad)


# -- LN -----------------------------------------------------------------------------------------
def test_ln_on_vectors_equals_torch_layernorm():
    ours, ref = LayerNorm(7).to(D64), nn.LayerNorm(7).to(D64)
    _randomize_affine(ours, ref)
    x = _x(5, 7)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)
    mu, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    want = ours.weight * (x - mu) / torch.sqrt(var + 1e-5) + ours.bias
    torch.testing.assert_close(ours(x), want, rtol=1e-12, atol=1e-12)


def test_ln_on_images_is_over_chw_with_per_channel_affine():
    ours = LayerNorm(6).to(D64)
    x = _x(3, 6, 4, 5)
    # at init (gamma=1, beta=0): torch's LayerNorm over (C, H, W)
    torch.testing.assert_close(ours(x), nn.LayerNorm([6, 4, 5]).to(D64)(x), rtol=1e-12, atol=1e-12)
    # with a per-channel affine: torch's GroupNorm with one group
    ref = nn.GroupNorm(1, 6).to(D64)
    _randomize_affine(ours, ref)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)
    assert ours.weight.shape == (6,)


def test_ln_single_feature_vector_is_rejected():
    with pytest.raises(ValueError, match=r"\(N, 1\) input.*Received: input of shape \(4, 1\)"):
        LayerNorm(1)(torch.randn(4, 1))


# -- GN -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "groups, shape",
    [
        (g, s)
        for g in (1, 2, 4, 8)
        for s in ((3, 8, 5, 5), (3, 8, 6), (3, 8))
        if not (g == 8 and len(s) == 2)
    ],  # one value per group: rejected, tested below
)
def test_gn_equals_torch_groupnorm(groups, shape):
    ours, ref = GroupNorm(8, groups=groups).to(D64), nn.GroupNorm(groups, 8).to(D64)
    _randomize_affine(ours, ref)
    x = _x(*shape)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)


def test_gn_one_group_equals_ln_over_chw_and_c_groups_equals_in():
    x = _x(4, 6, 5, 5)
    torch.testing.assert_close(
        GroupNorm(6, groups=1).to(D64)(x),
        nn.LayerNorm([6, 5, 5]).to(D64)(x),
        rtol=1e-12,
        atol=1e-12,
    )
    torch.testing.assert_close(
        GroupNorm(6, groups=6).to(D64)(x), nn.InstanceNorm2d(6).to(D64)(x), rtol=1e-12, atol=1e-12
    )


def test_gn_groups_must_divide_channels():
    with pytest.raises(
        ValueError,
        match=r"groups must divide num_features\. Received: "
        r"groups=3, num_features=16\. Allowed: groups in "
        r"\[1, 2, 4, 8, 16\]",
    ):
        GroupNorm(16, groups=3)
    with pytest.raises(
        ValueError,
        match=r"groups must be a positive integer\. Received: "
        r"groups=0",
    ):
        GroupNorm(16, groups=0)
    with pytest.raises(ValueError, match="groups must divide"):
        norm_layer("gn", 10, groups=4)


def test_gn_single_value_per_group_is_rejected():
    with pytest.raises(
        ValueError,
        match=r"groups=4 on an input of shape \(2, 4\).*single "
        r"value per group",
    ):
        GroupNorm(4, groups=4)(torch.randn(2, 4))


@pytest.mark.parametrize(
    "c, g",
    [(64, 32), (128, 32), (32, 16), (16, 8), (10, 5), (7, 1), (1, 1), (2, 1), (96, 32), (48, 24)],
)
def test_default_groups(c, g):
    assert default_groups(c) == g
    assert c % g == 0 and (c // g >= 2 or c == 1)
    assert GroupNorm(c).groups == g


# -- IN -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, ref_cls", [((3, 4, 6, 5), nn.InstanceNorm2d), ((3, 4, 9), nn.InstanceNorm1d)]
)
def test_in_equals_torch_instancenorm(shape, ref_cls):
    ours, ref = InstanceNorm(4).to(D64), ref_cls(4, affine=True).to(D64)
    _randomize_affine(ours, ref)
    x = _x(*shape)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)
    dims = tuple(range(2, len(shape)))
    mu, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
    view = [1, -1] + [1] * len(dims)
    want = ours.weight.view(view) * (x - mu) / torch.sqrt(var + 1e-5) + ours.bias.view(view)
    torch.testing.assert_close(ours(x), want, rtol=1e-12, atol=1e-12)


def test_in_with_running_stats_matches_torch_in_eval():
    ours = InstanceNorm(4, track_running_stats=True)
    ref = nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
    for s in range(2):
        x = _x(2, 4, 5, 5, seed=s, dtype=torch.float32)
        torch.testing.assert_close(ours(x), ref(x))
    ours.eval(), ref.eval()
    x = _x(2, 4, 5, 5, seed=9, dtype=torch.float32)
    torch.testing.assert_close(ours(x), ref(x))


def test_in_on_vectors_and_single_positions_says_why():
    with pytest.raises(
        ValueError,
        match=r"InstanceNorm \('in'\).*\(N, C\) input \(received "
        r"shape \(2, 4\)\).*Use 'ln', 'gn' or 'bn'",
    ):
        InstanceNorm(4)(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"more than one spatial position.*\(2, 4, 1, 1\)"):
        InstanceNorm(4)(torch.randn(2, 4, 1, 1))


# -- placement, lookup, helper ------------------------------------------------------------------
def test_check_placement():
    assert check_placement("before") == "before"
    assert check_placement(" After ") == "after"
    with pytest.raises(
        ValueError,
        match=r"placement must be one of \('before', 'after'\).*"
        r"Received: placement='befor'",
    ):
        check_placement("befor")
    with pytest.raises(ValueError, match=r"Received: placement=None"):
        check_placement(None)


def test_norm_layer_lookup_and_specs():
    assert isinstance(norm_layer(None, 3), nn.Identity)
    assert isinstance(norm_layer("none", 3), nn.Identity)
    assert isinstance(norm_layer("Batch-Norm", 3), BatchNorm)
    assert norm_layer(("gn", {"groups": 2}), 8).groups == 2
    assert norm_layer({"name": "gn", "groups": 4}, 8).groups == 4
    assert isinstance(norm_layer(nn.BatchNorm1d, 3), nn.BatchNorm1d)  # classes pass through
    assert norm_layer("bn", 3, momentum=0.01).momentum == 0.01
    with pytest.raises(
        ValueError,
        match=r"Unknown norm 'bnn'\. Did you mean 'bn'.*Available: "
        r"bn, brn, cwn, gn, in, ln, mobn, none, normprop, wn, wn_mobn",
    ):
        norm_layer("bnn", 3)


def test_registry_meta():
    for entry in NORMS:
        assert entry.description and entry.meta["kind"] in ("activation", "weight")
        assert isinstance(entry.meta["needs_batch_stats"], bool)
        assert entry.meta["min_rank"] in (2, 3)
    assert [e.name for e in NORMS if e.meta["needs_batch_stats"]] == ["bn", "brn", "mobn",
                                                                        "wn_mobn"]
    assert NORMS.get("in").meta["min_rank"] == 3
    assert norm_kind("gn") == "activation" and norm_kind(None) == "activation"


# -- contract over every registered name --------------------------------------------------------
def _contract_inputs(entry):
    shapes = [(4, 8, 5, 5)]
    if entry.meta.get("min_rank", 2) <= 2:
        shapes.append((6, 8))
    return shapes


def _build(entry):
    if entry.meta.get("kind") == "weight":
        return entry.build(nn.Linear(8, 8))
    return NORMS.build(entry.name, 8)


@pytest.mark.parametrize("name", NORMS.names())
def test_contract_shape_finite_grad(name):
    entry = NORMS.get(name)
    torch.manual_seed(0)
    m = _build(entry)
    for shape in _contract_inputs(entry) if entry.meta.get("kind") != "weight" else [(6, 8)]:
        for scale in (1.0, 1e4, -1e4):
            x = (torch.randn(*shape) * scale).requires_grad_()
            y = m(x)
            assert y.shape == (shape if entry.meta.get("kind") != "weight" else (6, 8))
            assert torch.isfinite(y).all(), f"{name} not finite at scale {scale}"
            (y * torch.randn_like(y)).sum().backward()
            assert torch.isfinite(x.grad).all()
            if name != "none":
                assert x.grad.abs().sum() > 0
        for p in m.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", NORMS.names())
def test_contract_state_dict_round_trip_and_eval(name):
    entry = NORMS.get(name)
    torch.manual_seed(0)
    m = _build(entry)
    shape = (6, 8) if entry.meta.get("kind") == "weight" else _contract_inputs(entry)[0]
    for _ in range(2):
        m(torch.randn(*shape))  # moves running stats, if any
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p))
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = _build(entry)
    m2.load_state_dict(torch.load(buf))
    m.eval(), m2.eval()
    x = torch.randn(*shape)
    torch.testing.assert_close(m(x), m2(x), rtol=0, atol=0)
    assert m(x[:1]).shape[0] == 1  # eval mode works on a single sample


@pytest.mark.parametrize("name", NORMS.names())
def test_contract_dtype_and_device_moves(name):
    entry = NORMS.get(name)
    m = _build(entry)
    shape = (6, 8) if entry.meta.get("kind") == "weight" else _contract_inputs(entry)[0]
    assert m.to(D64)(torch.randn(*shape, dtype=D64)).dtype == D64
    if torch.cuda.is_available():
        y = m.to("cuda")(torch.randn(*shape, dtype=D64, device="cuda"))
        assert y.device.type == "cuda"


def test_weight_kind_specs_are_refused_by_norm_layer(monkeypatch):
    from trainlab.registry import Entry

    entry = Entry("wn_test", lambda layer: layer, meta={"kind": "weight"})
    monkeypatch.setitem(NORMS._entries, "wn_test", entry)
    monkeypatch.setitem(NORMS._lookup, "wn_test", "wn_test")
    assert norm_kind("wn_test") == "weight" and norm_kind(("wn_test", {})) == "weight"
    with pytest.raises(ValueError, match=r"'wn_test' reparametrizes the preceding layer's weights"):
        norm_layer("wn_test", 4)

    class Marked:
        norm_kind = "weight"

    assert norm_kind(Marked) == "weight" and norm_kind(nn.BatchNorm1d) == "activation"


def test_default_groups_checks_its_arguments():
    with pytest.raises(ValueError, match=r"max_groups must be a positive integer\. Received: "):
        default_groups(8, max_groups=0)
    assert default_groups(64, max_groups=8) == 8


def test_functional_batch_norm_in_eval_uses_the_running_statistics():
    """y = γ (x − running_mean) / sqrt(running_var + eps) + β in float64, with running
    statistics far from the batch's (a mutant normalizing with batch statistics in eval mode
    survived the suite)."""
    from trainlab.nn.norms import batch_norm

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g, dtype=torch.float64) * 3 + 2
    rm = torch.tensor([0.5, -1.0, 4.0, 0.0], dtype=torch.float64)
    rv = torch.tensor([0.25, 4.0, 1.0, 9.0], dtype=torch.float64)
    w = torch.tensor([1.5, 0.5, -1.0, 2.0], dtype=torch.float64)
    b = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    before = (rm.clone(), rv.clone())
    y = batch_norm(x, rm, rv, w, b, training=False, eps=1e-5)
    want = w * (x - rm) / torch.sqrt(rv + 1e-5) + b
    assert torch.allclose(y, want, atol=1e-12)
    assert torch.equal(rm, before[0]) and torch.equal(rv, before[1])  # eval: no update
