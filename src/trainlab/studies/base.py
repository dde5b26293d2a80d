"""The study framework: a study is one experiment of the lectures as one command.

A study module declares, with the :func:`study` decorator, what it reproduces (the lecture
slide and the paper), its configuration at each scale (a frozen dataclass per scale:
``test`` runs in seconds for the test suite, ``quick`` on a 2-core CPU, ``paper`` follows
the original setup and is meant for a GPU) and its :class:`Claim` s. Its function receives
a :class:`StudyContext` and the configuration of the chosen scale; it trains or probes what
it needs and reports through the context::

    ctx.figure("histograms", fig, "What to see in one sentence.")   # PNG
    ctx.table("layer_stds", rows, "Caption.")                       # CSV + HTML
    ctx.check("small-init-vanishes", value, spread=std, seeds=[0, 1, 2])
    ctx.note("MNIST not found: used the embedded MNIST-1D.")
    history = ctx.train(model, data, label="tanh-xavier", steps=500, lr=0.1)

:func:`run_study` runs one study into a folder (refused when it exists and is not empty,
unless ``force``) and writes there, besides the figures and tables, ``result.json`` (every
claim with its statement, measured value, threshold, PASS/FAIL and the seeds and spread it
was measured on, the configuration, the time taken and the command that reproduces it)
and ``index.html``. Every training run made through :meth:`StudyContext.train` is a run in
the results store, tagged with the study, scale and label.

Data. A study declares the datasets it can run on, ``datasets=("mnist", "mnist1d")``: the
first is the paper's (the primary), the others declared alternatives (a ``+`` joins the sets
a study uses together, ``"shapeset+mnist1d+mnist"``). Before the study runs, :func:`run_study`
picks the first one whose files are found (or the one named by ``data=`` / ``--data``); when
that is not the primary, the substitution is said on the console, in the page's header and in
``result.json`` (``"dataset"``, ``"substituted_for"``). When no declared dataset is found it
stops with :class:`DataMissingError`, saying how to get the primary. Every claim carries, for
each alternative, its threshold there and the reason (:class:`On`): a threshold chosen for
MNIST is never applied to MNIST-1D unless the claim says why it carries over.

Claims. A claim is a measured quantity compared with a threshold by ``op`` (``<``, ``<=``,
``>``, ``>=`` or ``in`` a closed interval). When the study gives the ``spread`` of the value
(the standard deviation over seeds), the claim passes only when, besides the comparison, the
margin between value and threshold exceeds the spread: a difference smaller than the noise
it was measured with is not a result. A declared claim the run never checks is reported
``NOT MEASURED``, which counts as a failure; so is a study that raised.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainlab._version import __version__
from trainlab.data import DATASETS, load_dataset
from trainlab.data.images import IMAGE_SPECS, is_available, prepare
from trainlab.engine.grid import GridGroup, GridRun, plan_grid, train_group
from trainlab.engine.history import History
from trainlab.engine.pack import MemberDivergedWarning
from trainlab.registry import Registry
from trainlab.report.figures import save_figure
from trainlab.runs.run import collect_env
from trainlab.store import RunStore
from trainlab.studies.page import format_value, write_study_page
from trainlab.utils import atomic_write_text, resolve_device

__all__ = [
    "no_data_result",
    "SAME",
    "ALL_SCALES",
    "SCALES",
    "STUDIES",
    "Claim",
    "DataMissingError",
    "On",
    "ClaimResult",
    "Study",
    "StudyContext",
    "StudyResult",
    "format_value",
    "get_study",
    "resolve_data",
    "run_study",
    "study",
]

SCALES = ("test", "quick", "paper")  # every study defines these
#: the scales a study may define besides: ``reference`` is the paper's own setup (model,
#: optimizer, batch, init, preprocessing) on this machine's data, with as much of the paper's
#: training length as a 2-core CPU affords; a study without one runs its quick scale there
OPTIONAL_SCALES = ("reference",)
ALL_SCALES = ("test", "quick", "reference", "paper")  # in order of cost
_OPS = ("<", "<=", ">", ">=", "in")

STUDIES = Registry("study")


class DataMissingError(FileNotFoundError):
    """No dataset a study declares is on this machine (the message says how to get one)."""


SAME = "same"  # On(SAME, why): the primary threshold carries over, for the reason in ``why``


@dataclass(frozen=True)
class On:
    """A claim's threshold on one of its study's alternative datasets.

    ``On(0.9, "why")``: on that dataset the claim compares with 0.9 (same ``op``, or ``op=``);
    ``On(SAME, "why")``: the primary threshold carries over — ``why`` says why it does not
    depend on the data (a derivation, a ratio between setups); ``On(None, "why")``: the claim
    is not tested on that dataset (reported ``N/A`` with ``why``).
    """

    threshold: Any
    why: str
    op: str | None = None

    def __post_init__(self) -> None:
        if not str(self.why).strip():
            raise ValueError("On(...) needs a reason: why this threshold on this dataset.")


@dataclass(frozen=True)
class Claim:
    """One claim of a study: ``quantity op threshold``, with the reason for the threshold.

    Attributes:
        id: short identifier, unique within the study (``"he-flat"``).
        statement: the lecture's or paper's claim in one sentence.
        quantity: what is measured, precisely (``"std(layer 6) / std(layer 1)"``).
        op: ``"<"``, ``"<="``, ``">"``, ``">="`` or ``"in"`` (``threshold = (lo, hi)``).
        threshold: the number (or interval) the quantity is compared with.
        why: why this threshold (what the theory predicts, what the paper measured).
        on: for each alternative dataset of the study, an :class:`On` (its threshold there
            and why, or ``None``: not tested there).
    """

    id: str
    statement: str
    quantity: str
    op: str
    threshold: float | tuple[float, float]
    why: str = ""
    on: Mapping[str, On] = field(default_factory=dict, hash=False, compare=False)
    #: the control: what the study changes under ``--controls`` (the technique removed or
    #: reversed: "BN -> none", "He -> Xavier"), under which this claim must FAIL
    control: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"Claim op must be one of {_OPS}. Received: op={self.op!r} "
                             f"(claim {self.id!r}).")
        if self.op == "in":
            t = self.threshold
            if not (isinstance(t, (tuple, list)) and len(t) == 2 and t[0] <= t[1]):
                raise ValueError(f"Claim {self.id!r}: op 'in' needs threshold=(lo, hi) with "
                                 f"lo <= hi. Received: threshold={t!r}.")
        elif not isinstance(self.threshold, (int, float)) or isinstance(self.threshold, bool):
            raise ValueError(f"Claim {self.id!r}: threshold must be a number for op "
                             f"{self.op!r}. Received: threshold={self.threshold!r}.")
        for name, o in self.on.items():
            if not isinstance(o, On):
                raise TypeError(f"Claim {self.id!r}: on[{name!r}] must be an On(threshold, "
                                f"why). Received: {o!r}.")

    def for_data(self, dataset: str | None, primary: str | None) -> Claim | None:
        """This claim as it applies on ``dataset``: itself on the primary, the threshold of
        ``on[dataset]`` on an alternative, ``None`` where it is not tested there."""
        if dataset is None or dataset == primary:
            return self
        o = self.on[dataset]
        if o.threshold is None:
            return None
        threshold = self.threshold if o.threshold == SAME else o.threshold
        threshold = tuple(threshold) if isinstance(threshold, list) else threshold
        return dataclasses.replace(self, op=o.op or self.op, threshold=threshold,
                                   why=f"on {dataset}: {o.why}")

    @property
    def expected(self) -> str:
        """The threshold as text: ``"< 0.001"``, ``"in [0.5, 2]"``."""
        if self.op == "in":
            lo, hi = self.threshold  # type: ignore[misc]
            return f"in [{format_value(lo)}, {format_value(hi)}]"
        return f"{self.op} {format_value(self.threshold)}"

    def holds(self, value: float, spread: float | None = None) -> bool:
        """Whether ``value`` satisfies the claim; with ``spread``, by more than the spread."""
        if value is None or not math.isfinite(value):
            return False
        s = 0.0 if spread is None or not math.isfinite(spread) else abs(float(spread))
        t = self.threshold
        if self.op == "in":
            lo, hi = t  # type: ignore[misc]
            return lo + s <= value <= hi - s if s else lo <= value <= hi
        margin = value - t  # type: ignore[operator]
        if self.op in (">", ">="):
            ok = margin > 0 if self.op == ">" else margin >= 0
        else:
            ok = margin < 0 if self.op == "<" else margin <= 0
        return ok and (s == 0 or abs(margin) > s)

    def decide(self, low: float, high: float) -> bool:
        """Whether the interval ``[low, high]`` lies entirely on the claim's side: for ``>``
        the lower bound beats the threshold, for ``<`` the upper bound, for ``in`` both
        bounds are inside (an equivalence test, two one-sided tests)."""
        if not (math.isfinite(low) and math.isfinite(high)):
            return False
        t = self.threshold
        if self.op == "in":
            lo, hi = t  # type: ignore[misc]
            return lo <= low and high <= hi
        if self.op == ">":
            return low > t  # type: ignore[operator]
        if self.op == ">=":
            return low >= t  # type: ignore[operator]
        if self.op == "<":
            return high < t  # type: ignore[operator]
        return high <= t  # type: ignore[operator]


#: the confidence of a verdict's interval: one-sided 95% on the claim's side
CONFIDENCE = 0.95


def t_interval(mean: float, sd: float, n: int, confidence: float = CONFIDENCE
               ) -> tuple[float, float]:
    """``mean ∓ t_{confidence, n-1} · sd / √n``: each end is the one-sided ``confidence``
    bound of the mean of ``n`` per-seed values with sample standard deviation ``sd``
    (Student t; together the two-sided ``2·confidence − 1`` interval)."""
    from scipy.stats import t as student_t  # scipy is heavy to import; only studies need it

    if n < 2:
        raise ValueError(f"an interval needs at least 2 values. Received: n={n}.")
    half = float(student_t.ppf(confidence, n - 1)) * abs(sd) / math.sqrt(n)
    return mean - half, mean + half


@dataclass(frozen=True)
class ClaimResult:
    """A claim with its measured value and verdict (``PASS``, ``FAIL``, ``NOT MEASURED``)."""

    id: str
    statement: str
    quantity: str
    expected: str
    measured: float | None
    status: str
    spread: float | None = None
    seeds: tuple[int, ...] | None = None
    detail: str = ""
    why: str = ""
    op: str = ""
    threshold: Any = None
    #: how the verdict was decided: "t" (Student t interval over seeds), "exact" (an
    #: identity or closed form, compared as is) or "single" (one measurement, no interval)
    test: str = ""
    n: int | None = None  # measurements the interval rests on
    interval: tuple[float, float] | None = None  # one-sided 95% bounds, low and high
    #: the control run's result (``--controls``): ``{"what", "measured", "status",
    #: "text"}``; its ``status`` must be FAIL for the claim to be able to fail
    control: dict[str, Any] | None = None

    @property
    def control_text(self) -> str:
        """``"He -> Xavier: 0.12 -> FAIL (as it must)"``, or ``""`` without a control run."""
        c = self.control
        if not c:
            return ""
        verdict = ("FAIL (as it must)" if c["status"] == "FAIL" else
                   "PASSES: this claim could not fail" if c["status"] == "PASS" else
                   c["status"])
        return f"{c['what']}: {c['text']} -> {verdict}"

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    @property
    def test_text(self) -> str:
        """``"t, n=5: 95% bounds [0.61, 0.64]"``, ``"exact"``, ``"one run (no interval)"``."""
        if self.test == "t" and self.interval is not None:
            lo, hi = self.interval
            return (f"Student t, n={self.n}: one-sided 95% bounds "
                    f"[{format_value(lo)}, {format_value(hi)}]")
        if self.test == "exact":
            return "exact"
        if self.test == "single":
            return "one measurement (no interval)"
        return ""

    @property
    def applies(self) -> bool:
        """False for a claim not tested on the data this run used (``N/A``)."""
        return self.status != "N/A"

    @property
    def measured_text(self) -> str:
        """``"0.123 ± 0.004 (3 seeds)"`` or ``"0.123"`` or ``"—"``."""
        if self.measured is None:
            return "—"
        text = format_value(self.measured)
        if self.spread is not None:
            text += f" ± {format_value(self.spread)}"
        if self.seeds:
            text += f" ({len(self.seeds)} seed{'s' if len(self.seeds) != 1 else ''})"
        return text

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seeds"] = list(self.seeds) if self.seeds is not None else None
        d["interval"] = list(self.interval) if self.interval is not None else None
        d["threshold"] = list(self.threshold) if isinstance(self.threshold, tuple) else \
            self.threshold
        return d


@dataclass(frozen=True)
class Study:
    """A registered study (see the module docstring); built by :func:`study`."""

    name: str
    title: str
    source: str
    summary: str
    scales: Mapping[str, Any]
    claims: tuple[Claim, ...]
    fn: Callable[[StudyContext, Any], None]
    quick_seconds: float = 60.0
    data_note: str = ""
    datasets: tuple[str, ...] = ()
    #: why the study has no ``reference`` scale (its quick setup is the paper's, it needs no
    #: data, the paper's data are not on this machine ...); said when ``reference`` runs quick
    reference_note: str = ""

    def scale_for(self, scale: str) -> tuple[str, str]:
        """The scale that runs when ``scale`` is asked for, and why it differs (``""``: the
        same). A study without a ``reference`` scale runs its ``quick`` one there."""
        if scale == "reference" and "reference" not in self.scales:
            why = self.reference_note or "the study defines no reference scale"
            return "quick", f"no reference scale ({why}): its quick setup ran"
        self.config(scale)
        return scale, ""

    @property
    def primary_data(self) -> str | None:
        """The paper's dataset (the first declared), or ``None`` for a study that generates
        its inputs itself (Gaussian inputs, a synthetic set: ``data_note`` says which)."""
        return self.datasets[0] if self.datasets else None

    def claims_on(self, dataset: str | None) -> list[tuple[Claim, Claim | None]]:
        """Each declared claim with its form on ``dataset`` (``None``: not tested there)."""
        return [(c, c.for_data(dataset, self.primary_data)) for c in self.claims]

    def config(self, scale: str) -> Any:
        """The frozen configuration of ``scale``; unknown scales list the choices."""
        if scale not in self.scales:
            import difflib

            names = list(self.scales) + [s for s in OPTIONAL_SCALES if s not in self.scales]
            close = difflib.get_close_matches(str(scale), names, n=1)
            if scale in OPTIONAL_SCALES:
                raise ValueError(f"study {self.name!r} defines no {scale!r} scale "
                                 f"({self.reference_note or 'none declared'}); its scales: "
                                 f"{tuple(self.scales)}. Received: scale={scale!r}.")
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"scale must be one of {tuple(self.scales)}.{hint} "
                             f"Received: scale={scale!r}.")
        return self.scales[scale]

    def claim(self, claim_id: str) -> Claim:
        for c in self.claims:
            if c.id == claim_id:
                return c
        ids = ", ".join(c.id for c in self.claims)
        raise ValueError(f"study {self.name!r} declares no claim {claim_id!r}. "
                         f"Its claims: {ids}.")

    def describe(self) -> str:
        """What `trainlab study show` prints: summary, setups per scale, claims."""
        lines = [f"{self.name} — {self.title}", f"source: {self.source}", "", self.summary, ""]
        if self.datasets:
            alt = ", ".join(self.datasets[1:]) or "none"
            lines += [f"data: {self.datasets[0]} (the paper's); declared alternatives: {alt}"]
        if self.data_note:
            lines += [f"data: {self.data_note}"]
        if self.datasets or self.data_note:
            lines.append("")
        lines.append(f"setup per scale (quick ≈ {format_value(self.quick_seconds)} s on a "
                     "2-core CPU):")
        for scale, cfg in self.scales.items():
            fields = ", ".join(f"{k}={v!r}" for k, v in _config_dict(cfg).items())
            lines.append(f"  {scale:<6} {fields}")
        lines += ["", f"claims ({len(self.claims)}):"]
        for c in self.claims:
            lines.append(f"  [{c.id}] {c.statement}")
            lines.append(f"      measured: {c.quantity}  expected: {c.expected}")
            if c.why:
                lines.append(f"      why: {c.why}")
            for d, o in c.on.items():
                t = ("not tested" if o.threshold is None else
                     "same threshold" if o.threshold == SAME else
                     f"expected {o.op or c.op} {format_value(o.threshold)}")
                lines.append(f"      on {d}: {t} — {o.why}")
        return "\n".join(lines)


def _config_dict(cfg: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return dict(cfg)


def study(
    name: str,
    *,
    title: str,
    source: str,
    summary: str,
    scales: Mapping[str, Any],
    claims: Sequence[Claim],
    quick_seconds: float = 60.0,
    data_note: str = "",
    datasets: Sequence[str] = (),
    reference_note: str = "",
) -> Callable[[Callable[[StudyContext, Any], None]], Callable[[StudyContext, Any], None]]:
    """Register the decorated ``run(ctx, cfg)`` function as the study ``name``.

    ``scales`` maps each of ``"test"``, ``"quick"`` and ``"paper"`` (and optionally
    ``"reference"``, the paper's setup at the length a 2-core CPU affords) to a frozen
    dataclass instance; ``reference_note`` says why a study has no reference scale;
    ``claims`` are :class:`Claim` s with unique ids. ``datasets``: the data the
    study can run on, the paper's first (see the module docstring); every claim must then
    say, in its ``on``, what it expects on each alternative.
    """
    missing = [s for s in SCALES if s not in scales]
    if missing:
        raise ValueError(f"study {name!r} must define the scales {SCALES}; missing {missing}.")
    unknown = [s for s in scales if s not in ALL_SCALES]
    if unknown:
        raise ValueError(f"study {name!r}: unknown scale {unknown[0]!r}; the scales are "
                         f"{ALL_SCALES}.")
    for s, cfg in scales.items():
        if not (dataclasses.is_dataclass(cfg) and type(cfg).__dataclass_params__.frozen):
            raise TypeError(f"study {name!r}: the {s!r} configuration must be a frozen "
                            f"dataclass instance. Received: {type(cfg).__name__}.")
    ids = [c.id for c in claims]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"study {name!r}: claim ids must be unique; repeated: {dup}.")
    datasets = tuple(datasets)
    if len(set(datasets)) != len(datasets):
        raise ValueError(f"study {name!r}: datasets repeat a name: {datasets}.")
    for c in claims:
        missing_on = [d for d in datasets[1:] if d not in c.on]
        extra_on = [d for d in c.on if d not in datasets[1:]]
        if missing_on:
            raise ValueError(f"study {name!r}, claim {c.id!r}: say what it expects on the "
                             f"alternative data {missing_on} (on={{NAME: On(threshold, why)}}, "
                             "On(SAME, why) or On(None, why)).")
        if extra_on:
            raise ValueError(f"study {name!r}, claim {c.id!r}: on names {extra_on}, which "
                             f"are not alternatives of the study (declared: {datasets}).")

    def deco(fn: Callable[[StudyContext, Any], None]) -> Callable[[StudyContext, Any], None]:
        spec = Study(name, title, source, summary, dict(scales), tuple(claims), fn,
                     float(quick_seconds), data_note, datasets, reference_note)
        STUDIES.add(name, spec, description=title, reference=source,
                    meta={"claims": len(claims), "quick_seconds": float(quick_seconds),
                          "datasets": list(datasets)})
        fn.study = spec  # type: ignore[attr-defined]
        return fn

    return deco


def get_study(name: str | Study) -> Study:
    """The :class:`Study` of ``name`` (all study modules are imported first)."""
    if isinstance(name, Study):
        return name
    load_studies()
    return STUDIES.get(name).factory


_loaded = False


def load_studies() -> None:
    """Import every study module of this package (each registers itself), then order the
    registry by name: listings do not depend on what was imported first (the demo imports
    two studies)."""
    global _loaded
    if _loaded:
        return
    import importlib
    import pkgutil

    here = [str(Path(__file__).parent)]
    for info in sorted(pkgutil.iter_modules(here), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in ("base", "page"):
            continue
        importlib.import_module(f"trainlab.studies.{info.name}")
    STUDIES.sort()
    _loaded = True


def study_names() -> list[str]:
    """The registered studies, in catalogue order."""
    load_studies()
    return STUDIES.names()


# -- the context a study runs in ---------------------------------------------------------------
class StudyContext:
    """What a study function reports through; see the module docstring.

    Attributes:
        study: the :class:`Study` being run.
        scale: ``"test"``, ``"quick"`` or ``"paper"``.
        data: the declared dataset this run uses (``"mnist"``, ``"mnist1d"``,
            ``"shapeset+mnist1d"``), chosen before the run; ``None`` for a study that
            generates its inputs. :meth:`uses` asks whether it includes one set.
        substituted_for: the primary dataset when ``data`` replaces it, else ``None``.
        seed: the base seed (``--seed``); derive others with :meth:`generator` / ``seed + k``.
        out: the study's output folder.
        device: the torch device for the study's tensors (CUDA when present, by default).
    """

    def __init__(self, spec: Study, scale: str, seed: int, out: Path, device: torch.device,
                 store: Any = None, progress: bool | None = None,
                 log: Callable[[str], None] | None = None, data: str | None = None,
                 substituted_for: str | None = None) -> None:
        self.study = spec
        self.data = data if data is not None else spec.primary_data
        self.substituted_for = substituted_for
        self.scale = scale
        self.seed = seed
        self.out = out
        self.device = device
        self.store = store
        self.show_progress = progress
        self._log = log or (lambda msg: None)
        self.figures: list[dict[str, str]] = []
        self.tables: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.results: dict[str, ClaimResult] = {}
        self.runs: list[dict[str, Any]] = []
        self.packs = 0  # packs trained so far (train_grid)
        self.anchors: list[dict[str, Any]] = []  # the paper's numbers beside ours (anchor)
        #: True in the control run (``--controls``): the study swaps each technique under
        #: test for its control (:meth:`controlled`), and every claim must then FAIL
        self.control = False

    def controlled(self, technique: Any, control: Any) -> Any:
        """``technique`` in the study's run, ``control`` in its control run: the one switch a
        study needs for ``--controls`` (``init = ctx.controlled("he_normal",
        "xavier_normal")``; ``norm = ctx.controlled("bn", "none")``)."""
        return control if self.control else technique

    def uses(self, name: str) -> bool:
        """Whether the run's data include the dataset ``name``."""
        return self.data is not None and name in self.data.split("+")

    # -- reporting ----------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """A line of progress for the console (silent with ``--quiet``)."""
        self._log(message)

    def note(self, text: str) -> None:
        """A remark shown in the console and on the page (data substitutes, caveats)."""
        self.notes.append(text)
        self._log(f"note: {text}")

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU ``torch.Generator`` seeded from the study's seed and ``offset``."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + int(offset))

    def figure(self, name: str, fig: Any, caption: str) -> Path:
        """Save the matplotlib ``fig`` as ``NAME.png`` (atomically) and close it."""
        if not caption.strip():
            raise ValueError(f"figure {name!r} needs a caption saying what to see.")
        path = save_figure(fig, self.out / f"{_file_name(name)}.png", dpi=110)
        self.figures.append({"file": path.name, "caption": caption})
        return path

    def anchor(self, quantity: str, *, paper: float, source: str, values: Sequence[float],
               same_setup: bool, differences: str = "") -> dict[str, Any]:
        """Put the paper's number for ``quantity`` beside trainlab's: ``paper`` (its value
        and ``source``, the table or figure), ``values`` (trainlab's, one per seed: the page
        shows their mean and the two-sided 90% Student t interval), whether the setup is the
        paper's (``same_setup``) and, if not, how it differs. ``study summary`` collects the
        anchors of every study into one table."""
        vals = [_as_float(v, f"a value of anchor {quantity!r}") for v in values]
        if not vals:
            raise ValueError(f"anchor {quantity!r}: values is empty; give one per seed.")
        if not same_setup and not differences.strip():
            raise ValueError(f"anchor {quantity!r}: say how the setup differs from the "
                             "paper's (differences=...), or same_setup=True.")
        n = len(vals)
        mean = sum(vals) / n
        interval = None
        if n > 1:
            sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
            interval = list(t_interval(mean, sd, n))
        row = {"quantity": quantity, "paper": float(paper), "source": source, "mean": mean,
               "n": n, "interval": interval, "same_setup": bool(same_setup),
               "differences": differences, "scale": self.scale}
        self.anchors.append(row)
        self._log(f"  anchor {quantity}: paper {format_value(paper)} ({source}), trainlab "
                  f"{format_value(mean)}" + (f" [{format_value(interval[0])}, "
                                             f"{format_value(interval[1])}]" if interval
                                             else "") + f" (n={n})")
        return row

    def table(self, name: str, rows: Sequence[Mapping[str, Any]], caption: str = "",
              columns: Sequence[str] | None = None, show: bool = True) -> Path:
        """Write ``rows`` (dicts) as ``NAME.csv``; the page shows them (``show``) as a table."""
        import csv
        import io

        rows = [dict(r) for r in rows]
        cols = list(columns) if columns is not None else _columns(rows)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_cell(r.get(k)) for k in cols})
        path = self.out / f"{_file_name(name)}.csv"
        atomic_write_text(path, buf.getvalue())
        self.tables.append({"file": path.name, "caption": caption, "columns": cols,
                            "rows": rows, "show": show})
        return path

    def check(self, claim_id: str, value: Any = None, *, values: Sequence[Any] | None = None,
              spread: Any = None, seeds: Sequence[int] | None = None, exact: bool = False,
              detail: str = "") -> ClaimResult:
        """Evaluate the declared claim ``claim_id`` on what was measured.

        - ``values``: one measurement per seed (``seeds`` names them). The claim holds when
          the one-sided 95% Student t bound of their mean lies on the claim's side of the
          threshold (:func:`t_interval`; for ``in``, both bounds inside: an equivalence test).
        - ``value`` with ``spread`` and ``seeds``: the same test from the mean over the seeds
          and its sample standard deviation.
        - ``exact=True``: the quantity is exact (an identity, a closed form, a library
          refusing an input) and is compared as it is, with no interval.
        - ``value`` alone: one measurement; compared as it is and labelled so on the page.

        ``detail``: what else a reader should know.
        """
        declared = self.study.claim(claim_id)
        claim = declared.for_data(self.data, self.study.primary_data)
        if claim is None:
            return not_applicable(declared, self.data)
        what = f"claim {claim_id!r}"
        n, interval = None, None
        if values is not None:
            vals = [_as_float(x, f"a value of {what}") for x in values]
            if not vals:
                raise ValueError(f"{what}: values is empty; give one value per seed.")
            if seeds is not None and len(seeds) != len(vals):
                raise ValueError(f"{what}: {len(vals)} values for {len(seeds)} seeds.")
            n = len(vals)
            v = sum(vals) / n
            s = math.sqrt(sum((x - v) ** 2 for x in vals) / (n - 1)) if n > 1 else None
            if value is not None:
                raise ValueError(f"{what}: give value or values, not both.")
        else:
            if value is None:
                raise ValueError(f"{what}: give the measured value (or values per seed).")
            v = _as_float(value, f"the value of {what}")
            s = None if spread is None else _as_float(spread, f"the spread of {what}")
            n = len(seeds) if seeds is not None else None
            if n is not None and n < 2:
                s = None  # one seed has no spread (a std of 0 would claim certainty)
        if exact:
            test, status = "exact", claim.holds(v)
        elif n is not None and n >= 2 and s is not None and math.isfinite(s):
            interval = t_interval(v, s, n)
            test, status = "t", math.isfinite(v) and claim.decide(*interval)
            if not status and claim.holds(v):
                # the mean is on the claim's side, the bound is not: say so (a FAIL explained)
                half = (interval[1] - interval[0]) / 2
                why_not = (f"the mean is on the claim's side but {n} seeds do not bound it "
                           f"there (t bound ±{format_value(half)}): more seeds, or a smaller "
                           "seed spread, would decide it")
                detail = f"{detail}; {why_not}" if detail else why_not
        else:
            test, status = "single", claim.holds(v, s)
        res = ClaimResult(claim.id, claim.statement, claim.quantity, claim.expected, v,
                          "PASS" if status else "FAIL", s,
                          tuple(int(x) for x in seeds) if seeds is not None else None,
                          detail, claim.why, claim.op, claim.threshold, test, n, interval)
        self.results[claim.id] = res
        extra = f"; {res.test_text}" if res.test_text else ""
        self._log(f"  {res.status:<4}  {claim.id}: {claim.quantity} = {res.measured_text} "
                  f"(expected {claim.expected}{extra})")
        return res

    def progress(self, items: Iterable[Any], desc: str = "", total: int | None = None) -> Any:
        """``items`` with a progress bar on a terminal (none in tests or with ``--quiet``)."""
        show = self.show_progress
        if show is None:
            show = sys.stderr.isatty()
        if not show:
            return items
        from tqdm.auto import tqdm

        return tqdm(items, desc=f"{self.study.name}: {desc}" if desc else self.study.name,
                    total=total, leave=False, dynamic_ncols=True)

    # -- data and training --------------------------------------------------------------------
    def dataset(self, name: str, *, fallback: str | None = None,
                fallback_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """Load ``name`` when the run's data (:attr:`data`, chosen before the run) include
        it, else ``fallback`` (with ``fallback_kwargs``, default ``kwargs``).

        Nothing is substituted here: which data a run uses is decided, and said, before it
        starts. Asking for a set the run's data do not include is a bug in the study
        (``RuntimeError``).
        """

        if self.data is None or self.uses(name):
            return load_dataset(name, **kwargs)
        if fallback is not None and self.uses(fallback):
            return load_dataset(fallback, **dict(kwargs if fallback_kwargs is None
                                                 else fallback_kwargs))
        raise RuntimeError(f"study {self.study.name!r} asks for {name}"
                           f"{f' (or {fallback})' if fallback else ''} but runs on "
                           f"{self.data!r}; declare it in the study's datasets.")

    def train(self, model: torch.nn.Module, data: Any, *, label: str,
              config: Mapping[str, Any] | None = None, steps: int | None = None,
              epochs: int | None = None, batch_size: int = 128, eval_every: int | None = None,
              seed: int | None = None, **trainer_kwargs: Any) -> Any:
        """Train ``model`` on ``data`` with the :class:`~trainlab.engine.trainer.Trainer`; a
        store run.

        The run is recorded in the results store (config: the study, scale, ``label`` and
        ``config``; its metrics series), and its ``metrics.csv`` goes to ``runs/LABEL/``.
        Divergence does not stop the study: the History comes back with ``status
        "diverged"`` (``on_divergence="stop"``) for the study to report. ``seed`` defaults to
        the study's seed. Returns the History. For many runs, :meth:`train_grid` packs them.
        """
        run = self.grid_run(model, data, label=label, config=config, steps=steps,
                            epochs=epochs, batch_size=batch_size, eval_every=eval_every,
                            seed=seed, **trainer_kwargs)
        return self._train_groups([run], [GridGroup([0], False, "trained alone (ctx.train)")])[0]

    def grid_run(self, model: torch.nn.Module, data: Any, *, label: str,
                 config: Mapping[str, Any] | None = None, steps: int | None = None,
                 epochs: int | None = None, batch_size: int = 128,
                 eval_every: int | None = None, seed: int | None = None,
                 **trainer_kwargs: Any) -> GridRun:
        """One run of a grid for :meth:`train_grid`, with :meth:`train`'s arguments and
        defaults (the study's device and seed, ``on_divergence="stop"``, no progress bar)."""
        seed = self.seed if seed is None else seed
        trainer_kwargs.setdefault("device", self.device)
        trainer_kwargs.setdefault("on_divergence", "stop")
        trainer_kwargs.setdefault("progress", False)
        cfg = {"study": self.study.name, "scale": self.scale, "label": label,
               "steps": steps, "epochs": epochs, "batch_size": batch_size,
               **{k: v for k, v in trainer_kwargs.items() if _plain(v)}, **dict(config or {})}
        return GridRun(model, data, label, seed=seed, steps=steps, epochs=epochs,
                       batch_size=batch_size, eval_every=eval_every, trainer=trainer_kwargs,
                       config=cfg)

    def train_grid(self, runs: Sequence[GridRun]) -> list[Any]:
        """Train a grid of runs (seeds × variants, each made by :meth:`grid_run`), packing
        those that share a structure, the data and the training length
        (:func:`trainlab.engine.grid.plan_grid`); the rest train one by one, and the log says
        why. Each run is recorded as :meth:`train` records it (its own store row and
        ``runs/LABEL/metrics.csv``) and its History is that of the run alone within float
        tolerance. Returns the histories in the order of ``runs``; the models are trained in
        place. The page says how many runs were trained and in how many packs."""
        runs = list(runs)
        taken = {r["label"] for r in self.runs}
        labels = [r.label for r in runs]
        dup = sorted({n for n in labels if labels.count(n) > 1 or n in taken})
        if dup:
            raise ValueError(f"train_grid: run labels must be unique in the study. "
                             f"Received repeats: {dup}.")
        groups = plan_grid(runs)
        packed = [g for g in groups if g.packed]
        alone = [g for g in groups if not g.packed]
        if len(runs) > 1:
            self.log(f"training {len(runs)} runs: {sum(len(g.members) for g in packed)} in "
                     f"{len(packed)} pack(s), {len(alone)} alone"
                     + (f" ({'; '.join(sorted({g.reason for g in alone}))})" if alone else ""))
        return self._train_groups(runs, groups)

    def _train_groups(self, runs: list[GridRun], groups: list[GridGroup]) -> list[Any]:
        out: list[Any] = [None] * len(runs)
        for g in groups:
            members = [runs[i] for i in g.members]
            pack_id = None
            if g.packed:
                self.packs += 1
                pack_id = self.packs
            folders, ids = [], []
            for run in members:
                folder = self.out / "runs" / _file_name(run.label)
                folder.mkdir(parents=True, exist_ok=True)
                folders.append(folder)
                run_id = None
                if self.store is not None:
                    cfg = dict(run.config, **({"pack": pack_id} if pack_id else {}))
                    run_id = self.store.create_run(
                        cfg, seed=run.seed,
                        env=collect_env(resolve_device(run.trainer.get("device")), run.seed),
                        folder=folder, name=f"{self.study.name}/{run.label}")
                ids.append(run_id)
            histories: list[Any] = [None] * len(members)
            error: str | None = None
            try:
                # A pack warns once per diverged member; a study expects divergence where a
                # claim measures it (a blow-up, a too-large step), records it in each run's
                # status, and logs one line for the group below instead of a warning each.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MemberDivergedWarning)
                    histories = train_group(runs, g)
            except BaseException as e:
                error = f"{type(e).__name__}: {e}"
                raise
            finally:
                for k, run in enumerate(members):
                    h = histories[k] if histories[k] is not None else History()
                    status = "failed" if error else (getattr(h, "status", "done") or "done")
                    if status not in ("done", "diverged", "failed"):
                        status = "done"
                    message = error
                    if status == "diverged":
                        div = getattr(h, "divergence", None)
                        message = div.message() if div is not None else "diverged"
                    try:
                        h.to_csv(folders[k] / "metrics.csv")
                    except Exception:  # the run's outcome matters more than its CSV
                        pass
                    if self.store is not None and ids[k] is not None:
                        self.store.finish(ids[k], status, final_metrics=h.final(),
                                          series=h.metrics, message=message)
                    self.runs.append({"label": run.label, "run_id": ids[k], "status": status,
                                      "folder": str(folders[k].relative_to(self.out)),
                                      "pack": pack_id,
                                      **({} if g.packed else {"alone": g.reason})})
                    out[g.members[k]] = h
            diverged = [run.label for run, h in zip(members, histories)
                        if getattr(h, "status", None) == "diverged"]
            if diverged:
                shown = ", ".join(diverged[:4]) + (f", ... (+{len(diverged) - 4})"
                                                   if len(diverged) > 4 else "")
                self.log(f"{len(diverged)} of {len(members)} runs diverged (non-finite values; "
                         f"recorded with status 'diverged', the rest went on): {shown}")
        return out


def not_applicable(claim: Claim, dataset: str | None) -> ClaimResult:
    """The ``N/A`` result of a claim that is not tested on ``dataset`` (with the reason)."""
    o = claim.on.get(dataset) if dataset is not None else None
    return ClaimResult(claim.id, claim.statement, claim.quantity,
                       f"— (on {dataset}; {claim.expected} on the paper's data)", None, "N/A",
                       detail=f"not tested on {dataset}: {o.why}" if o else "",
                       why=claim.why, op=claim.op, threshold=claim.threshold)


def _dataset_names() -> list[str]:
    return DATASETS.names()


def resolve_data(spec: Study, data: str | None = None) -> tuple[str | None, str | None, str]:
    """Choose the dataset a run of ``spec`` uses: ``(data, substituted_for, reason)``.

    ``data`` given: it must be one of the study's declared datasets (an unknown one lists the
    close ones) and its files must be found. Otherwise the first declared dataset whose files
    are found; when that is not the primary, ``substituted_for`` names the primary and
    ``reason`` says why. No declared dataset found: :class:`DataMissingError`, naming how to
    get the primary. Raw files that fail their checksums are refused (``DataFormatError``).
    """

    declared = spec.datasets
    if not declared:
        if data is not None:
            raise ValueError(f"study {spec.name!r} generates its own inputs "
                             f"({spec.data_note or 'no dataset'}); it takes no --data. "
                             f"Received: data={data!r}.")
        return None, None, ""
    if data is not None and data not in declared:
        import difflib

        close = difflib.get_close_matches(str(data), [*declared, *_dataset_names()], n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"study {spec.name!r} runs on {', '.join(declared)}; data must be one "
                         f"of these.{hint} Received: data={data!r}.")

    def missing(choice: str) -> list[str]:
        return [p for p in choice.split("+") if not is_available(p)]

    def how_to(parts: Sequence[str]) -> str:
        p = parts[0]
        return (f"get {p} with `trainlab data prepare {p} --download`, or point "
                f"TRAINLAB_DATA at a folder holding {p}/")

    candidates = [data] if data is not None else list(declared)
    chosen, reason = None, ""
    for choice in candidates:
        gone = missing(choice)
        if not gone:
            chosen = choice
            break
        if choice == declared[0]:
            reason = f"{', '.join(gone)} not found"
    if chosen is None:
        gone = missing(candidates[0])
        if data is not None:
            raise DataMissingError(f"study {spec.name!r}: --data {data} needs {', '.join(gone)}"
                                   f", which is not on this machine: {how_to(gone)}.")
        alt = (f" (its declared alternatives {', '.join(declared[1:])} are not here either)"
               if len(declared) > 1 else " (it declares no alternative)")
        raise DataMissingError(f"study {spec.name!r} needs {', '.join(gone)}{alt}: "
                               f"{how_to(gone)}.")
    for part in chosen.split("+"):  # checksums of the raw files, before anything runs
        if part in IMAGE_SPECS:
            prepare(part)
    substituted = declared[0] if chosen != declared[0] else None
    return chosen, substituted, reason


def _plain(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None))) or (
        isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float)) for x in v))


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{what} must be one number. Received a tensor of shape "
                             f"{tuple(value.shape)}.")
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number. Received: {value!r}.") from None


def _file_name(name: str) -> str:
    import re

    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    if not cleaned:
        raise ValueError(f"a file name needs letters or digits. Received: {name!r}.")
    return cleaned


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def _csv_cell(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return repr(float(v))
    return v


# -- running a study ---------------------------------------------------------------------------
@dataclass
class StudyResult:
    """The outcome of one study run (what ``result.json`` holds)."""

    name: str
    title: str
    source: str
    scale: str
    seed: int
    out: Path
    seconds: float
    claims: list[ClaimResult]
    config: dict[str, Any]
    command: str
    figures: list[dict[str, str]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    device: str = "cpu"
    summary: str = ""
    cpu_seconds: float | None = None  # process CPU time: meaningful on a busy machine too
    dataset: str | None = None  # the data the verdicts rest on (None: generated inputs)
    substituted_for: str | None = None  # the primary dataset ``dataset`` replaced
    data_reason: str = ""  # why the primary was not used
    data_note: str = ""
    anchors: list[dict[str, Any]] = field(default_factory=list)  # StudyContext.anchor

    @property
    def passed(self) -> bool:
        """True when the study ran and every claim tested on its data passed."""
        return self.error is None and all(c.passed for c in self.claims if c.applies)

    @property
    def n_passed(self) -> int:
        return sum(c.passed for c in self.claims)

    @property
    def n_applicable(self) -> int:
        """The claims tested on this run's data (``N/A`` ones left out)."""
        return sum(c.applies for c in self.claims)

    @property
    def data_text(self) -> str:
        """What the verdicts rest on, in one phrase: ``"mnist1d (substituted for mnist)"``."""
        if self.dataset is None:
            return self.data_note or "generated inputs"
        if self.substituted_for:
            return f"{self.dataset} (substituted for {self.substituted_for})"
        return self.dataset

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.name, "title": self.title, "source": self.source,
            "summary": self.summary, "scale": self.scale, "seed": self.seed,
            "config": self.config, "command": self.command, "seconds": round(self.seconds, 3),
            "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 3),
            "threads": torch.get_num_threads(),
            "device": self.device, "torch": torch.__version__, "trainlab": __version__,
            "passed": self.passed, "error": self.error,
            "dataset": self.dataset, "substituted_for": self.substituted_for,
            "data_reason": self.data_reason, "data_note": self.data_note,
            "claims": [c.to_dict() for c in self.claims],
            "figures": self.figures,
            "tables": [{k: t[k] for k in ("file", "caption", "columns")} for t in self.tables],
            "notes": self.notes, "runs": self.runs, "anchors": self.anchors,
        }


def study_command(name: str, scale: str, seed: int, out: str | os.PathLike | None,
                  data: str | None = None, controls: bool = False) -> str:
    """The command line that reproduces a study run."""
    parts = ["trainlab", "study", "run", name, "--scale", scale, "--seed", str(seed)]
    if data is not None:
        parts += ["--data", data]
    if controls:
        parts += ["--controls"]
    if out is not None:
        parts += ["--out", str(out)]
    return shlex.join(parts)


def prepare_folder(out: Path, force: bool) -> None:
    """Create ``out``; an existing non-empty folder is refused unless ``force`` (then the
    old one is set aside atomically and deleted once the new one exists)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {str(out)!r} exists and is not a folder.")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ValueError(f"output folder {str(out)!r} already exists and is not empty; "
                             "pass --force to overwrite it, or choose another --out.")
        aside = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(out, aside)
        out.mkdir(parents=True)
        shutil.rmtree(aside, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _execute(spec: Study, cfg: Any, ctx: StudyContext, chosen: str | None,
             say: Callable[[str], None]) -> tuple[list[ClaimResult], str | None, float, float]:
    """Run ``spec.fn`` in ``ctx``; its claims (N/A, NOT MEASURED where so), the error text
    (``None``), and the wall and CPU seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    error = None
    try:
        spec.fn(ctx, cfg)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        atomic_write_text(ctx.out / "error.txt", traceback.format_exc())
        say(f"  ERROR {error} (traceback in {ctx.out / 'error.txt'})")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    claims = []
    for c, applied in spec.claims_on(chosen):
        if c.id in ctx.results:
            claims.append(ctx.results[c.id])
        elif applied is None:
            claims.append(not_applicable(c, chosen))
            say(f"  N/A   {c.id}: {claims[-1].detail}")
        else:
            claims.append(ClaimResult(c.id, c.statement, c.quantity, c.expected, None,
                                      "NOT MEASURED", why=c.why, op=c.op,
                                      threshold=c.threshold))
            say(f"  NOT MEASURED  {c.id}: {c.quantity}")
    return claims, error, seconds, cpu


def _with_control(result: ClaimResult, claim: Claim, control: ClaimResult | None,
                  error: str | None) -> ClaimResult:
    if not result.applies:
        return result
    what = claim.control or "(no control declared)"
    if control is None or control.measured is None:
        info = {"what": what, "measured": None, "status": "NOT MEASURED",
                "text": f"not measured{f' ({error})' if error else ''}"}
    else:
        info = {"what": what, "measured": control.measured, "status": control.status,
                "text": control.measured_text}
    return dataclasses.replace(result, control=info)


def run_study(
    name: str | Study,
    *,
    scale: str = "quick",
    seed: int = 0,
    out: str | os.PathLike | None = None,
    force: bool = False,
    db: str | os.PathLike | None = None,
    device: str | torch.device | None = "auto",
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
    data: str | None = None,
    controls: bool = False,
) -> StudyResult:
    """Run the study ``name`` at ``scale`` into ``out`` and return its :class:`StudyResult`.

    ``controls``: run the study a second time with every technique under test swapped for
    its control (:meth:`StudyContext.controlled`, into ``out/control/``); each claim's result
    then carries its control's value and verdict (``ClaimResult.control``), which must be
    FAIL: a claim whose control passes could not have failed.

    ``out`` defaults to ``trainlab-studies/NAME``. ``db``: the results store file (``None``:
    no store). ``log``: where console lines go (``None``: silent). ``data``: one of the
    study's declared datasets (default: the first whose files are found; see
    :func:`resolve_data`). Bad input (unknown study, scale or data, an existing folder
    without ``force``, a negative seed) raises ``ValueError``, and data that are not on this
    machine :class:`DataMissingError`, before anything is written; an error inside the
    study is caught, written to
    ``error.txt`` and ``result.json`` (every claim then fails) and returned in
    ``result.error``, so that a batch of studies goes on.
    """
    spec = get_study(name)
    asked = scale
    scale, scale_note = spec.scale_for(scale)
    cfg = spec.config(scale)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}.")
    out_path = Path(out) if out is not None else Path("trainlab-studies") / spec.name
    chosen, substituted, reason = resolve_data(spec, data)
    store = None
    if db is not None:
        store = RunStore(db)
    dev = resolve_device(device)
    prepare_folder(out_path, force)
    say = log or (lambda msg: None)
    say(f"{spec.name} ({scale}, seed {seed}): {spec.title}")
    say(f"  data: {_data_line(spec, chosen, substituted, reason)}")
    if scale_note:
        say(f"  scale: {scale_note}")
    ctx = StudyContext(spec, scale, seed, out_path, dev, store, progress, say, chosen,
                       substituted)
    if scale_note:
        ctx.notes.append(f"Asked for the {asked} scale: {scale_note}.")
    claims, error, seconds, cpu = _execute(spec, cfg, ctx, chosen, say)
    if controls:
        say("  control run: each technique under test swapped for its control; every claim "
            "must now FAIL")
        cdir = out_path / "control"
        cdir.mkdir(parents=True, exist_ok=True)
        cctx = StudyContext(spec, scale, seed, cdir, dev, store, progress, say, chosen,
                            substituted)
        cctx.control = True
        cclaims, cerror, cs, cc = _execute(spec, cfg, cctx, chosen, say)
        seconds, cpu = seconds + cs, cpu + cc
        by_id = {c.id: c for c in cclaims}
        claims = [_with_control(c, spec.claim(c.id), by_id.get(c.id), cerror) for c in claims]
        for c in claims:
            if c.control:
                say(f"  control  {c.id}: {c.control_text}")
    result = StudyResult(
        spec.name, spec.title, spec.source, scale, seed, out_path, seconds, claims,
        _config_dict(cfg), study_command(spec.name, asked, seed, out, data, controls),
        ctx.figures,
        ctx.tables, ctx.notes, ctx.runs, error, str(dev), spec.summary, cpu, chosen,
        substituted, reason, spec.data_note, ctx.anchors,
    )
    atomic_write_text(out_path / "result.json",
                      json.dumps(result.to_dict(), indent=2, default=_json_default) + "\n")
    write_study_page(result, spec)
    na = len(claims) - result.n_applicable
    say(f"  {result.n_passed}/{result.n_applicable} claims passed on {result.data_text}"
        f"{f' ({na} not tested on these data)' if na else ''} in {seconds:.1f} s "
        f"({cpu:.1f} s CPU) -> {out_path / 'index.html'}")
    return result


def no_data_result(spec: Study, scale: str, seed: int, out: Path, message: str,
                   status: str = "NO DATA") -> StudyResult:
    """The record of a study that could not run because its data are missing: every claim
    ``NO DATA``, the reason in ``error``; written to ``OUT/result.json`` and its page.
    ``status="NOT MEASURED"``: a study that could not run for another reason (a lost Ray
    task), the reason in ``error``."""
    prepare_folder(out, force=True)
    claims = [ClaimResult(c.id, c.statement, c.quantity, c.expected, None, status,
                          why=c.why, op=c.op, threshold=c.threshold) for c in spec.claims]
    error = f"no data: {message}" if status == "NO DATA" else message
    result = StudyResult(spec.name, spec.title, spec.source, scale, seed, out, 0.0, claims,
                         _config_dict(spec.config(spec.scale_for(scale)[0])),
                         study_command(spec.name, scale, seed, out), error=error,
                         summary=spec.summary, dataset=None, data_note=spec.data_note)
    atomic_write_text(out / "result.json",
                      json.dumps(result.to_dict(), indent=2, default=_json_default) + "\n")
    write_study_page(result, spec)
    return result


def _data_line(spec: Study, chosen: str | None, substituted: str | None, reason: str) -> str:
    """The console's data line: which data, and what was substituted and why."""
    if chosen is None:
        return spec.data_note or "generated inside the study (no dataset)"
    if substituted is None:
        return f"{chosen} (the paper's data)" if len(spec.datasets) > 1 else chosen
    applied = sum(c.for_data(chosen, spec.primary_data) is not None for c in spec.claims)
    return (f"{chosen}, SUBSTITUTED for {substituted} ({reason or 'chosen with --data'}); "
            f"the thresholds declared for {chosen} apply ({applied} of {len(spec.claims)} "
            f"claims are tested on it). Run on {substituted}: `trainlab data prepare "
            f"{substituted.split('+')[0]} --download` or TRAINLAB_DATA=FOLDER.")


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)
