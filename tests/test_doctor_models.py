"""The doctor on models trainlab did not build (tests/zoo.py): it never crashes, says what it
covered, explains in notes what it could not compute, and never calls unseen parts healthy."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from trainlab.doctor import diagnose
from zoo import ZOO


def _check_report(d):
    cov = d.coverage
    assert set(cov) == {"modules_examined", "modules_not_examined", "params_examined",
                        "params_not_examined"}
    assert cov["modules_examined"] and cov["params_examined"]
    for why in list(cov["modules_not_examined"].values()) + list(
            cov["params_not_examined"].values()):
        assert why  # every part left out says why
    if cov["modules_not_examined"] or cov["params_not_examined"]:
        assert d.healthy is not True
    text = d.to_text()
    assert "coverage:" in text
    for n in d.notes:
        assert f"note: {n}" in text
    assert d.context["model"] and d.context["x_shape"] and d.context["parameters"] > 0


@pytest.mark.parametrize("name", sorted(ZOO))
def test_diagnose_every_zoo_model(name):
    model, x, y = ZOO[name]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = diagnose(model, (x, y))
    _check_report(d)
    n_params = len(dict(model.named_parameters()))
    assert len(d.coverage["params_examined"]) + len(d.coverage["params_not_examined"]) == n_params
    # every Jacobian block that is missing from the log is explained in a note
    jac_layers = {layer for _, layer, q, _ in d.log.rows if q.startswith("jac_")}
    assert jac_layers, d.notes
    for block, _ in model.named_children():
        if block not in jac_layers and block in {"embed"}:
            assert any(repr(block) in n for n in d.notes), (block, d.notes)
    for k, v in model.state_dict().items():  # the diagnosis leaves the model unchanged
        assert torch.equal(v, before[k]), k


def test_resnet_with_inplace_relu_gets_its_jacobian():
    model, x, y = ZOO["resnet"]()
    d = diagnose(model, (x, y))
    t = d.log.table(0)
    for block in ("conv1", "relu", "layer1", "layer2", "fc", "model"):
        assert t[block]["jac_sv_rms"] > 0, (block, d.notes)


def test_lstm_sequence_first_examples_and_scaled_weights_not_healthy():
    model, x, y = ZOO["lstm"]()
    d = diagnose(model, (x, y))
    assert d.context["batch_dim"] == 1  # (T, N, F): examples along dim 1
    assert "lstm.weight_hh_l0" in d.coverage["params_examined"]
    assert d.log.table(0)["model"]["jac_sv_rms"] > 0
    with torch.no_grad():
        for p in model.lstm.parameters():
            p.mul_(1e-3)
    d = diagnose(model, (x, y))
    assert d.healthy is not True, str(d)
    assert any(f.kind == "vanishing_activations" and f.layer == "lstm" for f in d.findings)


def test_unexamined_parameter_means_no_verdict():
    model, x, y = ZOO["shared"]()
    model.unused = nn.Linear(3, 3)  # never called: receives no gradient, output never seen
    d = diagnose(model, (x, y), jacobian=False)
    assert not d.findings and d.healthy is None
    assert "unused.weight" in d.coverage["params_not_examined"]
    assert "not called" in d.coverage["modules_not_examined"]["unused"]
    assert "no verdict" in d.to_text()


@pytest.mark.parametrize("name", ["transformer", "tied"])
def test_token_ids_are_not_inputs_not_centred_and_fixes_run(name):
    model, x, y = ZOO[name]()
    d = diagnose(model, (x, y), try_fixes=True)
    assert "inputs_not_centred" not in d.kinds()
    assert any("integers" in n for n in d.notes)
    d = diagnose(model, (x, y), jacobian=False, try_fixes=["center", "init"])
    center = next(fr for fr in d.fix_results if fr.fix == "center")
    assert not center.applied and "integers" in center.note


class _SE(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc1, self.relu = nn.Conv2d(c, c // 2, 1), nn.ReLU()
        self.fc2, self.gate = nn.Conv2d(c // 2, c, 1), nn.Sigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class _SENet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()
        self.conv2, self.act2 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        self.se = _SE(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.se(self.act2(self.conv2(self.act1(self.conv1(x))))).mean((2, 3)))


def test_squeeze_excite_gates_not_compared_with_feature_maps():
    torch.manual_seed(0)
    model, x, y = _SENet(), torch.randn(16, 3, 16, 16), torch.randint(0, 4, (16,))
    d = diagnose(model, (x, y), jacobian=False)
    rows = {r["layer"]: r for r in d.rows}
    # the gate's dL/ds is summed over the map: far larger than the feature maps' ...
    assert rows["se.fc2"]["grad_std"] > 10 * rows["conv1"]["grad_std"]
    # ... so it is a kind of its own, and no depth ratio is taken across kinds
    assert rows["se.fc2"]["kind"] != rows["conv1"]["kind"] == rows["conv2"]["kind"]
    assert not {"vanishing_gradients", "exploding_gradients"} & d.kinds(), str(d)


def test_empty_batch_is_a_clear_error():
    model, x, y = ZOO["shared"]()
    with pytest.raises(ValueError, match=r"batch must hold at least one example.*\(0, 8\)"):
        diagnose(model, (x[:0], y[:0]))
    m, x, y = ZOO["lstm"]()
    with pytest.raises(ValueError, match=r"batch must hold at least one example.*\(10, 0, 6\)"):
        diagnose(m, (x[:, :0], y[:0]))


def test_time_budget_cuts_only_the_jacobian_with_a_note():
    model, x, y = ZOO["resnet"]()
    d = diagnose(model, (x, y), time_budget=1e-6)
    assert any("time budget" in n for n in d.notes), d.notes
    assert not any(q.startswith("jac_") for _, _, q, _ in d.log.rows)
    assert d.rows and d.coverage["params_examined"]  # the rest of the diagnosis went on
    assert set(d.timings) >= {"check", "probes", "jacobian", "rules", "total"}
    with pytest.raises(ValueError, match="time_budget must be None or seconds > 0.*-1"):
        diagnose(model, (x, y), time_budget=-1)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_try_fixes_runs_on_every_zoo_model(name):
    """The init fix picks its scheme from the activation's rules, also for torch activations
    without a registry entry (Hardswish, Mish ...): mobilenet used to crash here."""
    model, x, y = ZOO[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # init_model's note on free parameters
        d = diagnose(model, (x, y), try_fixes=True)
    for r in d.fix_results:
        assert r.applied or r.note  # applied, or why not
