"""Artifact checks shared by the signal-propagation study tests (not a test module)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from trainlab.studies import run_study


def run_test_scale(name: str, tmp_path: Path):
    """Run study ``name`` at the test scale into ``tmp_path/name``; return (result, folder)."""
    out = tmp_path / name
    res = run_study(name, scale="test", out=out, seed=0, db=tmp_path / "db.sqlite",
                    progress=False, log=None)
    return res, out


def check_artifacts(res, out: Path, figures: list[str], tables: list[str]) -> dict:
    """result.json well-formed with every claim evaluated (PASS or FAIL with a finite
    measured value, its threshold and seeds), each figure a non-empty PNG, each table a CSV
    with rows, index.html naming every figure and claim. Returns the claims by id."""
    assert res.error is None, res.error
    data = json.loads((out / "result.json").read_text())
    assert data["study"] == res.name and data["scale"] == "test" and data["seed"] == 0
    claims = {c["id"]: c for c in data["claims"]}
    assert claims, "no claims"
    for cid, c in claims.items():
        assert c["status"] in ("PASS", "FAIL"), (cid, c["status"])
        assert c["measured"] is not None and math.isfinite(c["measured"]), cid
        assert c["threshold"] is not None and c["why"], cid
        assert c["seeds"], cid
    page = (out / "index.html").read_text()
    for f in figures:
        png = out / f"{f}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f
        assert png.stat().st_size > 5000, f
        assert f"{f}.png" in page, f
    assert {f["file"] for f in data["figures"]} == {f"{f}.png" for f in figures}
    for t in tables:
        with open(out / f"{t}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows, t
    for cid in claims:
        assert cid in page
    return claims


def read_rows(out: Path, table: str) -> list[dict]:
    with open(out / f"{table}.csv", newline="") as fh:
        return list(csv.DictReader(fh))
