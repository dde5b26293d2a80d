"""trainlab.models.memory: exact counts on the meta device, the byte formula, the refusal."""

from __future__ import annotations

import pytest
import torch

from trainlab.models.memory import (
    MemoryEstimate,
    available_memory,
    check_fits,
    estimate_memory,
    format_bytes,
)
from trainlab.nn import memory


def test_activation_count_of_a_known_mlp():
    """mlp 10 -> 20 -> 5 at batch 4, no norm: leaf outputs Linear 4x20, Tanh 4x20,
    Linear 4x5 (dropout none) = 80 + 80 + 20 = 180 elements."""
    spec = dict(name="mlp", in_features=10, widths=[20], out_features=5, activation="tanh")
    est = estimate_memory(spec, (10,), 4, optimizer="sgd")
    assert est.parameters == 10 * 20 + 20 + 20 * 5 + 5
    assert est.activations == 180
    assert est.slots == 0
    # (parameters · (param + grad + 0 slots) + activations) · 4 bytes
    assert est.total_bytes == (325 * 2 + 180) * 4


@pytest.mark.parametrize("opt, slots", [("sgd", 0), ("momentum", 1), ("adam", 2),
                                        ("adamw", 2), ("rmsprop", 1), (None, 0)])
def test_optimizer_slots(opt, slots):
    spec = dict(name="mlp", in_features=3, widths=[4], out_features=2)
    assert estimate_memory(spec, optimizer=opt).slots == slots


def test_dtype_sets_the_bytes_per_element():
    spec = dict(name="mlp", in_features=3, widths=[4], out_features=2)
    assert estimate_memory(spec, dtype=torch.float64).bytes_per_element == 8
    assert estimate_memory(spec, dtype=torch.float16).bytes_per_element == 2


@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (1000, "1 KB"),
                                     (1234567, "1.23 MB"), (4.2e9, "4.2 GB"),
                                     (8e14, "800 TB"), (3e18, "3e+03 PB")])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


def test_describe_names_each_part():
    e = MemoryEstimate(parameters=1000, activations=500, bytes_per_element=4, slots=2)
    assert e.parameter_bytes == 4000
    assert e.describe() == ("about 18 KB: 1,000 parameters (4 KB, as much again for "
                            "gradients, 2x for the optimizer state), activations 2 KB")
    assert MemoryEstimate(10, 0, 4, 0).describe() == (
        "about 80 B: 10 parameters (40 B, as much again for gradients)")


def test_available_memory_is_positive_and_at_most_physical():
    have = available_memory("cpu")
    import os

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert have is not None and 0 < have <= total


def test_check_fits_refuses_only_above_what_is_available(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 1000)
    check_fits(MemoryEstimate(100, 0, 4, 0), "cpu", "x=1")  # 800 B <= 1000 B
    with pytest.raises(ValueError, match=r"x=2 needs about 1.6 KB: .* the device \(cpu\) has "
                                         r"1 KB available"):
        check_fits(MemoryEstimate(200, 0, 4, 0), "cpu", "x=2")
    monkeypatch.setattr(memory, "available_memory", lambda device: None)
    check_fits(MemoryEstimate(10**15, 0, 4, 2), "cpu", "unknown memory: no refusal")


def test_a_module_on_a_real_device_is_counted_without_activations():
    m = torch.nn.Linear(3, 2)
    est = estimate_memory(m, (3,), 8)
    assert est.parameters == 8 and est.activations == 0
