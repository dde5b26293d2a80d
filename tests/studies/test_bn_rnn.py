"""The bn-rnn study at test scale: it runs, checks every claim, writes its files — on
MNIST-1D (its declared alternative, always here) and on real MNIST (``mnist_root``)."""

from __future__ import annotations

import json

import pytest

from trainlab.studies import get_study, run_study, study_names


def test_bn_rnn_declares_its_data():
    spec = get_study("bn-rnn")
    assert spec.datasets == ("mnist", "mnist1d")
    assert all("mnist1d" in c.on for c in spec.claims)
    assert "dataset" not in vars(spec.config("test"))  # the declaration is the single source


def _run(tmp_path, data):
    assert get_study("bn-rnn").name == "bn-rnn" and "bn_rnn" in study_names()
    out = tmp_path / "bn-rnn"
    res = run_study("bn-rnn", scale="test", out=out, seed=0, db=tmp_path / "db.sqlite",
                    progress=False, log=None, data=data)
    assert res.error is None, res.error
    data_ = json.loads((out / "result.json").read_text())
    assert data_["study"] == "bn-rnn" and data_["scale"] == "test"
    assert data_["dataset"] == data
    assert data_["substituted_for"] == (None if data == "mnist" else "mnist")
    return out, data_


def test_bn_rnn_runs_at_test_scale(tmp_path):
    out, data = _run(tmp_path, "mnist1d")
    _check_files(out, data)
    assert data["notes"][0].startswith("Sequences: MNIST-1D (40 steps of 1)")


@pytest.mark.slow
def test_bn_rnn_runs_on_mnist(tmp_path, mnist_root):
    out, data = _run(tmp_path, "mnist")
    _check_files(out, data)
    assert data["notes"][0].startswith("Sequences: MNIST rows (28 steps of 28 pixels)")


def _check_files(out, data):
    ids = {c.id for c in get_study("bn-rnn").claims}
    assert {c["id"] for c in data["claims"]} == ids
    for c in data["claims"]:  # every claim measured, on every seed
        assert c["status"] in ("PASS", "FAIL") and c["measured"] is not None
        assert c["seeds"] == [0, 1, 2]
    for name in ("learning_curves.png", "frame_statistics.png"):
        assert (out / name).stat().st_size > 5000
    rows = (out / "convergence.csv").read_text().splitlines()
    assert rows[0].startswith("variant,norm,loss_area_mean") and len(rows) == 5
    assert "bn-rnn" in (out / "index.html").read_text()
    # 4 variants x 3 seeds, each a run of the store with its metrics
    assert len(data["runs"]) == 12 and all(r["status"] == "done" for r in data["runs"])
