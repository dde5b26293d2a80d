"""The pieces of a training loop the Trainer and the PackTrainer share (trainlab.engine.loop)
behave the same in both: the first non-finite layer a replay names, the sync cadence, the
evaluation in batches, the window check and the quiet progress bar."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from trainlab.engine.history import Divergence
from trainlab.engine.loop import (
    Cadence,
    NonFiniteWatch,
    evaluate_in_batches,
    first_nonfinite,
    history_row,
    locate,
    progress_bar,
    window_divergence,
)
from trainlab.engine.pack import Pack, PackTrainer, build_members
from trainlab.engine.trainer import Trainer

SPEC = {"name": "mlp", "in_features": 10, "widths": [16, 16], "out_features": 4}
SEEDS = [0, 1, 2]


def _data(n=160, n_test=70):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + n_test, 10, generator=g)
    y = (x @ torch.randn(10, 4, generator=g)).argmax(1)
    return x[:n], y[:n], x[n:], y[n:]


def _models():
    """Member ``i`` is the model ``Trainer(model, seed=SEEDS[i])`` starts from."""
    return build_members(SPEC, [{"seed": s} for s in SEEDS])


def _poison(model: nn.Module, layer: str) -> None:
    with torch.no_grad():
        model.get_submodule(layer).weight[0, 0] = math.nan


def _trainer(model, seed, lr=0.05, **kw):
    return Trainer(model, optimizer="sgd", lr=lr, seed=seed, device="cpu", log_every=5,
                   on_divergence="stop", **kw)


def _pack_trainer(models, lrs=(0.05, 0.05, 0.05), plan=True, **kw):
    pack = Pack(models)
    pack.use_plan = plan
    return PackTrainer(pack, optimizer="sgd", lr=list(lrs), seeds=SEEDS, device="cpu",
                       log_every=5, **kw)


def _fit_pack(tr, data, steps):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "member k diverged and is frozen"
        return tr.fit(data, steps=steps, batch_size=32, eval_every=7)


# -- locating the first non-finite layer ----------------------------------------------------
@pytest.mark.parametrize("plan", [True, False], ids=["plan", "vmap"])
@pytest.mark.parametrize("k,layer", [(0, "block2.linear"), (1, "head"), (2, "block1.linear")])
def test_locate_names_the_same_layer_for_a_trainer_and_member_k(k, layer, plan):
    data = _data()
    solo = _models()[k]
    _poison(solo, layer)
    ref = _trainer(solo, SEEDS[k]).fit(data, steps=12, batch_size=32).divergence
    assert ref == Divergence(0, layer, "activation", "nan")
    models = _models()
    _poison(models[k], layer)
    tr = _pack_trainer(models, plan=plan)
    hists = _fit_pack(tr, data, 12)
    [d] = tr.divergences
    assert d.member == k and d.divergence == ref == hists[k].divergence
    assert [h.status for h in hists] == ["diverged" if j == k else "done" for j in range(3)]


@pytest.mark.parametrize("k", [0, 2])
def test_exploding_member_k_is_located_as_the_trainer_locates_it(k):
    """A learning rate that overflows the weights: the replay of a whole window."""
    data = _data()
    lrs = [0.05] * 3
    lrs[k] = 1e18
    ref = _trainer(_models()[k], SEEDS[k], lr=1e18).fit(data, steps=12, batch_size=32)
    tr = _pack_trainer(_models(), lrs)
    _fit_pack(tr, data, 12)
    [d] = tr.divergences
    assert ref.status == "diverged" and ref.divergence.module != "?"
    assert (d.member, d.divergence) == (k, ref.divergence)


def test_locate_replays_a_window_and_names_step_layer_kind():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(8, 3)
    seen = []

    def forward(step):
        seen.append(step)
        if step == 3:
            with torch.no_grad():
                model[2].weight[1, 1] = math.inf
        return model(x).pow(2).mean()

    div = locate(model, range(1, 6), forward, lambda loss, step: loss.backward(),
                 model.named_parameters)
    assert div == Divergence(3, "2", "activation", "inf") and seen == [1, 2, 3]
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed
    assert locate(model, [], forward, lambda *a: None, model.named_parameters) is None


def test_nonfinite_watch_and_first_nonfinite():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with NonFiniteWatch(model) as watch:
        model(torch.tensor([[1.0, 2.0]]))
        assert watch.first is None
        model(torch.tensor([[math.nan, 0.0]]))
    assert watch.first == ("0", "activation", "nan")
    named = [("a.weight", torch.ones(2)), ("b.weight", None),
             ("c.bias", torch.tensor([1.0, -math.inf])), ("d", torch.tensor([math.nan]))]
    assert first_nonfinite(named, "gradient") == ("c", "gradient", "inf")
    assert first_nonfinite(named[:2], "parameter") is None


# -- the sync cadence, the window check, the History row ------------------------------------
def test_cadence_and_rows_are_the_same_for_both_trainers():
    cad = Cadence(23, (5, 7), 7)
    points, s = [], 0
    while s < 23:
        s = cad.next(s)
        points.append(s)
    assert points == [5, 7, 10, 14, 15, 20, 21, 23]
    assert [p for p in points if cad.evaluates(p)] == [7, 14, 21, 23]
    data = _data()
    h = _trainer(_models()[1], SEEDS[1]).fit(data, steps=23, batch_size=32, eval_every=7)
    hists = _fit_pack(_pack_trainer(_models()), data, 23)
    for rows in [h.metrics] + [g.metrics for g in hists]:
        assert [r["step"] for r in rows] == points
        assert [r["step"] for r in rows if "test_acc" in r] == [7, 14, 21, 23]
        assert list(rows[0]) == ["step", "epoch", "train_loss", "lr", "time", "test_loss",
                                 "test_acc"][: len(rows[0])]
    for a, b in zip(h.metrics, hists[1].metrics):
        assert a["epoch"] == b["epoch"] and a["lr"] == b["lr"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_window_divergence_and_history_row():
    assert window_divergence(10, 15, [1.0, 2.0], [3.0]) is None
    assert window_divergence(10, 15, [1.0, math.inf, math.nan], [math.nan]) == \
        Divergence(11, "?", "loss", "inf")
    assert window_divergence(10, 15, [1.0], [2.0, math.nan, math.inf]) == \
        Divergence(14, "?", "parameter", "nan")
    assert history_row(6, 4, [1.0, 2.0, 4.5], 0.1, 1.234567) == {
        "step": 6, "epoch": 1.5, "train_loss": 2.5, "lr": 0.1, "time": 1.2346}
    assert history_row(3, 0, [1.0], 0.1, 0.0)["epoch"] == 3.0


# -- evaluation in batches ------------------------------------------------------------------
@pytest.mark.parametrize("plan", [True, False], ids=["plan", "vmap"])
def test_evaluation_in_batches_is_the_same_for_a_trainer_and_every_member(plan):
    _, _, xt, yt = _data()  # 70 test examples: batches of 32, 32, 6
    tr = _pack_trainer(_models(), plan=plan, eval_batch_size=32)
    got = tr.evaluate(xt, yt)
    assert len(got) == 3
    for k, model in enumerate(_models()):
        ref = _trainer(model, SEEDS[k], eval_batch_size=32).evaluate(xt, yt)
        assert got[k]["acc"] == ref["acc"]
        assert got[k]["loss"] == pytest.approx(ref["loss"], rel=1e-6)
        whole = _trainer(model, SEEDS[k], eval_batch_size=1000).evaluate(xt, yt)
        assert whole["acc"] == ref["acc"]
        assert whole["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    assert tr.pack.training  # the mode is restored


def test_evaluate_in_batches_shapes_and_outputs_without_classes():
    model = nn.Linear(3, 1)
    x, y = torch.randn(5, 3), torch.randn(5)

    def score(xb, yb):
        out = model(xb).squeeze(1)  # (b,): no class dimension
        return out, ((out - yb) ** 2).mean(), yb

    loss, acc = evaluate_in_batches(model, x, y, 2, score, device=torch.device("cpu"))
    assert loss.item() == pytest.approx(((model(x).squeeze(1) - y) ** 2).mean().item())
    assert math.isnan(acc.item())
    out = evaluate_in_batches(model, x, y, 2, lambda xb, yb: (
        torch.zeros(3, len(xb), 2), torch.ones(3), torch.zeros(3, len(xb), dtype=torch.long)),
        device=torch.device("cpu"), members=3)
    assert out.shape == (2, 3) and out.tolist() == [[1.0] * 3, [1.0] * 3]


# -- the progress bar -----------------------------------------------------------------------
def test_progress_bar_is_quiet_when_not_a_terminal_for_both(capsys):
    data = _data()
    _trainer(_models()[0], 0).fit(data, steps=6, batch_size=32)
    _fit_pack(_pack_trainer(_models()), data, 6)
    assert capsys.readouterr().err == ""
    assert progress_bar(None, 10, 0) is None and progress_bar(False, 10, 0) is None
    bar = progress_bar(True, 10, 3, desc="pack of 2")
    try:
        assert (bar.total, bar.n, bar.desc) == (10, 3, "pack of 2")
    finally:
        bar.close()
