"""Configs: merge order, files, --set parsing, all errors at once, registry names, diffs."""

from __future__ import annotations

import pytest

from trainlab.train.config import (
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
    other = tmp_path / "c.json"
    other.write_text("{}")
    with pytest.raises(ValueError, match="must end in .yaml, .yml or .toml"):
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
