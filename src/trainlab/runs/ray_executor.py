"""Past one machine: runs as Ray tasks (``trainlab sweep --executor ray``).

Ray (the optional extra ``trainlab[ray]``) schedules; trainlab only says what one unit of work
is — :func:`trainlab.runs.objective.train_objective`, ``config -> metrics`` — so there is no
home-made scheduler here. :func:`run_with_ray` submits one Ray task per run (each task trains
into its own run folder and writes its row into the results store, as ``trainlab train``
does) and gathers the metrics in submission order. A task asks Ray for ``num_cpus`` CPUs
(default 1) and ``num_gpus`` GPUs, so Ray runs as many at once as the cluster holds.

On a cluster the run folders and the SQLite store must be on a file system every node sees
(SQLite over NFS is only as safe as NFS's locks); or run without ``db`` and record from the
driver. ``address``: ``None`` starts (or joins) a local Ray; ``"auto"`` joins the running
cluster (``ray start --head`` first).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trainlab.runs.objective import train_objective

__all__ = ["TaskFailed", "map_with_ray", "require_ray", "run_with_ray"]


def require_ray() -> Any:
    """Import ray, or say which extra to install."""
    try:
        import ray
    except ImportError:
        raise ImportError("--executor ray needs Ray: pip install 'trainlab[ray]' "
                          "(or pip install 'ray[tune]').") from None
    return ray


class TaskFailed(RuntimeError):
    """Ray tasks that failed (after Ray's retries), by name: ``failures`` maps each task's
    name to its error text."""

    def __init__(self, failures: Mapping[str, str]) -> None:
        self.failures = dict(failures)
        names = ", ".join(self.failures)
        first = next(iter(self.failures.values()), "")
        super().__init__(f"{len(self.failures)} Ray task(s) failed: {names} (first error: "
                         f"{first})")


def _init(ray: Any, address: str | None, init_kwargs: Mapping[str, Any] | None) -> None:
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **dict(init_kwargs or {}))


def _threads_then(fn: Callable[..., Any], *args: Any) -> Any:
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    return fn(*args)


def map_with_ray(
    fn: Callable[..., Any],
    tasks: Sequence[tuple[str, tuple[Any, ...]]],
    *,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_retries: int = 2,
    init_kwargs: Mapping[str, Any] | None = None,
    on_result: Callable[[str, Any], None] | None = None,
) -> dict[str, Any]:
    """Run ``fn(*args)`` for every ``(name, args)`` of ``tasks`` as one Ray task each; return
    ``{name: result}``.

    ``fn`` must be importable by the workers (a module-level function). A task whose worker
    dies (killed, out of memory) is retried by Ray up to ``max_retries`` times; a task whose
    ``fn`` raises is not retried (the error would repeat). When tasks failed, the others are
    still gathered (``on_result(name, result)`` is called for each as it finishes) and then
    :class:`TaskFailed` names the failed ones with their errors.
    """
    ray = require_ray()
    names = [n for n, _ in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique. Received: {names}.")
    _init(ray, address, init_kwargs)
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus,
                        max_retries=max_retries)(_threads_then)
    refs = {remote.remote(fn, *args): name for name, args in tasks}
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for r in done:
            name = refs[r]
            try:
                results[name] = ray.get(r)
            except Exception as e:  # RayTaskError (fn raised) or a worker lost for good
                cause = getattr(e, "cause", None) or e
                first = (str(cause).splitlines() or [""])[0]
                failures[name] = f"{type(cause).__name__}: {first}"
                continue
            if on_result is not None:
                on_result(name, results[name])
    if failures:
        raise TaskFailed(failures)
    return results


def _task(config: Mapping[str, Any], out: str | None, db: str | None) -> dict[str, float]:
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))

    return train_objective(config, out=out, db=db, force=False)


def run_with_ray(
    configs: Sequence[Mapping[str, Any]],
    outs: Sequence[str | os.PathLike | None] | None = None,
    *,
    db: str | os.PathLike | None = None,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    init_kwargs: Mapping[str, Any] | None = None,
    on_result: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train every config as a Ray task; return the metrics in the order of ``configs``.

    ``outs``: a run folder per config (``None`` entries train in memory). ``on_result(i,
    metrics)`` is called as each task finishes (for a progress bar). Ray is initialized
    here when it is not already (``address``, ``init_kwargs``) and left running for the
    caller's next call.
    """
    ray = require_ray()
    if outs is not None and len(outs) != len(configs):
        raise ValueError(f"outs must give one folder per config: {len(configs)} configs, "
                         f"{len(outs)} folders.")
    _init(ray, address, init_kwargs)
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_task)
    folders = [None if o is None else str(os.path.abspath(o)) for o in (outs or
                                                                         [None] * len(configs))]
    dbs = None if db is None else str(os.path.abspath(db))
    refs = [remote.remote(dict(c), f, dbs) for c, f in zip(configs, folders)]
    index = {r: i for i, r in enumerate(refs)}
    results: list[dict[str, float] | None] = [None] * len(refs)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for r in done:
            i = index[r]
            results[i] = ray.get(r)
            if on_result is not None:
                on_result(i, results[i])
    return [r for r in results if r is not None]
