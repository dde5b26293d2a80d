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


def _csv(path):
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def test_claims_are_recomputed_from_the_tables(tmp_path):
    """The measured claim values follow from the per-model tables the studies write."""
    run_study("dropout-maxout", scale="test", out=tmp_path / "d", seed=1,
              db=tmp_path / "db.sqlite", progress=False, log=None)
    claims = {c["id"]: c for c in json.loads((tmp_path / "d" / "result.json").read_text())
              ["claims"]}
    rows = {r["model"]: r for r in _csv(tmp_path / "d" / "errors.csv")}
    want = float(rows["neither"]["gap (test - train)"]) - float(rows["dropout"]["gap (test - "
                                                                              "train)"])
    assert claims["dropout-narrows-gap"]["measured"] == pytest.approx(want, abs=1e-9)
    for r in rows.values():  # gap = test error - train error
        assert float(r["gap (test - train)"]) == pytest.approx(
            float(r["test error"]) - float(r["train error"]), abs=1e-9)
    mc = _csv(tmp_path / "d" / "weight_scaling_vs_mc.csv")
    gaps = [abs(float(r["test error (weight scaling)"]) - float(r[next(
        k for k in r if k.startswith("test error (MC"))])) for r in mc]
    assert len(mc) == 2 * 2  # two dropout nets, two seeds
    assert claims["weight-scaling-matches-mc"]["measured"] == pytest.approx(max(gaps))
