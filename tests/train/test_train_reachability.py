"""Every registered training part is reachable by name from Python, a YAML config and the CLI.

For each part a config that uses it trains a few steps, and its effect is checked against a
computation made here, independently of the code under test:

- ``penalty`` (l2, l1): training with ``l2`` on every weight and bias equals SGD's own
  ``weight_decay``; in float64 the penalty's gradient contribution is ``λ·w`` (trainlab's
  ``l2`` is ``λ·½·Σw²``; the lecture's ``R = λΣw²``, gradient ``2λw``, is ``l2`` with weight
  ``2λ``), ``l1``'s is ``λ·sign(w)``; the test loss (eval mode) carries no penalty.
- ``optim.grad_noise``: the noise added at step ``t`` has variance ``η/(1+t)^γ`` (measured
  against the same run without noise).
- ``model.whitening``: every Linear layer is whitened, the first one with the training data's
  mean and ``U (Σ + εI) Uᵀ = I`` (numpy, float64), and each re-estimation leaves the
  network's function unchanged.
- ``model.init: wn_data``: every weight-normalized pre-activation has mean 0 and variance 1
  on the init batch.
- ``bagging``: member ``j`` sees exactly its bootstrap sample (n draws with replacement) in an
  epoch, trains to the weights it reaches alone on that sample, and the test metrics are those
  of the averaged probabilities.
"""

from __future__ import annotations

import copy
import csv
import json
import math

import numpy as np
import pytest
import torch
import yaml

from trainlab.cli import main
from trainlab.engine.checkpoint import load_checkpoint
from trainlab.engine.trainer import Trainer
from trainlab.nn.natural import WhitenedLinear, reestimate_whitening
from trainlab.nn.weight_norm import is_weight_normalized
from trainlab.runs.config import from_dict, load_config
from trainlab.runs.run import (
    build_model_from_config,
    build_trainer,
    execute_run,
    load_data_from_config,
)
from trainlab.utils import seed_everything

BASE = {"data": {"name": "blobs"}, "model": {"depth": 2, "width": 32}, "batch_size": 100,
        "steps": 5, "log_every": 1, "device": "cpu", "seed": 0}


def _config(**extra):
    """BASE with ``extra`` merged in (one level deep for the sections)."""
    out = copy.deepcopy(BASE)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def _cli_args(d):
    """``trainlab train`` flags for the config dict ``d``: its named parts as flags, every
    other key as ``--set KEY=VALUE``."""
    flags = {"penalty": "--penalty", "optim.grad_noise": "--grad-noise",
             "model.whitening": "--whitening", "bagging": "--bagging", "model.init": "--init",
             "model.norm": "--norm", "data.name": "--dataset", "steps": "--steps",
             "batch_size": "--batch-size", "device": "--device", "seed": "--seed",
             "optim.lr": "--lr", "optim.name": "--optimizer"}
    args = []
    for key, v in _flat(d).items():
        if key in flags:
            args += [flags[key], str(v)]
        else:
            args += ["--set", f"{key}={json.dumps(v)}"]
    return args


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and not k.endswith("options") and not prefix:
            out.update(_flat(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _run_python(tmp_path, d, name="py", **kwargs):
    result = execute_run(from_dict(d), tmp_path / name, progress=False, **kwargs)
    assert result.status == "done", result.message
    return tmp_path / name


def _run_yaml(tmp_path, d, name="yaml"):
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(d))
    assert load_config(f) == from_dict(d)  # the file says what the dict says
    assert main(["train", "--config", str(f), "--out", str(tmp_path / name), "--no-db",
                 "--quiet"]) == 0
    return tmp_path / name


def _run_cli(tmp_path, d, name="cli"):
    assert main(["train", *_cli_args(d), "--out", str(tmp_path / name), "--no-db",
                 "--quiet"]) == 0
    return tmp_path / name


RUNNERS = {"python": _run_python, "yaml": _run_yaml, "cli": _run_cli}


def _load(run):
    """(config, dataset, model with the run's final weights) of a run folder."""
    cfg = from_dict(json.loads((run / "config.json").read_text()))
    seed_everything(cfg.seed)
    ds = load_data_from_config(cfg)
    model = build_model_from_config(cfg, ds)
    model.load_state_dict(load_checkpoint(run / "checkpoints" / "last.pt")["model"])
    return cfg, ds, model


def _weights(run):
    return {k: v.double() for k, v in load_checkpoint(run / "checkpoints" / "last.pt")
            ["model"].items()}


def _last_row(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))[-1]


# -- penalties -------------------------------------------------------------------------------
L2 = 0.05


@pytest.mark.parametrize("how", list(RUNNERS))
def test_l2_penalty_trains_as_sgd_weight_decay(tmp_path, how):
    d = _config(penalty="l2", penalty_options={"weight": L2, "include_bias": True},
                optim={"name": "sgd", "lr": 0.1})
    run = RUNNERS[how](tmp_path, d)
    assert json.loads((run / "config.json").read_text())["penalty"] == "l2"
    decay = _run_python(tmp_path, _config(optim={"name": "sgd", "lr": 0.1,
                                                 "options": {"weight_decay": L2}}), "decay")
    plain = _run_python(tmp_path, _config(optim={"name": "sgd", "lr": 0.1}), "plain")
    w, wd, w0 = _weights(run), _weights(decay), _weights(plain)
    assert set(w) == set(wd)
    for k in w:  # loss + λ·½·Σw² under SGD is SGD with weight_decay=λ
        torch.testing.assert_close(w[k], wd[k], rtol=1e-4, atol=1e-6)
    assert max(float((w[k] - w0[k]).abs().max()) for k in w) > 1e-4  # the check can fail


@pytest.mark.parametrize("name", ["l2", "l1"])
def test_penalty_gradient_in_float64(tmp_path, name):
    lam = 0.3
    cfg = from_dict(_config(penalty=name, penalty_options={"weight": lam}))
    seed_everything(cfg.seed)
    ds = load_data_from_config(cfg)
    model = build_model_from_config(cfg, ds)
    trainer = build_trainer(cfg, model, device="cpu", progress=False)
    trainer.fit(ds, steps=cfg.steps, batch_size=cfg.batch_size)  # it trains ...
    model.double()  # ... then, in float64, the gradient of loss + R(W) minus that of the loss
    x, y = ds.x_train[:64].double(), ds.y_train[:64]

    def grads(loss_fn):
        model.zero_grad()
        loss_fn(model(x), y).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    with_r = grads(trainer.loss_fn)
    without = grads(torch.nn.functional.cross_entropy)
    for n, p in model.named_parameters():
        w = p.detach().numpy()
        expected = lam * w if name == "l2" else lam * np.sign(w)
        if n.endswith("bias"):  # only the weights are penalized by default
            expected = np.zeros_like(w)
        np.testing.assert_allclose((with_r[n] - without[n]).numpy(), expected, rtol=1e-10,
                                   atol=1e-12, err_msg=n)
    model.eval()  # the test split is scored in eval mode: the data loss alone
    with torch.no_grad():
        assert float(trainer.loss_fn(model(x), y)) == pytest.approx(
            float(torch.nn.functional.cross_entropy(model(x), y)), rel=1e-12)


# -- gradient noise --------------------------------------------------------------------------
ETA, GAMMA, NOISE_LR = 1.0, 0.55, 1e-3
NOISE = dict(model={"width": 128}, optim={"name": "sgd", "lr": NOISE_LR})


class _Snapshots:
    """The parameters at the start and after every step (log_every = 1)."""

    def __init__(self):
        self.params = []

    def _take(self, trainer):
        self.params.append(torch.cat([p.detach().double().reshape(-1)
                                      for p in trainer.model.parameters()]))

    def on_fit_begin(self, trainer):
        self._take(trainer)

    def on_log(self, trainer, row):
        self._take(trainer)


def test_gradient_noise_variance_per_step(tmp_path):
    noisy, clean = _Snapshots(), _Snapshots()
    d = _config(**{**NOISE, "optim": {**NOISE["optim"], "grad_noise": "annealed_gaussian",
                                      "grad_noise_options": {"eta": ETA, "gamma": GAMMA}}})
    _run_python(tmp_path, d, extra_callbacks=[noisy])
    _run_python(tmp_path, _config(**NOISE), "clean", extra_callbacks=[clean])
    steps = BASE["steps"]
    assert len(noisy.params) == len(clean.params) == steps + 1
    for t in range(steps):  # SGD: w_{t+1} - w_t = -lr (g_t + n_t)
        n_t = -((noisy.params[t + 1] - noisy.params[t])
                - (clean.params[t + 1] - clean.params[t])) / NOISE_LR
        expected = ETA / (1 + t) ** GAMMA
        assert float(n_t.pow(2).mean()) == pytest.approx(expected, rel=0.05), t
        assert abs(float(n_t.mean())) < 5 * math.sqrt(expected / n_t.numel())


@pytest.mark.parametrize("how", ["yaml", "cli"])
def test_gradient_noise_from_a_file_and_flags(tmp_path, how):
    d = _config(**{**NOISE, "optim": {**NOISE["optim"], "grad_noise": "gaussian",  # alias
                                      "grad_noise_options": {"eta": ETA, "gamma": GAMMA}}})
    run = RUNNERS[how](tmp_path, d)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["grad_noise"]["eta"] == ETA
    clean = _run_python(tmp_path, _config(**NOISE), "clean")
    w, w0 = _weights(run), _weights(clean)
    total = torch.cat([(w[k] - w0[k]).reshape(-1) for k in w]) / NOISE_LR  # -Σ_t n_t
    expected = sum(ETA / (1 + t) ** GAMMA for t in range(BASE["steps"]))
    assert float(total.pow(2).mean()) == pytest.approx(expected, rel=0.05)


# -- natural-network whitening ---------------------------------------------------------------
WHITE = dict(model={"whitening": "pca",
                    "whitening_options": {"every": 2, "num_samples": 5000, "eps": 1e-3}},
             steps=6)


class _Outputs:
    """The model's eval-mode output on fixed inputs at fit begin and at every logging point."""

    def __init__(self, x):
        self.x, self.out = x, {}

    @torch.no_grad()
    def _take(self, trainer):
        was = trainer.model.training
        trainer.model.eval()
        self.out[trainer.step] = trainer.model(self.x).double()
        trainer.model.train(was)

    def on_fit_begin(self, trainer):
        self._take(trainer)

    def on_log(self, trainer, row):
        self._take(trainer)


def _check_whitened(model, ds, eps):
    names = [n for n, m in model.named_modules() if isinstance(m, WhitenedLinear)]
    assert names == ["block1.linear", "block2.linear", "head"]  # every Linear of the mlp
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    first = model.get_submodule("block1.linear")
    x = ds.x_train.double().numpy()
    mean, cov = x.mean(0), np.cov(x, rowvar=False, bias=True)
    np.testing.assert_allclose(first.mean.double().numpy(), mean, atol=1e-5)
    U = first.whitener.double().numpy()
    np.testing.assert_allclose(U @ (cov + eps * np.eye(len(cov))) @ U.T, np.eye(len(cov)),
                               atol=1e-4)
    assert all(not torch.equal(model.get_submodule(n).whitener,
                               torch.eye(model.get_submodule(n).in_features)) for n in names)


def test_natural_whitening_keeps_the_function_at_each_reestimation():
    cfg = from_dict(_config(**WHITE))
    seed_everything(cfg.seed)
    ds = load_data_from_config(cfg)
    model = build_model_from_config(cfg, ds)
    x = ds.x_test[:64]
    before, after = _Outputs(x), _Outputs(x)
    trainer = build_trainer(cfg, model, device="cpu", progress=False, callbacks=[before])
    trainer.callbacks.append(after)  # after the whitening callback
    trainer.fit(ds, steps=cfg.steps, batch_size=cfg.batch_size)
    whitening = [cb for cb in trainer.callbacks if hasattr(cb, "steps")]
    assert len(whitening) == 1 and whitening[0].steps == [0, 2, 4]
    for s in whitening[0].steps:  # re-estimated between `before` and `after`: same function
        torch.testing.assert_close(after.out[s], before.out[s], rtol=1e-4, atol=1e-5)
    _check_whitened(model, ds, eps=1e-3)


@pytest.mark.parametrize("how", list(RUNNERS))
def test_natural_whitening_reachable(tmp_path, how):
    run = RUNNERS[how](tmp_path, _config(**WHITE))
    cfg, ds, model = _load(run)
    assert cfg.model.whitening == "pca"
    _check_whitened(model, ds, eps=1e-3)
    x = ds.x_test[:64]
    with torch.no_grad():
        out = model(x)
        reestimate_whitening(model, ds.x_train)
        torch.testing.assert_close(model(x), out, rtol=1e-4, atol=1e-5)


# -- weight normalization's data init --------------------------------------------------------
def _pre_activations(model, x):
    """The output of every weight-normalized layer on ``x`` (train mode), float64."""
    got = {}
    hooks = [m.register_forward_hook(
        lambda mod, args, out, name=name: got.__setitem__(name, out.detach().double().numpy()))
        for name, m in model.named_modules() if is_weight_normalized(m)]
    try:
        with torch.no_grad():
            model.train()
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return got


WN = dict(model={"norm": "wn", "init": "wn_data"}, optim={"name": "sgd", "lr": 1e-6}, steps=3)


def _init_batch(cfg, ds):
    return ds.x_train[: max(2, min(cfg.batch_size, 256))]  # the batch the init sees


def test_wn_data_init_unit_variance_then_trains():
    cfg = from_dict(_config(**WN))
    seed_everything(cfg.seed)
    ds = load_data_from_config(cfg)
    model = build_model_from_config(cfg, ds)
    pre = _pre_activations(model, _init_batch(cfg, ds))
    assert sorted(pre) == ["block1.linear", "block2.linear"]
    for name, t in pre.items():
        np.testing.assert_allclose(t.mean(0), 0.0, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(t.var(0), 1.0, rtol=1e-4, err_msg=name)
    hist = build_trainer(cfg, model, device="cpu", progress=False).fit(
        ds, steps=cfg.steps, batch_size=cfg.batch_size)
    assert hist.status == "done" and math.isfinite(hist.final()["train_loss"])


@pytest.mark.parametrize("how", list(RUNNERS))
def test_wn_data_init_reachable(tmp_path, how):
    run = RUNNERS[how](tmp_path, _config(**WN))
    cfg, ds, model = _load(run)  # lr 1e-6: the weights are still the initialized ones
    assert cfg.model.init == "wn_data"
    for name, t in _pre_activations(model, _init_batch(cfg, ds)).items():
        np.testing.assert_allclose(t.mean(0), 0.0, atol=1e-3, err_msg=name)
        np.testing.assert_allclose(t.var(0), 1.0, rtol=1e-3, err_msg=name)
    # the control: weight norm without its data init is not at unit variance
    plain = _run_python(tmp_path, _config(**{**WN, "model": {"norm": "wn"}}), "plain")
    _, _, model = _load(plain)
    pre = _pre_activations(model, _init_batch(cfg, ds))
    assert max(float(np.abs(t.var(0) - 1).max()) for t in pre.values()) > 0.1


# -- bagging ---------------------------------------------------------------------------------
K = 3
BAG = dict(bagging=K, steps=10, optim={"name": "sgd", "lr": 0.1})  # 10 steps: one epoch


def _rows_seen(model, ds):
    """Per member, the training rows (indices into x_train) it sees in training mode."""
    index = {tuple(r.tolist()): i for i, r in enumerate(ds.x_train)}
    assert len(index) == len(ds.x_train)  # every training example is its own row
    seen = {j: [] for j in range(K)}

    def hook(j):
        def record(mod, args):
            if mod.training:
                seen[j].extend(index[tuple(r.tolist())] for r in args[0].reshape(
                    -1, ds.x_train.shape[1]))
        return record

    handles = [m.register_forward_pre_hook(hook(j)) for j, m in enumerate(model.members)]
    return seen, handles


def _ensemble_metrics(model, ds):
    """Test loss and accuracy of the mean of the members' softmax probabilities, float64."""
    with torch.no_grad():
        model.eval()
        p = torch.stack([torch.softmax(m(ds.x_test).double(), -1) for m in model.members])
    p = p.mean(0)
    loss = float(-p[torch.arange(len(ds.y_test)), ds.y_test].log().mean())
    return loss, float((p.argmax(1) == ds.y_test).double().mean())


def test_bagging_members_see_their_bootstrap_samples():
    cfg = from_dict(_config(**BAG))
    seed_everything(cfg.seed)
    ds = load_data_from_config(cfg)
    model = build_model_from_config(cfg, ds)
    assert len(model.members) == K
    start = [copy.deepcopy(m) for m in model.members]
    seen, handles = _rows_seen(model, ds)
    trainer = build_trainer(cfg, model, device="cpu", progress=False)
    hist = trainer.fit(ds, steps=cfg.steps, batch_size=cfg.batch_size)
    for h in handles:
        h.remove()
    n = len(ds.x_train)
    # the bootstrap: n draws with replacement per member, from a generator seeded with seed
    draws = torch.randint(0, n, (K, n), generator=torch.Generator().manual_seed(cfg.seed))
    for j in range(K):
        assert len(seen[j]) == n  # one epoch: each position of its sample once
        counts = np.bincount(seen[j], minlength=n)
        np.testing.assert_array_equal(counts, np.bincount(draws[j].numpy(), minlength=n))
        assert abs((counts > 0).mean() - (1 - math.exp(-1))) < 0.05  # ~63 % distinct
    assert seen[0] != seen[1] != seen[2]
    for j in range(K):  # each member ends where it gets trained alone on its sample
        alone = Trainer(start[j], optimizer="sgd", lr=0.1, seed=cfg.seed, device="cpu",
                        progress=False)
        alone.fit((ds.x_train[draws[j]], ds.y_train[draws[j]]), steps=cfg.steps,
                  batch_size=cfg.batch_size)
        for (name, p), q in zip(model.members[j].named_parameters(), start[j].parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=f"member{j}.{name}")
    loss, acc = _ensemble_metrics(model, ds)
    assert hist.final()["test_acc"] == pytest.approx(acc, abs=1e-9)
    assert hist.final()["test_loss"] == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("how", list(RUNNERS))
def test_bagging_reachable(tmp_path, how):
    run = RUNNERS[how](tmp_path, _config(**BAG))
    cfg, ds, model = _load(run)
    assert cfg.bagging == K and [f"member{j}" for j in range(K)] == \
        [n for n, _ in model.named_children()]
    loss, acc = _ensemble_metrics(model, ds)
    row = _last_row(run)
    assert float(row["test_acc"]) == pytest.approx(acc, abs=1e-9)
    assert float(row["test_loss"]) == pytest.approx(loss, rel=1e-5)
    # the same run as the one whose members were seen to train on their bootstrap samples
    seed_everything(cfg.seed)
    again = build_model_from_config(cfg, ds)
    build_trainer(cfg, again, device="cpu", progress=False).fit(
        ds, steps=cfg.steps, batch_size=cfg.batch_size)
    for k, v in again.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, msg=k)


def test_bagging_composes_with_the_distributed_trainer(monkeypatch):
    """bagging_trainer(DistributedTrainer) over a one-process gloo group (as torchrun sets
    it up) trains the members as the BaggingTrainer does."""
    import socket

    import torch.distributed as dist

    from trainlab.engine.distributed import DistributedTrainer, cleanup, setup
    from trainlab.engine.ensemble import BaggingTrainer, bagging_trainer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(k, v)
    cfg = from_dict(_config(**BAG))
    ds = load_data_from_config(cfg)

    def fit(cls):
        seed_everything(cfg.seed)
        model = build_model_from_config(cfg, ds)
        trainer = build_trainer(cfg, model, device="cpu", progress=False, trainer_class=cls)
        trainer.fit(ds, steps=cfg.steps, batch_size=cfg.batch_size)
        return trainer

    ref = fit(None)
    assert type(ref) is BaggingTrainer
    setup("cpu")
    try:
        ddp = fit(DistributedTrainer)
        assert isinstance(ddp, DistributedTrainer) and type(ddp) is bagging_trainer(
            DistributedTrainer)
        torch.testing.assert_close(ddp.bootstrap, ref.bootstrap)
        for a, b in zip(ref.model.parameters(), ddp.model.parameters()):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    finally:
        cleanup()
    assert not dist.is_initialized()


class _InterruptAt:
    def __init__(self, step):
        self.step = step

    def on_log(self, trainer, row):
        if row["step"] == self.step:
            trainer.interrupt()


def test_all_parts_together_resume_to_the_uninterrupted_weights(tmp_path):
    """penalty, gradient noise, whitening and bagging in one run: interrupted at step 6 and
    resumed, it ends with exactly the weights of the run that was not interrupted (the
    bootstrap samples, the noise generator and the whitening schedule come back)."""
    d = _config(penalty="l2", penalty_options={"weight": 1e-3}, bagging=2, steps=12,
                log_every=2, optim={"name": "momentum", "lr": 0.05,
                                    "grad_noise": "annealed_gaussian",
                                    "grad_noise_options": {"eta": 0.01}},
                model={"whitening": "zca", "whitening_options": {"every": 4}})
    cfg = from_dict(d)
    full = execute_run(cfg, tmp_path / "full", progress=False, extra_callbacks=[_InterruptAt(-1)])
    assert full.status == "done"
    with pytest.raises(KeyboardInterrupt):
        execute_run(cfg, tmp_path / "cut", progress=False, extra_callbacks=[_InterruptAt(6)])
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 6
    again = execute_run(cfg, tmp_path / "cut", resume=True, progress=False,
                        extra_callbacks=[_InterruptAt(-1)])  # same callback positions
    assert again.status == "done"
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["step"] for r in again.history.metrics] == [r["step"] for r in full.history.metrics]


# -- the CLI shows every part, from the registries -------------------------------------------
def test_help_and_list_show_the_parts(capsys):
    from trainlab.engine.ensemble import ENSEMBLES
    from trainlab.losses import PENALTIES
    from trainlab.nn.natural import NATURAL_NETS
    from trainlab.optim.gradients import GRAD_NOISES

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, reg in (("--penalty", PENALTIES), ("--grad-noise", GRAD_NOISES),
                      ("--whitening", NATURAL_NETS)):
        assert f"{flag} {{{','.join(reg.names())}}}" in text
        for e in reg:
            assert " ".join(e.description.split()) in text, e.name
    assert "--bagging K" in text
    assert " ".join(ENSEMBLES.get("bagging").description.split()) in text
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    for family, name in (("penalty", "l2"), ("grad_noise", "annealed_gaussian"),
                         ("whitening", "pca"), ("ensemble", "bagging"), ("init", "wn_data")):
        assert f"\n{family} (" in "\n" + listing, family
        block = listing.split(f"{family} (", 1)[1].split("\n\n", 1)[0]
        assert f"  {name} " in block, (family, name)
