"""The lsuv, fixup and loss-landscape studies at test scale: they run, write their files and
measure every claim."""

from __future__ import annotations

import json

import pytest

from trainlab.studies import get_study, run_study

EXPECTED = {
    "lsuv": ({"variance-within-tol", "few-iterations", "baselines-stall", "lsuv-trains",
              "matches-orthogonal", "matches-bn"}, ("variances.png", "training.png"),
             ("variances.csv", "deep_net.csv"), 15),
    "fixup": ({"he-blows-up-at-init", "fixup-identity-at-init", "no-bn-fails",
               "fixup-trains", "bn-trains"}, ("training.png",),
              ("accuracy.csv", "stream_at_init.csv"), 3),
    "loss-landscape": ({"loss-range-smaller", "grad-change-smaller", "beta-smaller"},
                       ("landscape.png",), ("landscape.csv",), 6),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_study_runs_at_test_scale(name, tmp_path):
    claims, pngs, csvs, runs = EXPECTED[name]
    out = tmp_path / name
    res = run_study(name, scale="test", out=out, seed=0, db=tmp_path / "db.sqlite",
                    progress=False, log=None, device="cpu")
    assert res.error is None, res.error
    data = json.loads((out / "result.json").read_text())
    assert data["study"] == name and data["scale"] == "test"
    # MNIST-1D is their only declared data (embedded): never a substitute
    assert get_study(name).datasets == ("mnist1d",)
    assert data["dataset"] == "mnist1d" and data["substituted_for"] is None
    got = {c["id"]: c for c in data["claims"]}
    assert set(got) == claims
    assert all(c["status"] in ("PASS", "FAIL") for c in got.values())  # all measured
    assert all(isinstance(c["measured"], float) for c in got.values())
    for f in pngs:
        assert (out / f).stat().st_size > 5000, f
    for f in csvs:
        assert len((out / f).read_text().splitlines()) >= 2, f
    assert (out / "index.html").exists()
    assert len(res.runs) == runs and all(r["status"] in ("done", "diverged") for r in res.runs)
