"""The `pretraining` and `dropout-maxout` studies at test scale: files, claims evaluated — on
MNIST-1D (their declared alternative, always here) and on real MNIST (``mnist_root``)."""

from __future__ import annotations

import json

import pytest

from trainlab.studies import get_study, run_study

CLAIMS = {
    "pretraining": {"pretraining-improves-naive", "pretraining-lowers-variance",
                    "gap-shrinks-modern"},
    "dropout-maxout": {"dropout-narrows-gap", "maxout-dropout-narrows-gap",
                       "weight-scaling-matches-mc", "bagging-beats-members"},
}
#: claims declared not tested on MNIST-1D (On(None, why)): reported N/A there
NOT_ON_MNIST1D = {"pretraining": set(), "dropout-maxout": {"weight-scaling-matches-mc"}}


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_studies_declare_their_data(name):
    spec = get_study(name)
    assert spec.datasets == ("mnist", "mnist1d")
    assert "dataset" not in vars(spec.config("test"))  # the declaration is the single source
    na = {c.id for c in spec.claims if c.on["mnist1d"].threshold is None}
    assert na == NOT_ON_MNIST1D[name]


def _run(tmp_path, name, dataset, seed=0):
    out = tmp_path / name
    res = run_study(name, scale="test", out=out, seed=seed, db=tmp_path / "db.sqlite",
                    progress=False, log=None, data=dataset)
    assert res.error is None, res.error
    data = json.loads((out / "result.json").read_text())
    assert data["dataset"] == dataset
    assert data["substituted_for"] == (None if dataset == "mnist" else "mnist")
    return out, res, data


def _check_outputs(out, res, data, name, not_tested):
    got = {c["id"]: c for c in data["claims"]}
    assert set(got) == CLAIMS[name]
    # every claim tested on these data was measured (PASS or FAIL at this tiny scale, never
    # NOT MEASURED); the others are N/A with the declared reason
    for cid, c in got.items():
        if cid in not_tested:
            assert c["status"] == "N/A" and c["measured"] is None, c
        else:
            assert c["status"] in ("PASS", "FAIL") and c["measured"] is not None, c
    assert len(res.claims) == len(CLAIMS[name])
    pngs = list(out.glob("*.png"))
    assert pngs and all(p.stat().st_size > 2000 for p in pngs)
    assert (out / "index.html").stat().st_size > 500
    assert list(out.glob("*.csv"))


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_study_runs_at_test_scale(tmp_path, name):
    out, res, data = _run(tmp_path, name, "mnist1d")
    _check_outputs(out, res, data, name, NOT_ON_MNIST1D[name])


@pytest.mark.parametrize("name", ["pretraining",
                                  pytest.param("dropout-maxout", marks=pytest.mark.slow)])
def test_study_runs_on_mnist(tmp_path, name, mnist_root):
    out, res, data = _run(tmp_path, name, "mnist")
    _check_outputs(out, res, data, name, set())


def _csv(path):
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def _check_recomputed(out, claims, weight_scaling_tested):
    rows = {r["model"]: r for r in _csv(out / "errors.csv")}
    per = {(r["model"], r["seed"]): (float(r["train error"]), float(r["test error"]))
           for r in _csv(out / "errors_per_seed.csv")}
    seeds = sorted({s for _, s in per})
    assert len(seeds) == 3
    # per seed: min(gap narrowing, test error fall); the claim is their mean
    want = [min((per["neither", s][1] - per["neither", s][0])
                - (per["dropout", s][1] - per["dropout", s][0]),
                per["neither", s][1] - per["dropout", s][1]) for s in seeds]
    assert claims["dropout-narrows-gap"]["measured"] == pytest.approx(sum(want) / 3, abs=1e-9)
    for r in rows.values():  # gap = test error - train error
        assert float(r["gap (test - train)"]) == pytest.approx(
            float(r["test error"]) - float(r["train error"]), abs=1e-9)
    mc = _csv(out / "weight_scaling_vs_mc.csv")
    gaps = [abs(float(r["test error (weight scaling)"]) - float(r[next(
        k for k in r if k.startswith("test error (MC"))])) for r in mc]
    assert len(mc) == 2 * 3  # two dropout nets, three seeds
    if weight_scaling_tested:  # per seed the larger of the two nets' gaps, mean over seeds
        per_seed = [max(gaps[i], gaps[i + 1]) for i in range(0, 6, 2)]
        assert claims["weight-scaling-matches-mc"]["measured"] == pytest.approx(
            sum(per_seed) / 3)
    else:  # the table is written; the claim is N/A on these data
        assert claims["weight-scaling-matches-mc"]["status"] == "N/A"


def test_claims_are_recomputed_from_the_tables(tmp_path):
    """The measured claim values follow from the per-model tables the studies write."""
    out, _, data = _run(tmp_path, "dropout-maxout", "mnist1d", seed=1)
    _check_recomputed(out, {c["id"]: c for c in data["claims"]}, weight_scaling_tested=False)


def test_claims_are_recomputed_from_the_tables_on_mnist(tmp_path, mnist_root):
    out, _, data = _run(tmp_path, "dropout-maxout", "mnist", seed=1)
    _check_recomputed(out, {c["id"]: c for c in data["claims"]}, weight_scaling_tested=True)


def _recompute_pretraining(runs_csv):
    """The three claims' per-seed values from every run of the lr grid, computed here again:
    each net's run with the lowest validation error (a diverged one last; the first lr on
    ties), the 'learned' guard, the gains and Levene's absolute deviations."""
    from trainlab.studies.pretraining import MARGIN

    rows = _csv(runs_csv)
    grid: dict = {}
    for r in rows:  # grid order: the lrs of one (arm, seed) in the Config's order
        grid.setdefault((r["arm"], int(r["seed"])), []).append(r)
    sel = {}
    for key, cands in grid.items():
        best = min(cands, key=lambda r: (r["diverged"] == "True", float(r["val error"])))
        # the study marks the same run, and never looked at the test error to choose it
        assert [r["selected"] == "True" for r in cands] == [r is best for r in cands], key
        sel[key] = best
    chance = 0.9  # 10 classes on MNIST and MNIST-1D

    def arm(name):
        rs = [sel[k] for k in sorted(k for k in sel if k[0] == name)]
        return ([float(r["test error"]) for r in rs],
                [r["diverged"] != "True" and float(r["val error"]) <= chance - MARGIN
                 for r in rs])

    (e_nr, l_nr), (e_np, l_np) = arm("naive/random"), arm("naive/pretrained")
    (e_mr, l_mr), (e_mp, l_mp) = arm("xavier+bn/random"), arm("xavier+bn/pretrained")
    ok = [a and b for a, b in zip(l_nr, l_np)]
    ok4 = [a and b and c and d for a, b, c, d in zip(l_nr, l_np, l_mr, l_mp)]
    improves = [r - p if o else -1.0 for r, p, o in zip(e_nr, e_np, ok)]
    m_r, m_p = sum(e_nr) / len(e_nr), sum(e_np) / len(e_np)
    variance = [abs(r - m_r) - abs(p - m_p) if o else -1.0 for r, p, o in zip(e_nr, e_np, ok)]
    gap = [(mr - mp) - (nr - np_) if o else 1.0
           for nr, np_, mr, mp, o in zip(e_nr, e_np, e_mr, e_mp, ok4)]
    return {"pretraining-improves-naive": improves, "pretraining-lowers-variance": variance,
            "gap-shrinks-modern": gap}


def test_pretraining_claims_are_recomputed_from_the_runs(tmp_path):
    """Every net picks its lr on the validation split; the claims follow from the grid's
    runs (runs.csv) by the selection, the guard, the gains and Levene's deviations."""
    out, _, data = _run(tmp_path, "pretraining", "mnist1d", seed=1)
    got = {c["id"]: c for c in data["claims"]}
    want = _recompute_pretraining(out / "runs.csv")
    for cid, values in want.items():
        assert len(values) == 3 and got[cid]["n"] == 3 and got[cid]["test"] == "t"
        assert got[cid]["measured"] == pytest.approx(sum(values) / 3, abs=1e-9), cid
    # the grid: 4 arms x 3 lrs x 3 seeds; the random-init nets take the pre-trained nets'
    # unsupervised updates as supervised steps (the same number of updates)
    rows = {r["arm"]: r for r in _csv(out / "test_error.csv")}
    assert len(_csv(out / "runs.csv")) == 4 * 3 * 3
    cfg = get_study("pretraining").config("test")
    assert int(rows["naive/random"]["steps"]) == cfg.steps + cfg.depth * cfg.pretrain_steps
    assert int(rows["naive/pretrained"]["steps"]) == cfg.steps


def test_pretraining_nets_that_did_not_learn_cannot_pass(tmp_path, monkeypatch):
    """Nets that stay at chance (one step at a tiny lr) make every claim FAIL by its guard:
    each seed counts against the claim (-1, or +1 for gap-shrinks-modern)."""
    import dataclasses

    spec = get_study("pretraining")
    monkeypatch.setitem(spec.scales, "test", dataclasses.replace(
        spec.config("test"), pretrain_steps=1, steps=1, lrs=(1e-5,)))
    _, _, data = _run(tmp_path, "pretraining", "mnist1d")
    got = {c["id"]: c for c in data["claims"]}
    assert got["pretraining-improves-naive"]["measured"] == -1.0
    assert got["pretraining-lowers-variance"]["measured"] == -1.0
    assert got["gap-shrinks-modern"]["measured"] == 1.0
    assert all(c["status"] == "FAIL" for c in got.values())
