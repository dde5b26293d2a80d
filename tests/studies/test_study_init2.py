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
              ("accuracy.csv", "stream_at_init.csv"), 9),
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


def test_fixup_layout_gives_he_init_its_variance():
    """The fixup study's 1-row images: with zero padding a He-initialized 3x3 conv reads the
    signal with one kernel row of three (output second moment 2/3 of He's 2·E[x²]); with the
    circular padding the study sets, all three rows read it, and the moment is He's."""
    import torch

    from trainlab.init import init_model
    from trainlab.studies.fixup import Config, _net

    m = _net(Config(depth=8, widths=(4,)), "no-bn-he", 10, 1, seed=0)
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d) and c.padding != (0, 0)]
    assert convs and all(c.padding_mode == "circular" for c in convs)
    x = torch.randn(512, 64, 1, 40, generator=torch.Generator().manual_seed(0))
    got = {}
    for mode in ("zeros", "circular"):
        torch.manual_seed(1)
        conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False, padding_mode=mode)
        init_model(conv, "he_normal", generator=1)
        with torch.no_grad():
            got[mode] = float(conv(x).pow(2).mean() / x.pow(2).mean())
    assert got["circular"] == pytest.approx(2.0, rel=0.1)
    assert got["zeros"] == pytest.approx(2.0 / 3.0, rel=0.1)
