"""The ccnn study at test scale: it runs, writes its files and evaluates every claim — on
Shapeset-3x2 (its declared alternative, generated) and on real MNIST (``mnist_root``)."""

from __future__ import annotations

import json

from trainlab.studies import get_study, run_study


def test_ccnn_declares_its_data():
    spec = get_study("ccnn")
    assert spec.datasets == ("mnist", "shapeset")
    on = {c.id: c.on["shapeset"].threshold for c in spec.claims}
    assert on == {"objective-monotone": "same", "ccnn1-matches-cnn1": 1.6,
                  "ccnn2-matches-cnn2": 1.6, "low-rank-spectrum": "same"}


def test_ccnn_study_test_scale(tmp_path):
    _run_and_check(tmp_path, "shapeset")


def test_ccnn_study_on_mnist(tmp_path, mnist_root):
    _run_and_check(tmp_path, "mnist")


def _run_and_check(tmp_path, dataset):
    out = tmp_path / "ccnn"
    res = run_study("ccnn", scale="test", out=out, seed=0, db=tmp_path / "db.sqlite",
                    progress=False, log=None, device="cpu", data=dataset)
    assert res.error is None, res.error
    data = json.loads((out / "result.json").read_text())
    assert data["study"] == "ccnn" and data["scale"] == "test"
    assert data["dataset"] == dataset
    assert data["substituted_for"] == (None if dataset == "mnist" else "mnist")
    thresholds = {c["id"]: c["threshold"] for c in data["claims"]}
    matches = 1.0 if dataset == "mnist" else 1.6
    assert thresholds["ccnn1-matches-cnn1"] == thresholds["ccnn2-matches-cnn2"] == matches
    ids = {c["id"]: c for c in data["claims"]}
    assert set(ids) == {"objective-monotone", "ccnn1-matches-cnn1", "ccnn2-matches-cnn2",
                        "low-rank-spectrum"}
    assert all(c["status"] in ("PASS", "FAIL") for c in ids.values())  # all measured
    assert all(isinstance(c["measured"], float) for c in ids.values())
    for name in ("training.png", "spectrum.png"):
        assert (out / name).stat().st_size > 5000
    assert (out / "index.html").exists()
    errors = (out / "errors.csv").read_text().splitlines()
    assert errors[0].startswith("model,depth,test_error_%") and len(errors) == 5
    assert "gaussian_top_r_share" in (out / "spectrum.csv").read_text()
    # the CNNs: 2 depths × 3 seeds, each depth's seeds in one pack
    assert len(res.runs) == 6 and all(r["status"] == "done" for r in res.runs)
    assert len({r["pack"] for r in res.runs}) == 2 and all(r["pack"] for r in res.runs)
    # The reported nuclear norms respect the constraint of the test scale's configuration.
    cfg = get_study("ccnn").config("test")
    import csv

    rows = list(csv.DictReader((out / "spectrum.csv").open()))
    for row, radius in zip(rows, (cfg.radius, cfg.radius2)):
        assert float(row["nuclear_norm"]) <= radius * (1 + 1e-4)
        assert 0 < float(row["top_r_share"]) <= 1 and 0 < float(row["gaussian_top_r_share"]) < 1
