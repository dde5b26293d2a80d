"""run_all with jobs > 1: the studies run in worker processes (spawned, single-threaded on a
2-core machine), longest first, and give what they give one after another in this process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trainlab.studies import default_jobs, run_all, usable_cores

NAMES = ["symmetry", "zero-centering"]  # data-free, seconds each


def test_jobs_give_the_sequential_results(tmp_path):
    lines = []
    par, page = run_all(NAMES, scale="test", out=tmp_path / "par", log=lines.append,
                        progress=False, jobs=2)
    seq, _ = run_all(NAMES, scale="test", out=tmp_path / "seq", log=None, progress=False,
                     jobs=1)
    assert [r.name for r in par] == [r.name for r in seq]  # the order asked, not of finishing
    for a, b in zip(par, seq):
        assert a.error is None and b.error is None
        assert [c.status for c in a.claims] == [c.status for c in b.claims]
        for ca, cb in zip(a.claims, b.claims):
            if ca.measured is not None:
                assert ca.measured == pytest.approx(cb.measured, rel=1e-4, abs=1e-6), ca.id
        assert json.loads((tmp_path / "par" / a.name / "result.json").read_text())["threads"] \
            == max(1, usable_cores() // 2)
    assert page.exists() and len([x for x in lines if "claims passed" in x]) == len(NAMES)


def test_jobs_are_checked():
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        run_all(NAMES, scale="test", jobs=0, log=None)
    assert default_jobs("cpu") == usable_cores() >= 1
    out = subprocess.run([sys.executable, "-m", "trainlab", "study", "run", "--all", "--jobs",
                          "two"], capture_output=True, text=True)
    assert out.returncode == 2 and "--jobs must be a positive integer or 'auto'" in out.stderr
    assert "Traceback" not in out.stderr
