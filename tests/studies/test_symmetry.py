"""symmetry at the test scale: files, exact symmetry claims, and the row-spread formula."""

from __future__ import annotations

import json
import math

import pytest
import torch

from trainlab.models.builders import mlp
from trainlab.studies import run_study
from trainlab.studies.symmetry import RowSpreadProbe, row_spread


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("symmetry")
    res = run_study("symmetry", scale="test", out=tmp / "out", seed=0, db=tmp / "db.sqlite",
                    progress=False, log=None)
    return res, tmp


def test_artifacts_and_exact_claims(result):
    res, tmp = result
    out = tmp / "out"
    assert res.error is None
    data = json.loads((out / "result.json").read_text())
    status = {c["id"]: c["status"] for c in data["claims"]}
    assert set(status) == {"constant-rows-stay-equal", "constant-grads-equal",
                           "zeros-rows-stay-equal", "random-breaks-symmetry",
                           "symmetric-net-underfits"}
    assert "NOT MEASURED" not in status.values()
    # These hold by algebra at any scale; the last one depends on training.
    for cid in ("constant-rows-stay-equal", "constant-grads-equal", "zeros-rows-stay-equal",
                "random-breaks-symmetry"):
        assert status[cid] == "PASS", cid
    for name in ("row_spread.png", "hidden_units.png"):
        assert (out / name).stat().st_size > 10_000
    assert (out / "index.html").is_file() and (out / "row_spread.csv").is_file()


def test_row_spread_formula():
    # rows e1, e2: mean row (1/2, 1/2), each row sqrt(1/2) away; mean row norm 1
    assert row_spread(torch.eye(2)) == pytest.approx(math.sqrt(0.5), rel=1e-12)
    assert row_spread(torch.full((4, 3), 0.7)) == 0.0
    assert row_spread(torch.zeros(3, 2)) == 0.0
    m = torch.randn(6, 5, dtype=torch.float64)
    ref = sum((m[i] - m.mean(0)).norm() for i in range(6)) / sum(m[i].norm() for i in range(6))
    assert row_spread(m) == pytest.approx(ref.item(), rel=1e-12)


def test_equal_weights_get_equal_gradients_float64():
    """The lecture's argument, checked by autograd: with every weight equal, each hidden
    unit's gradient row is the same (and zero weights give zero hidden gradients)."""
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (16,))
    for init, zero in (({"name": "constant", "value": 0.3}, False), ("zeros", True)):
        net = mlp(3, [4, 5], 2, activation="tanh", init=init).double()
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        # At step 0 the equal head rows cancel the back-propagated signal (sum_c delta_c = 0);
        # after one step the head rows differ and the hidden gradients are non-zero.
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        for block in (net.block1, net.block2):
            g = block.linear.weight.grad
            # equal up to float64 rounding (BLAS may sum the rows in different orders)
            torch.testing.assert_close(g, g[:1].expand_as(g), rtol=1e-12, atol=1e-15)
            assert bool((g == 0).all()) == zero


def test_probe_rejects_bad_cadence():
    with pytest.raises(ValueError, match="every must be an integer >= 1. Received: every=0"):
        RowSpreadProbe(every=0)
