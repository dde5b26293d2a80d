"""Checkpoint safety: no code runs on load, a digest catches changed bytes, older files,
every type trainlab writes loads with weights_only, orphan temporary files are removed."""

from __future__ import annotations

import hashlib
import tempfile
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.engine.checkpoint import save_checkpoint, set_rng_state
from trainlab.train import CheckpointError, Trainer, load_checkpoint


class _CreatesFile:
    """Unpickling this creates ``path`` (what a malicious ``__reduce__`` would do)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _small_run(ckpt, steps=4, **kw):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 5, generator=g)
    y = (x.sum(1) > 0).long()
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2))
    t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), loss=F.cross_entropy,
                device="cpu", log_every=2, checkpoint=ckpt, **kw)
    t.fit((x, y), steps=steps, batch_size=32)
    return t, (x, y)


def _assert_one_line(err, *needles):
    text = str(err.value)
    assert "\n" not in text
    for n in needles:
        assert n in text, text


def test_a_checkpoint_holding_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned.txt"
    state = {"step": 1, "model": {}, "optimizer": {}, "rng": {}, "extra": _CreatesFile(marker)}
    signed = tmp_path / "signed.pt"  # a valid digest: only the loader's allow-list protects
    save_checkpoint(signed, state)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(signed)
    _assert_one_line(e, "signed.pt", "trainlab never writes", "without running it")
    plain = tmp_path / "plain.pt"  # an old-style file (no header) holding the same object
    torch.save({"format": "trainlab-checkpoint", "version": 1, **state}, plain)
    with pytest.raises(CheckpointError, match="plain.pt.*never writes"):
        load_checkpoint(plain)
    t, data = _small_run(None)
    with pytest.raises(CheckpointError, match="never writes"):
        t.fit(data, steps=8, batch_size=32, resume=signed)
    assert not marker.exists()


def test_flipped_bytes_inside_tensor_data_are_refused_by_name(tmp_path):
    ckpt = tmp_path / "last.pt"
    t, data = _small_run(ckpt)
    raw = ckpt.read_bytes()
    weight = load_checkpoint(ckpt)["model"]["0.weight"]
    at = raw.find(weight.numpy().tobytes())
    assert at > 0  # the tensor's bytes lie in the file as they are
    flipped = bytearray(raw)
    flipped[at + 5] ^= 0x10  # one bit of one float: still a loadable zip, other weights
    ckpt.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(ckpt)
    _assert_one_line(e, str(ckpt), "digest does not match", "refused")
    with pytest.raises(CheckpointError, match="digest"):
        _small_run(None)[0].fit(data, steps=8, batch_size=32, resume=ckpt)


def test_the_digest_is_the_sha256_of_the_payload(tmp_path):
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, {"step": 3, "model": {"w": torch.arange(4.0)}, "optimizer": {},
                           "rng": {}})
    header, payload = ckpt.read_bytes().split(b"\n", 1)
    magic, version, algo, digest = header.split()
    assert (magic, version, algo) == (b"TRAINLAB-CHECKPOINT", b"2", b"sha256")
    assert digest.decode() == hashlib.sha256(payload).hexdigest()  # independent hashlib


def test_a_version1_checkpoint_loads_with_a_warning(tmp_path):
    """Policy: files written before digests existed are read (weights_only, NumPy's RNG
    array allowed) with a warning that their integrity cannot be checked."""
    rng = {"python": __import__("random").getstate(), "numpy": np.random.get_state(),
           "torch": torch.get_rng_state()}
    old = tmp_path / "v1.pt"
    torch.save({"format": "trainlab-checkpoint", "version": 1, "step": 5, "model": {},
                "optimizer": {}, "rng": rng}, old)
    with pytest.warns(UserWarning, match="v1.pt.*no digest"):
        state = load_checkpoint(old)
    assert state["step"] == 5
    np.random.seed(1)
    set_rng_state(state["rng"])
    assert np.random.get_state()[1].tolist() == rng["numpy"][1].tolist()


def test_every_part_trainlab_writes_loads_with_weights_only(tmp_path):
    """Adam state, a schedule, probes (histograms, spectra), early stopping, a partial window:
    all load under torch.load(weights_only=True) with no extra allow-list."""
    from trainlab.probes import ActivationStats, GradientStats, JacobianSpectrum, UpdateRatio
    from trainlab.train import EarlyStopping

    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 5, generator=g)
    y = (x.sum(1) > 0).long()
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    ckpt = tmp_path / "c.pt"
    probes = [ActivationStats(every=2), GradientStats(every=2), UpdateRatio(every=2),
              JacobianSpectrum(every=3, n_examples=2)]
    t = Trainer(m, optimizer="adam", schedule="cosine", device="cpu", log_every=3,
                checkpoint=ckpt, probes=probes, callbacks=[EarlyStopping("test_loss")])
    t.fit((x, y, x[:32], y[:32]), steps=7, batch_size=32, eval_every=3)
    t._window = (6, [torch.tensor(0.5)])
    t.save(ckpt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not the version-1 path
        state = load_checkpoint(ckpt)
    assert state["step"] == 7 and state["history"]["histograms"] and state["optimizer"]["state"]
    assert state["window"]["losses"].tolist() == [0.5]


def test_orphan_temporary_files_are_removed_on_resume(tmp_path):
    from trainlab.runs.config import load_config
    from trainlab.runs.run import execute_run

    cfg = load_config(overrides=["data.name=blobs", "model.depth=1", "model.width=4",
                                 "steps=8", "batch_size=64", "log_every=4", "device=cpu"])
    run = tmp_path / "run"
    execute_run(cfg, run)
    orphans = [tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=run / sub)[1]
               for name, sub in (("last.pt", "checkpoints"), ("metrics.csv", "."),
                                 ("status.json", "."))]
    (run / "figures" / ".curves.png.tmp.png").write_bytes(b"x")
    keep = [run / "notes.tmp", run / ".hidden", run / ".a.tmp", run / "figures" / "mine.png"]
    for k in keep:
        k.write_text("user file")
    (tmp_path / ".other.abcdefgh.tmp").write_text("outside the run folder")
    res = execute_run(cfg, run, resume=True)
    assert res.status == "done"
    assert not any(__import__("os").path.exists(o) for o in orphans)
    assert not (run / "figures" / ".curves.png.tmp.png").exists()
    assert all(k.read_text() == "user file" for k in keep)
    assert (tmp_path / ".other.abcdefgh.tmp").exists()
