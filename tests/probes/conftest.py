"""Shared helper: the probe protocol driven around plain SGD steps."""

from __future__ import annotations

import pytest
from torch.nn import functional as F


def sgd_steps(model, opt, probes, batches, start: int = 0) -> None:
    """One training step per ``(x, y)`` of ``batches`` with every probe's three calls."""
    for step, (x, y) in enumerate(batches, start):
        for p in probes:
            p.step_begin(step)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for p in probes:
            p.after_backward(step)
        opt.step()
        for p in probes:
            p.step_end(step)


@pytest.fixture(name="sgd_steps", scope="session")
def _sgd_steps_fixture():
    return sgd_steps
