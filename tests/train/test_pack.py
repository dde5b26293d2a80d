"""Vectorized packs: each member equals the sequential Trainer on it alone (weights, History),
each optimizer step by step against torch.optim on the member alone, per-member BatchNorm
statistics against torch's own layer, divergence masking against the Trainer's replay."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.engine.pack import MemberDivergedWarning, build_members, structure_key
from trainlab.nn import build_model
from trainlab.nn.norms import NORMS
from trainlab.optim import build_optimizer
from trainlab.train import Pack, PackOptimizer, PackTrainer, Trainer, train_pack
from trainlab.utils import seed_everything


def _data(n=192, d=10, classes=4, seed=0, n_test=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + n_test, d, generator=g)
    w = torch.randn(d, classes, generator=g)
    y = (x @ w).argmax(1)
    return x[:n], y[:n], x[n:], y[n:]


def _spec(norm="none", widths=(16, 16), **kw):
    return {"name": "mlp", "in_features": 10, "widths": list(widths), "out_features": 4,
            "norm": norm, **kw}


def _sequential(spec, member, data, steps, optimizer="sgd", **kw):
    """The recipe a pack member must reproduce: seed, build, Trainer(seed).fit."""
    seed_everything(member["seed"])
    model = build_model(spec, **({"init": member["init"]} if "init" in member else {}))
    okw = {k: member[k] for k in ("momentum", "weight_decay") if k in member}
    t = Trainer(model, optimizer=member.get("optimizer", optimizer), lr=member.get("lr"),
                seed=member["seed"], device="cpu", optimizer_kwargs=okw, **kw)
    return model, t.fit(data, steps=steps, batch_size=32)


def _max_diff(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa)


@pytest.mark.parametrize("norm,plan", [("none", True), ("bn", True), ("none", False),
                                       ("bn", False)])
def test_members_equal_sequential_trainer(norm, plan):
    data = _data()
    spec = _spec(norm)
    members = [{"seed": 0, "lr": 0.05, "momentum": 0.9},
               {"seed": 1, "lr": 0.02, "momentum": 0.5, "weight_decay": 1e-3},
               {"seed": 2, "lr": 0.1, "momentum": 0.0, "init": "he_normal"}]
    pack = Pack.from_specs(spec, members)
    pack.use_plan = plan
    assert (pack._plan is not None) is True  # an MLP has the fast path; plan=False forces vmap
    kw = [{k: m[k] for k in ("momentum", "weight_decay") if k in m} for m in members]
    tr = PackTrainer(pack, optimizer="momentum", lr=[m["lr"] for m in members],
                     seeds=[m["seed"] for m in members], optimizer_kwargs=kw, device="cpu",
                     log_every=4)
    hists = tr.fit(data, steps=13, batch_size=32, eval_every=6)
    out = tr.unstack()
    for i, mem in enumerate(members):
        ref, h = _sequential(spec, mem, data, 13, optimizer="momentum", log_every=4)
        assert _max_diff(ref, out[i]) < 2e-5
        assert [r["step"] for r in h.metrics] == [r["step"] for r in hists[i].metrics]
        for a, b in zip(h.metrics, hists[i].metrics):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
            assert a["lr"] == pytest.approx(b["lr"])
            if "test_acc" in a:
                assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-6)
                assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5)
        assert isinstance(out[i], type(ref)) and out[i].training


@pytest.mark.parametrize("norm,plan", [("none", True), ("bn", True), ("none", False)])
def test_members_with_one_seed_share_their_batches_and_equal_the_trainer(norm, plan):
    """An lr sweep (one seed, so one init and one batch order): the batch is drawn once and
    the first Linear is one GEMM for all members, and each member still equals the Trainer
    on it alone."""
    data = _data()
    spec = _spec(norm)
    members = [{"seed": 4, "lr": 0.05, "momentum": 0.9}, {"seed": 4, "lr": 0.2, "momentum": 0.5},
               {"seed": 4, "lr": 0.01, "momentum": 0.0}]
    pack = Pack.from_specs(spec, members)
    pack.use_plan = plan
    kw = [{"momentum": m["momentum"]} for m in members]
    tr = PackTrainer(pack, optimizer="momentum", lr=[m["lr"] for m in members],
                     seeds=[4, 4, 4], optimizer_kwargs=kw, device="cpu", log_every=4)
    hists = tr.fit(data, steps=11, batch_size=32, eval_every=6)
    assert tr.batcher.shared
    xb, yb = tr.batcher.next()
    assert xb.shape == (32, 10) and yb.shape == (32,)  # drawn once, not once per member
    out = tr.unstack()
    for i, mem in enumerate(members):
        ref, h = _sequential(spec, mem, data, 11, optimizer="momentum", log_every=4)
        assert _max_diff(ref, out[i]) < 2e-5
        for a, b in zip(h.metrics, hists[i].metrics):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert _max_diff(out[0], out[1]) > 1e-3  # the lrs differ: the members did not collapse


def test_pack_of_one_equals_the_trainer_and_train_pack_api():
    data = _data()
    spec = _spec("ln")
    res = train_pack(spec, [{"seed": 5, "lr": 3e-3}], data, steps=9, batch_size=32,
                     optimizer="adam", log_every=3)
    ref, h = _sequential(spec, {"seed": 5, "lr": 3e-3}, data, 9, optimizer="adam", log_every=3)
    # no vmap, the model's own kernels; only the optimizer's arithmetic is written anew
    assert _max_diff(ref, res.models[0]) < 1e-6
    assert res.histories[0].status == "done" and len(res.histories) == 1
    assert [r["train_loss"] for r in h.metrics] == pytest.approx(
        [r["train_loss"] for r in res.histories[0].metrics], rel=1e-6)


def test_schedule_and_clip_per_member_equal_trainer():
    data = _data()
    spec = _spec()
    members = [{"seed": 0, "lr": 0.2}, {"seed": 3, "lr": 0.05}]
    res = train_pack(spec, members, data, steps=10, batch_size=32, optimizer="sgd",
                     schedule="cosine", clip_norm=0.5, log_every=5)
    for i, mem in enumerate(members):
        ref, h = _sequential(spec, mem, data, 10, schedule="cosine", clip_norm=0.5, log_every=5)
        assert _max_diff(ref, res.models[i]) < 2e-5
        assert [r["lr"] for r in h.metrics] == pytest.approx(
            [r["lr"] for r in res.histories[i].metrics])


def test_convnet_vmap_path_with_batchnorm_equals_trainer():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 1, 12, generator=g)
    y = (x.mean((1, 2)) > 0).long()
    spec = {"name": "convnet", "in_channels": 1, "channels": [4, 6], "out_features": 2,
            "dims": 1, "norm": "bn"}
    members = [{"seed": 0, "lr": 0.05}, {"seed": 1, "lr": 0.1}]
    pack = Pack(build_members(spec, members))
    assert pack._plan is None  # convolutions run under vmap
    tr = PackTrainer(pack, optimizer="momentum", lr=[0.05, 0.1], seeds=[0, 1], log_every=4)
    tr.fit((x, y), steps=8, batch_size=32)
    for i, mem in enumerate(members):
        ref, _ = _sequential(spec, mem, (x, y), 8, optimizer="momentum", log_every=4)
        assert _max_diff(ref, tr.unstack()[i]) < 2e-5


@pytest.mark.parametrize("norm", [e.name for e in NORMS])
def test_every_norm_of_the_registry_per_member(norm):
    """Each registered norm in a convnet (vmap path) and, where it takes (N, C), an MLP."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 2, 8, generator=g)
    y = (x.mean((1, 2)) > 0).long()
    specs = [{"name": "convnet", "in_channels": 2, "channels": [4], "out_features": 2,
              "dims": 1, "norm": norm}]
    if NORMS.get(norm).meta.get("min_rank", 2) <= 2:
        specs.append({"name": "mlp", "in_features": 16, "widths": [32], "out_features": 2,
                      "norm": norm})
    members = [{"seed": 0, "lr": 0.05}, {"seed": 1, "lr": 0.1}]
    for spec in specs:
        pack = Pack(build_members(spec, members))
        tr = PackTrainer(pack, optimizer="momentum", lr=[0.05, 0.1], seeds=[0, 1], log_every=3)
        tr.fit((x, y), steps=3, batch_size=32)
        for i, mem in enumerate(members):
            ref, _ = _sequential(spec, mem, (x, y), 3, optimizer="momentum", log_every=3)
            assert _max_diff(ref, tr.unstack()[i]) < 2e-5


# -- optimizers, step by step against torch.optim on the member alone ----------------------
_OPTIMS = [
    ("sgd", [{"lr": 0.1}, {"lr": 0.03, "weight_decay": 0.01}, {"lr": 0.2}]),
    ("momentum", [{"lr": 0.1, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.0},
                  {"lr": 0.02, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.1}]),
    ("nesterov", [{"lr": 0.1, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.6,
                                                 "weight_decay": 0.01}, {"lr": 0.3}]),
    ("adam", [{"lr": 1e-2}, {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.1},
              {"lr": 1e-1, "eps": 1e-3}]),
    ("adamw", [{"lr": 1e-2}, {"lr": 3e-3, "betas": (0.5, 0.9), "weight_decay": 0.3},
               {"lr": 1e-1, "weight_decay": 0.0}]),
    ("rmsprop", [{"lr": 1e-2}, {"lr": 3e-3, "alpha": 0.99, "weight_decay": 0.1},
                 {"lr": 1e-2, "momentum": 0.9}]),
    ("adagrad", [{"lr": 1e-1}, {"lr": 3e-2, "lr_decay": 0.1, "weight_decay": 0.01},
                 {"lr": 0.5, "eps": 1e-3}]),
    ("adadelta", [{"lr": 1.0}, {"lr": 0.5, "rho": 0.95}, {"lr": 2.0, "weight_decay": 0.1}]),
]


@pytest.mark.parametrize("name,hypers", _OPTIMS, ids=[o[0] for o in _OPTIMS])
def test_pack_optimizer_matches_torch_step_by_step(name, hypers):
    g = torch.Generator().manual_seed(0)
    m = len(hypers)
    shapes = [(5, 3), (3,)]
    init = [torch.randn(m, *s, generator=g, dtype=torch.float64) for s in shapes]
    stacked = [t.clone().requires_grad_() for t in init]
    members = [[init[k][i].clone().requires_grad_() for k in range(len(shapes))]
               for i in range(m)]
    torch_opts = [build_optimizer(name, ps, **h) for ps, h in zip(members, hypers)]
    standins = [build_optimizer(name, [torch.zeros((), requires_grad=True)], **h)
                for h in hypers]
    pack_opt = PackOptimizer.from_torch(stacked, standins)
    for _ in range(6):
        grads = [torch.randn(m, *s, generator=g, dtype=torch.float64) for s in shapes]
        for k, p in enumerate(stacked):
            p.grad = grads[k].clone()
        pack_opt.step()
        for i, (ps, opt) in enumerate(zip(members, torch_opts)):
            for k, p in enumerate(ps):
                p.grad = grads[k][i].clone()
            opt.step()
            for k, p in enumerate(ps):
                torch.testing.assert_close(stacked[k][i].detach(), p.detach(), rtol=1e-10,
                                           atol=1e-12)


def test_pack_optimizer_refuses_mixed_kinds_and_unsupported_flags():
    p = [torch.zeros(2, 3, requires_grad=True)]
    w = [torch.zeros((), requires_grad=True)]
    with pytest.raises(ValueError, match="one kind of optimizer"):
        PackOptimizer.from_torch(p, [build_optimizer("sgd", w), build_optimizer("adam", w)])
    with pytest.raises(ValueError, match="amsgrad=True"):
        PackOptimizer.from_torch(p[:1], [torch.optim.Adam(w, amsgrad=True)])


# -- BatchNorm statistics per member --------------------------------------------------------
@pytest.mark.parametrize("plan", [True, False])
def test_batchnorm_statistics_per_member_against_torch(plan):
    spec = _spec("bn", widths=(6,))
    models = build_members(spec, [{"seed": 0}, {"seed": 1}, {"seed": 2}])
    pack = Pack(models)
    pack.use_plan = plan
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(3, 8, 10, generator=g) * torch.tensor([1.0, 3.0, 0.2]).view(3, 1, 1)
    pack.train()
    for _ in range(2):
        pack(xs)
    for i, model in enumerate(models):
        # torch's own layer on that member's batch alone
        lin = model.block1.linear
        bn = nn.BatchNorm1d(6)
        for _ in range(2):
            bn(lin(xs[i]).detach())
        st = pack.member_state(i)
        torch.testing.assert_close(st["block1.norm.running_mean"], bn.running_mean)
        torch.testing.assert_close(st["block1.norm.running_var"], bn.running_var)
        assert int(st["block1.norm.num_batches_tracked"]) == 2
    pack.eval()
    out = pack(xs)
    for i, member in enumerate(pack.unstack()):
        member.eval()
        torch.testing.assert_close(out[i], member(xs[i]))
    shared = pack(xs[0], shared=True)
    torch.testing.assert_close(shared[1], pack.unstack([1])[0].eval()(xs[0]))


# -- divergence -----------------------------------------------------------------------------
def test_diverging_member_is_frozen_and_reported_others_unchanged():
    data = _data()
    spec = _spec()
    members = [{"seed": 0, "lr": 0.05}, {"seed": 1, "lr": 1e18}, {"seed": 2, "lr": 0.1}]
    with pytest.warns(MemberDivergedWarning, match="member 1 .* diverged and is frozen"):
        res = train_pack(spec, members, data, steps=12, batch_size=32, optimizer="sgd",
                         log_every=4)
    h = res.histories
    assert h[1].status == "diverged" and h[0].status == h[2].status == "done"
    [d] = res.divergences
    assert d.member == 1
    # the Trainer on that member alone locates the same step and module
    seed_everything(1)
    solo = build_model(spec)
    ref = Trainer(solo, optimizer="sgd", lr=1e18, seed=1, log_every=4,
                  on_divergence="stop").fit(data, steps=12, batch_size=32)
    assert ref.status == "diverged"
    assert (d.step, d.module, d.divergence.kind) == (ref.divergence.step, ref.divergence.module,
                                                     ref.divergence.kind)
    assert "member 1" in d.message()
    frozen = res.models[1].state_dict()
    assert all(torch.isfinite(v).all() for v in frozen.values())  # the last finite state
    assert len(h[1].metrics) < len(h[0].metrics)
    for i in (0, 2):
        model, _ = _sequential(spec, members[i], data, 12, log_every=4)
        assert _max_diff(model, res.models[i]) < 2e-5


def test_probes_per_member():
    data = _data()
    res = train_pack(_spec(), [{"seed": 0, "lr": 0.1}, {"seed": 1, "lr": 0.01}], data,
                     steps=6, batch_size=32, optimizer="sgd", log_every=3, probes=True)
    for i, model in enumerate(res.models):
        rows = {(s, layer, q): v for s, layer, q, v in res.histories[i].probe_records}
        w = model.block1.linear.weight.detach()
        assert rows[(6, "block1.linear", "w_norm")] == pytest.approx(w.norm().item(), rel=1e-5)
        assert rows[(6, "head", "w_std")] == pytest.approx(model.head.weight.std().item(),
                                                           rel=1e-5)
        assert math.isfinite(rows[(3, "block1.linear", "grad_norm")])


# -- bad input ------------------------------------------------------------------------------
def test_bad_input_errors():
    a = build_model(_spec())
    b = build_model(_spec(widths=(16, 8)))
    assert structure_key(a) != structure_key(b)
    with pytest.raises(ValueError, match="member 1 does not have the structure of member 0"):
        Pack([a, b])
    with pytest.raises(ValueError, match="non-empty sequence"):
        Pack([])
    with pytest.raises(ValueError, match=r"unknown key\(s\): lrr \(did you mean lr"):
        train_pack(_spec(), [{"seed": 0, "lrr": 0.1}], _data(), steps=1)
    with pytest.raises(ValueError, match=r"lr must be one value or one per member \(2\)"):
        PackTrainer(Pack([a, build_model(_spec())]), lr=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="member must be in"):
        Pack([a]).unstack([3])
    x, y, _, _ = _data()
    with pytest.raises(ValueError, match=r"the data does not fit the model: examples of shape "
                                         r"\(7,\)"):
        PackTrainer(Pack([a, build_model(_spec())])).fit((x[:, :7], y), steps=1)
