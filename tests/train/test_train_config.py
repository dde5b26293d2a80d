"""Configs: merge order, files, --set parsing, all errors at once, registry names, diffs."""

from __future__ import annotations

import pytest

from trainlab.runs.config import (
    TrainConfig,
    config_diff,
    load_config,
    parse_overrides,
    read_config_file,
)


def test_defaults_and_registry_default_lr():
    cfg = load_config()
    assert isinstance(cfg, TrainConfig)
    assert cfg.model.builder == "mlp" and cfg.batch_size == 128
    from trainlab.optim import OPTIMIZERS

    expected = OPTIMIZERS.get("adam").meta.get("default_lr", 1e-3)
    assert load_config(flags={"optim.name": "adam"}).optim.lr == pytest.approx(expected)


def test_merge_order_file_flags_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: {width: 32, depth: 2}\noptim: {lr: 1e-3}\nseed: 4\n")
    cfg = load_config(f, flags={"model.width": 64, "model.depth": None},
                      overrides=["model.width=256", "optim.options.momentum=0.9"])
    assert cfg.model.width == 256  # --set beats flags beats file
    assert cfg.model.depth == 2  # a flag left at None does not override the file
    assert cfg.optim.lr == pytest.approx(1e-3)  # YAML's "1e-3" string read as a float
    assert cfg.optim.options == {"momentum": 0.9}
    assert cfg.seed == 4


def test_toml_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('steps = 100\n[model]\nactivation = "tanh"\nnorm = "bn"\n')
    cfg = load_config(f)
    assert (cfg.steps, cfg.model.activation, cfg.model.norm) == (100, "tanh", "bn")


def test_every_problem_reported_at_once():
    with pytest.raises(ValueError) as e:
        load_config(overrides=["model.widht=3", "batch_size=abc", "optim.nme=sgd", "sed=1"])
    msg = str(e.value)
    assert msg.startswith("4 problems in the config")
    assert "unknown key model.widht. Did you mean model.width?" in msg
    assert "batch_size must be int. Received: batch_size='abc'" in msg
    assert "unknown key optim.nme. Did you mean optim.name?" in msg
    assert "unknown key sed. Did you mean seed" in msg


def test_values_and_names_checked_before_running():
    with pytest.raises(ValueError, match="model.dropout must be in \\[0, 1\\).*=1.5"):
        load_config(overrides=["model.dropout=1.5"])
    with pytest.raises(ValueError, match="give epochs or steps, not both"):
        load_config(overrides=["epochs=1", "steps=5"])
    with pytest.raises(ValueError, match="model.width must be >= 1. Received: model.width=0"):
        load_config(flags={"model.width": 0})
    with pytest.raises(ValueError, match="optim.name: Unknown optim 'adm'. Did you mean 'adam'"):
        load_config(flags={"optim.name": "adm"})
    with pytest.raises(ValueError, match="model.activation: Unknown activation 'tnh'"):
        load_config(flags={"model.activation": "tnh"})
    with pytest.raises(ValueError, match="data.name: Unknown dataset 'mnist2d'"):
        load_config(flags={"data.name": "mnist2d"})
    with pytest.raises(ValueError, match="seed must be int.*seed=True"):
        load_config(overrides=["seed=true"])
    with pytest.raises(ValueError, match="model must be a mapping"):
        load_config(overrides=["model=3"])


def test_file_errors_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="config file '.*nope.yaml' does not exist"):
        read_config_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {width: 3\n  depth: [\n")
    with pytest.raises(ValueError, match="cannot parse config file '.*bad.yaml'"):
        read_config_file(bad)
    badt = tmp_path / "bad.toml"
    badt.write_text("steps = = 3\n")
    with pytest.raises(ValueError, match="cannot parse config file '.*bad.toml'"):
        read_config_file(badt)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        read_config_file(lst)
    other = tmp_path / "c.ini"
    other.write_text("{}")
    with pytest.raises(ValueError, match="must end in .yaml, .yml, .toml or .json"):
        read_config_file(other)


def test_parse_overrides():
    assert parse_overrides(["a.b=3", "a.c=x", "d=[1, 2]", "e=null"]) == {
        "a": {"b": 3, "c": "x"}, "d": [1, 2], "e": None}
    with pytest.raises(ValueError, match="--set takes KEY=VALUE.*'width'"):
        parse_overrides(["width"])


def test_config_diff_lists_changed_keys():
    a = load_config().to_dict()
    b = load_config(overrides=["model.width=64", "optim.lr=0.5", "device=cpu"]).to_dict()
    assert config_diff(a, b) == [
        "model.width: stored 128, given 64",
        "optim.lr: stored 0.1, given 0.5",
    ]
    assert config_diff(a, a) == []


def test_probes_key_from_file_set_and_all(tmp_path):
    assert load_config().probes == [] and load_config().probe_every is None
    f = tmp_path / "c.yaml"
    f.write_text("probes: [jacobian, Activations]\nprobe_every: 20\n")
    cfg = load_config(f)
    assert cfg.probes == ["activations", "jacobian"] and cfg.probe_every == 20
    t = tmp_path / "c.toml"
    t.write_text('probes = ["gradients"]\n')
    assert load_config(t).probes == ["gradients"]
    cfg = load_config(overrides=["probes=weights,updates", "probe_every=5"])
    assert cfg.probes == ["weights", "updates"] and cfg.probe_every == 5
    everything = ["activations", "gradients", "weights", "updates", "jacobian"]
    assert load_config(overrides=["probes=all"]).probes == everything
    assert load_config(flags={"probes": ["activation", "grad,jacobian"]}).probes == [
        "activations", "gradients", "jacobian"]


def test_probe_errors_name_close_matches_and_values():
    with pytest.raises(ValueError, match=r"unknown probe 'activatons'\. Did you mean "
                                         r"activations\? Allowed: activations, gradients"):
        load_config(overrides=["probes=activatons"])
    with pytest.raises(ValueError, match="probe_every must be >= 1.*probe_every=0"):
        load_config(overrides=["probe_every=0"])
    with pytest.raises(ValueError, match="probes must be list.*probes=3"):
        load_config(overrides=["probes=3"])


def test_config_diff_covers_probes_and_fills_keys_of_older_configs():
    from trainlab.runs.config import with_defaults

    a = load_config(overrides=["probes=activations"]).to_dict()
    b = load_config(overrides=["probes=activations,jacobian", "probe_every=7"]).to_dict()
    diffs = config_diff(a, b)
    assert "probe_every: stored None, given 7" in diffs
    assert any(d.startswith("probes: stored") and "jacobian" in d for d in diffs)
    # a config.json written before the probe keys existed equals today's default config
    old = load_config().to_dict()
    del old["probes"], old["probe_every"]
    assert config_diff(old, load_config().to_dict()) != []
    assert config_diff(with_defaults(old), load_config().to_dict()) == []


def test_model_spec_name_is_the_builder_key():
    with pytest.raises(ValueError, match="unknown key model.name. Did you mean model.builder"):
        load_config(overrides=["model.name=mlp"])


# -- seq_classifier: its own keys, a recurrent norm ------------------------------------------
RECURRENT_NORMS = ("none", "bn_frame", "bn_seq", "ln")


@pytest.mark.parametrize("norm", RECURRENT_NORMS)
def test_seq_classifier_config_builds_and_trains_with_each_recurrent_norm(tmp_path, norm):
    import math

    import torch

    from trainlab.models.builders import SeqClassifier
    from trainlab.runs.run import build_model_from_config, build_trainer, load_data_from_config

    f = tmp_path / "seq.yaml"
    f.write_text(
        "data: {name: mnist1d, options: {num_samples: 200}}\n"
        f"model: {{builder: seq_classifier, width: 6, depth: 1, norm: {norm}}}\n"
        "optim: {name: adam}\nsteps: 3\nbatch_size: 16\ndevice: cpu\n"
    )
    cfg = load_config(f)
    ds = load_data_from_config(cfg)
    model = build_model_from_config(cfg, ds)
    assert isinstance(model, SeqClassifier)
    # only seq_classifier's own arguments; MNIST-1D read as 40 steps of 1 feature
    assert model.spec["input_size"] == 1 and model.spec["steps"] == 40
    assert (model.spec["hidden_size"], model.spec["layers"]) == (6, 1)
    assert model.spec["norm"] == norm and model.rnn1.cell.norm == norm
    assert model(ds.x_train[:4]).shape == (4, 10)
    before = [p.detach().clone() for p in model.parameters()]
    hist = build_trainer(cfg, model).fit(ds, steps=cfg.steps, batch_size=cfg.batch_size)
    assert hist.status == "done" and hist.metrics[-1]["step"] == 3
    assert math.isfinite(hist.last("train_loss"))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_seq_classifier_options_norm_options_and_input_size():
    from trainlab.data import load_dataset
    from trainlab.runs.run import build_model_from_config

    cfg = load_config(overrides=[
        "data.name=mnist1d", "data.options.num_samples=100", "model.builder=lstm_classifier",
        "model.width=4", "model.depth=2", "model.norm=ln", "model.norm_options.eps=0.001",
        "model.options.cell=rnn", "model.options.input_size=4", "device=cpu"])
    model = build_model_from_config(cfg, load_dataset("mnist1d", num_samples=100))
    assert model.spec["cell"] == "rnn" and model.spec["layers"] == 2
    assert (model.spec["input_size"], model.spec["steps"]) == (4, 10)  # 10 steps of 4
    assert model.spec["norm"] == ("ln", {"eps": 0.001})
    assert model.rnn1.cell.norm_pre.eps == 0.001


def test_seq_classifier_keys_that_do_not_apply_name_key_value_and_allowed():
    with pytest.raises(ValueError) as e:
        load_config(overrides=["model.builder=seq_classifier", "model.activation=tanh",
                               "model.dropout=0.2", "model.init=xavier_normal",
                               "model.placement=after", "model.options.hidden_size=3",
                               "model.options.cel=rnn", "pretrain.method=rbm"])
    msg = str(e.value)
    assert msg.startswith("7 problems in the config")
    assert ("model.activation does not apply to model.builder 'seq_classifier'" in msg
            and "Allowed: model.activation='relu' (the default, unused). "
            "Received: model.activation='tanh'." in msg)
    assert "Allowed: model.dropout=0.0 (the default, unused). Received: model.dropout=0.2." in msg
    assert "Received: model.init='xavier_normal'." in msg
    assert "Received: model.placement='after'." in msg
    assert "Received: pretrain.method='rbm'." in msg
    assert ("model.options.hidden_size of model.builder 'seq_classifier' is set by model.width"
            in msg)
    assert "unknown key model.options.cel" in msg and "Did you mean model.options.cell?" in msg
    assert "Allowed: model.options.input_size, model.options.cell, model.options.steps" in msg
    # a feed-forward norm is not a recurrent norm; a bad option value names its key
    with pytest.raises(ValueError, match="model.norm \\(a recurrent_norm for model.builder "
                       "'seq_classifier'\\): Unknown recurrent_norm 'bn'.*bn_frame, bn_seq"):
        load_config(overrides=["model.builder=seq_classifier", "model.norm=bn"])
    with pytest.raises(ValueError, match="model.options=\\{'cell': 'gru'\\}.*cell must be one "
                       "of \\('lstm', 'rnn'\\)"):
        load_config(overrides=["model.builder=seq_classifier", "model.options.cell=gru"])
    with pytest.raises(ValueError, match="model.norm 'bn_frame' with model.norm_options="):
        load_config(overrides=["model.builder=seq_classifier", "model.norm=bn_frame",
                               "model.norm_options.groups=2"])
    # and the recurrent norms stay out of the feed-forward builders
    with pytest.raises(ValueError, match="model.norm: Unknown norm 'bn_frame'"):
        load_config(overrides=["model.norm=bn_frame"])


def test_seq_classifier_spec_checks_a_config_made_in_python():
    from trainlab.runs.config import ModelConfig, seq_classifier_spec

    cfg = TrainConfig(model=ModelConfig(builder="seq_classifier", dropout=0.5))
    with pytest.raises(ValueError, match="model.dropout does not apply.*Received: "
                       "model.dropout=0.5"):
        seq_classifier_spec(cfg, (40,), 10)
    cfg = TrainConfig(model=ModelConfig(builder="seq_classifier", options={"input_size": 3}))
    with pytest.raises(ValueError, match="model.options.input_size must divide the 40 values.*"
                       "Received: model.options.input_size=3"):
        seq_classifier_spec(cfg, (40,), 10)
    spec = seq_classifier_spec(TrainConfig(model=ModelConfig(builder="seq_classifier")),
                               (1, 28, 28), 10)
    assert (spec["input_size"], spec["steps"]) == (28, 28)  # image rows
    assert set(spec) == {"name", "input_size", "hidden_size", "num_classes", "norm", "layers",
                         "steps"}


def test_training_parts_by_name_with_their_options():
    """penalty, optim.grad_noise, model.whitening, bagging (and model.init wn_data): each a
    registry name (aliases and spellings too) with a *_options mapping."""
    cfg = load_config(overrides=["penalty=Ridge", "penalty_options.weight=1e-4",
                                 "optim.grad_noise=annealed-gaussian",
                                 "optim.grad_noise_options.eta=0.01", "model.whitening=prong",
                                 "model.whitening_options.every=50", "bagging=3",
                                 "bagging_options.average=geometric"])
    assert (cfg.penalty, cfg.penalty_options) == ("Ridge", {"weight": 1e-4})
    assert (cfg.optim.grad_noise, cfg.optim.grad_noise_options) == ("annealed-gaussian",
                                                                    {"eta": 0.01})
    assert (cfg.model.whitening, cfg.model.whitening_options) == ("prong", {"every": 50})
    assert (cfg.bagging, cfg.bagging_options) == (3, {"average": "geometric"})
    assert load_config(overrides=["model.norm=wn", "model.init=wn_data"]).model.init == "wn_data"
    defaults = TrainConfig()  # off by default: a config without them trains as before
    assert (defaults.penalty, defaults.optim.grad_noise, defaults.model.whitening,
            defaults.bagging) == (None, None, None, None)
    assert "penalty: null" in defaults.to_yaml() and "bagging: null" in defaults.to_yaml()


def test_options_read_exponent_numbers_as_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-4 as a string; in a *_options mapping it is the number."""
    cfg = load_config(overrides=["optim.options.weight_decay=1e-4", "penalty=l2",
                                 "penalty_options.weight=5E-4"])
    assert cfg.optim.options == {"weight_decay": 1e-4}
    assert cfg.penalty_options == {"weight": 5e-4}
    f = tmp_path / "c.yaml"
    f.write_text("loss: hinge\nloss_options: {margin: 5e-1}\ndata: {options: {names: [1e3]}}\n")
    cfg = load_config(f, check_names=False)
    assert cfg.loss_options == {"margin": 0.5} and cfg.data.options == {"names": [1000.0]}
    assert load_config(overrides=["data.options.tag=e5"], check_names=False).data.options == {
        "tag": "e5"}  # not a number: left alone


@pytest.mark.parametrize("overrides, needles", [
    (["penalty=l3"], ["penalty: Unknown penalty 'l3'", "Available: l1, l2"]),
    (["penalty=l2", "penalty_options.wieght=1"],
     ["penalty 'l2' with penalty_options=", "Did you mean 'weight'?"]),
    (["penalty_options.weight=1"], ["penalty_options is set but penalty is not"]),
    (["penalty=l2", "penalty_options.weight=-1"], ["weight must be a non-negative finite",
                                                   "Received: weight=-1"]),
    (["optim.grad_noise=gausian"], ["optim.grad_noise: Unknown grad_noise 'gausian'",
                                    "Did you mean 'gaussian'?"]),
    (["optim.grad_noise=gaussian", "optim.grad_noise_options.eta=-1"],
     ["optim.grad_noise_options={'eta': -1}", "eta must be a finite number >= 0"]),
    (["optim.grad_noise=gaussian", "optim.grad_noise_options.generator=1"],
     ["the generator is the run's own, seeded with seed"]),
    (["optim.grad_noise=gaussian", "optim.name=lbfgs"],
     ["optim.grad_noise acts between backward and the step", "Received: optim.name='lbfgs'"]),
    (["model.whitening=pcaa"], ["model.whitening: Unknown whitening 'pcaa'", "'pca'"]),
    (["model.whitening=pca", "model.whitening_options.every=0"],
     ["model.whitening_options={'every': 0}", "every must be a positive integer"]),
    (["model.whitening=pca", "model.norm=cwn"],
     ["model.whitening does not apply with model.norm 'cwn'", "Allowed: an activation norm"]),
    (["model.whitening=pca", "pretrain.method=rbm"],
     ["model.whitening does not apply with pretrain.method", "Allowed: pretrain.method=None"]),
    (["model.init=wn_data"], ["model.init 'wn_data' needs weight-normalized layers",
                              "Allowed: model.norm one of wn, cwn, wn_mobn",
                              "Received: model.norm='none'"]),
    (["model.init=wn_data", "model.norm=wn", "model.init_options.init_scale=-1"],
     ["model.init_options={'init_scale': -1}", "init_scale must be a finite number > 0"]),
    (["bagging=0"], ["bagging must be >= 1. Received: bagging=0"]),
    (["bagging=2", "bagging_options.avg=prob"], ["Did you mean 'average'?"]),
    (["bagging=2", "bagging_options.average=median"], ["average must be one of ('prob', "]),
    (["bagging_options.average=prob"], ["bagging_options is set but bagging is not"]),
    (["bagging=2", "optim.clip_norm=1"], ["optim.clip_norm does not apply with bagging",
                                          "Allowed: optim.clip_norm=None"]),
    (["bagging=2", "optim.name=newton"], ["optim.name 'newton' does not apply with bagging",
                                          "Allowed: a first-order optimizer"]),
    (["bagging=2", "pretrain.method=rbm"], ["pretrain.method does not apply with bagging"]),
])
def test_training_part_errors_name_key_value_and_allowed(overrides, needles):
    with pytest.raises(ValueError) as e:
        load_config(overrides=overrides)
    msg = str(e.value)
    assert msg.startswith("invalid config: ")
    for n in needles:
        assert n in msg, msg
