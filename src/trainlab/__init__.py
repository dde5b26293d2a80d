"""trainlab: make deep networks trainable and see why.

Every technique of the lectures is reachable by name through its family's registry
(``trainlab.nn``, ``trainlab.init``, ``trainlab.optim``, ``trainlab.losses``,
``trainlab.data``); ``trainlab list`` prints them all.
"""

from __future__ import annotations

__version__ = "0.1.0"

from trainlab.registry import Registry  # noqa: E402

__all__ = ["Registry", "__version__"]
