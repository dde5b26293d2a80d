"""``trainlab.train``: the name this package had before the engine and the run layer were
split (Architecture II). Kept so that ``from trainlab.train import Trainer`` and every old
module path (``trainlab.train.trainer``, ``trainlab.train.runs`` …, see
:mod:`trainlab._compat`) keep working; new code imports :mod:`trainlab.engine` (what trains)
and :mod:`trainlab.runs` (configs, run folders, sweeps).
"""

from __future__ import annotations

from trainlab.engine import *  # noqa: F403
from trainlab.engine import __all__  # noqa: F401
