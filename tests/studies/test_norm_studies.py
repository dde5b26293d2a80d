"""The studies of issue 14 (weight-norm, norm-prop, norm-batch-size) at the test scale: each
runs, evaluates every declared claim, and writes a well-formed folder."""

from __future__ import annotations

import json

import pytest

from trainlab.studies import get_study, run_study

NAMES = ("weight-norm", "norm-prop", "norm-batch-size")


@pytest.mark.parametrize("name", NAMES)
def test_study_runs_at_test_scale_and_writes_its_folder(name, tmp_path):
    out = tmp_path / "out"
    res = run_study(name, scale="test", out=out, seed=0, db=tmp_path / "db.sqlite",
                    progress=False)
    data = json.loads((out / "result.json").read_text())
    spec = get_study(name)
    assert data["study"] == name and data["scale"] == "test" and data["error"] in (None, "")
    # every declared claim was measured (PASS or FAIL, never NOT MEASURED) with a number
    assert [c["id"] for c in data["claims"]] == [c.id for c in spec.claims]
    for c in data["claims"]:
        assert c["status"] in ("PASS", "FAIL"), c
        assert isinstance(c["measured"], (int, float))
    assert len(res.claims) == len(spec.claims)
    pngs = list(out.glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)
    assert list(out.glob("*.csv"))
    html = (out / "index.html").read_text()
    assert spec.title.split(":")[0] in html or name in html
    assert data["runs"], "the training runs are recorded"


def test_claims_name_their_sources():
    for name in NAMES:
        spec = get_study(name)
        assert spec.source and all(c.why for c in spec.claims)
        assert spec.quick_seconds <= 180
