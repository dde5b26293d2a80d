"""zero-centering at the test scale: files, and the gradient-sign measures against autograd.
The study runs on MNIST-1D here (given explicitly); on real MNIST through the ``mnist_root``
fixture (slow)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.func import functional_call, grad, vmap

from trainlab.models.builders import mlp
from trainlab.studies import run_study
from trainlab.studies.zero_centering import (
    _per_example_fraction,
    positive_blobs,
    same_sign_fraction,
)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zero_centering")
    res = run_study("zero-centering", scale="test", out=tmp / "out", seed=0,
                    db=tmp / "db.sqlite", progress=False, log=None, data="mnist1d")
    return res, tmp


def _check(out, data_name):
    data = json.loads((out / "result.json").read_text())
    assert data["dataset"] == data_name
    status = {c["id"]: c["status"] for c in data["claims"]}
    assert set(status) == {"positive-inputs-one-sign", "centered-inputs-mixed-sign",
                           "minibatch-one-sign-raw", "centered-converges-faster"}
    assert "NOT MEASURED" not in status.values() and "N/A" not in status.values()
    # exact at any scale: dL/dw_i = delta * x_i with x >= 0; centred inputs have both signs
    assert status["positive-inputs-one-sign"] == "PASS"
    assert status["centered-inputs-mixed-sign"] == "PASS"
    return data


def test_artifacts(result):
    res, tmp = result
    out = tmp / "out"
    assert res.error is None
    data = _check(out, "mnist1d")
    assert any(n.startswith("Setup: the first 64 MNIST-1D training signals, shifted")
               for n in data["notes"])
    for name in ("same_sign.png", "zigzag.png"):
        assert (out / name).stat().st_size > 10_000
    assert (out / "index.html").is_file() and (out / "steps_to_target.csv").is_file()


@pytest.mark.slow
def test_on_mnist(tmp_path, mnist_root):
    res = run_study("zero-centering", scale="test", out=tmp_path / "out", seed=0, db=None,
                    progress=False, log=None, data="mnist")
    assert res.error is None
    data = _check(tmp_path / "out", "mnist")
    assert data["substituted_for"] is None
    assert not any("shifted" in n for n in data["notes"])  # pixels are non-negative as they are


def test_same_sign_fraction_against_a_loop():
    g = torch.tensor([[1.0, 2.0, 0.0], [-1.0, 0.0, -3.0], [1.0, -1.0, 2.0], [0.0, 0.0, 0.0]])
    assert same_sign_fraction(g) == pytest.approx(2 / 3)  # the zero row does not count
    m = torch.randn(50, 3)
    ref = sum(bool((r > 0).all() or (r < 0).all()) for r in m) / 50
    assert same_sign_fraction(m) == pytest.approx(ref)


def _per_example_grads(net, x, y):
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(p, xi, yi):
        out = functional_call(net, p, (xi.unsqueeze(0),))
        return torch.nn.functional.cross_entropy(out, yi.unsqueeze(0))

    return vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)["block1.linear.weight"]


def test_per_example_fraction_matches_autograd_per_example_gradients():
    """Per-example gradients from torch.func (float64): with x >= 0 every row of every
    example's first-layer gradient has one sign; centred, almost none does."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 7, generator=gen, dtype=torch.float64)
    x[:, 0] = 0.0  # a dead pixel: its gradient entries are 0 and do not count
    y = torch.randint(0, 3, (24,), generator=gen)
    net = mlp(7, [5], 3, activation="tanh",
              init={"name": "xavier_uniform", "generator": gen}).double()
    for xs in (x, x - x.mean(0)):
        g = _per_example_grads(net, xs, y)  # (N, units, inputs)
        ref = same_sign_fraction(g.reshape(-1, g.shape[-1]))
        assert _per_example_fraction(net, xs, y) == pytest.approx(ref, abs=1e-12)
    assert _per_example_fraction(net, x, y) == 1.0
    assert _per_example_fraction(net, x - x.mean(0), y) < 0.2


def test_positive_blobs_are_positive_and_balanced():
    x, y = positive_blobs(400, 3.0, 3.0, 0.5, torch.Generator().manual_seed(1))
    assert bool((x > 0).all()) and int(y.sum()) == 200
    m0, m1 = x[y == 0].mean(0), x[y == 1].mean(0)
    torch.testing.assert_close(m1 - m0, torch.tensor([3.0, 0.0]), atol=0.15, rtol=0)
