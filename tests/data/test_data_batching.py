"""DeviceBatcher: coverage of every example, determinism by seed, resume, errors."""

from __future__ import annotations

import pytest
import torch

from trainlab.data import DeviceBatcher


def _data(n=103):
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, 3)
    y = torch.arange(n)
    return x, y


def test_epoch_is_a_permutation_and_pairs_stay_aligned():
    x, y = _data()
    b = DeviceBatcher(x, y, 10, seed=3)
    assert len(b) == 11
    seen = []
    for xb, yb in b:
        assert xb.shape[1:] == (3,) and len(xb) == len(yb) <= 10
        assert torch.equal(xb[:, 0].long(), yb)  # x row i belongs to label i
        seen.append(yb)
    ys = torch.cat(seen)
    assert sorted(ys.tolist()) == list(range(103))
    assert not torch.equal(ys, torch.arange(103))  # actually shuffled


def test_drop_last_and_unshuffled_order():
    x, y = _data()
    b = DeviceBatcher(x, y, 10, drop_last=True, shuffle=False)
    assert len(b) == 10
    ys = torch.cat([yb for _, yb in b])
    assert torch.equal(ys, torch.arange(100))
    # evaluation batches are views of the stored tensor: no copy
    xb, _ = next(iter(DeviceBatcher(x, y, 10, shuffle=False)))
    assert xb.data_ptr() == x.data_ptr()


def test_same_seed_same_batches_new_permutation_each_epoch():
    x, y = _data()
    a = DeviceBatcher(x, y, 16, seed=7)
    b = DeviceBatcher(x, y, 16, seed=7)
    ea1 = torch.cat([yb for _, yb in a])
    ea2 = torch.cat([yb for _, yb in a])
    eb1 = torch.cat([yb for _, yb in b])
    assert torch.equal(ea1, eb1)
    assert not torch.equal(ea1, ea2)
    # matches an independent randperm from a generator with the same seed
    g = torch.Generator().manual_seed(7)
    assert torch.equal(ea1, torch.randperm(103, generator=g))
    assert torch.equal(ea2, torch.randperm(103, generator=g))
    c = DeviceBatcher(x, y, 16, seed=8)
    assert not torch.equal(torch.cat([yb for _, yb in c]), ea1)


def test_global_rng_untouched():
    x, y = _data()
    torch.manual_seed(0)
    ref = torch.rand(3)
    torch.manual_seed(0)
    for _ in DeviceBatcher(x, y, 8, seed=1):
        pass
    assert torch.equal(torch.rand(3), ref)


def test_state_dict_resume_mid_epoch_draws_same_batches():
    x, y = _data()
    a = DeviceBatcher(x, y, 10, seed=5)
    for _ in a:  # one full epoch
        pass
    it = iter(a)
    for _ in range(4):
        next(it)
    state = a.state_dict()
    rest_a = [yb for _, yb in it] + [yb for _, yb in a]  # rest of epoch 2, then epoch 3
    b = DeviceBatcher(x, y, 10, seed=0)
    b.load_state_dict(state)
    rest_b = [yb for _, yb in b] + [yb for _, yb in b]
    assert len(rest_a) == len(rest_b) == 7 + 11
    assert all(torch.equal(p, q) for p, q in zip(rest_a, rest_b))
    assert b.epoch == a.epoch == 3


def test_break_continues_the_epoch_and_steps():
    x, y = _data(20)
    b = DeviceBatcher(x, y, 5, seed=2)
    first = []
    for i, (_, yb) in enumerate(b):
        first.append(yb)
        if i == 1:
            break
    first += [yb for _, yb in b]
    assert sorted(torch.cat(first).tolist()) == list(range(20))
    s = list(DeviceBatcher(x, y, 5, seed=2).steps(10))
    assert len(s) == 10
    assert sorted(torch.cat([yb for _, yb in s[:4]]).tolist()) == list(range(20))


def test_device_argument_moves_tensors():
    x, y = _data(8)
    b = DeviceBatcher(x, y, 4, device="cpu")
    assert b.device == torch.device("cpu")


def test_errors():
    x, y = _data(8)
    with pytest.raises(ValueError, match=r"batch_size must be .* Received: batch_size=0"):
        DeviceBatcher(x, y, 0)
    with pytest.raises(ValueError, match=r"x.shape=\(8, 3\), y.shape=\(7,\)"):
        DeviceBatcher(x, y[:7], 2)
    with pytest.raises(TypeError, match="x and y must be torch tensors"):
        DeviceBatcher(x.numpy(), y, 2)
    with pytest.raises(ValueError, match="seed must be a non-negative integer. Received: seed=-1"):
        DeviceBatcher(x, y, 2, seed=-1)
    b = DeviceBatcher(x, y, 2)
    with pytest.raises(ValueError, match="batch_size=2 into a batcher with batch_size=4"):
        DeviceBatcher(x, y, 4).load_state_dict(b.state_dict())
    with pytest.raises(ValueError, match="num_steps must be an integer >= 0"):
        list(b.steps(-1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_equal_cpu_batches():
    x, y = _data()
    cpu = [yb for _, yb in DeviceBatcher(x, y, 16, seed=4)]
    gpu = DeviceBatcher(x, y, 16, seed=4, device="cuda")
    got = [(xb, yb) for xb, yb in gpu]
    assert all(xb.is_cuda and yb.is_cuda for xb, yb in got)
    assert all(torch.equal(a, b.cpu()) for a, (_, b) in zip(cpu, got))
