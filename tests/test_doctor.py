"""The doctor flags the lectures' pathological setups and stays quiet on healthy networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.cli import main
from trainlab.doctor import THRESHOLDS, diagnose
from trainlab.init import init_model
from trainlab.nn import mlp


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(128, 32, generator=g), torch.randint(0, 10, (128,), generator=g)


def net(act: str, scheme: str | None = None, norm: str = "none", bias: float = 0.0, **kw):
    m = mlp([32] + [128] * 6 + [10], activation=act, norm=norm)
    if scheme:
        init_model(m, scheme, bias=bias, generator=0, **kw)
    return m


@pytest.mark.parametrize(
    "model_args, expected",
    [
        (("tanh", "normal"), {"std": 0.01, "_kinds": {"vanishing_activations",
                                                     "vanishing_gradients"}}),
        (("tanh", "normal"), {"std": 1.0, "_kinds": {"saturation"}}),
        (("relu", "he_normal"), {"bias": -5.0, "_kinds": {"dead_units"}}),
        (("tanh", "constant"), {"value": 0.05, "_kinds": {"symmetric_units"}}),
    ],
    ids=["tanh-0.01-vanishing", "tanh-N01-saturation", "relu-negbias-dead", "constant-symmetry"],
)
def test_flags_pathological_setups(batch, model_args, expected):
    kw = dict(expected)
    kinds = kw.pop("_kinds")
    d = diagnose(net(*model_args, **kw), batch, jacobian=False)
    assert kinds <= d.kinds(), str(d)
    for f in d.findings:
        assert f.fixes and f.evidence
    text = d.to_text()
    for name, value in THRESHOLDS.items():  # thresholds are stated in the output
        assert f"{name}={value:g}" in text


@pytest.mark.parametrize("act, scheme, norm", [("tanh", "xavier_uniform", "none"),
                                               ("relu", "he_normal", "none"),
                                               ("relu", None, "bn"), ("tanh", None, "bn")])
def test_quiet_on_healthy_networks(batch, act, scheme, norm):
    d = diagnose(net(act, scheme, norm), batch, jacobian=False)
    assert d.healthy, str(d)


def test_per_layer_numbers_and_model_untouched(batch):
    m = nn.Sequential(nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                      nn.Linear(16, 10))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    d = diagnose(m, batch, steps=2, lr=0.5)
    assert [r["layer"] for r in d.rows] == ["0", "2", "4"]
    x = batch[0]
    with torch.no_grad():
        h1 = torch.tanh(m[0](x))
    assert d.rows[0]["act_std"] == pytest.approx(h1.std().item(), rel=0.2)  # after 2 steps
    assert all(r["jac_sv"] > 0 for r in d.rows)
    for k, v in m.state_dict().items():  # steps ran on a copy
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in m.parameters())


def test_inputs_not_centred_and_bn_mode(batch):
    m = nn.Sequential(nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    m[1].eval()
    d = diagnose(m, (batch[0].abs(), batch[1]), jacobian=False,
                 try_fixes=["center", "bn_train", "norm"])
    assert {"inputs_not_centred", "bn_mode"} <= d.kinds()
    tried = {fr.fix: fr for fr in d.fix_results}
    assert "inputs_not_centred" not in tried["center"].after.kinds()
    assert "bn_mode" not in tried["bn_train"].after.kinds()
    assert not tried["norm"].applied and "trainlab-built" in tried["norm"].note


def test_try_fixes_init_and_norm_cure_vanishing(batch, tmp_path):
    m = net("tanh", "normal", std=0.01)
    d = diagnose(m, batch, jacobian=False, try_fixes=["init", "norm"])
    for fr in d.fix_results:
        assert fr.applied and not ({"vanishing_activations"} & fr.after.kinds()), fr.fix
    page = d.to_html(tmp_path / "d.html")
    html = page.read_text()
    assert "vanishing_activations" in html and "before and after" in html


def test_non_finite_is_flagged(batch):
    m = net("relu", "he_normal")
    with torch.no_grad():
        m.block3.linear.weight[0, 0] = float("inf")
    d = diagnose(m, batch, jacobian=False)
    nf = [f for f in d.findings if f.kind == "non_finite"]
    assert nf and any(f.layer and f.layer.startswith("block3") for f in nf)


def test_bad_input_messages(batch):
    m = net("relu")
    with pytest.raises(ValueError, match=r"input shape \(128, 30\).*expects \(N, 32\)"):
        diagnose(m, torch.randn(128, 30))
    with pytest.raises(TypeError, match="batch must be a tensor x or a pair"):
        diagnose(m, "data")
    with pytest.raises(ValueError, match="Unknown fix.*'magic'"):
        diagnose(m, batch, try_fixes=["magic"])
    with pytest.raises(ValueError, match="steps must be an integer >= 0.*-1"):
        diagnose(m, batch, steps=-1)


def test_cli_diagnose_spec_and_model(tmp_path, capsys):
    spec = ('{"builder": "mlp", "in_features": 16, "widths": [32, 32, 32, 32], '
            '"activation": "tanh", "init": {"name": "normal", "std": 0.01}}')
    html = tmp_path / "d.html"
    assert main(["diagnose", "--spec", spec, "--no-jacobian", "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "vanishing_activations" in out and str(html) in out and html.exists()
    f = tmp_path / "mynet.py"
    f.write_text("import torch\ndef build():\n    return torch.nn.Sequential("
                 "torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))\n")
    assert main(["diagnose", "--model", f"{f}:build", "--batch-size", "16", "--html", ""]) == 0
    assert "block" not in capsys.readouterr().out
    assert main(["diagnose", "--model", f"{f}:nope"]) == 2
    assert "has no function 'nope'" in capsys.readouterr().err


def test_coverage_context_and_timings_on_an_mlp(batch):
    m = net("tanh", "xavier_uniform")
    d = diagnose(m, batch, steps=1)
    names = [n for n, _ in m.named_parameters()]
    assert d.coverage["params_examined"] == names and not d.coverage["params_not_examined"]
    assert "block1.linear" in d.coverage["modules_examined"]
    assert "block1.act" in d.coverage["modules_examined"]
    assert d.healthy is True
    c = d.context
    assert (c["model"], c["x_shape"], c["x_dtype"], c["y_shape"], c["y_dtype"]) == (
        "MLP", [128, 32], "float32", [128], "int64")
    assert c["parameters"] == sum(p.numel() for p in m.parameters())
    assert (c["loss"], c["steps"], c["seed"], c["device"]) == ("cross_entropy", 1, 0, "cpu")
    assert d.timings["total"] >= d.timings["probes"] > 0
    assert "coverage: " in d.to_text() and "parameters examined" in d.to_text()


def test_a_failing_probe_becomes_a_note_and_the_rest_goes_on(batch, monkeypatch):
    from trainlab.probes.gradients import GradientStats

    def broken(self):
        raise RuntimeError("simulated probe failure")

    monkeypatch.setattr(GradientStats, "_on_after_backward", broken)
    d = diagnose(net("tanh", "normal", std=0.01), batch)
    assert any("GradientStats" in n and "simulated probe failure" in n for n in d.notes)
    assert "vanishing_activations" in d.kinds()  # ActivationStats still ran
    assert all(r["jac_sv"] > 0 for r in d.rows)  # and the Jacobian


def test_integer_inputs_are_not_inputs_not_centred(batch):
    m = nn.Sequential(nn.Embedding(20, 8), nn.Flatten(), nn.Linear(8 * 4, 10))
    x = torch.randint(5, 20, (16, 4))  # ids >= 5: "mean" 12, std 4
    d = diagnose(m, (x, torch.randint(0, 10, (16,))), try_fixes=True)
    assert "inputs_not_centred" not in d.kinds()
    assert any("integers" in n for n in d.notes)
