"""Shared test setup.

- Figures render off-screen (matplotlib's Agg backend).
- torch runs on one intra-op thread: the tests use tiny tensors, for which extra threads only
  add barrier waits; on a busy 2-core machine those waits made single steps 10-100x slower
  (seen: a 50-layer MLP test going from 0.5 s to 45 s). Tests that measure threading set it
  themselves.
- No test sees the user's data or caches: ``HOME``, ``XDG_CACHE_HOME`` and ``TRAINLAB_DATA``
  point at an empty folder for the whole session, so a result never depends on what happens
  to be in ``~/.cache/trainlab`` (a fresh machine and a developer's give the same verdicts).
- Real MNIST reaches a test only through the ``mnist_root`` fixture: a session copy of the
  project's shared MNIST (``../shared/data/mnist`` beside the clone, or the folder named by
  ``TRAINLAB_TEST_SHARED``; ``TRAINLAB_TEST_SHARED=none`` hides it), with ``TRAINLAB_DATA``
  pointing at it for that test; without it the test skips with a one-line reason.
"""

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

_ISOLATED = Path(tempfile.mkdtemp(prefix="trainlab-tests-home-"))
for _var, _sub in (("HOME", "home"), ("XDG_CACHE_HOME", "home/.cache"),
                   ("TRAINLAB_DATA", "empty-data-root")):
    (_ISOLATED / _sub).mkdir(parents=True, exist_ok=True)
    os.environ[_var] = str(_ISOLATED / _sub)

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def shared_mnist() -> Path | None:
    """The project's shared MNIST folder, or ``None`` where there is none (a user's clone)."""
    where = os.environ.get("TRAINLAB_TEST_SHARED", "")
    if where.lower() == "none":
        return None
    base = Path(where) if where else REPO.parent / "shared" / "data"
    folder = base / "mnist"
    return folder if (folder / "train-images-idx3-ubyte.gz").is_file() else None


@pytest.fixture(scope="session")
def _mnist_copy(tmp_path_factory):
    src = shared_mnist()
    if src is None:
        pytest.skip("needs real MNIST: no ../shared/data/mnist beside the clone "
                    "(set TRAINLAB_TEST_SHARED=FOLDER holding mnist/)")
    root = tmp_path_factory.mktemp("mnist-data-root")
    shutil.copytree(src, root / "mnist")
    for f in (root / "mnist").iterdir():  # the shared copy is read-only; the cache goes here
        f.chmod(0o644)
    (root / "mnist").chmod(0o755)
    return root


@pytest.fixture
def mnist_root(_mnist_copy, monkeypatch):
    """A data root holding real MNIST (``ROOT/mnist/``), set as ``TRAINLAB_DATA`` for the
    test; the test skips, saying why, where the project's shared MNIST is absent."""
    monkeypatch.setenv("TRAINLAB_DATA", str(_mnist_copy))
    return _mnist_copy


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
