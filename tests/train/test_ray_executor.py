"""Runs as Ray tasks on a local Ray (2 CPUs) land in the store with the objective's metrics.

One local Ray serves the whole module (starting it takes seconds): the ``local_ray`` fixture
starts it through :func:`run_with_ray` itself, as ``trainlab sweep --executor ray`` would, and
shuts it down at the end. The fast tests keep the workload tiny; the slow one queues more
tasks than there are CPUs.
"""

from __future__ import annotations

import builtins
import signal

import pytest

from trainlab.runs.objective import train_objective

CFG = {"data.name": "spirals", "model.depth": 1, "model.width": 8, "steps": 20,
       "batch_size": 32, "optim.name": "sgd", "device": "cpu", "log_every": 10}
TINY = {**CFG, "model.width": 4, "steps": 6, "log_every": 3}


def _same_metrics(got, config):
    ref = train_objective(config)
    got, ref = dict(got), dict(ref)
    got.pop("time"), ref.pop("time")
    assert got == pytest.approx(ref, rel=1e-5)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    from trainlab.runs.ray_executor import run_with_ray

    if ray.is_initialized():  # pragma: no cover - a Ray left running by another module
        ray.shutdown()
    # ray.init installs its own SIGTERM/SIGINT handlers in this process and shutdown leaves
    # them: put the test process's back, or later signal tests see Ray's handler
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    # no configs: only starts the local Ray, with the executor's own ray.init settings
    assert run_with_ray([], init_kwargs={"num_cpus": 2}) == []
    assert ray.is_initialized()
    try:
        yield ray
    finally:
        ray.shutdown()
        for s, h in saved.items():
            signal.signal(s, h)


def test_missing_ray_names_the_extra(monkeypatch):
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    from trainlab.runs.ray_executor import require_ray

    with pytest.raises(ImportError, match=r"trainlab\[ray\]"):
        require_ray()


def test_one_folder_per_config():
    pytest.importorskip("ray")
    from trainlab.runs.ray_executor import run_with_ray

    with pytest.raises(ValueError, match="one folder per config: 2 configs, 1 folders"):
        run_with_ray([TINY, TINY], ["a"])


def test_ray_tasks_match_in_process_and_record_the_run(local_ray, tmp_path):
    from trainlab.runs.ray_executor import run_with_ray
    from trainlab.store import RunStore

    assert local_ray.cluster_resources().get("CPU") == 2
    configs = [{**TINY, "seed": 0}, {**TINY, "seed": 1, "optim.lr": 0.2}]
    seen = []
    # the first run gets a folder and a store row, the second trains in memory
    got = run_with_ray(configs, [tmp_path / "run0", None], db=tmp_path / "db.sqlite",
                       on_result=lambda i, m: seen.append((i, m)))
    assert sorted(i for i, _ in seen) == [0, 1]
    assert all(got[i] == m for i, m in seen)  # on_result saw what came back, by index
    for c, m in zip(configs, got):
        assert m["step"] == 6 and m["diverged"] == 0.0
        _same_metrics(m, c)
    assert (tmp_path / "run0" / "status.json").is_file()
    runs = RunStore(tmp_path / "db.sqlite", readonly=True).list_runs()
    assert len(runs) == 1 and runs[0]["status"] == "done"


def test_a_bad_config_fails_with_its_message(local_ray):
    from trainlab.runs.ray_executor import run_with_ray

    # the task's ValueError reaches the driver (Ray's task error is also a ValueError)
    with pytest.raises(ValueError, match="unknown key model.widht"):
        run_with_ray([{**TINY, "model.widht": 3}])


@pytest.mark.slow
def test_more_tasks_than_cpus_match_in_process(local_ray, tmp_path):
    from trainlab.runs.ray_executor import run_with_ray
    from trainlab.store import RunStore

    configs = [{**CFG, "optim.lr": lr, "seed": s} for lr in (0.05, 0.2) for s in (0, 1)]
    outs = [tmp_path / f"run{i}" for i in range(len(configs))]
    seen = []
    got = run_with_ray(configs, outs, db=tmp_path / "db.sqlite",
                       on_result=lambda i, m: seen.append(i))
    assert sorted(seen) == [0, 1, 2, 3]
    for c, m in zip(configs, got):
        _same_metrics(m, c)
    runs = RunStore(tmp_path / "db.sqlite", readonly=True).list_runs()
    assert len(runs) == 4 and {r["status"] for r in runs} == {"done"}


def test_map_with_ray_names_the_failed_tasks_and_keeps_the_others(local_ray):
    from trainlab.runs.ray_executor import TaskFailed, map_with_ray

    seen = {}
    with pytest.raises(TaskFailed, match=r"1 Ray task\(s\) failed: bad") as e:
        map_with_ray(int, [("bad", ("x",)), ("ok", ("3",))],
                     on_result=lambda n, r: seen.update({n: r}))
    assert seen == {"ok": 3} and "ValueError" in e.value.failures["bad"]
    with pytest.raises(ValueError, match="unique"):
        map_with_ray(int, [("a", ("1",)), ("a", ("2",))])


def _sweep_grid():
    return {"name": "ray", "fixed": {
        "data": {"name": "spirals", "options": {"n_train": 96, "n_test": 48}},
        "model": {"builder": "mlp", "depth": 1, "width": 8}, "optim": {"name": "momentum"},
        "steps": 6, "batch_size": 32, "log_every": 3, "eval_every": 3, "device": "cpu"},
        "axes": {"model.width": [8, 4], "optim.lr": [0.1, 0.03], "seed": [0, 1]}}


def test_sweep_with_ray_equals_local_and_resumes(local_ray, tmp_path):
    """Each pack one Ray task: the same rows and final metrics as the local executor, the
    same run folders; started again it trains nothing."""
    from trainlab.runs.sweep import load_grid, run_sweep
    from trainlab.store import RunStore

    grid = load_grid(_sweep_grid())
    local = run_sweep(grid, tmp_path / "local", db=tmp_path / "l.db", progress=False,
                      report=False, say=lambda m: None)
    ray_ = run_sweep(grid, tmp_path / "ray", db=tmp_path / "r.db", progress=False,
                     executor="ray", say=lambda m: None)
    assert len(ray_.plan.packs) == 2 and sorted(ray_.trained) == sorted(local.trained)
    for i, r in local.results.items():
        got = ray_.results[i]["final"]
        assert got["train_loss"] == pytest.approx(r["final"]["train_loss"], rel=1e-5)
        assert got["test_acc"] == pytest.approx(r["final"]["test_acc"], abs=1e-6)
    rows = RunStore(tmp_path / "r.db", readonly=True).list_runs()
    assert len(rows) == 8 and {r["status"] for r in rows} == {"done"}
    assert (tmp_path / "ray" / "index.html").is_file()
    again = run_sweep(grid, tmp_path / "ray", db=tmp_path / "r.db", progress=False,
                      executor="ray", say=lambda m: None)
    assert again.trained == [] and len(again.skipped) == 8
    assert len(RunStore(tmp_path / "r.db", readonly=True).list_runs()) == 8


def test_cli_sweep_and_study_suite_with_ray(local_ray, tmp_path, capsys):
    from trainlab.cli import main
    from trainlab.studies import load_result

    g = tmp_path / "g.json"
    g.write_text(__import__("json").dumps(_sweep_grid()))
    assert main(["sweep", str(g), "--out", str(tmp_path / "s"), "--no-db",
                 "--executor", "ray", "--no-progress"]) == 0
    assert "8 runs trained" in capsys.readouterr().out
    assert main(["sweep", str(g), "--address", "auto"]) == 2
    assert "--address goes with --executor ray" in capsys.readouterr().err
    # a study suite: each study one Ray task; --resume keeps what finished
    out = tmp_path / "studies"
    names = ["activation-stats", "sigmoid-init"]
    from trainlab.studies import run_all

    results, page = run_all(names, scale="test", out=out, db=None, executor="ray",
                            log=None, progress=False)
    assert [r.name for r in results] == names and page.is_file()
    assert all(load_result(out / n).scale == "test" for n in names)
    stamp = (out / "sigmoid-init" / "result.json").stat().st_mtime_ns
    (out / "activation-stats" / "result.json").unlink()  # as if killed while it ran
    lines = []
    run_all(names, scale="test", out=out, db=None, executor="ray", resume=True,
            log=lines.append, progress=False)
    assert "resuming: 1 of 2 studies already finished" in lines[0]
    assert (out / "sigmoid-init" / "result.json").stat().st_mtime_ns == stamp  # not redone
    assert (out / "activation-stats" / "result.json").is_file()
    assert main(["study", "run", "sigmoid-init", "--executor", "ray"]) == 2
    assert "--resume and --executor go with --all" in capsys.readouterr().err
