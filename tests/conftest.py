"""Shared test setup.

- Figures render off-screen (matplotlib's Agg backend).
- torch runs on one intra-op thread: the tests use tiny tensors, for which extra threads only
  add barrier waits; on a busy 2-core machine those waits made single steps 10-100x slower
  (seen: a 50-layer MLP test going from 0.5 s to 45 s). Tests that measure threading set it
  themselves.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
