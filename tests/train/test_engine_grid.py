"""train_grid: the plan (which runs share a pack, which train alone and why), every run's
History and trained weights against the same run through the Trainer alone, and the study
context's records (store rows, metrics.csv, the page's run count)."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
from torch import nn

from trainlab.engine.grid import GridRun, pack_key, plan_grid, train_grid
from trainlab.engine.trainer import Trainer
from trainlab.models import convnet, mlp
from trainlab.probes import ActivationStats
from trainlab.store import RunStore
from trainlab.studies.base import Claim, Study, run_study


def _data(n=160, d=10, classes=4, seed=0, n_test=48):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + n_test, d, generator=g)
    y = (x @ torch.randn(d, classes, generator=g)).argmax(1)
    return x[:n], y[:n], x[n:], y[n:]


def _mlp(seed, widths=(16, 16)):
    torch.manual_seed(seed)
    return mlp(10, list(widths), 4)


def _run(seed, data, label, widths=(16, 16), **trainer):
    trainer = {"device": "cpu", "on_divergence": "stop", "progress": False, "log_every": 5,
               **trainer}
    return GridRun(_mlp(seed, widths), data, label, seed=seed, steps=12, batch_size=32,
                   eval_every=6, trainer=trainer)


def _alone(run: GridRun):
    model = copy.deepcopy(run.model)
    t = Trainer(model, seed=run.seed, **run.trainer)
    t.fit(run.data, steps=run.steps, batch_size=run.batch_size, eval_every=run.eval_every)
    return model, t.history


def test_plan_packs_what_shares_structure_data_and_length_and_says_why_not():
    data, other = _data(), _data(seed=1)
    runs = [_run(s, data, f"a{s}", lr=lr, optimizer="momentum")
            for s in range(3) for lr in (0.05,)]
    runs.append(_run(0, data, "adam", optimizer="adam", lr=1e-3))           # another kind
    runs.append(_run(0, data, "adamw", optimizer="adamw", lr=1e-3))         # Adam kind too
    runs.append(_run(0, other, "other-data", optimizer="momentum", lr=0.05))
    runs.append(_run(0, data, "wide", widths=(32, 16), optimizer="momentum", lr=0.05))
    runs.append(_run(0, data, "probed", optimizer="momentum", lr=0.05,
                     probes=[ActivationStats()]))
    runs.append(_run(0, data, "raise", optimizer="momentum", lr=0.05, on_divergence="raise"))
    runs.append(_run(0, data, "amsgrad", optimizer="adam", lr=1e-3,
                     optimizer_kwargs={"amsgrad": True}))
    groups = plan_grid(runs)
    by_member = {i: g for g in groups for i in g.members}
    assert by_member[0].packed and by_member[0].members == [0, 1, 2]
    assert by_member[3].packed and by_member[3].members == [3, 4]  # adam + adamw: one kind
    for i, why in [(5, "no other run"), (6, "no other run"), (7, "probes"), (8, "raise"),
                   (9, "amsgrad")]:
        assert not by_member[i].packed and why in by_member[i].reason, (i, by_member[i])
    assert sorted(i for g in groups for i in g.members) == list(range(len(runs)))
    assert pack_key(runs[0])[0] == pack_key(runs[1])[0]
    # max_pack splits a group, in grid order
    assert [g.members for g in plan_grid(runs[:3], max_pack=2)] == [[0, 1], [2]]


def test_every_run_equals_the_trainer_alone():
    data = _data()
    runs = [_run(s, data, f"s{s}-lr{lr}", optimizer="momentum", lr=lr,
                 optimizer_kwargs={"momentum": m})
            for s in range(2) for lr, m in ((0.05, 0.9), (0.1, 0.0))]
    runs.append(_run(5, data, "probed", optimizer="sgd", lr=0.1, probes=[ActivationStats()]))
    refs = [_alone(r) for r in runs]
    histories, groups = train_grid(runs)
    assert sum(g.packed for g in groups) == 1 and len(groups) == 2
    for run, h, (model, ref) in zip(runs, histories, refs):
        assert [r["step"] for r in h.metrics] == [r["step"] for r in ref.metrics]
        for a, b in zip(h.metrics, ref.metrics):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
            if "test_acc" in b:
                assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-6)
        # trained in place, as Trainer.fit leaves the model
        for (k, p), q in zip(run.model.state_dict().items(), model.state_dict().values()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=2e-5, msg=k)
    assert histories[-1].probe_records  # the run with probes trained alone, with its probes


def test_a_diverging_member_stops_alone_and_the_others_go_on():
    data = _data()
    runs = [_run(s, data, f"lr{lr:g}", optimizer="sgd", lr=lr) for s, lr in ((0, 0.1), (1, 1e6))]
    ref = _alone(runs[1])[1]
    histories, groups = train_grid(runs)
    assert [g.packed for g in groups] == [True]
    assert histories[0].status == "done" and histories[0].metrics[-1]["step"] == 12
    assert ref.status == "diverged" and histories[1].status == "diverged"
    assert histories[1].divergence.step == ref.divergence.step


def test_convnets_pack_through_vmap():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 8, 8, generator=g), torch.randint(0, 3, (96,), generator=g)
    data = (x, y)

    def net(seed):
        torch.manual_seed(seed)
        return convnet(1, [4], 3, norm="bn")

    runs = [GridRun(net(s), data, f"c{s}", seed=s, steps=6, batch_size=16,
                    trainer={"device": "cpu", "on_divergence": "stop", "lr": 0.05,
                             "log_every": 3}) for s in range(3)]
    refs = [_alone(r) for r in runs]
    histories, groups = train_grid(runs)
    assert [g.packed for g in groups] == [True]
    for h, (_, ref) in zip(histories, refs):
        assert h.last("train_loss") == pytest.approx(ref.last("train_loss"), rel=1e-4)


def test_labels_must_be_unique():
    data = _data()
    with pytest.raises(ValueError, match="unique.*'a'"):
        train_grid([_run(0, data, "a"), _run(1, data, "a")])


def _grid_study(name="grid-toy"):
    def fn(ctx, cfg):
        data = _data()
        runs = []
        for s in range(3):
            runs.append(ctx.grid_run(_mlp(s), data, label=f"seed{s}", steps=8, batch_size=32,
                                     seed=s, lr=0.1, config={"variant": "plain"}))
        runs.append(ctx.grid_run(nn.Sequential(nn.Flatten(), nn.Linear(10, 4)), data,
                                 label="linear", steps=8, batch_size=32, lr=0.1))
        hs = ctx.train_grid(runs)
        ctx.check("loss-falls", hs[0].metrics[0]["train_loss"] - hs[0].last("train_loss"))

    return Study(name, "grid toy", "nowhere", "packs in a study",
                 {"test": {}, "quick": {}, "paper": {}},
                 (Claim("loss-falls", "training lowers the loss", "first - last", ">", 0.0),),
                 fn, 1.0)


def test_study_grid_records_each_run_and_the_page_counts_the_packs(tmp_path):
    db = tmp_path / "t.db"
    res = run_study(_grid_study(), scale="test", out=tmp_path / "out", db=db, log=None)
    assert res.error is None and res.passed, res.error
    rows = RunStore(db).list_runs()
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    packed = [r for r in rows if r["config"].get("pack")]
    assert len(packed) == 3 and {r["config"]["variant"] for r in packed} == {"plain"}
    for label in ("seed0", "seed1", "seed2", "linear"):
        assert (tmp_path / "out" / "runs" / label / "metrics.csv").is_file()
    data = json.loads((tmp_path / "out" / "result.json").read_text())
    assert sum(1 for r in data["runs"] if r["pack"]) == 3
    page = (tmp_path / "out" / "index.html").read_text()
    assert "4 training runs: 3 in 1 pack, 1 alone (no other run" in page


def test_a_study_logs_diverged_pack_members_once_instead_of_a_warning_each(tmp_path):
    def fn(ctx, cfg):
        data = _data()
        runs = [ctx.grid_run(_mlp(s), data, label=f"s{s}-lr{lr:g}", steps=12, batch_size=32,
                             seed=s, optimizer="sgd", lr=lr)
                for s, lr in ((0, 0.1), (1, 1e6), (2, 1e6))]
        hs = ctx.train_grid(runs)
        ctx.check("loss-falls", hs[0].metrics[0]["train_loss"] - hs[0].last("train_loss"))

    spec = Study("grid-diverge", "grid toy", "nowhere", "a diverging member",
                 {"test": {}, "quick": {}, "paper": {}},
                 (Claim("loss-falls", "training lowers the loss", "first - last", ">", 0.0),),
                 fn, 1.0)
    lines = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_study(spec, scale="test", out=tmp_path / "out", db=None, log=lines.append)
    assert res.error is None, res.error
    assert not [w for w in caught if "diverged and is frozen" in str(w.message)]
    assert [r["status"] for r in res.runs] == ["done", "diverged", "diverged"]
    assert [r["pack"] for r in res.runs] == [1, 1, 1]
    said = [ln for ln in lines if "runs diverged" in ln]
    assert len(said) == 1 and "2 of 3 runs diverged" in said[0] and "s1-lr1e+06" in said[0], lines


def test_members_whose_modules_differ_in_a_setting_do_not_share_a_pack():
    """WN and CWN are one class with a mode; leaky slopes differ in a number: the pack would
    run every member with the first one's modules, so the plan keeps them apart."""
    data = _data()
    from trainlab.nn.norms import norm_layer  # noqa: F401  (registers the weight norms)

    def net(norm, seed):
        torch.manual_seed(seed)
        return mlp(10, [16], 4, norm=norm)

    runs = [GridRun(net(n, s), data, f"{n}{s}", seed=s, steps=4, batch_size=32,
                    trainer={"device": "cpu", "on_divergence": "stop", "lr": 0.1})
            for n in ("wn", "cwn") for s in range(2)]
    assert [g.members for g in plan_grid(runs)] == [[0, 1], [2, 3]]
    leaky = [GridRun(nn.Sequential(nn.Linear(10, 8), nn.LeakyReLU(a), nn.Linear(8, 4)), data,
                     f"a{a}", trainer={"device": "cpu", "on_divergence": "stop"})
             for a in (0.01, 0.3)]
    assert all(not g.packed for g in plan_grid(leaky))
    rrelu = [GridRun(nn.Sequential(nn.Linear(10, 8), nn.RReLU(), nn.Linear(8, 4)), data,
                     f"r{s}", trainer={"device": "cpu", "on_divergence": "stop"})
             for s in range(2)]
    assert [(g.packed, g.reason) for g in plan_grid(rrelu)] == [
        (False, "RReLU has no vmap rule")] * 2
