"""The `pretraining` and `dropout-maxout` studies at test scale: files, claims evaluated."""

from __future__ import annotations

import json

import pytest

from trainlab.studies import run_study


@pytest.mark.parametrize("name,claims", [
    ("pretraining", {"pretraining-improves-naive", "pretraining-lowers-variance",
                     "gap-shrinks-modern"}),
    ("dropout-maxout", {"dropout-narrows-gap", "maxout-dropout-narrows-gap",
                        "weight-scaling-matches-mc", "bagging-beats-members"}),
])
def test_study_runs_at_test_scale(tmp_path, name, claims):
    out = tmp_path / name
    res = run_study(name, scale="test", out=out, seed=0, db=tmp_path / "db.sqlite",
                    progress=False, log=None)
    data = json.loads((out / "result.json").read_text())
    got = {c["id"]: c for c in data["claims"]}
    assert set(got) == claims
    # every claim was measured (PASS or FAIL at this tiny scale, never NOT MEASURED)
    assert all(c["status"] in ("PASS", "FAIL") for c in got.values()), got
    assert len(res.claims) == len(claims)
    pngs = list(out.glob("*.png"))
    assert pngs and all(p.stat().st_size > 2000 for p in pngs)
    assert (out / "index.html").stat().st_size > 500
    assert list(out.glob("*.csv"))
