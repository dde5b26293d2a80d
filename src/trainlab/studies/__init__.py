"""Studies: each experiment, figure or claim of the lectures as one command.

``trainlab study list`` lists them, ``trainlab study show NAME`` says what one reproduces and
how, ``trainlab study run NAME --scale quick`` runs it (``--all`` runs every study and writes a
summary page). From Python::

    from trainlab.studies import run_study
    result = run_study("activation-stats", scale="quick", out="out/activation-stats")
    result.passed, [c.measured for c in result.claims]

Each study is one module of this package (``activation_stats.py`` for
``activation-stats``), discovered automatically; :mod:`trainlab.studies.base` holds the
framework. See ``STUDIES.md`` in the design documents for the catalogue.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trainlab.studies.base import (
    ALL_SCALES,
    SAME,
    SCALES,
    STUDIES,
    Claim,
    ClaimResult,
    DataMissingError,
    On,
    Study,
    StudyContext,
    StudyResult,
    get_study,
    load_studies,
    no_data_result,
    prepare_folder,
    run_study,
    study,
    study_names,
)
from trainlab.studies.page import data_condition, reproductions_markdown, write_summary
from trainlab.utils import atomic_write_text

__all__ = [
    "default_jobs",
    "usable_cores",
    "SAME",
    "ALL_SCALES",
    "SCALES",
    "STUDIES",
    "Claim",
    "ClaimResult",
    "DataMissingError",
    "On",
    "Study",
    "StudyContext",
    "StudyResult",
    "get_study",
    "load_result",
    "load_studies",
    "summarize",
    "run_all",
    "run_study",
    "study",
    "study_names",
]

def _finished(folder: Path, scale: str, seed: int, controls: bool) -> StudyResult | None:
    """The study result in ``folder`` when it finished at ``scale`` and ``seed`` (no error,
    its controls run when asked), else ``None``."""
    try:
        r = load_result(folder)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if r.scale != get_study(r.name).scale_for(scale)[0] or r.seed != seed or r.error:
        return None
    if controls and not any(c.control for c in r.claims if c.applies):
        return None
    return r


def _study_task(name: str, scale: str, seed: int, out: str, force: bool, db: Any,
                device: Any, controls: bool) -> StudyResult:
    """One study as a Ray task or in a worker process (quiet: the driver prints each study's
    line)."""
    spec = get_study(name)
    try:
        return run_study(spec, scale=scale, seed=seed, out=out, force=force, db=db,
                         device=device, progress=False, log=None, controls=controls)
    except DataMissingError as e:
        return no_data_result(spec, scale, seed, Path(out), str(e))


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def default_jobs(device: Any = "auto") -> int:
    """How many studies ``run_all`` runs at once by default: one per usable core on a CPU
    (each single-threaded: the studies' small models use one core better than two threads
    do, and their numbers then do not depend on the machine's core count), one on a GPU."""
    import torch

    if str(device) != "cpu" and torch.cuda.is_available():
        return 1
    return usable_cores()


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_all_local(specs: Sequence[Any], kept: dict[str, StudyResult], *, jobs: int,
                   scale: str, seed: int, out: Path, force: bool, db: Any, device: Any,
                   log: Callable[[str], None] | None, controls: bool,
                   bar: Any) -> list[StudyResult]:
    """The studies in ``jobs`` worker processes (spawned: no state shared with this one),
    each with ``usable_cores() // jobs`` threads (at least one), the longest first (their
    declared quick time), so that the last one to start is short. A worker that dies is
    recorded by name (NOT MEASURED); the batch goes on."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    say = log or (lambda m: None)
    todo = sorted((s for s in specs if s.name not in kept), key=lambda s: -s.quick_seconds)
    threads = max(1, usable_cores() // jobs)
    done: dict[str, StudyResult] = {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(_study_task, s.name, scale, seed, str((out / s.name).resolve()),
                               force, None if db is None else str(Path(db).resolve()),
                               device, controls): s for s in todo}
        for f in as_completed(futures):
            s = futures[f]
            try:
                r = f.result()
                say(f"{s.name}: {r.n_passed}/{r.n_applicable} claims passed on {r.data_text} "
                    f"in {r.seconds:.1f} s")
            except (BrokenProcessPool, OSError, RuntimeError) as e:
                msg = f"the worker process running it stopped: {type(e).__name__}: {e}"
                say(f"{s.name}: ERROR: {msg}")
                r = no_data_result(s, scale, seed, out / s.name, msg, status="NOT MEASURED")
            done[s.name] = r
            if bar is not None:
                bar.update(1)
    return [kept[s.name] if s.name in kept else done[s.name] for s in specs]


def _run_all_ray(specs: Sequence[Any], kept: dict[str, StudyResult], *, scale: str, seed: int,
                 out: Path, force: bool, db: Any, device: Any,
                 log: Callable[[str], None] | None, controls: bool,
                 address: str | None) -> list[StudyResult]:
    from trainlab.runs.ray_executor import TaskFailed, map_with_ray  # the optional extra

    say = log or (lambda m: None)
    tasks = [(s.name, (s.name, scale, seed, str((out / s.name).resolve()), force,
                       None if db is None else str(Path(db).resolve()), device, controls))
             for s in specs if s.name not in kept]

    def got(name: str, r: StudyResult) -> None:
        say(f"{name}: {r.n_passed}/{r.n_applicable} claims passed on {r.data_text} in "
            f"{r.seconds:.1f} s (Ray task)")

    done: dict[str, StudyResult] = {}

    def keep(name: str, r: StudyResult) -> None:
        done[name] = r
        got(name, r)

    try:
        map_with_ray(_study_task, tasks, address=address, on_result=keep)
    except TaskFailed as e:  # recorded by name; the batch's summary still comes
        for s in specs:
            if s.name in e.failures:
                say(f"{s.name}: ERROR: the Ray task failed: {e.failures[s.name]}")
                done[s.name] = no_data_result(s, scale, seed, out / s.name,
                                              f"the Ray task failed: {e.failures[s.name]}",
                                              status="NOT MEASURED")
    return [kept[s.name] if s.name in kept else done[s.name] for s in specs]


def run_all(
    names: Sequence[str] | None = None,
    *,
    scale: str = "quick",
    seed: int = 0,
    out: str | os.PathLike = "trainlab-studies",
    force: bool = False,
    db: str | os.PathLike | None = None,
    device: Any = "auto",
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
    markdown: str | os.PathLike | None = None,
    command: str | None = None,
    controls: bool = False,
    resume: bool = False,
    executor: str = "local",
    address: str | None = None,
    jobs: int | None = 1,
) -> tuple[list[StudyResult], Path]:
    """Run ``names`` (default: every study) at ``scale``, each into ``OUT/NAME``
    (``controls``: with each study's control run, see :func:`run_study`).

    ``resume``: keep the studies of ``OUT`` that already finished at this scale and seed
    (their ``result.json`` without an error) and run the others, so a killed batch goes on
    where it stopped. ``executor="ray"``: each study is one Ray task (a local Ray, or the
    cluster at ``address``); the studies pack their own runs inside the task. A task that
    dies is retried by Ray; a study that fails is recorded with its error, as locally.
    ``jobs``: locally, how many studies run at once, each in its own process with
    ``cores // jobs`` threads (``None``: :func:`default_jobs`, one per core, single-threaded);
    1 runs them one after another in this process.

    Writes ``OUT/index.html`` (linking every study page) and the Markdown claim table
    (``markdown``, default ``OUT/reproductions.md``). The scale and the output folders are
    checked for every study before the first one runs. Returns the results and the summary
    page's path.
    """

    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray'. Received: executor={executor!r}.")
    if jobs is None:
        jobs = default_jobs(device)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer or None (one per core). "
                         f"Received: jobs={jobs!r}.")
    specs = [get_study(n) for n in (names if names is not None else study_names())]
    out = Path(out)
    for spec in specs:
        spec.scale_for(scale)  # a study without a reference scale runs quick there
    kept: dict[str, StudyResult] = {}
    if resume and out.is_dir():
        for spec in specs:
            r = _finished(out / spec.name, scale, seed, controls)
            if r is not None:
                kept[spec.name] = r
        (log or (lambda m: None))(f"resuming: {len(kept)} of {len(specs)} studies already "
                                   f"finished in {out}")
    elif out.exists() and any(out.iterdir()):
        prepare_folder(out, force)  # refuses without force, before anything runs
    out.mkdir(parents=True, exist_ok=True)
    force = force or resume  # an unfinished study's folder is redone
    results = []
    t0 = time.perf_counter()
    if executor == "ray":
        results = _run_all_ray(specs, kept, scale=scale, seed=seed, out=out, force=force, db=db,
                               device=device, log=log, controls=controls, address=address)
        specs = []
    bar = None
    show = progress if progress is not None else __import__("sys").stderr.isatty()
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(specs), unit="study", dynamic_ncols=True)
    if jobs > 1 and len([s for s in specs if s.name not in kept]) > 1:
        try:
            if bar is not None:
                bar.set_description(f"{jobs} studies at a time")
                bar.update(sum(1 for s in specs if s.name in kept))
            results = _run_all_local(specs, kept, jobs=jobs, scale=scale, seed=seed, out=out,
                                     force=force, db=db, device=device, log=log,
                                     controls=controls, bar=bar)
        finally:
            if bar is not None:
                bar.close()
        specs, bar = [], None
    try:
        for spec in specs:
            if bar is not None:
                bar.set_description(spec.name)
            if spec.name in kept:
                results.append(kept[spec.name])
                if bar is not None:
                    bar.update(1)
                continue
            try:
                results.append(run_study(spec, scale=scale, seed=seed, out=out / spec.name,
                                         force=force, db=db, device=device,
                                         progress=progress, log=log, controls=controls))
            except DataMissingError as e:  # said and recorded; the batch goes on
                (log or (lambda m: None))(f"{spec.name}: NO DATA: {e}")
                results.append(no_data_result(spec, scale, seed, out / spec.name, str(e)))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    seconds += sum(r.seconds for r in kept.values())  # the batch's time, kept studies too
    cmd = command or f"trainlab study run --all --scale {scale} --seed {seed} --out {out}"
    page, _ = write_summary(results, out, scale=scale, seconds=seconds, command=cmd,
                            markdown=markdown)
    return results, page


def load_result(folder: str | os.PathLike) -> StudyResult:
    """The :class:`StudyResult` a study run wrote to ``FOLDER/result.json``."""
    import json

    folder = Path(folder)
    path = folder / "result.json"
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no study result in {str(folder)!r} (no result.json).") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not a study result: {e}.") from None
    claims = [ClaimResult(c["id"], c["statement"], c["quantity"], c["expected"], c["measured"],
                          c["status"], c.get("spread"),
                          tuple(c["seeds"]) if c.get("seeds") is not None else None,
                          c.get("detail", ""), c.get("why", ""), c.get("op", ""),
                          c.get("threshold"), c.get("test", ""), c.get("n"),
                          tuple(c["interval"]) if c.get("interval") else None,
                          c.get("control"))
              for c in d["claims"]]
    return StudyResult(d["study"], d["title"], d["source"], d["scale"], d["seed"], folder,
                       float(d["seconds"]), claims, d.get("config", {}), d["command"],
                       d.get("figures", []), [], d.get("notes", []), d.get("runs", []),
                       d.get("error"), d.get("device", "cpu"), d.get("summary", ""),
                       d.get("cpu_seconds"), d.get("dataset"), d.get("substituted_for"),
                       d.get("data_reason", ""), d.get("data_note", ""), d.get("anchors", []))


def summarize(out: str | os.PathLike | Sequence[str | os.PathLike], *,
              markdown: str | os.PathLike | None = None,
              command: str | None = None) -> tuple[list[StudyResult], Path]:
    """Rebuild ``OUT/index.html`` and the Markdown claim table from the study folders in
    ``OUT`` (each ``OUT/NAME/result.json``), e.g. after running studies one by one.

    Several folders (one ``--all`` run each, e.g. one with MNIST present and one without):
    each gets its summary page, and ``markdown`` (required then) holds one table per folder,
    titled by the data its studies found. Returns every result and the first summary page.
    """

    outs = [Path(out)] if isinstance(out, (str, os.PathLike)) else [Path(o) for o in out]
    if len(outs) > 1 and markdown is None:
        raise ValueError("summarizing several folders needs markdown= (--markdown FILE): "
                         "the file that holds one table per folder.")
    cmd = command or "trainlab study summary " + " ".join(str(o) for o in outs)
    everything, pages, sections = [], [], []
    for o in outs:
        folders = sorted(p.parent for p in o.glob("*/result.json"))
        if not folders:
            raise FileNotFoundError(f"no study results in {str(o)!r} (no */result.json).")
        results = [load_result(f) for f in folders]
        scales = sorted({r.scale for r in results})
        scale = scales[0] if len(scales) == 1 else "+".join(scales)
        md = markdown if len(outs) == 1 else o / "reproductions.md"
        page, _ = write_summary(results, o, scale=scale,
                                seconds=sum(r.seconds for r in results), command=cmd,
                                markdown=md)
        everything += results
        pages.append(page)
        sections.append((f"{data_condition(results)} — `{o.name}/`", results))
    if len(outs) > 1:
        atomic_write_text(Path(markdown), reproductions_markdown(sections, cmd))
    return everything, pages[0]
