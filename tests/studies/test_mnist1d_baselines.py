"""mnist1d-baselines: the paper's four models (shapes and parameter counts of Greydanus's
models.py), the shuffle (a fixed permutation of the positions), the MLP's blindness to it
(exact: permuting the first layer's columns undoes it), and the study at the test scale with
its controls, each of which must FAIL."""

from __future__ import annotations

import torch

from trainlab.data import load_dataset
from trainlab.studies import run_study
from trainlab.studies.mnist1d_baselines import MODELS, build, shuffled

# LinearBase 40·10+10; MLPBase 40·100+100 + 100·100+100 + 100·10+10; ConvBase
# (1·25·5+25) + 2·(25·25·3+25) + (125·10+10); GRUBase 2·3·(6·1+6·6+6+6) + (480·10+10)
PARAMS = {"logistic": 410, "mlp": 15210, "cnn": 150 + 2 * 1900 + 1260, "gru": 324 + 4810}


def test_the_four_models_have_the_papers_shapes():
    x = torch.randn(7, 40)
    for name in MODELS:
        m = build(name, 0)
        assert m(x).shape == (7, 10), name
        assert sum(p.numel() for p in m.parameters()) == PARAMS[name], name
    a, b = build("cnn", 3), build("cnn", 3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_shuffle_is_one_fixed_permutation_of_the_positions():
    ds = load_dataset("mnist1d", n_train=50, n_test=20)
    sh = shuffled(ds)
    assert torch.equal(sh.y_train, ds.y_train) and torch.equal(sh.y_test, ds.y_test)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sh.x_train, ds.x_train[:, perm])
    assert torch.equal(sh.x_test, ds.x_test[:, perm])
    assert not torch.equal(sh.x_train, ds.x_train)
    assert torch.equal(shuffled(ds).x_train, sh.x_train)  # the same permutation every time


def test_an_mlp_is_blind_to_the_order():
    """MLP(x[:, perm]) equals the MLP whose first-layer columns are permuted back, applied to
    x: the claim mlp-order-blind rests on this identity (and on the init's symmetry)."""
    ds = load_dataset("mnist1d", n_train=64, n_test=16)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    m = build("mlp", 1).double()
    moved = build("mlp", 1).double()
    with torch.no_grad():
        moved[0].weight.copy_(m[0].weight[:, torch.argsort(perm)])
    x = ds.x_train.double()
    torch.testing.assert_close(m(x[:, perm]), moved(x), rtol=1e-12, atol=1e-12)


def test_study_at_test_scale_with_controls(tmp_path):
    res = run_study("mnist1d-baselines", scale="test", out=tmp_path / "m", log=None,
                    controls=True)
    assert res.error is None, res.error
    assert {c.id for c in res.claims} == {"cnn-beats-mlp", "gru-beats-mlp",
                                          "shuffle-hurts-cnn", "shuffle-hurts-gru",
                                          "mlp-order-blind"}
    for c in res.claims:
        assert c.test == "t" and c.n == 3, c
        assert c.control and c.control["status"] == "FAIL", (c.id, c.control)
    assert len(res.anchors) == 8 and {a["paper"] for a in res.anchors} == {
        32.0, 68.0, 94.0, 56.0, 91.0, 57.0}
    assert all(not a["same_setup"] and "of the paper's 6000 steps" in a["differences"]
               for a in res.anchors)
    # the GRU runs train alone (no vmap rule), the others in packs of 3 seeds
    alone = [r for r in res.runs if not r.get("pack") and r["label"].startswith("ordered/")]
    assert {r["label"].split("/")[1] for r in alone} == {"gru"}
    page = (tmp_path / "m" / "index.html").read_text()
    assert "The paper&#x27;s numbers beside trainlab&#x27;s" in page and "recurrent layers" in page
