"""Sweeps: a grid of :class:`TrainConfig` runs, packed where they can be, resumable.

A grid file (YAML, TOML or JSON) has fixed settings and axes, both with the keys of
:class:`~trainlab.runs.config.TrainConfig` (nested, or dotted for axes)::

    name: mnist1d-init-lr          # optional
    fixed:
      data: {name: mnist1d}
      model: {builder: mlp, depth: 2, width: 32}
      optim: {name: momentum}
      steps: 200
    axes:
      model.init: [he_normal, xavier_uniform]
      model.activation: [relu, tanh]
      optim.lr: [0.1, 0.03]
      seed: [0, 1]

:func:`expand_grid` takes the product of the axes (in file order, the last axis varying
fastest) and checks every run's config before anything runs: an unknown key or technique
is reported with its close matches, naming the axis value. ``--set KEY=VALUE`` overrides a
fixed setting; on an axis key it fixes that axis to one value.

**Packs.** Runs that differ only in what a :class:`~trainlab.engine.pack.PackTrainer` holds
per member — ``seed``, ``optim.lr``, ``optim.options`` (momentum, weight decay, betas ...),
``optim.name`` within one kind of optimizer (sgd / momentum / nesterov; adam / adamw),
``optim.schedule`` and its options, ``model.init`` and its options — share a pack
(:func:`plan_packs`), at most ``max_pack`` members each. Any other difference (activation,
norm, width, data, batch size, steps ...) changes the structure or the loop, so those runs
go into separate packs; this is said once per axis. Runs with probes or early stopping run
one by one with the Trainer (:func:`trainlab.runs.run.execute_run`).

**Runs and resume.** The sweep folder holds ``sweep.json`` (the grid and the expanded runs),
one run folder per run under ``runs/`` (``config.json``, ``env.json``, ``status.json``,
``metrics.csv``) and one results-store row per run, with its own config and metrics. A run
is finished when its store row is (one transaction, written after its files). A sweep killed
at any moment (``kill -9`` included) and started again skips the finished runs, re-uses the
rows of the unfinished ones (a pack killed mid-way is trained again from its start: the
members' training is deterministic, so the results are those of an uninterrupted sweep), and
repeats none. A folder that holds another grid is refused unless ``force``.

**Report.** At the end: ``summary.csv`` and a printed table (one row per run), a heat map of
the metric for each pair of axes (mean over the other axes, ``figures/heatmap_A__B.png``),
the best run's curve for each value of each axis (``figures/best_AXIS.png``) and
``index.html``. ``trainlab runs compare --sweep DIR`` compares the sweep's runs.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab.engine.pack import _KINDS, Pack, PackTrainer
from trainlab.optim import OPTIMIZERS
from trainlab.report.html import HtmlPage
from trainlab.report.sweep_plots import plot_best_curves, plot_heatmap
from trainlab.runs.config import (
    TrainConfig,
    from_dict,
    parse_overrides,
    read_config_file,
)
from trainlab.runs.run import (
    RunFolder,
    build_model_from_config,
    collect_env,
    execute_run,
    format_table,
    load_data_from_config,
)
from trainlab.store import RunStore
from trainlab.utils import atomic_write_text, seed_everything

__all__ = [
    "MEMBER_KEYS",
    "SweepGrid",
    "SweepPlan",
    "SweepRun",
    "expand_grid",
    "load_grid",
    "plan_packs",
    "run_sweep",
]

#: Config keys a pack holds per member (they may differ between runs of one pack).
MEMBER_KEYS = ("seed", "optim.lr", "optim.options", "optim.name", "optim.schedule",
               "optim.schedule_options", "model.init", "model.init_options")
_GRID_KEYS = ("name", "fixed", "axes", "metric")


@dataclass(frozen=True)
class SweepGrid:
    """A grid: its name, fixed settings (nested TrainConfig keys), axes (dotted key -> list
    of values, in file order) and the metric its report ranks runs by."""

    name: str
    fixed: dict[str, Any]
    axes: dict[str, list[Any]]
    metric: str = "test_acc"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fixed": self.fixed, "axes": self.axes,
                "metric": self.metric}


@dataclass
class SweepRun:
    """One run of a grid: its index, axis values, checked config and folder name."""

    index: int
    values: dict[str, Any]
    config: TrainConfig
    key: str = ""
    folder: str = ""

    def label(self) -> str:
        return ", ".join(f"{_short(k)}={_fmt(v)}" for k, v in self.values.items()) or "run"


@dataclass
class SweepPlan:
    """The expanded runs, their packs (lists of run indices) and the runs done one by one,
    with the notes said once (axes that split packs)."""

    grid: SweepGrid
    runs: list[SweepRun]
    packs: list[list[int]] = field(default_factory=list)
    singles: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _short(key: str) -> str:
    return key.rpartition(".")[2] if key.count(".") == 1 else key


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[parts[-1]] = copy.deepcopy(value)


def _get_dotted(d: dict[str, Any], key: str, default: Any = None) -> Any:
    for p in key.split("."):
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# -- reading and expanding ---------------------------------------------------------------------
def load_grid(path: str | os.PathLike | dict[str, Any],
              overrides: Sequence[str] = ()) -> SweepGrid:
    """Read a grid file (or a dict of the same keys) and apply ``--set`` overrides."""
    import difflib

    data = dict(path) if isinstance(path, dict) else read_config_file(path)
    unknown = [k for k in data if k not in _GRID_KEYS]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), _GRID_KEYS, n=2)
            hints.append(f"{k} (did you mean {', '.join(close)}?)" if close else str(k))
        raise ValueError(f"unknown key(s) in the grid: {'; '.join(hints)}. Allowed: "
                         f"{', '.join(_GRID_KEYS)} (run settings go under fixed: and axes:).")
    fixed = data.get("fixed") or {}
    axes_in = data.get("axes") or {}
    if not isinstance(fixed, dict):
        raise ValueError(f"the grid's fixed: must be a mapping of settings. Received: {fixed!r}.")
    if not isinstance(axes_in, dict) or not axes_in:
        raise ValueError("the grid needs axes: a mapping of config keys to lists of values, "
                         f"e.g. axes: {{optim.lr: [0.1, 0.01]}}. Received: axes={axes_in!r}.")
    axes: dict[str, list[Any]] = {}
    for key, values in _flatten_axes(axes_in).items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"axis {key} must be a non-empty list of values. "
                             f"Received: {key}={values!r}.")
        axes[key] = list(values)
    fixed = copy.deepcopy(fixed)
    for item in overrides:
        k, sep, _ = item.partition("=")
        if not sep:
            parse_overrides([item])  # its error message
        value = _get_dotted(parse_overrides([item]), k.strip())
        if k.strip() in axes:
            axes[k.strip()] = [value]
        else:
            _set_dotted(fixed, k.strip(), value)
    name = str(data.get("name") or (Path(path).stem if not isinstance(path, dict) else "sweep"))
    metric = str(data.get("metric") or "test_acc")
    if metric not in ("test_acc", "test_loss", "train_loss"):
        raise ValueError("metric must be one of ('test_acc', 'test_loss', 'train_loss'). "
                         f"Received: metric={metric!r}.")
    return SweepGrid(name, fixed, axes, metric)


def _flatten_axes(axes: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{model: {init: [...]}}`` and ``{"model.init": [...]}`` alike -> dotted keys."""
    out: dict[str, Any] = {}
    for k, v in axes.items():
        if isinstance(v, dict) and not prefix and k in ("data", "model", "optim"):
            out.update(_flatten_axes(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _run_key(config: dict[str, Any]) -> str:
    text = json.dumps({k: v for k, v in config.items() if k != "device"}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def expand_grid(grid: SweepGrid) -> list[SweepRun]:
    """Every run of the grid with its checked config; every problem in one ``ValueError``
    (unknown keys and techniques with their close matches, naming the axis values)."""
    runs: list[SweepRun] = []
    errors: dict[str, list[int]] = {}
    keys = list(grid.axes)
    seen: set[tuple[str, str]] = set()
    for i, combo in enumerate(itertools.product(*[grid.axes[k] for k in keys])):
        values = dict(zip(keys, combo))
        d = copy.deepcopy(grid.fixed)
        for k, v in values.items():
            _set_dotted(d, k, v)
        # Every key and value is checked for every run; the registry names and the build of
        # each technique on a stand-in (slow) once for each value of each axis.
        new = {(k, json.dumps(v, sort_keys=True, default=str)) for k, v in values.items()}
        full = i == 0 or not new <= seen
        seen |= new
        try:
            cfg = from_dict(d, check_names=full)
        except ValueError as e:
            errors.setdefault(str(e), []).append(i)
            continue
        run = SweepRun(i, values, cfg)
        run.key = _run_key(cfg.to_dict())
        run.folder = f"r{i:04d}-{run.key}"
        runs.append(run)
    if errors:
        lines = []
        for msg, idx in errors.items():
            which = runs_label(grid, idx)
            lines.append(f"{which}: {msg}")
        raise ValueError(f"the grid {grid.name!r} has invalid runs (nothing was run): "
                         + " || ".join(lines))
    return runs


def runs_label(grid: SweepGrid, idx: list[int]) -> str:
    keys = list(grid.axes)
    combos = list(itertools.product(*[grid.axes[k] for k in keys]))
    first = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(keys, combos[idx[0]]))
    more = f" and {len(idx) - 1} more" if len(idx) > 1 else ""
    return f"run {idx[0]} ({first}){more}"


# -- packing -----------------------------------------------------------------------------------
def _optimizer_kind(name: str) -> str:
    cls = OPTIMIZERS.get(name).meta.get("torch_class")
    return _KINDS.get(getattr(cls, "__name__", ""), (f"other:{name}",))[0]


def pack_key(cfg: TrainConfig) -> str | None:
    """What runs of one pack must share (``None``: this run cannot be packed)."""
    if cfg.probes or cfg.early_stopping:
        return None
    d = cfg.to_dict()
    for k in MEMBER_KEYS:
        parts = k.split(".")
        node = d
        for p in parts[:-1]:
            node = node[p]
        node.pop(parts[-1], None)
    d["optim_kind"] = _optimizer_kind(cfg.optim.name)
    d.pop("checkpoint_every", None)
    return json.dumps(d, sort_keys=True, default=str)


def plan_packs(grid: SweepGrid, runs: list[SweepRun], max_pack: int = 64,
               pack: bool = True) -> SweepPlan:
    """Group the runs into packs (see the module docstring); notes say, once per axis, why
    an axis's values do not share packs."""
    plan = SweepPlan(grid, runs)
    groups: dict[str, list[int]] = {}
    for r in runs:
        key = pack_key(r.config) if pack else None
        if key is None:
            plan.singles.append(r.index)
        else:
            groups.setdefault(key, []).append(r.index)
    for members in groups.values():
        for i in range(0, len(members), max_pack):
            chunk = members[i:i + max_pack]
            if len(chunk) == 1:
                plan.singles.append(chunk[0])
            else:
                plan.packs.append(chunk)
    if not pack:
        plan.notes.append("packing is off (--no-pack): every run is trained on its own.")
    elif any(pack_key(r.config) is None for r in runs):
        plan.notes.append("runs with probes or early stopping are trained one by one with the "
                          "Trainer (their hooks and stopping rule are per run).")
    if pack:
        for k, values in grid.axes.items():
            if len(values) < 2:
                continue
            if k in MEMBER_KEYS and k != "optim.name":
                continue
            if k == "optim.name":
                kinds = {_optimizer_kind(v) for v in values if isinstance(v, str)}
                if len(kinds) > 1:
                    plan.notes.append(
                        f"axis optim.name mixes kinds of optimizer ({', '.join(sorted(kinds))}): "
                        "each kind is trained in its own packs.")
                continue
            plan.notes.append(f"axis {k} changes the model or the training loop: its "
                              f"{len(values)} values are trained in separate packs.")
    plan.singles.sort()
    return plan


def format_plan(plan: SweepPlan) -> str:
    """The expanded grid and the packs, as ``--dry-run`` prints them."""

    where = {}
    for p, members in enumerate(plan.packs, start=1):
        for i in members:
            where[i] = f"pack {p}"
    for i in plan.singles:
        where[i] = "alone"
    keys = list(plan.grid.axes)
    rows = [[r.index, *[_fmt(r.values[k]) for k in keys], where[r.index], r.folder]
            for r in plan.runs]
    lines = [f"sweep {plan.grid.name!r}: {len(plan.runs)} runs, {len(plan.packs)} packs "
             f"({sum(len(p) for p in plan.packs)} runs), {len(plan.singles)} runs alone"]
    lines.append(format_table(rows, ["run", *keys, "trained in", "folder"]))
    for p, members in enumerate(plan.packs, start=1):
        lines.append(f"pack {p}: {len(members)} members (runs {_ranges(members)})")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


def _ranges(idx: list[int]) -> str:
    out, start, prev = [], None, None
    for i in idx:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return ", ".join(out)


# -- running -----------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """What :func:`run_sweep` did: the plan, each run's final metrics and status, the files."""

    plan: SweepPlan
    folder: Path
    results: dict[int, dict[str, Any]]
    trained: list[int]
    skipped: list[int]
    files: list[Path] = field(default_factory=list)


def _manifest(plan: SweepPlan, db: Path | None) -> dict[str, Any]:
    return {"grid": plan.grid.to_dict(),
            "runs": [{"index": r.index, "values": r.values, "key": r.key,
                      "folder": r.folder} for r in plan.runs],
            "db": str(db.resolve()) if db is not None else None}


def _open_folder(out: Path, plan: SweepPlan, db: Path | None, force: bool,
                 store: Any = None) -> None:
    path = out / "sweep.json"
    mine = _manifest(plan, db)
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        same = old.get("grid") == json.loads(json.dumps(mine["grid"], default=str)) and \
            [r["key"] for r in old.get("runs", [])] == [r.key for r in plan.runs]
        if not same and not force:
            raise ValueError(
                f"the sweep folder {str(out)!r} holds another grid "
                f"({old.get('grid', {}).get('name', '?')!r}, {len(old.get('runs', []))} runs); "
                "give another --out, or --force to replace it.")
        if not same:  # --force: the old sweep's folder goes, its rows say so
            if store is not None:
                for r in old.get("runs", []):
                    store.mark_overwritten(out / "runs" / str(r.get("folder")),
                                           message="its sweep folder was replaced (--force)")
            for child in out.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    elif out.exists() and any(out.iterdir()) and not force:
        raise ValueError(f"output folder {str(out)!r} exists, is not empty and holds no sweep "
                         "(no sweep.json); give another --out, or --force to use it.")
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    atomic_write_text(path, json.dumps(mine, indent=2, sort_keys=True, default=str) + "\n")


def _finished(store: Any, folder: Path) -> dict[str, Any] | None:
    """The run's outcome when it is finished, else None. Finished: its store row says done
    or diverged (one transaction, written after the files) and its folder is still there;
    without a store, its ``status.json`` says so."""
    if not (folder / "config.json").is_file():
        return None
    st: dict[str, Any] = {}
    try:
        st = json.loads((folder / "status.json").read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        st = {}
    if store is None:
        return st if st.get("status") in ("done", "diverged") else None
    row = store.find_by_folder(folder)
    if row is not None and row["status"] in ("done", "diverged"):
        return {"status": row["status"], "final": row["final_metrics"], "run_id": row["id"],
                "status_file": st.get("status")}
    return None


def run_sweep(
    grid: SweepGrid,
    out: str | os.PathLike,
    *,
    db: str | os.PathLike | None = None,
    force: bool = False,
    max_pack: int = 64,
    pack: bool = True,
    progress: bool | None = None,
    device: str | None = None,
    report: bool = True,
    say: Callable[[str], None] = print,
    executor: str = "local",
    address: str | None = None,
) -> SweepResult:
    """Expand, pack and train ``grid`` into the sweep folder ``out``; record every run in the
    store ``db``; write the report (unless ``report`` is false). Resumable (see the module
    docstring).

    ``executor``: ``"local"`` trains the packs one after another in this process; ``"ray"``
    makes each pack (and each run trained alone) one Ray task (:func:`map_with_ray`: a local
    Ray, or the cluster at ``address``), each writing its run folders and store rows as the
    local executor does, so a killed sweep resumes the same way. A task that dies is retried
    by Ray; one that fails is named in the error raised after the others finished.
    """
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray'. Received: executor={executor!r}.")
    if address is not None and executor != "ray":
        raise ValueError("address goes with executor='ray'.")

    runs = expand_grid(grid)
    if device is not None:
        for r in runs:
            r.config = dataclasses.replace(r.config, device=device)
    plan = plan_packs(grid, runs, max_pack=max_pack, pack=pack)
    out = Path(out)
    dbp = Path(db) if db is not None else None
    store = RunStore(dbp) if dbp is not None else None  # checked before the folder
    _open_folder(out, plan, dbp, force, store)
    for n in plan.notes:
        say(f"note: {n}")
    by_index = {r.index: r for r in runs}
    results: dict[int, dict[str, Any]] = {}
    done: set[int] = set()
    for r in runs:
        f = _finished(store, out / "runs" / r.folder)
        if f is not None:
            results[r.index] = f
            done.add(r.index)
            if store is not None and f.get("status_file") != f["status"]:
                _fix_status(out / "runs" / r.folder, f)
    skipped = sorted(done)
    if skipped:
        say(f"resuming sweep {grid.name!r}: {len(skipped)} of {len(runs)} runs already finished")
    bar = _bar(len(runs), len(done), progress)
    trained: list[int] = []
    units = [[i for i in members if i not in done] for members in plan.packs]
    units = [u for u in units if u] + [[i] for i in plan.singles if i not in done]
    try:
        if executor == "ray":
            _run_units_ray(units, by_index, out, dbp, grid, address, results, trained, bar)
        else:
            data_cache: dict[str, Any] = {}
            for todo in units:
                results.update(_train_unit([by_index[i] for i in todo], out, store, grid,
                                           data_cache))
                trained += todo
                if bar is not None:
                    bar.update(len(todo))
    finally:
        if bar is not None:
            bar.close()
    files = write_report(plan, out, results, store) if report else []
    return SweepResult(plan, out, results, sorted(trained), skipped, files)


def _train_unit(runs: list[SweepRun], out: Path, store: Any, grid: SweepGrid,
                data_cache: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """One unit of work: a pack, or a run trained alone."""
    if len(runs) == 1:
        return {runs[0].index: _train_single(runs[0], out, store, grid)}
    return _train_pack(runs, out, store, grid, data_cache)


def _ray_unit(runs: list[SweepRun], out: str, db: str | None,
              grid: SweepGrid) -> dict[int, dict[str, Any]]:
    """A Ray task: :func:`_train_unit` in a worker, with its own handle on the store."""
    store = RunStore(db) if db is not None else None
    return _train_unit(runs, Path(out), store, grid, {})


def _run_units_ray(units: list[list[int]], by_index: dict[int, SweepRun], out: Path,
                   db: Path | None, grid: SweepGrid, address: str | None,
                   results: dict[int, dict[str, Any]], trained: list[int], bar: Any) -> None:
    from trainlab.runs.ray_executor import map_with_ray  # the optional extra, on demand

    tasks = []
    for todo in units:
        runs = [by_index[i] for i in todo]
        name = runs[0].label() if len(runs) == 1 else \
            f"pack of {len(runs)} ({runs[0].label()} ...)"
        tasks.append((name, (runs, str(out.resolve()), None if db is None else
                             str(db.resolve()), grid)))

    def got(name: str, res: dict[int, dict[str, Any]]) -> None:
        results.update(res)
        trained.extend(res)
        if bar is not None:
            bar.update(len(res))

    map_with_ray(_ray_unit, tasks, address=address, on_result=got)


def _fix_status(folder: Path, f: dict[str, Any]) -> None:
    rf = RunFolder(folder, resume=True, create=False)
    rf.set_status(f["status"], run_id=f["run_id"], final=f["final"])


def _bar(total: int, initial: int, progress: bool | None) -> Any:
    show = progress if progress is not None else sys.stderr.isatty()
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="run", desc="sweep", dynamic_ncols=True)


def _train_single(run: SweepRun, out: Path, store: Any, grid: SweepGrid) -> dict[str, Any]:
    """One run with the Trainer (:func:`execute_run`): resumed from its checkpoint when a
    kill left one, started afresh otherwise."""

    folder = out / "runs" / run.folder
    has_ckpt = (folder / "checkpoints" / "last.pt").is_file() and \
        (folder / "config.json").is_file()
    db = store.path if store is not None else None
    res = execute_run(run.config, folder, resume=has_ckpt, force=not has_ckpt, db=db,
                      progress=False, name=f"{grid.name}/{run.label()}")
    return {"status": res.status, "final": res.history.final(), "run_id": res.run_id}


def _train_pack(runs: list[SweepRun], out: Path, store: Any, grid: SweepGrid,
                data_cache: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Train ``runs`` as one pack; each member is a run folder and a store row."""

    cfg0 = runs[0].config
    dkey = json.dumps(dataclasses.asdict(cfg0.data), sort_keys=True, default=str)
    if dkey not in data_cache:
        data_cache.clear()  # keep one dataset alive at a time
        data_cache[dkey] = load_data_from_config(cfg0)
    dataset = data_cache[dkey]
    models, folders, ids = [], [], []
    for r in runs:
        seed_everything(r.config.seed)  # as execute_run: the member's init under its seed
        models.append(build_model_from_config(r.config, dataset))
    env0 = collect_env(cfg0.device, None)  # once per pack: it runs git
    for r in runs:
        folder = RunFolder(out / "runs" / r.folder, resume=False, force=True, create=False)
        old = folder.read_status() if folder.path.is_dir() else {}
        folder.create()
        config = r.config.to_dict()
        env = {**env0, "seed": r.config.seed}
        env["pack"] = {"members": len(runs), "runs": [x.index for x in runs]}
        folder.write_config(config)
        folder.write_env(env)
        run_id = old.get("run_id")
        if store is not None:
            if run_id is not None and _has(store, run_id):
                store.mark_running(run_id)  # a killed pack: its member keeps its row
            else:
                run_id = store.create_run(config, seed=r.config.seed, env=env,
                                          folder=folder.path, name=f"{grid.name}/{r.label()}")
        folder.set_status("running", run_id=run_id, started=time.time(), pid=os.getpid(),
                          message=None)
        folders.append(folder)
        ids.append(run_id)
    o = cfg0.optim
    trainer = PackTrainer(
        Pack(models),
        optimizer=[(r.config.optim.name, dict(r.config.optim.options)) for r in runs],
        lr=[r.config.optim.lr for r in runs],
        loss=(cfg0.loss, dict(cfg0.loss_options)) if cfg0.loss_options else cfg0.loss,
        device=cfg0.device,
        seeds=[r.config.seed for r in runs],
        schedule=[_schedule_spec(r.config) for r in runs],
        clip_norm=o.clip_norm,
        log_every=cfg0.log_every,
        progress=False,
    )
    epochs = cfg0.epochs if (cfg0.epochs is not None or cfg0.steps is not None) else 10
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            histories = trainer.fit(dataset, epochs=epochs, steps=cfg0.steps,
                                    batch_size=cfg0.batch_size, eval_every=cfg0.eval_every)
    except BaseException as e:
        # the members are not finished: say so in their folders and rows (a restart trains
        # them again under the same rows); a kill -9 leaves them "running", to the same effect
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        message = f"the pack stopped: {type(e).__name__}: {e}"
        for folder, run_id in zip(folders, ids):
            if store is not None and run_id is not None:
                store.finish(run_id, status, message=message)
            folder.set_status(status, message=message, finished=time.time())
        raise
    for w in caught:
        if not issubclass(w.category, RuntimeWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    results = {}
    for r, folder, run_id, h in zip(runs, folders, ids, histories):
        h.to_csv(folder.metrics_path)
        message = h.divergence.message() if h.divergence is not None else None
        if store is not None and run_id is not None:
            store.finish(run_id, h.status, final_metrics=h.final(), series=h.metrics,
                         message=message)
        folder.set_status(h.status, message=message, step=int(h.final().get("step", 0)),
                          final=h.final(), finished=time.time())
        results[r.index] = {"status": h.status, "final": h.final(), "run_id": run_id}
    return results


def _schedule_spec(cfg: TrainConfig) -> Any:
    o = cfg.optim
    if o.schedule is None:
        return None
    return (o.schedule, dict(o.schedule_options)) if o.schedule_options else o.schedule


def _has(store: Any, run_id: int) -> bool:
    try:
        store.get_run(run_id)
    except ValueError:
        return False
    return True


# -- the report --------------------------------------------------------------------------------
def _metric_of(final: dict[str, Any], metric: str) -> float:
    v = final.get(metric)
    return float(v) if isinstance(v, (int, float)) and v is not None else math.nan


def write_report(plan: SweepPlan, out: Path, results: dict[int, dict[str, Any]],
                 store: Any = None) -> list[Path]:
    """``summary.csv``, heat maps per pair of axes, best-per-axis curves, ``index.html``."""
    import csv
    import io


    grid, keys = plan.grid, list(plan.grid.axes)
    metric = grid.metric
    if metric.startswith("test") and not any(
            not math.isnan(_metric_of(results.get(r.index, {}).get("final", {}), metric))
            for r in plan.runs):
        metric = "train_loss"  # no test split
    header = ["run", *keys, "status", "step", "train_loss", "test_loss", "test_acc", "folder"]
    rows = []
    for r in plan.runs:
        res = results.get(r.index, {})
        f = res.get("final", {})
        rows.append([r.index, *[_fmt(r.values[k]) for k in keys], res.get("status", "missing"),
                     f.get("step"), f.get("train_loss"), f.get("test_loss"), f.get("test_acc"),
                     f"runs/{r.folder}"])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    files = [atomic_write_text(out / "summary.csv", buf.getvalue())]
    lower = metric.endswith("loss")

    def score(i: int) -> float:
        v = _metric_of(results.get(i, {}).get("final", {}), metric)
        return math.inf if math.isnan(v) else (v if lower else -v)

    ranked = sorted(plan.runs, key=lambda r: score(r.index))
    print(format_table([[c if c is not None else "" for c in row[:-1]]
                        for row in [rows[r.index] for r in ranked]], header[:-1]))
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    page = HtmlPage(f"sweep: {grid.name}")
    page.paragraph(f"{len(plan.runs)} runs over the axes "
                   + ", ".join(f"{k} ({len(v)})" for k, v in grid.axes.items())
                   + f"; {len(plan.packs)} packs, {len(plan.singles)} runs alone. Ranked by "
                   f"{metric} ({'lower' if lower else 'higher'} is better).")
    for n in plan.notes:
        page.paragraph(n, cls="note")
    page.heading("Fixed settings")
    page.code(json.dumps(grid.fixed, indent=2, sort_keys=True, default=str))
    page.heading("Runs (best first)")
    page.table([[c if c is not None else "" for c in rows[r.index]] for r in ranked], header)
    varying = [k for k in keys if len(grid.axes[k]) > 1]
    for a, b in itertools.combinations(varying, 2):
        p = _heatmap(plan, results, a, b, metric, figs / f"heatmap_{_safe(a)}__{_safe(b)}.png")
        files.append(p)
        page.figure(f"figures/{p.name}", caption=f"Mean {metric} over the other axes for each "
                    f"{a} (rows) and {b} (columns); each cell says its value and run count.")
    for a in varying:
        p = _best_curves(plan, results, a, metric, store, out,
                         figs / f"best_{_safe(a)}.png")
        if p is not None:
            files.append(p)
            page.figure(f"figures/{p.name}", caption=f"For each value of {a}, the curves of its "
                        f"best run by {metric}: which value wins and when the curves part.")
    files.append(page.write(out / "index.html"))
    return files


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in key)


def _heatmap(plan: SweepPlan, results: dict[int, dict[str, Any]], a: str, b: str,
             metric: str, path: Path) -> Path:
    """Mean ``metric`` over the other axes for each value of ``a`` (rows) and ``b`` (columns),
    drawn by :func:`trainlab.report.sweep_plots.plot_heatmap`."""
    import numpy as np

    va, vb = plan.grid.axes[a], plan.grid.axes[b]
    sums = np.zeros((len(va), len(vb)))
    counts = np.zeros((len(va), len(vb)), dtype=int)
    for r in plan.runs:
        v = _metric_of(results.get(r.index, {}).get("final", {}), metric)
        if math.isnan(v):
            continue
        i = [json.dumps(x, default=str) for x in va].index(json.dumps(r.values[a], default=str))
        j = [json.dumps(x, default=str) for x in vb].index(json.dumps(r.values[b], default=str))
        sums[i, j] += v
        counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return plot_heatmap(mean, counts, [_fmt(v) for v in va], [_fmt(v) for v in vb],
                        row_axis=a, col_axis=b, metric=metric,
                        title=f"{plan.grid.name}: {metric} by {a} and {b}", path=path)


def _series(store: Any, out: Path, run: SweepRun, results: dict[int, dict[str, Any]],
            key: str) -> tuple[list[float], list[float]]:
    import csv

    path = out / "runs" / run.folder / "metrics.csv"
    steps, vals = [], []
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get(key) not in (None, ""):
                    steps.append(float(row["step"]))
                    vals.append(float(row[key]))
    return steps, vals


def _best_curves(plan: SweepPlan, results: dict[int, dict[str, Any]], a: str, metric: str,
                 store: Any, out: Path, path: Path) -> Path | None:
    """For each value of ``a``, the ``metric`` curve of its best run, drawn by
    :func:`trainlab.report.sweep_plots.plot_best_curves` (``None``: no curve to draw)."""
    lower = metric.endswith("loss")
    curves = []
    for ci, value in enumerate(plan.grid.axes[a]):
        tag = json.dumps(value, default=str)
        cands = [r for r in plan.runs if json.dumps(r.values[a], default=str) == tag]
        scored = [(v, r) for r in cands
                  if not math.isnan(v := _metric_of(results.get(r.index, {}).get("final", {}),
                                                    metric))]
        if not scored:
            continue
        v, best = (min if lower else max)(scored, key=lambda t: t[0])
        s, ys = _series(store, out, best, results, metric)
        if not s:
            continue
        curves.append((f"{a}={_fmt(value)} (run {best.index}, final {v:.3g})", s, ys, f"C{ci}"))
    return plot_best_curves(curves, metric=metric, title=f"{plan.grid.name}: best run per {a}",
                            path=path)


def sweep_run_ids(out: str | os.PathLike,
                  db: str | os.PathLike | None = None) -> tuple[Path | None, list[int]]:
    """The store (``db``, or the one the sweep recorded) and the run ids of the sweep in
    ``out``, in grid order (for ``trainlab runs compare --sweep``)."""

    out = Path(out)
    path = out / "sweep.json"
    if not path.is_file():
        raise ValueError(f"{str(out)!r} holds no sweep (no sweep.json).")
    man = json.loads(path.read_text())
    db = Path(db) if db is not None else Path(man["db"]) if man.get("db") else None
    if db is None or not db.is_file():
        raise ValueError(f"the sweep in {str(out)!r} recorded no results store.")
    store = RunStore(db, readonly=True)
    ids = []
    for r in man["runs"]:
        row = store.find_by_folder(out / "runs" / r["folder"])
        if row is not None:
            ids.append(int(row["id"]))
    return db, ids
