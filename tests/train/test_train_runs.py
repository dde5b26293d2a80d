"""Run folders and the run lifecycle: no overwrite, statuses, store finished last; the demo."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

import trainlab.runs.run as runs
from trainlab.cli.demo_app import activation_stds, run_demo
from trainlab.runs.config import load_config
from trainlab.runs.run import RunFolder, execute_run
from trainlab.store import RunStore


def _cfg(**over):
    sets = ["data.name=blobs", "model.depth=2", "model.width=8", "steps=12", "batch_size=64",
            "log_every=4", "device=cpu"] + [f"{k}={v}" for k, v in over.items()]
    return load_config(overrides=sets)


def test_run_folder_rules(tmp_path):
    f = RunFolder(tmp_path / "r")
    assert (tmp_path / "r" / "checkpoints").is_dir() and (tmp_path / "r" / "figures").is_dir()
    f.write_config({"a": 1})
    with pytest.raises(ValueError, match="already exists and is not empty.*--resume.*--force"):
        RunFolder(tmp_path / "r")
    with pytest.raises(ValueError, match="cannot resume: .*holds no run"):
        RunFolder(tmp_path / "empty", resume=True)
    assert RunFolder(tmp_path / "r", resume=True).read_config() == {"a": 1}
    RunFolder(tmp_path / "r", force=True)
    assert not (tmp_path / "r" / "config.json").exists()
    f.set_status("running", run_id=3)
    f.set_status("done")
    assert f.read_status()["run_id"] == 3 and f.read_status()["status"] == "done"


def test_failed_run_is_marked_failed_in_folder_and_store(tmp_path, monkeypatch):
    def broken_fit(self, *a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(runs.Trainer, "fit", broken_fit)
    with pytest.raises(RuntimeError, match="boom"):
        execute_run(_cfg(), tmp_path / "r", db=tmp_path / "t.db")
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    assert status["status"] == "failed" and "boom" in status["message"]
    assert RunStore(tmp_path / "t.db").get_run(status["run_id"])["status"] == "failed"


def test_store_row_is_finished_only_after_files(tmp_path, monkeypatch):
    seen = {}
    real = runs.plot_curves

    def spy(histories, path, **kw):
        # the figure is the last file written: the store must still say "running"
        seen["status"] = RunStore(tmp_path / "t.db").list_runs()[0]["status"]
        seen["metrics"] = (tmp_path / "r" / "metrics.csv").is_file()
        return real(histories, path, **kw)

    monkeypatch.setattr(runs, "plot_curves", spy)
    res = execute_run(_cfg(), tmp_path / "r", db=tmp_path / "t.db")
    assert seen == {"status": "running", "metrics": True}
    assert res.status == "done"
    assert RunStore(tmp_path / "t.db").get_run(res.run_id)["status"] == "done"


def test_same_config_same_seed_same_result(tmp_path):
    a = execute_run(_cfg(), tmp_path / "a")
    b = execute_run(_cfg(), tmp_path / "b")
    assert a.history.metrics == [
        {**r, "time": a.history.metrics[i]["time"]} for i, r in enumerate(b.history.metrics)]


def test_activation_stds_match_direct_computation():
    from trainlab.nn import mlp

    torch.manual_seed(0)
    m = mlp(5, [7, 7], 3, activation="tanh", norm="bn")
    x = torch.randn(64, 5)
    stds = activation_stds(m, x)
    with torch.no_grad():  # batch statistics, biased variance, eps as in BatchNorm1d
        h = x
        for name, blk in (("block1", m.block1), ("block2", m.block2)):
            z = blk.linear(h)
            z = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)
            h = torch.tanh(z * blk.norm.weight + blk.norm.bias)
            assert stds[name] == pytest.approx(h.std().item(), rel=1e-5)
    assert float(m.block1.norm.running_mean.abs().sum()) == 0.0  # model left untouched


@pytest.mark.slow
def test_full_demo_within_budget_and_shows_the_effect(tmp_path):
    t0 = time.perf_counter()
    res = run_demo(tmp_path / "demo", db=tmp_path / "t.db", progress=False, echo=lambda s: None)
    seconds = time.perf_counter() - t0
    assert seconds < 60, seconds
    small, xavier, bn = (res.histories[k] for k in res.histories)
    # N(0, 0.01^2): the output is constant, the loss stays at ln(10)
    assert small.last("train_loss") == pytest.approx(math.log(10), abs=0.02)
    assert bn.last("train_loss") < xavier.last("train_loss") < 1.5
    assert res.index.is_file()


def test_probed_run_writes_records_and_figures(tmp_path):
    from trainlab.probes import load_records

    cfg = _cfg(probes="all", probe_every=4)
    res = execute_run(cfg, tmp_path / "r")
    h = res.history
    log = load_records(tmp_path / "r")
    assert sorted(log.rows) == sorted(h.probe_records) and h.probe_records
    assert len(log.histograms) == len(h.histograms) > 0
    assert len(log.spectra) == len(h.spectra) > 0
    assert set(res.probe_files) == {"rows", "histograms", "spectra"}
    # probe_every=4 over 12 steps: steps 0, 4, 8, plus the histogram steps 0, 1, 10, plus
    # the last step (11), so the figures reach the end of training
    assert sorted(set(log.steps("act_std"))) == [0, 1, 4, 8, 10, 11]
    assert sorted(set(log.steps("update_ratio"))) == [0, 4, 8, 11]
    names = {p.name for p in res.probe_figures}
    assert {"probe_act_moments.png", "probe_grad_out_moments.png", "probe_w_moments.png",
            "probe_act_hist_step0.png", "probe_act_hist_step11.png",
            "probe_jacobian_step0.png", "probe_jacobian_step11.png",
            "probe_update_ratios.png", "index.html"} <= names
    assert any(n.startswith("probe_pre_percentiles_block1") for n in names)
    for p in res.probe_figures:
        assert p.parent == tmp_path / "r" / "figures" and p.stat().st_size > 1000
    assert not list((tmp_path / "r" / "figures").glob(".*"))  # no temporary file left
    # without probes: no probe files
    plain = execute_run(_cfg(), tmp_path / "plain")
    assert plain.probe_files == {} and plain.probe_figures == []
    assert not (tmp_path / "plain" / "probes.csv").exists()


def test_builder_name_is_the_model_spec_name(tmp_path):
    from trainlab.data import load_dataset
    from trainlab.nn import build_model

    ds = load_dataset("blobs")
    cfg = _cfg(**{"model.builder": "MLP"})
    m = runs.build_model_from_config(cfg, ds)
    torch.manual_seed(0)
    ref = build_model({"name": "mlp", "in_features": ds.meta.input_shape[0], "widths": [8, 8],
                       "out_features": ds.meta.num_classes})
    assert [n for n, _ in m.named_modules()] == [n for n, _ in ref.named_modules()]
    assert [p.shape for p in m.parameters()] == [p.shape for p in ref.parameters()]


def test_demo_regenerating_its_folder_marks_old_rows_overwritten(tmp_path):
    kw = dict(steps=2, depth=2, width=8, db=tmp_path / "t.db", progress=False, device="cpu",
              echo=lambda s: None, studies=())
    first = run_demo(tmp_path / "demo", **kw)
    second = run_demo(tmp_path / "demo", **kw)
    store = RunStore(tmp_path / "t.db")
    for old, new in zip(first.run_ids, second.run_ids):
        assert store.get_run(old)["status"] == "overwritten"
        assert "overwritten" in store.get_run(old)["message"]
        assert store.get_run(new)["status"] == "done"
