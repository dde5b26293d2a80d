"""Model-level inits: LSUV, Kraehenbuehl's data-dependent init, Fixup, random walk.

Every check recomputes the quantity independently: the output variances by a fresh forward
pass with our own hooks in float64, Fixup's factor L^(-1/(2m-2)) from L and m counted here,
the random-walk g from the paper's formula written again here. Models: trainlab's builders
and the foreign models of tests/zoo.py.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

import trainlab
from trainlab.init import INITS, data_dependent_, fixup_, init_model, lsuv_, random_walk_
from trainlab.nn.activations import Maxout
from zoo import ZOO

FF = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _outputs(model, x, layers, mode="train"):
    """Every watched module's first output on x (a fresh pass, our own hooks), float64."""
    got = {}
    hs = []
    for name, m in layers:
        def hook(mod, args, out, name=name):
            t = out[0] if isinstance(out, tuple) else out
            got.setdefault(name, t.detach().double())
        hs.append(m.register_forward_hook(hook))
    was = model.training
    model.train(mode == "train")
    with torch.no_grad():
        model(x)
    model.train(was)
    for h in hs:
        h.remove()
    return got


def _lsuv_watched(model):
    """What LSUV should normalize: each Linear/Conv, a maxout layer at its output, attention
    at its output (its out_proj excluded)."""
    out = []
    attn = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    for n, m in model.named_modules():
        if isinstance(m, (Maxout, nn.MultiheadAttention)):
            out.append((n, m))
        elif isinstance(m, FF) and not n.endswith(".linear") and \
                not any(n == f"{a}.out_proj" for a in attn):
            out.append((n, m))
        elif isinstance(m, FF) and n.endswith(".linear") and not isinstance(
                model.get_submodule(n.rsplit(".", 1)[0]), Maxout):
            out.append((n, m))
    return out


# -- LSUV -----------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "maxout"])
def test_lsuv_every_layer_within_tol_on_an_independent_pass(activation):
    torch.manual_seed(0)
    model = trainlab.mlp([20, 48, 48, 48, 48, 5], activation=activation,
                         init=("normal", {"std": 0.01}))
    x = torch.randn(256, 20)
    report = lsuv_(model, x, tol=0.1, max_iter=10, generator=0)
    watched = _lsuv_watched(model)
    outs = _outputs(model, x, watched)
    assert set(outs) == {r["layer"] for r in report} == {n for n, _ in watched}
    for name, out in outs.items():
        var = out.var(correction=0).item()
        assert abs(var - 1.0) < 0.1, (name, var)
        assert report[name]["converged"] and 1 <= report[name]["iterations"] <= 10
        assert report[name]["variance"] == pytest.approx(var, rel=1e-6)


def test_lsuv_orthonormal_pre_init_and_zero_biases():
    model = trainlab.mlp([16, 32, 8], activation="relu")
    x = torch.randn(64, 16)
    report = lsuv_(model, x, generator=0)
    w = model.block1.linear.weight.detach().double()
    # (32, 16): orthonormal columns up to the one LSUV factor, Wᵀ W = s² I
    s = report["block1.linear"]["scale"]
    torch.testing.assert_close(w.T @ w, s**2 * torch.eye(16, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    assert torch.count_nonzero(model.block1.linear.bias) == 0


def test_lsuv_on_a_convnet_and_on_zoo_models():
    torch.manual_seed(0)
    cnn = trainlab.convnet(3, [8, 16], 10)
    x = torch.randn(16, 3, 12, 12)
    lsuv_(cnn, x, generator=0)
    for name, out in _outputs(cnn, x, _lsuv_watched(cnn)).items():
        assert abs(out.var(correction=0).item() - 1) < 0.1, name
    for zoo in ("resnet", "transformer", "shared", "mobilenet"):
        model, x, _ = ZOO[zoo]()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # embeddings left: tested below
            report = lsuv_(model, x, generator=0)
        outs = _outputs(model, x, _lsuv_watched(model))
        assert set(outs) == set(report.layers()), zoo
        for name, out in outs.items():
            assert abs(out.var(correction=0).item() - 1) < 0.1, (zoo, name)


def test_lsuv_names_layers_it_cannot_rescale():
    model, x, _ = ZOO["lstm"]()
    with pytest.warns(UserWarning, match=r"lsuv left these layers.*lstm \(LSTM"):
        report = lsuv_(model, x, generator=0)
    assert report.layers() == ["head"] and any("lstm" in n for n in report.notes)


def test_lsuv_warns_with_layer_and_variance_when_tol_not_reached():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    with torch.no_grad():  # a bias that varies across units: W's scale cannot remove it
        model[0].bias.copy_(torch.arange(6.0) * 3)
    x = torch.randn(32, 4)
    with pytest.warns(UserWarning, match=r"lsuv: layer '0' did not reach variance 1 ± "
                      r"tol=0\.1: variance [0-9.]+ \(after max_iter=3 rescalings\)"):
        report = lsuv_(model, x, max_iter=3, orthonormal=False)
    assert report["0"]["iterations"] == 3 and not report["0"]["converged"]
    var = _outputs(model, x, [("0", model[0])])["0"].var(correction=0).item()
    assert report["0"]["variance"] == pytest.approx(var, rel=1e-6) and abs(var - 1) > 0.1


def test_lsuv_through_init_model_and_state_left_alone():
    torch.manual_seed(0)
    model = trainlab.mlp([10, 32, 32, 4], activation="relu", norm="bn")
    bn = model.block1.norm
    before = (bn.running_mean.clone(), bn.num_batches_tracked.clone())
    x = torch.randn(64, 10)
    rng = torch.get_rng_state()
    assert init_model(model, "lsuv", data=(x, torch.zeros(64)), generator=0) is model
    assert torch.equal(torch.get_rng_state(), rng)  # own generator; RNG untouched
    assert torch.equal(bn.running_mean, before[0]) and bn.num_batches_tracked == before[1]
    for name, out in _outputs(model, x, _lsuv_watched(model)).items():
        assert abs(out.var(correction=0).item() - 1) < 0.1, name
    a = copy.deepcopy(model)
    init_model(a, "lsuv", data=x, generator=3)
    b = copy.deepcopy(model)
    init_model(b, "lsuv", data=x, generator=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_data_dependent_scheme_errors():
    model = trainlab.mlp([4, 8, 2])
    for name in ("lsuv", "data_dependent"):
        with pytest.raises(ValueError, match=rf"init '{name}' is data-dependent: it needs a "
                           r"batch of inputs\. Pass data=x.*Received: data=None\."):
            init_model(model, name)
        with pytest.raises(ValueError, match=rf"init '{name}' estimates variances from data "
                           r"and needs at least 2 examples.*\(1, 4\) \(1 example\(s\)\)"):
            init_model(model, name, data=torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"tol must be a finite number > 0\. Received: tol=0"):
        lsuv_(model, torch.randn(8, 4), tol=0)
    with pytest.raises(ValueError, match=r"max_iter must be an integer >= 1\. Received: "
                       r"max_iter=0"):
        lsuv_(model, torch.randn(8, 4), max_iter=0)
    with pytest.raises(ValueError, match=r"init 'lsuv' sets the biases itself.*bias=0\.1"):
        init_model(model, "lsuv", bias=0.1, data=torch.randn(8, 4))
    with pytest.raises(ValueError, match=r"init 'lsuv' takes no argument 'tolerance'\. "
                       r"It takes: tol, max_iter, orthonormal, mode\. Received: tolerance=0\.1"):
        init_model(model, "lsuv", data=torch.randn(8, 4), tolerance=0.1)
    with pytest.raises(ValueError, match=r"overrides= does not apply"):
        init_model(model, "lsuv", data=torch.randn(8, 4), overrides={"head": "zeros"})
    with pytest.raises(ValueError, match=r"init 'lsuv' is data-dependent or applies to a "
                       r"whole model"):
        init_model(model, "he_normal", overrides={"head": "lsuv"})
    with pytest.warns(UserWarning, match=r"data= is used only by data-dependent schemes"):
        init_model(model, "he_normal", data=torch.randn(8, 4))


# -- Kraehenbuehl et al. --------------------------------------------------------------------
@pytest.mark.parametrize("builder", ["mlp", "convnet"])
def test_within_layer_gives_every_channel_mean_beta_and_unit_std(builder):
    torch.manual_seed(0)
    if builder == "mlp":
        model, x = trainlab.mlp([12, 24, 24, 3], activation="relu"), torch.randn(64, 12)
    else:
        model, x = trainlab.convnet(2, [6, 8], 3), torch.randn(16, 2, 8, 8)
    report = data_dependent_(model, x, beta=0.25, between_layer=False, generator=0)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, FF)]
    assert report.layers() == [n for n, _ in layers]
    for out in _outputs(model, x, layers).values():
        flat = out.reshape(-1, out.shape[-1]) if out.dim() == 2 else \
            out.movedim(1, -1).reshape(-1, out.shape[1])
        torch.testing.assert_close(flat.mean(0), torch.full((flat.shape[1],), 0.25,
                                   dtype=torch.float64), atol=1e-5, rtol=0)
        torch.testing.assert_close(flat.std(0, correction=0), torch.ones(
            flat.shape[1], dtype=torch.float64), atol=1e-5, rtol=0)


def _rates(model, x, layers, draws=64):
    """E_η ‖∂(η·y)/∂W_k‖² / ‖W_k‖² per layer (η ~ N(0, I)), averaged over many η: the
    between-layer step's change rate, recomputed independently."""
    g = torch.Generator().manual_seed(123)
    acc = [0.0] * len(layers)
    for _ in range(draws):
        out = model(x)
        eta = torch.randn(out.shape, generator=g)
        grads = torch.autograd.grad((out * eta).sum(), [m.weight for _, m in layers])
        for i, ((_, m), gr) in enumerate(zip(layers, grads)):
            acc[i] += (gr.double().pow(2).mean() / m.weight.double().pow(2).mean()).item()
    return [math.sqrt(a / draws) for a in acc]


def test_between_layer_equalizes_the_change_rates():
    torch.manual_seed(0)
    model = trainlab.mlp([16, 64, 16, 64, 16, 4], activation="relu")
    x = torch.randn(128, 16)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    within = copy.deepcopy(model)
    data_dependent_(within, x, between_layer=False, generator=0)
    data_dependent_(model, x, between_layer=True, generator=0)
    before = _rates(within, x, [(n, within.get_submodule(n)) for n, _ in layers])
    after = _rates(model, x, layers)
    spread = lambda r: max(r) / min(r)  # noqa: E731
    assert spread(before) > 1.5  # widths alternate 64/16: rates differ without the step
    assert spread(after) < 1.2 and spread(after) < spread(before) / 1.5


def test_data_dependent_on_zoo_models_and_through_init_model():
    for zoo in ("resnet", "shared", "mobilenet"):
        model, x, _ = ZOO[zoo]()
        init_model(model, "data_dependent", data=x, iterations=2, generator=0)
        assert all(torch.isfinite(p).all() for p in model.parameters()), zoo
        assert torch.isfinite(model(x)).all()
    model, x, _ = ZOO["transformer"]()
    with pytest.warns(UserWarning, match=r"data_dependent left these layers.*embed"):
        report = data_dependent_(model, x, iterations=2, generator=0)
    assert "encoder.layers.0.linear1" in report.layers()


# -- Fixup ----------------------------------------------------------------------------------
def _fixup_factor(L, m):  # the paper's rule 2, written here
    return L ** (-1.0 / (2 * m - 2))


def test_fixup_on_preact_resnet_zero_last_layers_and_scaling():
    torch.manual_seed(0)
    model = trainlab.preact_resnet(14, widths=(4, 8), norm="none")
    ref = copy.deepcopy(model)
    report = fixup_(model, generator=0)
    init_model(ref, "he_normal", bias=0.0, generator=0)  # the same draws, unscaled
    blocks = [n for n, _ in model.named_children() if n.startswith("block")]
    L, m = len(blocks), 2  # every block: conv1, conv2 (the shortcut is not in the branch)
    assert L == 4
    for b in blocks:
        blk, rblk = model.get_submodule(b), ref.get_submodule(b)
        assert torch.count_nonzero(blk.conv2.weight) == 0
        torch.testing.assert_close(blk.conv1.weight, rblk.conv1.weight * _fixup_factor(L, m),
                                   rtol=1e-6, atol=0)
        if blk.projects:
            torch.testing.assert_close(blk.shortcut.weight, rblk.shortcut.weight)
        assert blk.fixup_scale.item() == 1.0 and blk.fixup_bias_out.item() == 0.0
        assert {n for n, _ in blk.named_parameters(recurse=False)} == {
            "fixup_bias_in1", "fixup_bias_out1", "fixup_bias_in2", "fixup_scale",
            "fixup_bias_out"}
    torch.testing.assert_close(model.stem.weight, ref.stem.weight)
    assert torch.count_nonzero(model.head.weight) == 0 and torch.count_nonzero(
        model.head.bias) == 0
    assert report["block1.conv1"]["factor"] == pytest.approx(_fixup_factor(L, m))
    # at init each identity block is the identity map, and the scalars get gradients
    x = torch.randn(4, 3, 8, 8)
    h = model.stem(x)
    torch.testing.assert_close(model.block1(h), h)
    y = torch.randint(0, 10, (4,))
    nn.functional.cross_entropy(model(x), y).backward()
    assert model.head.weight.grad.abs().sum() > 0
    assert model.block1.fixup_bias_out.grad is not None


def test_fixup_scalars_act_as_the_paper_says():
    model = trainlab.preact_resnet(8, widths=(4,), norm="none")
    fixup_(model, generator=0)
    blk = model.block1
    with torch.no_grad():
        blk.conv2.weight.normal_()
        blk.fixup_scale.fill_(2.0)
        blk.fixup_bias_out.fill_(0.5)
        blk.fixup_bias_in2.fill_(0.1)
    x = torch.randn(2, 4, 6, 6)
    h = blk.act2(blk.conv1(blk.act1(x) + blk.fixup_bias_in1) + blk.fixup_bias_out1)
    conv2 = nn.functional.conv2d(h + 0.1, blk.conv2.weight, blk.conv2.bias, padding=1)
    torch.testing.assert_close(blk(x), x + conv2 * 2.0 + 0.5)


def test_fixup_on_a_torchvision_style_resnet_with_named_branches():
    model, x, _ = ZOO["resnet"]()
    for m in list(model.modules()):  # Fixup replaces the normalization
        for child, sub in list(m.named_children()):
            if isinstance(sub, nn.BatchNorm2d):
                setattr(m, child, nn.Identity())
    ref = copy.deepcopy(model)
    fixup_(model, data=x, branches="layer*.*", generator=0)
    init_model(ref, "he_normal", bias=0.0, generator=0)
    blocks = ["layer1.0", "layer1.1", "layer2.0", "layer2.1"]
    f = _fixup_factor(len(blocks), 2)
    for b in blocks:
        blk, rblk = model.get_submodule(b), ref.get_submodule(b)
        assert torch.count_nonzero(blk.conv2.weight) == 0
        torch.testing.assert_close(blk.conv1.weight, rblk.conv1.weight * f, rtol=1e-6, atol=0)
    torch.testing.assert_close(model.layer2[0].downsample[0].weight,
                               ref.layer2[0].downsample[0].weight)
    assert torch.count_nonzero(model.fc.weight) == 0
    out = model(x)
    assert torch.equal(out, torch.zeros_like(out))
    copy.deepcopy(model)(x)  # hooks survive a copy (they look their scalars up by block)


def test_fixup_errors_and_warnings():
    with pytest.raises(ValueError, match=r"fixup needs the residual branches: pass "
                       r"branches=.*Sequential"):
        init_model(trainlab.mlp([4, 8, 2]), "fixup")
    model, x, _ = ZOO["resnet"]()
    with pytest.raises(ValueError, match=r"branches='block\*' matches no module\. "
                       r"Top-level modules: conv1, bn1, relu, layer1"):
        fixup_(model, branches="block*")
    with pytest.warns(UserWarning, match=r"fixup: branches 'layer1\.0', 'layer1\.1', "
                      r"'layer2\.0', 'layer2\.1' hold normalization layers \(layer1\.0\.bn1"):
        fixup_(model, branches="layer*.*")
    with pytest.raises(ValueError, match=r"head='nope' is not a Linear/Conv layer"):
        fixup_(trainlab.preact_resnet(8, widths=(4,), norm="none"), head="nope")
    with pytest.raises(ValueError, match=r"num_branches must be an integer >= 1"):
        trainlab.init.fixup_scale(0, 2)


# -- random walk ----------------------------------------------------------------------------
@pytest.mark.parametrize("nonlinearity, N", [("relu", 400), ("tanh", 300), ("linear", 200),
                                             ("relu", 4)])
def test_random_walk_std_is_g_over_sqrt_n(nonlinearity, N):
    if nonlinearity == "relu":
        g = math.sqrt(2) * math.exp(1.2 / (max(N, 6) - 2.4))
    elif nonlinearity == "tanh":
        g = 1.13
    else:
        g = math.exp(1 / (2 * N))
    w = random_walk_(torch.empty(500, N, dtype=torch.float64), nonlinearity,
                     generator=torch.Generator().manual_seed(0))
    n = w.numel()
    # the sample std of n normals has relative sd 1/sqrt(2n): 5 sd
    assert w.std().item() == pytest.approx(g / math.sqrt(N), rel=5 / math.sqrt(2 * n))
    assert abs(w.mean().item()) < 5 * g / math.sqrt(N) / math.sqrt(n)


def test_random_walk_through_init_model_and_errors():
    model = trainlab.mlp([50, 50, 50, 3], activation="tanh")
    init_model(model, "random_walk", nonlinearity="tanh", generator=0)
    assert model.block1.linear.weight.std().item() == pytest.approx(1.13 / math.sqrt(50),
                                                                    rel=0.1)
    with pytest.raises(ValueError, match=r"nonlinearity must be one of \('relu', 'tanh', "
                       r"'linear'\)\. Received: nonlinearity='sigmoid'"):
        random_walk_(torch.empty(3, 3), "sigmoid")
    assert INITS.get("random_walk").meta["data_dependent"] is False


def test_registry_entries_are_described():
    for name in ("lsuv", "data_dependent", "fixup"):
        e = INITS.get(name)
        assert e.description and e.reference and e.meta["applies_to"] == "model"
    assert INITS.get("kraehenbuehl").name == "data_dependent"


def test_a_config_with_a_data_dependent_init_is_initialized_on_training_data():
    from trainlab.runs.config import load_config
    from trainlab.runs.run import build_model_from_config, load_data_from_config

    cfg = load_config(overrides=["data.name=blobs", "model.depth=3", "model.width=16",
                                 "model.activation=relu", "model.norm=none",
                                 "model.init=lsuv", "batch_size=64"])
    ds = load_data_from_config(cfg)
    model = build_model_from_config(cfg, ds)
    x = ds.x_train[:64]
    for name, out in _outputs(model, x, _lsuv_watched(model)).items():
        assert abs(out.var(correction=0).item() - 1) < 0.1, name
    with pytest.raises(ValueError, match=r"init 'lsuv' takes no argument 'tolerance'"):
        load_config(overrides=["data.name=blobs", "model.init=lsuv",
                               "model.init_options.tolerance=0.1"])
