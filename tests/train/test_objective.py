"""train_objective: one config -> metrics, the same numbers as `trainlab train`."""

from __future__ import annotations

import json

import pytest

from trainlab.runs.objective import nest, train_objective

CFG = {"data.name": "spirals", "model.depth": 2, "model.width": 16, "steps": 40,
       "batch_size": 32, "optim.name": "sgd", "optim.lr": 0.1, "seed": 1, "device": "cpu",
       "log_every": 20}


def test_nest():
    assert nest({"model.width": 4, "seed": 1, "optim": {"lr": 0.1}, "optim.name": "sgd"}) == {
        "model": {"width": 4}, "seed": 1, "optim": {"lr": 0.1, "name": "sgd"}}
    with pytest.raises(ValueError, match="given twice"):
        nest({"optim.lr": 0.1, "optim": {"lr": 0.2}})


def test_in_memory_equals_run_folder(tmp_path):
    a = train_objective(CFG)
    b = train_objective(CFG, out=tmp_path / "run", db=tmp_path / "db.sqlite")
    assert a["diverged"] == 0.0 and a["step"] == 40
    a.pop("time"), b.pop("time")  # wall clock
    assert a == pytest.approx(b)
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "done"
    assert status["final"]["train_loss"] == pytest.approx(a["train_loss"])


def test_divergence_is_a_metric_not_an_exception():
    m = train_objective({**CFG, "optim.lr": 1e30, "steps": 20})
    assert m["diverged"] == 1.0


def test_unknown_key_named():
    with pytest.raises(ValueError, match="widht"):
        train_objective({**CFG, "model.widht": 3})
