"""`trainlab train --pretrain ...`: the run folder, store row, config section and errors."""

from __future__ import annotations

import json

import pytest
import torch

import trainlab.engine.pretraining as tp
import trainlab.runs.run as run_module
from trainlab.cli import main
from trainlab.runs.config import load_config
from trainlab.runs.run import build_model_from_config, execute_run, load_data_from_config
from trainlab.store import RunStore
from trainlab.train import load_checkpoint
from trainlab.utils import seed_everything


def _cfg(*sets):
    base = ["data.name=blobs", "model.depth=2", "model.width=8", "steps=4", "batch_size=32",
            "log_every=2", "device=cpu", "pretrain.steps=6"]
    return load_config(overrides=[*base, *sets])


def test_run_with_pretraining_writes_curves_and_store_row(tmp_path, monkeypatch):
    captured = {}
    real = tp.pretrain

    def spy(model, *a, **k):
        out = real(model, *a, **k)
        captured.update({n: v.clone() for n, v in model.state_dict().items()})
        return out

    monkeypatch.setattr(run_module, "pretrain", spy)  # the name execute_run calls
    cfg = _cfg("pretrain.method=denoising", "optim.lr=1e-9")
    res = execute_run(cfg, tmp_path / "r", db=tmp_path / "t.db", progress=False)
    assert res.status == "done"
    folder = tmp_path / "r"
    lines = (folder / "pretrain.csv").read_text().splitlines()
    assert lines[0].startswith("method,layer,step,train_loss,recon_loss")
    assert {ln.split(",")[1] for ln in lines[1:]} == {"block1", "block2"}
    assert (folder / "figures" / "pretrain.png").stat().st_size > 1000
    row = RunStore(tmp_path / "t.db").get_run(res.run_id)
    assert row["status"] == "done"
    assert "pretrain.block1.recon_loss" in json.dumps(row)
    config = json.loads((folder / "config.json").read_text())
    assert config["pretrain"]["method"] == "denoising"
    # fine-tuning started from the pre-trained weights (lr 1e-9: they barely move)
    ck = load_checkpoint(folder / "checkpoints" / "last.pt")
    assert ck["history"]["pretrain"] == res.history.pretrain
    w = ck["model"]["block1.linear.weight"]
    torch.testing.assert_close(w, captured["block1.linear.weight"], atol=1e-6, rtol=0)
    # the model execute_run built, before pre-training, differs
    seed_everything(cfg.seed)
    init = build_model_from_config(cfg, load_data_from_config(cfg))
    assert not torch.allclose(init.block1.linear.weight.detach(), w, atol=1e-3)


def test_cli_pretrain_flag(tmp_path, capsys):
    rc = main(["train", "--dataset", "blobs", "--depth", "2", "--width", "8", "--steps", "4",
               "--batch-size", "32", "--device", "cpu", "--quiet", "--pretrain", "rbm",
               "--pretrain-steps", "3", "--activation", "sigmoid",
               "--set", "pretrain.visible=gaussian",
               "--out", str(tmp_path / "r"), "--db", str(tmp_path / "t.db")])
    assert rc == 0, capsys.readouterr().err
    text = (tmp_path / "r" / "pretrain.csv").read_text()
    assert text.count("\nrbm,block1,") == 2  # steps 0 and 3


def test_pretrain_on_a_convnet_is_refused_before_the_folder(tmp_path, capsys):
    rc = main(["train", "--dataset", "shapeset", "--builder", "convnet", "--depth", "1",
               "--width", "4", "--steps", "2", "--device", "cpu", "--quiet", "--pretrain",
               "autoencoder", "--out", str(tmp_path / "r"), "--no-db"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "pre-training needs a stack of Linear layers: an mlp" in err
    assert "ConvNet, its child 'block1' holds a Conv2d" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("sets,match", [
    (["pretrain.method=denoisng"], r"pretrain.method: Unknown pretrain 'denoisng'.*denoising"),
    (["pretrain.method=denoising", "pretrain.noise=1.5"],
     r"pretrain.noise of the 'mask' corruption must be a fraction in \[0, 1\)\. "
     r"Received: pretrain.noise=1.5"),
    (["pretrain.steps=0"], r"pretrain.steps must be >= 1\. Received: pretrain.steps=0"),
    (["pretrain.visible=poisson"], r"pretrain.visible must be one of"),
    (["pretrain.methd=rbm"], r"unknown key pretrain.methd\. Did you mean pretrain.method"),
])
def test_config_errors(sets, match):
    with pytest.raises(ValueError, match=match):
        _cfg(*sets)


def test_old_configs_without_the_section_compare_equal():
    from trainlab.runs.config import config_diff, with_defaults

    given = load_config(overrides=["data.name=blobs"]).to_dict()
    stored = dict(given)
    del stored["pretrain"]
    assert config_diff(with_defaults(stored), given) == []
