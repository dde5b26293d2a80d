"""The probe registry (names, aliases, "all", build_probes) and the probes written for the
studies (RowSpread, SameSignRows, UnitPercentiles, LayerMoments, ActiveSaturated), each
checked against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from trainlab.models.builders import mlp
from trainlab.probes import (
    PROBE_NAMES,
    PROBES,
    ActiveSaturated,
    AtLogPoints,
    LayerMoments,
    Probe,
    RowSpread,
    SameSignRows,
    Schedule,
    UnitPercentiles,
    build_probes,
    every_run_probes,
    resolve_probe_names,
)
from trainlab.registry import Registry

FIVE = ["activations", "gradients", "weights", "updates", "jacobian"]


# -- the registry ---------------------------------------------------------------------------
def test_probes_is_the_probe_family_of_trainlab_list():
    assert Registry.family_of("probe") is PROBES
    for name in (*FIVE, "landscape", "row_spread", "same_sign", "unit_percentiles",
                 "layer_moments", "active_saturated"):
        assert name in PROBES
    for e in PROBES:
        assert e.description and e.reference, e.name
        assert "every" in e.meta["options"], e.name  # what probe_every sets


@pytest.mark.parametrize("entry", list(PROBES), ids=lambda e: e.name)
def test_every_probe_builds_by_name_and_alias(entry):
    for name in (entry.name, *entry.aliases, entry.name.upper().replace("_", "-")):
        probe = PROBES.build(name)
        assert type(probe) is entry.factory and isinstance(probe, Probe)
        assert resolve_probe_names(name) == [entry.name]
    probe = build_probes([entry.name], every=3)[0]
    assert type(probe) is entry.factory and probe.schedule(3) and not probe.schedule(4)


def test_former_aliases_still_resolve():
    aliases = {"activation": "activations", "act": "activations", "gradient": "gradients",
               "grad": "gradients", "grads": "gradients", "weight": "weights",
               "update": "updates", "update_ratio": "updates", "jacobians": "jacobian",
               "jacobian_spectrum": "jacobian"}
    for alias, name in aliases.items():
        assert resolve_probe_names(alias) == [name]


def test_all_is_the_five_every_run_probes_and_the_others_come_by_name():
    assert every_run_probes() == FIVE
    assert resolve_probe_names("all") == FIVE
    assert resolve_probe_names(["landscape", "all"]) == [*FIVE, "landscape"]
    assert resolve_probe_names("jacobian, Activations,act") == ["activations", "jacobian"]
    assert list(PROBE_NAMES)[:6] == [*FIVE, "landscape"]
    assert PROBE_NAMES["landscape"] == "LossLandscape"


def test_unknown_names_list_close_matches():
    with pytest.raises(ValueError, match=r"unknown probe 'gradiens'\. Did you mean gradients\? "
                                         r"Allowed: activations, gradients, weights, updates, "
                                         r"jacobian, all; by name only: landscape, row_spread"):
        resolve_probe_names("gradiens")
    with pytest.raises(ValueError, match="Did you mean landscape"):
        build_probes(["landscap"])
    with pytest.raises(ValueError, match="Did you mean row_spread"):
        resolve_probe_names("row_spred")
    with pytest.raises(ValueError, match="Did you mean 'unit_percentiles'"):
        PROBES.get("unit_percentile")
    with pytest.raises(ValueError, match="list of names"):
        resolve_probe_names(3)


def test_build_probes_every_and_last_step():
    probes = build_probes(["activations", "updates"], every=5, last_step=12)
    act, upd = probes
    assert [s for s in range(20) if act.schedule(s)] == [0, 5, 10, 12, 15]
    assert act.hist_schedule(12) and act.hist_schedule(10) and not act.hist_schedule(11)
    assert not any(upd.hist_schedule(s) for s in range(20))  # no histograms: none added
    default = build_probes(["weights"], last_step=99)[0]
    assert [s for s in range(101) if default.schedule(s)] == [0, 1, 2, 4, 8, 16, 32, 50, 99,
                                                              100]


def test_old_places_give_the_same_objects():
    from trainlab.runs import config, run

    assert config.resolve_probe_names is resolve_probe_names
    assert config.PROBE_NAMES is PROBE_NAMES
    assert run.build_probes is build_probes


def test_trainer_builds_probes_by_name():
    from trainlab.engine.trainer import Trainer

    t = Trainer(mlp(4, [8], 2), lr=0.1, probes="activations,row_spread", progress=False)
    assert [type(p).__name__ for p in t.probes] == ["ActivationStats", "RowSpread"]
    with pytest.raises(ValueError, match="Did you mean same_sign"):
        Trainer(mlp(4, [8], 2), lr=0.1, probes=["same_sig"], progress=False)


# -- the study probes against independent computations -----------------------------------
def _data(n=32, d=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


def _spread(m: np.ndarray) -> float:
    m = m.reshape(len(m), -1).astype(np.float64)
    norms = np.sqrt((m ** 2).sum(1))
    if norms.mean() == 0:
        return 0.0
    return float(np.sqrt(((m - m.mean(0)) ** 2).sum(1)).mean() / norms.mean())


def _same_sign(g: np.ndarray) -> float:
    live = one = 0
    for row in g.reshape(len(g), -1):
        nz = row[row != 0]
        if len(nz):
            live += 1
            one += bool((nz > 0).all() or (nz < 0).all())
    return one / live if live else math.nan


def test_row_spread_and_same_sign_against_numpy(sgd_steps):
    torch.manual_seed(0)
    model = mlp(5, [6, 6], 3, activation="tanh")
    x, y = _data()
    rs = RowSpread(every=1).attach(model)
    ss = SameSignRows("block*.linear", every=2, follow=2, unit=-1).attach(model)
    seen: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}

    class Spy:  # the weights and gradients after backward, by step
        def step_begin(self, step):
            pass

        def after_backward(self, step):
            seen[step] = {n: (m.weight.detach().numpy().copy(), m.weight.grad.numpy().copy())
                          for n, m in model.named_modules() if isinstance(m, nn.Linear)}

        def step_end(self, step):
            pass

    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sgd_steps(model, opt, [rs, ss, Spy()], [(x, y)] * 3)
    rows = rs.records()
    assert {r[1] for r in rows} == {"block1.linear", "block2.linear", "head"}
    assert len(rows) == 3 * 3 * 2
    for step, layer, q, v in rows:
        w, g = seen[step][layer]
        assert v == pytest.approx(_spread(w if q == "weight_row_spread" else g), rel=1e-12)
    rows = ss.records()
    assert sorted({r[0] for r in rows}) == [0, 2]
    for step, layer, q, v in rows:
        w, g = seen[step][layer]
        ref = {"grad_same_sign": _same_sign(g), "w0": float(w[-1, 0]), "w1": float(w[-1, 1])}
        assert v == ref[q], (step, layer, q)


def test_same_sign_is_one_for_per_example_rows_of_positive_inputs():
    # one example per step and non-negative inputs: every gradient row is delta_i * x
    torch.manual_seed(0)
    model = mlp(4, [], 3)
    p = SameSignRows(every=1).attach(model)
    x, y = _data(1, 4)
    p.observe(x.abs(), y, nn.functional.cross_entropy)
    assert p.records() == [(0, "head", "grad_same_sign", 1.0)]
    spread = RowSpread().attach(mlp(4, [5], 2, init="zeros"))
    spread.observe(x.abs(), y % 2, nn.functional.cross_entropy)
    assert {q: v for _, layer, q, v in spread.records() if layer == "block1.linear"} == {
        "weight_row_spread": 0.0, "grad_row_spread": 0.0}


def _inputs_of(model, x, name, inputs):
    got = []
    mod = model.get_submodule(name)
    h = mod.register_forward_hook(lambda m, a, out: got.append(a[0] if inputs else out))
    with torch.no_grad():
        model(x)
    h.remove()
    return got[0].double().numpy()


@pytest.mark.parametrize("inputs", [True, False])
def test_unit_percentiles_against_torch_quantile_in_float64(inputs):
    torch.manual_seed(0)
    model = mlp(5, [7, 7], 3, activation="sigmoid").eval()
    x, y = _data(41)
    p = UnitPercentiles("block2.act", inputs=inputs, percentiles=(15, 50, 85)).attach(model)
    p.observe(x, step=4)
    h = _inputs_of(model, x, "block2.act", inputs)
    ref = torch.quantile(torch.from_numpy(h), torch.tensor([0.15, 0.5, 0.85],
                                                           dtype=torch.float64), dim=0)
    key = "in" if inputs else "out"
    rows = p.records()
    assert len(rows) == 3 * 7
    assert rows[:3] == [(4, "block2.act[0]", f"{key}_p{q}", rows[k][3])
                        for k, q in enumerate(("15", "50", "85"))]
    steps, vals = p.values()
    assert steps == [4] and vals.shape == (1, 3, 7)
    torch.testing.assert_close(vals[0], ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(vals[0].numpy(), np.percentile(h, [15, 50, 85], axis=0),
                               rtol=1e-6, atol=1e-6)


def test_layer_moments_against_numpy():
    torch.manual_seed(0)
    model = mlp(5, [9, 9], 3, activation="tanh").eval()
    with torch.no_grad():
        model.block1.linear.weight.mul_(4.0)  # some outputs beyond |h| = 0.95
    x, _ = _data(50)
    p = LayerMoments(threshold=0.95).attach(model)
    p.observe(x, step=0)
    got = {(layer, q): v for _, layer, q, v in p.records()}
    for name in ("block1.act", "block2.act"):
        h = _inputs_of(model, x, name, False)
        assert got[(name, "out_mean")] == pytest.approx(h.mean(), rel=1e-5, abs=1e-7)
        assert got[(name, "out_std")] == pytest.approx(h.std(ddof=1), rel=1e-5)
        assert got[(name, "out_abs_gt")] == pytest.approx((np.abs(h) > 0.95).mean(), abs=1e-7)
    assert 0 < got[("block1.act", "out_abs_gt")] < 1


def test_active_saturated_against_numpy_per_layer_and_pooled():
    torch.manual_seed(0)
    model = mlp(5, [6, 4], 3, activation="sigmoid").eval()
    with torch.no_grad():
        model.block1.linear.weight.mul_(6.0)
    x, _ = _data(30)
    p = ActiveSaturated(margin=0.05).attach(model)
    p.observe(x, step=0)
    got = {(layer, q): v for _, layer, q, v in p.records()}
    hs = [_inputs_of(model, x, n, False) for n in ("block1.act", "block2.act")]
    pooled = np.concatenate([h.ravel() for h in hs])
    for name, h in (("block1.act", hs[0]), ("block2.act", hs[1]), ("model", pooled)):
        assert got[(name, "out_active")] == pytest.approx((h > 0).mean(), abs=1e-7)
        sat = ((h < 0.05) | (h > 0.95)).mean()
        assert got[(name, "out_saturated")] == pytest.approx(sat, abs=1e-7)
    assert 0 < got[("model", "out_saturated")] < 1


# -- the fixed batch: the model after k updates, the last one included ---------------------
def _fit(probes=(), callbacks=(), steps=7, norm="bn"):
    from trainlab.engine.trainer import Trainer

    torch.manual_seed(0)
    model = mlp([5, 8, 8, 3], activation="sigmoid", norm=norm)
    x, y = _data(64)
    Trainer(model, lr=0.1, log_every=3, progress=False, probes=list(probes),
            callbacks=list(callbacks)).fit((x, y), steps=steps, batch_size=16, eval_every=3)
    return model


def test_probe_data_passes_follow_the_schedule_and_equal_the_log_point_callback():
    x, _ = _data(20, seed=3)
    probe = UnitPercentiles("block2.act", inputs=True, probe_data=x, mode="as_is",
                            every=Schedule(3, at=[7]))
    m1 = _fit([probe])
    cb = AtLogPoints(UnitPercentiles("block2.act", inputs=True), x)  # rows at 0, 3, 6, 7
    m2 = _fit(callbacks=[cb])
    ref = _fit()
    for a, b, c in zip(m1.state_dict().values(), m2.state_dict().values(),
                       ref.state_dict().values()):
        assert torch.equal(a, c) and torch.equal(b, c)  # neither changes training
    steps, vals = probe.values()
    assert steps == [0, 3, 6, 7]
    assert cb.probe.values()[0] == steps
    assert torch.equal(vals, cb.probe.values()[1])


@pytest.mark.parametrize("cls", [LayerMoments, ActiveSaturated])
def test_moments_and_fractions_on_a_fixed_batch_equal_the_callback(cls):
    x, _ = _data(20, seed=4)
    probe = cls("*.act", probe_data=x, mode="as_is", every=Schedule(3, at=[7]))
    _fit([probe])
    cb = AtLogPoints(cls("*.act"), x)
    _fit(callbacks=[cb])
    assert probe.records() == cb.probe.records()
    assert sorted({r[0] for r in probe.records()}) == [0, 3, 6, 7]


def test_batch_probes_without_probe_data_record_the_training_batch(sgd_steps):
    torch.manual_seed(0)
    model = mlp(5, [6], 3, activation="relu")
    probes = [UnitPercentiles(every=2).attach(model), LayerMoments(every=2).attach(model),
              ActiveSaturated(every=2).attach(model)]
    x, y = _data(16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sgd_steps(model, opt, probes, [(x, y)] * 3)
    for p in probes:
        assert sorted({r[0] for r in p.records()}) == [0, 2], type(p).__name__


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="follow must be an integer >= 0"):
        SameSignRows(follow=-1)
    with pytest.raises(ValueError, match="percentiles must be"):
        UnitPercentiles(percentiles=(150,))
    with pytest.raises(ValueError, match="do not fit"):
        SameSignRows(follow=9).attach(mlp(4, [3], 2))
    with pytest.raises(TypeError, match="trainlab Probe"):
        AtLogPoints(object(), torch.zeros(1, 2))
