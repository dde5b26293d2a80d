"""Studies II at test scale (optimizers, bn-train-eval, he-depth): files, claims, helpers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from trainlab.studies import get_study, run_study


def _run(name, tmp_path):
    out = tmp_path / name
    res = run_study(name, scale="test", out=out, seed=0, db=tmp_path / "db.sqlite",
                    progress=False, log=None)
    assert res.error is None, res.error
    data = json.loads((out / "result.json").read_text())
    assert {c["id"] for c in data["claims"]} == {c.id for c in get_study(name).claims}
    assert all(c["status"] in ("PASS", "FAIL") and c["measured"] is not None
               for c in data["claims"]), data["claims"]
    for f in data["figures"]:
        assert (out / f["file"]).stat().st_size > 5000 and f["caption"]
    assert all(r["status"] in ("done", "diverged") for r in data["runs"])
    assert name in (out / "index.html").read_text()
    return data, out


def test_optimizers_study(tmp_path):
    data, out = _run("optimizers", tmp_path)
    by = {c["id"]: c for c in data["claims"]}
    # exact maths, whatever the scale: one undamped Newton step solves the quadratic
    assert by["newton-quadratic"]["status"] == "PASS"
    assert by["ngd-straight"]["status"] == "PASS"
    assert (out / "paths_2d.csv").read_text().startswith("problem,optimizer,lr,final_f")


def test_sgd_path_is_the_gradient_step():
    from trainlab.studies.optimizers import quadratic, run_path, sign_flip_fraction

    f, res, _ = quadratic(10.0)
    path, values, _ = run_path("sgd", f, res, torch.tensor([2.0, 1.0]), 3, 0.1)
    w = torch.tensor([2.0, 1.0], dtype=torch.float64)
    for k in range(3):  # w <- w - lr (x, 10 y)
        w = w - 0.1 * torch.tensor([w[0], 10 * w[1]])
        torch.testing.assert_close(path[k + 1], w)
    assert values[-1] == pytest.approx(0.5 * (w[0] ** 2 + 10 * w[1] ** 2).item())
    # lr 0.1 on curvature 10: y -> (1 - 1) y = 0 in one step, no sign flips; lr 0.15 flips
    p2, _, _ = run_path("sgd", f, res, torch.tensor([2.0, 1.0]), 6, 0.15)
    assert sign_flip_fraction(p2) == 1.0


def test_bn_train_eval_study(tmp_path):
    data, out = _run("bn-train-eval", tmp_path)
    by = {c["id"]: c for c in data["claims"]}
    assert by["eval-batch-independent"]["status"] == "PASS"
    assert by["fold-exact"]["status"] == "PASS"
    rows = (out / "accuracy_by_mode.csv").read_text().splitlines()
    assert rows[0].startswith("seed,eval mode,train mode, batch 2") or "eval mode" in rows[0]


def test_he_depth_study(tmp_path):
    data, out = _run("he-depth", tmp_path)
    by = {c["id"]: c for c in data["claims"]}
    # the forward recursion does not depend on training: the Xavier factor is 1/√2 ± 10%
    assert by["xavier-halves"]["measured"] == pytest.approx(2 ** -0.5, rel=0.1)
    assert by["he-flat"]["measured"] == pytest.approx(1.0, rel=0.07)


def test_slope_per_layer_recovers_a_geometric_factor():
    from trainlab.studies.he_depth import slope_per_layer

    assert math.exp(slope_per_layer([3 * 0.7 ** k for k in range(10)])) == pytest.approx(0.7)


def test_init_training_study(tmp_path):
    data, out = _run("init-training", tmp_path)
    by = {c["id"]: c for c in data["claims"]}
    # at init, N(0,1) weights on standardized inputs saturate tanh: independent of training
    assert by["unit-saturates"]["status"] == "PASS"


def test_bn_deep_sigmoid_study(tmp_path):
    data, out = _run("bn-deep-sigmoid", tmp_path)
    assert len(data["runs"]) == 2
    assert (out / "final.csv").read_text().startswith("variant,final loss/ln10")


def test_bn_mnist_study(tmp_path):
    data, out = _run("bn-mnist", tmp_path)
    assert len(data["runs"]) == 2
    assert (out / "sigmoid_input_percentiles.png").is_file()


def test_sigmoid_input_percentiles_probe_leaves_training_alone():
    from trainlab.nn.builders import mlp
    from trainlab.studies.bn_mnist import SigmoidInputPercentiles
    from trainlab.train import Trainer

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    weights = []
    for with_probe in (False, True):
        torch.manual_seed(0)
        model = mlp([5, 8, 8, 3], activation="sigmoid", norm="bn")
        probe = SigmoidInputPercentiles(x[:20], "block2.act")
        Trainer(model, lr=0.1, log_every=2, progress=False,
                callbacks=[probe] if with_probe else []).fit((x, y), steps=6, batch_size=16)
        weights.append([t.clone() for t in model.state_dict().values()])
    for a, b in zip(*weights):  # same weights and BN statistics with and without the probe
        torch.testing.assert_close(a, b)
    assert probe.steps == [0, 2, 4, 6]
    # the recorded median is the median of the sigmoid's input on the probe batch
    assert probe.values[0].shape == (3, 8)


def test_activations_study(tmp_path):
    data, out = _run("activations", tmp_path)
    rows = (out / "activations.csv").read_text().splitlines()
    assert len(rows) == 1 + 16 and rows[0].startswith("activation,loss,acc,mean")
    by = {c["id"]: c for c in data["claims"]}
    assert by["sigmoid-not-centred"]["status"] == "PASS"  # σ ∈ (0, 1): mean near 0.5
