"""What a new user hits in the first hour (issue 10 items 1-6): options by key, config files,
messages that say what to do, memory estimates, output files, the Trainer's API errors."""

from __future__ import annotations

import inspect
import json
import time

import pytest
import torch
import yaml

import trainlab
from trainlab.cli import main
from trainlab.runs.config import load_config

TINY = ["--dataset", "blobs", "--depth", "2", "--width", "8", "--steps", "4",
        "--batch-size", "32", "--device", "cpu", "--no-db"]


def _rc(argv):
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


# -- 1. every registry option by a documented key ---------------------------------------------
@pytest.mark.parametrize("flag, key", [
    ("--schedule step", "optim.schedule_options.step_size"),
    ("--schedule exponential", "optim.schedule_options.gamma"),
    ("--schedule warmup", "optim.schedule_options.warmup_steps"),
    ("--init constant", "model.init_options.value"),
])
def test_a_missing_argument_names_the_key_to_set(tmp_path, capsys, flag, key):
    assert _rc(["train", *TINY, *flag.split(), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"set it with --set {key}=" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # refused before a folder is made


def test_options_reach_the_techniques(tmp_path):
    from trainlab.nn.norms import GroupNorm
    from trainlab.runs.run import build_model_from_config, build_trainer, load_data_from_config

    cfg = load_config(overrides=[
        "data.name=blobs", "model.width=8", "model.norm=gn", "model.norm_options.groups=4",
        "model.activation=leaky_relu", "model.activation_options.negative_slope=0.2",
        "model.init=constant", "model.init_options.value=0.01", "optim.schedule=step",
        "optim.schedule_options.step_size=7", "loss=hinge", "loss_options.margin=0.5",
        "steps=3"])
    ds = load_data_from_config(cfg)
    model = build_model_from_config(cfg, ds)
    gns = [m for m in model.modules() if isinstance(m, GroupNorm)]
    assert gns and all(m.groups == 4 for m in gns)
    assert all(m.negative_slope == 0.2 for m in model.modules() if hasattr(m, "negative_slope"))
    assert torch.all(model.block1.linear.weight == 0.01)
    t = build_trainer(cfg, model)
    assert t.loss_fn.margin == 0.5
    t.fit(ds, steps=1, batch_size=16)
    assert t.schedule.step_size == 7


def _needs(factory, skip):
    """Arguments of ``factory`` with no default, besides those its caller supplies."""
    ps = inspect.signature(factory).parameters.values()
    return [p.name for p in ps if p.default is p.empty and p.name not in skip
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


@pytest.mark.parametrize("key, module, attr, skip", [
    ("model.init", "trainlab.init", "INITS", ("tensor", "generator", "model", "data")),
    ("model.norm", "trainlab.nn", "NORMS", ("num_features", "layer")),  # weight kinds wrap a layer
    ("model.activation", "trainlab.nn", "ACTIVATIONS", ("in_features", "out_features")),
    ("optim.name", "trainlab.optim", "OPTIMIZERS", ("params",)),
    ("optim.schedule", "trainlab.optim", "SCHEDULES", ("optimizer",)),
    ("loss", "trainlab.losses", "LOSSES", ()),
])
def test_every_registry_entry_is_configurable(key, module, attr, skip):
    """Each entry either builds from its name alone, or the error names the options key;
    and every argument without a default can be given through that key."""
    import importlib

    registry = getattr(importlib.import_module(module), attr)
    opt_key = {"optim.name": "optim.options", "loss": "loss_options"}.get(key, key + "_options")
    for name in registry.names():
        try:
            load_config(overrides=[f"{key}={name}"])
        except ValueError as e:
            # the error names the key that fixes it: the options, or (an init that needs
            # weight-normalized layers, such as wn_data) the norm
            fixes = [f"--set {opt_key}."] + (["model.norm one of"] if key == "model.init" else [])
            assert any(f in str(e) for f in fixes), (name, str(e))
        for arg in _needs(registry.get(name).factory, skip):
            with pytest.raises(ValueError, match=rf"{opt_key}\.{arg}|{opt_key}="):
                load_config(overrides=[f"{key}={name}"])


# -- 2. config files -------------------------------------------------------------------------
def test_print_config_round_trips_as_a_config_file(tmp_path, capsys):
    assert main(["train", *TINY, "--set", "model.norm_options.groups=2", "--print-config"]) == 0
    text = capsys.readouterr().out
    data = yaml.safe_load(text)
    assert data["model"]["norm_options"] == {"groups": 2} and data["data"]["name"] == "blobs"
    f = tmp_path / "run.yaml"
    f.write_text(text)
    assert load_config(f) == load_config(flags=None, overrides=[
        "data.name=blobs", "model.depth=2", "model.width=8", "steps=4", "batch_size=32",
        "device=cpu", "model.norm_options.groups=2"])


def test_json_and_a_runs_own_config_json_are_configs(tmp_path, capsys):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"data": {"name": "blobs"}, "steps": 3}))
    assert load_config(f).steps == 3
    assert main(["train", *TINY, "--out", str(tmp_path / "r"), "-q"]) == 0
    assert load_config(tmp_path / "r" / "config.json").model.width == 8
    assert _rc(["train", "--config", str(tmp_path / "r")]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_several_bad_values_are_reported_at_once():
    with pytest.raises(ValueError) as e:
        load_config(overrides=["model.width=0", "optim.lr=-1", "model.depth=abc",
                               "model.dropout=2"])
    msg = str(e.value)
    assert msg.startswith("4 problems")
    for key in ("model.width", "optim.lr", "model.depth", "model.dropout"):
        assert key in msg


# -- 3. messages that say what happened --------------------------------------------------------
def test_convnet_on_vectors_says_so(tmp_path, capsys):
    assert _rc(["train", *TINY, "--builder", "convnet", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "needs images (C, H, W) or sequences (C, L)" in err and "dims" not in err


def test_batch_larger_than_the_data_warns_once(tmp_path, capsys):
    assert main(["train", *TINY, "--set", "data.options.n_train=20", "--out",
                 str(tmp_path / "r"), "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("batch_size=32 is larger than the 20 training examples") == 1
    assert err.startswith("trainlab: warning:")


@pytest.mark.parametrize("classes", ["0", "1", "-3"])
def test_diagnose_refuses_fewer_than_two_classes(tmp_path, capsys, classes):
    spec = json.dumps({"name": "mlp", "in_features": 4, "widths": [8], "out_features": 3})
    assert _rc(["diagnose", "--spec", spec, f"--classes={classes}",
                "--html", str(tmp_path / "d.html")]) == 2
    assert "--classes must be >= 2" in capsys.readouterr().err


# -- 4. memory ------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [
    dict(name="mlp", in_features=40, widths=[64, 32], out_features=10, norm="bn"),
    dict(name="mlp", in_features=3, widths=[5], out_features=2, activation="maxout"),
    dict(name="convnet", in_channels=3, channels=[8, 16], out_features=10, dims=2),
    dict(name="preact_resnet", depth=8, out_features=10, in_channels=3),
])
def test_the_estimate_counts_exactly_the_parameters(spec):
    from trainlab.models.memory import estimate_memory
    from trainlab.nn import build_model

    real = sum(p.numel() for p in build_model(spec).parameters())
    est = estimate_memory(spec, optimizer="adam")
    assert est.parameters == real
    assert est.total_bytes == real * 4 * (2 + 2)


def test_a_model_too_big_is_refused_before_allocating(tmp_path, capsys):
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"does not fit in memory: mlp\(.*10000000.*800 TB"):
        trainlab.mlp([40, 10_000_000, 10_000_000, 10])
    assert time.perf_counter() - t < 5  # a meta-device build: no allocation, no swapping
    assert _rc(["train", *TINY, "--width", "10000000", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "model.width=10000000" in err and "available" in err
    spec = json.dumps({"name": "mlp", "in_features": 40, "widths": [10_000_000] * 3,
                       "out_features": 10})
    assert _rc(["diagnose", "--spec", spec, "--html", ""]) == 2
    assert "does not fit in memory" in capsys.readouterr().err


# -- 5. output files -------------------------------------------------------------------------
def test_diagnose_keeps_an_existing_page(tmp_path, capsys):
    page = tmp_path / "d.html"
    page.write_text("mine")
    spec = json.dumps({"name": "mlp", "in_features": 4, "widths": [8], "out_features": 3})
    assert _rc(["diagnose", "--spec", spec, "--no-jacobian", "--html", str(page)]) == 2
    assert "exists; give --force" in capsys.readouterr().err and page.read_text() == "mine"
    assert _rc(["diagnose", "--spec", spec, "--no-jacobian", "--html", str(page),
                "--force"]) == 0
    assert page.read_text() != "mine"


def test_quiet_still_says_where_the_run_is(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path / "r"), "-q"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"done: {tmp_path / 'r'}"]


# -- 6. the Trainer's API ------------------------------------------------------------------
def _data():
    from trainlab.data import load_dataset

    return load_dataset("ring", n_train=64, n_test=16)


def test_trainer_takes_probe_names():
    from trainlab.probes import ActivationStats
    from trainlab.train import Trainer

    t = Trainer(trainlab.mlp([2, 8, 2]), optimizer="sgd", probes=["activations"])
    assert isinstance(t.probes[0], ActivationStats)
    h = t.fit(_data(), steps=2, batch_size=16)
    assert h.probe_records
    with pytest.raises(ValueError, match="unknown probe 'activatons'. Did you mean activations"):
        Trainer(trainlab.mlp([2, 8, 2]), probes=["activatons"])


def test_fit_names_both_shapes_when_the_data_does_not_fit():
    from trainlab.train import Trainer

    with pytest.raises(ValueError, match=r"the data does not fit the model: examples of shape "
                                         r"\(2,\).*first layer expects \(N, 3\) features"):
        Trainer(trainlab.mlp([3, 8, 2]), optimizer="sgd").fit(_data(), steps=2, batch_size=16)
    with pytest.raises(ValueError, match=r"y holds classes 0\.\.1 but the model has 1 outputs"):
        Trainer(trainlab.mlp([2, 8, 1]), optimizer="sgd").fit(_data(), steps=2, batch_size=16)


def test_the_fit_check_leaves_the_run_unchanged():
    """The check's forward pass (eval mode, no grad, RNG forked) changes nothing: the same
    weights as a run in which the model is used for the first time by training."""
    from trainlab.train import Trainer

    outs = []
    for check in (True, False):
        torch.manual_seed(0)
        m = trainlab.mlp([2, 16, 2], norm="bn", dropout=0.5)
        t = Trainer(m, optimizer="sgd", seed=3)
        if not check:
            t._check_data_fits = lambda x, y: None
        t.fit(_data(), steps=5, batch_size=16)
        outs.append([p.detach().clone() for p in m.state_dict().values()])
    for a, b in zip(*outs):
        assert torch.equal(a, b)


# -- README truth: every subcommand and sub-action has --help with examples ------------------
@pytest.mark.parametrize("argv", [
    ["train"], ["diagnose"], ["demo"], ["list"], ["data"], ["data", "list"], ["data", "show"],
    ["data", "prepare"], ["runs"], ["runs", "list"], ["runs", "show"], ["runs", "compare"],
    ["runs", "export"], ["runs", "check"], ["sweep"],
])
def test_every_help_has_examples(argv, capsys):
    assert _rc([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:\n  trainlab " + " ".join(argv) in out


def test_a_run_without_test_split_draws_its_curves_without_warnings(tmp_path, recwarn,
                                                                     caplog):
    """matplotlib reports an empty legend through logging ("No artists with labels found")."""
    assert main(["train", *TINY, "--set", "data.options.n_test=0", "--out",
                 str(tmp_path / "r"), "-q"]) == 0
    assert (tmp_path / "r" / "figures" / "curves.png").is_file()
    said = [str(w.message) for w in recwarn] + [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "legend" in m.lower()], said
