"""Runs as Ray tasks on a local Ray (2 CPUs) land in the store with the objective's metrics."""

from __future__ import annotations

import builtins

import pytest

from trainlab.train.objective import train_objective

CFG = {"data.name": "spirals", "model.depth": 1, "model.width": 8, "steps": 20,
       "batch_size": 32, "optim.name": "sgd", "device": "cpu", "log_every": 10}


def test_missing_ray_names_the_extra(monkeypatch):
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    from trainlab.train.ray_executor import require_ray

    with pytest.raises(ImportError, match=r"trainlab\[ray\]"):
        require_ray()


@pytest.mark.slow
def test_local_ray_runs_match_in_process(tmp_path):
    ray = pytest.importorskip("ray")
    from trainlab.store import RunStore
    from trainlab.train.ray_executor import run_with_ray

    configs = [{**CFG, "optim.lr": lr, "seed": s} for lr in (0.05, 0.2) for s in (0, 1)]
    outs = [tmp_path / f"run{i}" for i in range(len(configs))]
    seen = []
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        got = run_with_ray(configs, outs, db=tmp_path / "db.sqlite",
                           on_result=lambda i, m: seen.append(i))
    finally:
        ray.shutdown()
    assert sorted(seen) == [0, 1, 2, 3]
    for c, m in zip(configs, got):
        ref = train_objective(c)
        m, ref = dict(m), dict(ref)
        m.pop("time"), ref.pop("time")
        assert m == pytest.approx(ref, rel=1e-5)
    runs = RunStore(tmp_path / "db.sqlite", readonly=True).list_runs()
    assert len(runs) == 4 and {r["status"] for r in runs} == {"done"}
