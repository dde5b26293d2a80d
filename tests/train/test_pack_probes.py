"""Probes inside packs: every member's records and histograms equal those of the same probe on
the member trained alone (``Trainer(model, probes=...)``), on the fast path (MLPs with and
without batch norm, relu and tanh), under vmap (a convnet, and MLPs forced to vmap) and in a
pack of one; train_grid packs runs with such probes and gives the same records; probes a
pack cannot run are refused with a clear error.

Tolerances: a member's tensors in the pack differ from the member alone by float rounding
(the batched matmul sums in another order), so moments, extremes and percentiles are compared
with ``|a - b| <= 1e-5 + 1e-4 |a|``. The percentiles and saturated fraction use the probe's
own fixed subsample (the same indices as alone), so they need no allowance for subsample
error; the saturated and dead fractions may differ only where a value within rounding of the
threshold flips, allowed as one unit or one subsample element (``1/40``). Histograms: the
same bins and total, counts within 2 (values at a bin edge).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.engine.grid import GridRun, pack_key, plan_grid, train_grid
from trainlab.engine.pack import probe_problem, probe_settings
from trainlab.models import convnet
from trainlab.nn import build_model
from trainlab.probes import (
    ActivationStats,
    GradientStats,
    JacobianSpectrum,
    Schedule,
    UpdateRatio,
    WeightStats,
)
from trainlab.train import Pack, PackTrainer, Trainer
from trainlab.utils import seed_everything

SEEDS, LRS = [0, 1, 2], [0.1, 0.05, 0.2]
FRACTIONS = ("act_saturated", "act_dead")


def _data(n=200, d=10, classes=4, seed=0):
    # 200 examples in batches of 32: the last batch of an epoch has 8 (another tensor size,
    # so another subsample draw, and tensors smaller than the subsample)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, classes, generator=g)).argmax(1)
    return x, y


def _spec(norm="none", act="relu"):
    return {"name": "mlp", "in_features": 10, "widths": [40, 40], "out_features": 4,
            "norm": norm, "activation": act}


def _probes():
    return [ActivationStats(every=2), GradientStats(every=3), WeightStats(every=4),
            UpdateRatio(every=3)]


def _close(q: str, a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if q in FRACTIONS:
        return abs(a - b) <= 1 / 40
    return abs(a - b) <= 1e-5 + 1e-4 * abs(a)


def assert_same_records(ref, got):
    """``got`` (a pack member's History) holds ``ref``'s (the member alone) probe records
    and histograms: the same rows in the same order, values within the tolerances above."""
    assert [r[:3] for r in got.probe_records] == [r[:3] for r in ref.probe_records]
    bad = [(a, b[3]) for a, b in zip(ref.probe_records, got.probe_records)
           if not _close(a[2], a[3], b[3])]
    assert not bad, bad[:5]
    key = [(h["step"], h["layer"], h["quantity"]) for h in ref.histograms]
    assert [(h["step"], h["layer"], h["quantity"]) for h in got.histograms] == key
    for a, b in zip(ref.histograms, got.histograms):
        assert len(a["counts"]) == len(b["counts"]) and sum(a["counts"]) == sum(b["counts"])
        assert max(abs(u - v) for u, v in zip(a["counts"], b["counts"])) <= 2, (a, b)
        assert a["edges"] == pytest.approx(b["edges"], rel=1e-4, abs=1e-9)


def _members(build, seeds=SEEDS):
    out = []
    for s in seeds:
        seed_everything(s)
        out.append(build())
    return out


def _alone(build, seed, lr, probes, data, steps=9, batch_size=32, **kw):
    seed_everything(seed)
    t = Trainer(build(), lr=lr, seed=seed, device="cpu", probes=probes, log_every=4, **kw)
    return t.fit(data, steps=steps, batch_size=batch_size)


def _pack(build, probes, data, plan=True, seeds=SEEDS, lrs=LRS, steps=9, batch_size=32,
          **kw):
    pack = Pack(_members(build, seeds))
    pack.use_plan = plan
    tr = PackTrainer(pack, lr=lrs[:len(seeds)], seeds=seeds, device="cpu", log_every=4,
                     probes=probes, **kw)
    return tr, tr.fit(data, steps=steps, batch_size=batch_size)


# -- each member equals the probe on the member alone ----------------------------------------
@pytest.mark.parametrize("norm,act,plan", [("none", "relu", True), ("bn", "tanh", True),
                                           ("bn", "relu", True), ("none", "tanh", True),
                                           ("bn", "relu", False)])
def test_every_member_records_what_the_probe_records_alone(norm, act, plan):
    data = _data()
    build = lambda: build_model(_spec(norm, act))  # noqa: E731
    tr, hists = _pack(build, _probes(), data, plan=plan)
    assert tr.pack.runs_plan is plan
    for j, (s, lr) in enumerate(zip(SEEDS, LRS)):
        ref = _alone(build, s, lr, _probes(), data)
        assert_same_records(ref, hists[j])
        got = {(r[0], r[1], r[2]) for r in hists[j].probe_records}
        # every kind is there: moments, percentiles, the activation's own rule, gradients
        # w.r.t. outputs and weights, weights, update ratios
        rule = "act_dead" if act == "relu" else "act_saturated"
        for q in ("pre_p50", "act_std", rule, "grad_out_norm", "grad_w_norm", "w_std",
                  "update_ratio"):
            assert any(k[2] == q for k in got), q
    # the members differ (their own seeds and learning rates, not member 0 three times)
    v = [{r[:3]: r[3] for r in h.probe_records}[(8, "block2.act", "act_std")] for h in hists]
    assert len(set(v)) == 3


def test_gradient_stats_per_member_with_histograms_every_step():
    data = _data()
    build = lambda: build_model(_spec("none", "tanh"))  # noqa: E731

    def probes():
        return [GradientStats(every=1, hist_every=1)]

    _, hists = _pack(build, probes(), data, steps=5)
    for j, (s, lr) in enumerate(zip(SEEDS, LRS)):
        ref = _alone(build, s, lr, probes(), data, steps=5)
        assert len(ref.histograms) == 5 * 6  # grad_out and grad_w of 3 layers, every step
        assert_same_records(ref, hists[j])


def test_convnet_under_vmap_and_a_pack_of_one():
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(96, 1, 8, 8, generator=g), torch.randint(0, 3, (96,), generator=g))
    build = lambda: convnet(1, [4, 6], 3, norm="bn")  # noqa: E731
    tr, hists = _pack(build, _probes(), data, steps=7, batch_size=16)
    assert tr.pack._plan is None  # convolutions: vmap
    for j, (s, lr) in enumerate(zip(SEEDS, LRS)):
        assert_same_records(_alone(build, s, lr, _probes(), data, steps=7, batch_size=16),
                            hists[j])
    tr, hists = _pack(build, _probes(), data, seeds=[1], lrs=[0.05], steps=7, batch_size=16)
    assert_same_records(_alone(build, 1, 0.05, _probes(), data, steps=7, batch_size=16),
                        hists[0])


@pytest.mark.parametrize("plan", [True, False])
def test_in_place_activations(plan):
    # nn.ReLU(inplace=True) overwrites its input, the Linear's output: the pre-activation is
    # a copy, as the probe takes it, and the gradient hook sees the same tensor
    data = _data()

    def build():
        return nn.Sequential(nn.Linear(10, 40), nn.ReLU(inplace=True), nn.Linear(40, 40),
                             nn.Tanh(), nn.Linear(40, 4))

    def probes():
        return [ActivationStats(every=1, hist_every=0), GradientStats(every=1, hist_every=0)]

    tr, hists = _pack(build, probes(), data, plan=plan, steps=5)
    assert tr.pack.runs_plan is plan
    for j, (s, lr) in enumerate(zip(SEEDS, LRS)):
        assert_same_records(_alone(build, s, lr, probes(), data, steps=5), hists[j])


def test_probe_names_default_schedules_and_clip():
    data = _data()
    build = lambda: build_model(_spec("none", "relu"))  # noqa: E731

    def custom():
        return [ActivationStats(every=Schedule(3, log=True), percentiles=(10, 90),
                                sample_size=100, pre=False, layers="block2.act")]

    # names: each probe's default schedule (log-spaced steps 0, 1, 2, 4, 8 here)
    for probes in (lambda: ["activations", "gradients", "weights", "updates"],
                   lambda: "activations,gradients", custom):
        _, hists = _pack(build, probes(), data, steps=12, clip_norm=0.5)
        for j, (s, lr) in enumerate(zip(SEEDS, LRS)):
            assert_same_records(_alone(build, s, lr, probes(), data, steps=12, clip_norm=0.5),
                                hists[j])
    assert {r[1] for r in hists[0].probe_records} == {"block2.act"}
    assert "pre_mean" not in {r[2] for r in hists[0].probe_records}


def test_a_diverging_member_keeps_its_records_up_to_the_divergence():
    data = _data()
    build = lambda: build_model(_spec("none", "relu"))  # noqa: E731

    def probes():
        return [ActivationStats(every=1, hist_every=0)]

    tr, hists = _pack(build, probes(), data, lrs=[0.1, 1e6, 0.05], steps=12)
    assert hists[1].status == "diverged" and hists[0].status == "done"
    ref = _alone(build, 1, 1e6, probes(), data, steps=12, on_divergence="stop")
    assert ref.status == "diverged"
    assert [r[:3] for r in hists[1].probe_records] == [r[:3] for r in ref.probe_records]
    assert max(r[0] for r in hists[0].probe_records) == 11
    assert max(r[0] for r in hists[1].probe_records) < 11


def test_probes_read_the_host_only_at_the_sync_points(monkeypatch):
    # the values stay on the device between sync points and come back with the trainer's
    # own host read: as many reads (tolist, item, cpu) with probes at every step as without
    data = _data()
    reads = {"n": 0}
    for name in ("tolist", "item", "cpu"):
        orig = getattr(torch.Tensor, name)

        def counted(self, *a, _orig=orig, **k):
            reads["n"] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    counts = []
    for probes in (False, [ActivationStats(every=1), GradientStats(every=1),
                           WeightStats(every=1), UpdateRatio(every=1)]):
        pack = Pack(_members(lambda: build_model(_spec())))
        tr = PackTrainer(pack, lr=LRS, seeds=SEEDS, device="cpu", log_every=4, probes=probes)
        reads["n"] = 0
        h = tr.fit(data, steps=8, batch_size=32)
        counts.append(reads["n"])
    assert counts[0] == counts[1]
    assert {r[0] for r in h[0].probe_records} == set(range(8))


# -- train_grid --------------------------------------------------------------------------------
def _grid_run(seed, data, label, probes, lr=0.1):
    seed_everything(seed)
    trainer = {"device": "cpu", "on_divergence": "stop", "progress": False, "log_every": 4,
               "lr": lr, "probes": probes}
    return GridRun(build_model(_spec("bn", "tanh")), data, label, seed=seed, steps=9,
                   batch_size=32, trainer=trainer)


def test_train_grid_packs_runs_with_probes_and_gives_the_same_records():
    data = _data()

    def probes():
        return [ActivationStats(every=2), GradientStats(every=3)]

    runs = [_grid_run(s, data, f"s{s}", probes(), lr) for s, lr in zip(SEEDS, LRS)]
    runs.append(_grid_run(5, data, "other-every", [ActivationStats(every=5)]))
    runs.append(_grid_run(6, data, "jacobian", [JacobianSpectrum(every=4)]))
    groups = plan_grid(runs)
    by_member = {i: g for g in groups for i in g.members}
    assert by_member[0].packed and by_member[0].members == [0, 1, 2]
    assert not by_member[3].packed and "probes" in by_member[3].reason
    assert not by_member[4].packed and "JacobianSpectrum" in by_member[4].reason
    assert pack_key(runs[0])[0] == pack_key(runs[1])[0] != pack_key(runs[3])[0]

    refs = []
    for s, lr in zip(SEEDS, LRS):
        ref_probes = probes()
        seed_everything(s)
        t = Trainer(build_model(_spec("bn", "tanh")), lr=lr, seed=s, device="cpu",
                    probes=ref_probes, log_every=4, on_divergence="stop", progress=False)
        refs.append((t.fit(data, steps=9, batch_size=32), ref_probes))
    histories, groups = train_grid(runs[:3])
    assert [g.packed for g in groups] == [True]
    for run, h, (ref, ref_probes) in zip(runs, histories, refs):
        assert_same_records(ref, h)
        # the run's own probe instances hold its records, as after Trainer.fit
        for p, q in zip(run.trainer["probes"], ref_probes):
            assert [r[:3] for r in p.records()] == [r[:3] for r in q.records()]
            assert len(p.histograms()) == len(q.histograms())


def test_probe_settings_keys():
    assert probe_settings([ActivationStats(every=2)]) == probe_settings([ActivationStats(every=2)])
    assert probe_settings([ActivationStats(every=2)]) != probe_settings([ActivationStats(every=3)])
    assert probe_settings([ActivationStats(seed=1)]) != probe_settings([ActivationStats(seed=2)])
    assert probe_settings("activations") == probe_settings(["activations"])
    assert probe_settings([GradientStats(weights=False)]) != probe_settings([GradientStats()])


# -- what a pack cannot run --------------------------------------------------------------------
def test_unsupported_probes_raise_a_clear_error():
    data = _data()
    pack = Pack(_members(lambda: build_model(_spec())))
    with pytest.raises(ValueError, match=r"cannot run JacobianSpectrum.*ActivationStats"):
        PackTrainer(pack, probes=[ActivationStats(), JacobianSpectrum()])
    with pytest.raises(ValueError, match="cannot run JacobianSpectrum"):
        PackTrainer(pack, probes="jacobian")
    with pytest.raises(ValueError, match="cannot run JacobianSpectrum"):
        PackTrainer(pack, probes="all")
    with pytest.raises(ValueError, match="ActivationStats with probe_data"):
        PackTrainer(pack, probes=[ActivationStats(probe_data=data[0][:16])])
    with pytest.raises(ValueError, match="unknown probe"):
        PackTrainer(pack, probes=["activationz"])

    class MyStats(ActivationStats):
        pass

    with pytest.raises(ValueError, match="cannot run MyStats"):
        PackTrainer(pack, probes=[MyStats()])
    # a container is no step of the fast path; under vmap it can be watched
    with pytest.raises(ValueError, match=r"\['block1'\] are not among them.*use_plan"):
        PackTrainer(pack, probes=[ActivationStats(layers="block1")])
    model = build_model(_spec())
    assert "use_plan" in probe_problem(model, [ActivationStats(layers="block1")])
    assert "no pack form" in probe_problem(model, [JacobianSpectrum()])
    assert probe_problem(model, ["activations", "gradients", "weights", "updates"]) is None
    pack.use_plan = False
    tr = PackTrainer(pack, lr=0.1, device="cpu", probes=[ActivationStats(layers="block1",
                                                                         every=1)])
    h = tr.fit(data, steps=2, batch_size=32)
    assert {r[1] for r in h[0].probe_records} == {"block1"}
    # probes=True keeps its sync-point weight statistics
    tr = PackTrainer(Pack(_members(lambda: build_model(_spec()))), lr=0.1, device="cpu",
                     log_every=2, probes=True)
    h = tr.fit(data, steps=2, batch_size=32)
    assert {r[2] for r in h[0].probe_records} == {"w_mean", "w_std", "w_norm", "w_min",
                                                  "w_max", "grad_norm"}
