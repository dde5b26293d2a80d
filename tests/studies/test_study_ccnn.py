"""The ccnn study at test scale: it runs, writes its files and evaluates every claim."""

from __future__ import annotations

import json

from trainlab.studies import run_study


def test_ccnn_study_test_scale(tmp_path):
    out = tmp_path / "ccnn"
    res = run_study("ccnn", scale="test", out=out, seed=0, db=tmp_path / "db.sqlite",
                    progress=False, log=None, device="cpu")
    assert res.error is None, res.error
    data = json.loads((out / "result.json").read_text())
    assert data["study"] == "ccnn" and data["scale"] == "test"
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
    assert len(res.runs) == 2 and all(r["status"] == "done" for r in res.runs)
    # The reported nuclear norms respect the constraint of the test scale's configuration.
    from trainlab.studies.base import get_study

    cfg = get_study("ccnn").config("test")
    import csv

    rows = list(csv.DictReader((out / "spectrum.csv").open()))
    for row, radius in zip(rows, (cfg.radius, cfg.radius2)):
        assert float(row["nuclear_norm"]) <= radius * (1 + 1e-4)
        assert 0 < float(row["top_r_share"]) <= 1 and 0 < float(row["gaussian_top_r_share"]) < 1
