"""The bn-rnn study at test scale: it runs, checks every claim, writes its files."""

from __future__ import annotations

import json

from trainlab.studies import get_study, run_study, study_names


def test_bn_rnn_runs_at_test_scale(tmp_path):
    assert get_study("bn-rnn").name == "bn-rnn" and "bn_rnn" in study_names()
    out = tmp_path / "bn-rnn"
    res = run_study("bn-rnn", scale="test", out=out, seed=0, db=tmp_path / "db.sqlite",
                    progress=False, log=None)
    assert res.error is None, res.error
    data = json.loads((out / "result.json").read_text())
    assert data["study"] == "bn-rnn" and data["scale"] == "test"
    ids = {c.id for c in get_study("bn-rnn").claims}
    assert {c["id"] for c in data["claims"]} == ids
    for c in data["claims"]:  # every claim measured, on every seed
        assert c["status"] in ("PASS", "FAIL") and c["measured"] is not None
        assert c["seeds"] == [0, 1]
    for name in ("learning_curves.png", "frame_statistics.png"):
        assert (out / name).stat().st_size > 5000
    rows = (out / "convergence.csv").read_text().splitlines()
    assert rows[0].startswith("variant,norm,loss_area_mean") and len(rows) == 5
    assert "bn-rnn" in (out / "index.html").read_text()
    # 4 variants x 2 seeds, each a run of the store with its metrics
    assert len(data["runs"]) == 8 and all(r["status"] == "done" for r in data["runs"])
