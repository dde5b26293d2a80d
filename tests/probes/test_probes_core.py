"""Schedules, layer selection, detaching, side-effect freedom and the record files."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.probes import (
    ActivationStats,
    GradientStats,
    JacobianSpectrum,
    ProbeLog,
    Schedule,
    UpdateRatio,
    WeightStats,
    as_schedule,
    collect,
    load_records,
    select_layers,
)


def all_probes(**kw):
    return [ActivationStats(every=1, hist_every=2, **kw), GradientStats(every=1, hist_every=2),
            WeightStats(every=1), UpdateRatio(every=1), JacobianSpectrum(every=2)]


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.3),
                         nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def train(sgd_steps, with_probes: bool, probe_data=None, steps: int = 4):
    torch.manual_seed(0)
    m = net()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    ps = []
    if with_probes:
        ps = [p.attach(m) for p in all_probes()]
        if probe_data is not None:
            ps += [ActivationStats(every=1, probe_data=probe_data, mode="train").attach(m),
                   GradientStats(every=1, probe_data=probe_data, mode="train").attach(m)]
    batches = ((torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g))
               for _ in range(steps))
    sgd_steps(m, opt, ps, batches)
    return m, ps


def test_probes_do_not_change_the_training_result(sgd_steps):
    ref, _ = train(sgd_steps, False)
    pd = (torch.randn(10, 6), torch.randint(0, 3, (10,)))
    got, ps = train(sgd_steps, True, probe_data=pd)
    for a, b in zip(ref.state_dict().values(), got.state_dict().values()):
        assert torch.equal(a, b)  # weights and BN running statistics, bit for bit
    assert all(len(p.records()) > 0 for p in ps)


def test_probe_set_pass_restores_rng_bn_and_modes():
    torch.manual_seed(0)
    m = net()
    pd = (torch.randn(10, 6), torch.randint(0, 3, (10,)))
    p = GradientStats(every=1, probe_data=pd, mode="train").attach(m)
    rng = torch.get_rng_state()
    stats = m[1].running_mean.clone()
    m.eval()
    p.step_begin(0)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(m[1].running_mean, stats)
    assert not m.training and not m[1].training
    assert collect([p]).table(0)["0"]["grad_w_norm"] > 0


def test_detach_removes_every_hook_and_context_manager():
    m = net()
    def hooked() -> bool:
        return any(mod._forward_hooks or mod._forward_pre_hooks for mod in m.modules())

    with ActivationStats(every=2, hist_every=0) as a, GradientStats(every=2, hist_every=0) as g:
        a.attach(m)
        g.attach(m)
        assert not hooked()  # hooks exist only during logged steps
        a.step_begin(0)
        g.step_begin(0)
        assert hooked()
        a.step_end(0)
        g.step_end(0)
        assert not hooked()
        a.step_begin(1)  # a skipped step: the model runs without any hook
        assert not hooked()
        a.step_end(1)
        a.step_begin(2)  # detach in the middle of a logged step (the context manager exit)
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in m.modules())
    a.detach()  # twice is fine
    ps = [p.attach(m) for p in all_probes()]
    for p in ps:
        p.detach()
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in m.modules())
    with pytest.raises(RuntimeError, match="not attached"):
        ps[0].step_begin(0)


def test_hooks_stay_between_consecutive_logged_steps_and_record_nothing_there():
    m = net()
    def hooked() -> bool:
        return any(mod._forward_hooks or mod._forward_pre_hooks for mod in m.modules())

    a = ActivationStats(every=Schedule(0, at=[0, 1]), hist_every=0).attach(m)
    a.step_begin(0)
    m(torch.randn(4, 6))
    a.step_end(0)
    assert hooked()  # step 1 is logged too: the hooks are kept (no re-registration)
    m(torch.randn(4, 6))  # a pass between steps (an evaluation) is not recorded
    a.step_begin(1)
    m(torch.randn(4, 6))
    a.step_end(1)
    assert not hooked()  # step 2 is skipped: removed
    assert sorted({r[0] for r in a.records()}) == [0, 1]
    assert len(a.records()) == 2 * len([r for r in a.records() if r[0] == 0])
    a.detach()


def test_schedules():
    s = Schedule(25, log=True)
    assert [t for t in range(80) if s(t)] == [0, 1, 2, 4, 8, 16, 25, 50, 75]
    s = Schedule(1000, log=True, base=10)
    assert [t for t in range(3001) if s(t)] == [0, 1, 10, 100, 1000, 2000, 3000]
    assert [t for t in range(5) if as_schedule(2)(t)] == [0, 2, 4]
    assert not any(as_schedule("never")(t) for t in range(5))
    assert [t for t in range(5) if as_schedule(lambda t: t == 3)(t)] == [3]
    with pytest.raises(ValueError, match="every must be >= 0.*-1"):
        as_schedule(-1)
    with pytest.raises(ValueError, match="every must be an int k.*'often'"):
        as_schedule("often")


def test_layer_selection_and_bad_input_message():
    m = net()
    assert [n for n, _ in select_layers(m, None, "activation")] == ["2", "5"]
    assert [n for n, _ in select_layers(m, None, "weight")] == ["0", "4", "6"]
    assert [n for n, _ in select_layers(m, ["0", "4"], "weight")] == ["0", "4"]
    assert [n for n, _ in select_layers(m, nn.ReLU, "activation")] == ["5"]
    with pytest.raises(ValueError, match="Supported by default.*layers='block\\*.act'"):
        ActivationStats().attach(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="found no layers.*layers='nope'"):
        GradientStats(layers="nope").attach(m)
    with pytest.raises(TypeError, match="layers must be None"):
        GradientStats(layers=3).attach(m)
    p = ActivationStats(layers="0").attach(m)  # any module by name: stats of its output
    p.observe(torch.randn(4, 6))
    assert "act_std" in collect([p]).table(0)["0"]


def test_records_round_trip(tmp_path, sgd_steps):
    torch.manual_seed(0)
    _, ps = train(sgd_steps, True, steps=3)
    log = collect(ps)
    log.rows.append((3, "x", "act_std", math.nan))
    paths = log.save(tmp_path)
    assert paths["rows"].name == "probes.csv"
    back = load_records(tmp_path)
    assert back.rows[:-1] == log.rows[:-1] and math.isnan(back.rows[-1][3])
    assert back.histograms == log.histograms and back.spectra == log.spectra
    assert isinstance(ProbeLog.load(tmp_path), ProbeLog)
    with pytest.raises(FileNotFoundError, match="probes.csv"):
        load_records(tmp_path / "missing")


def test_transformer_and_cnn_defaults():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True), num_layers=2)
    a = ActivationStats(unit_dim=-1, hist_every=0).attach(enc)
    g = GradientStats(hist_every=0).attach(enc)
    assert a.layer_names == ["layers.0", "layers.1"]
    assert "layers.0.self_attn.out_proj" in g.layer_names and "layers.1.linear2" in g.layer_names
    from trainlab.probes import observe

    observe(enc, [a, g], torch.randn(3, 5, 8), loss_fn=lambda out: out.pow(2).mean())
    t = collect([a, g]).table(0)
    assert t["layers.1"]["act_std"] > 0 and t["layers.0.linear1"]["grad_w_norm"] > 0
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 2))
    assert [n for n, _ in select_layers(cnn, None, "weight")] == ["0", "4"]
    assert [n for n, _ in select_layers(cnn, None, "activation")] == ["2"]


def test_trainer_with_probes_gives_same_weights_and_history_records(tmp_path):
    train_mod = pytest.importorskip("trainlab.train")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)

    def fit(probes):
        torch.manual_seed(0)
        m = net()
        t = train_mod.Trainer(m, optimizer="sgd", lr=0.1, seed=0, probes=probes,
                              device="cpu", checkpoint=tmp_path / f"ck{len(probes)}.pt")
        return m, t.fit((x, y), steps=6, batch_size=16)

    ref, _ = fit([])
    got, hist = fit([ActivationStats(every=2), GradientStats(every=2), UpdateRatio(every=3),
                     JacobianSpectrum(every=4, n_examples=4)])
    for a, b in zip(ref.state_dict().values(), got.state_dict().values()):
        assert torch.equal(a, b)
    log = ProbeLog.from_history(hist)
    # every=2, plus the default histogram steps 0 and 1 (which record moments too)
    assert log.steps("act_std") == [0, 1, 2, 4] and log.steps("update_ratio") == [0, 3]
    assert log.hists("act")  # step 0 and 1 are histogram steps by default
    assert {d["step"] for d in log.spectra} == {0, 4} and log.spectra == hist.spectra
