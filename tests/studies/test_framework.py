"""The study framework: claims, the context, run_study's files, the summary and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch

from trainlab.studies import SAME, Claim, On, Study, run_all, run_study
from trainlab.studies.base import StudyContext, format_value, study


@dataclass(frozen=True)
class Cfg:
    n: int = 4
    steps: int = 5


def _toy_fn(ctx: StudyContext, cfg: Cfg) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(range(cfg.n), [i * i for i in range(cfg.n)], label="squares")
    ax.set_xlabel("i")
    ax.set_ylabel("i²")
    ax.legend()
    ctx.figure("squares", fig, "The squares grow quadratically.")
    ctx.table("squares", [{"i": i, "sq": float(i * i)} for i in range(cfg.n)], "Squares.")
    ctx.check("small", 0.5)
    ctx.check("big", 3.0, spread=0.5, seeds=[0, 1, 2])
    ctx.note("a note")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.randn(32, 4, generator=ctx.generator())
    y = torch.randint(0, 3, (32,), generator=ctx.generator(1))
    ctx.train(model, (x, y, x, y), label="lin", steps=cfg.steps, batch_size=8, lr=0.1,
              log_every=5)


CLAIMS = (
    Claim("small", "it is small", "value", "<", 1.0, why="because"),
    Claim("big", "it is big", "value", ">", 2.0),
    Claim("never", "never checked", "value", ">=", 0.0),
)
TOY = Study("toy", "a toy study", "nowhere 2026", "Checks the framework.",
            {"test": Cfg(), "quick": Cfg(n=5), "paper": Cfg(n=6)}, CLAIMS, _toy_fn, 1.0)


def test_claim_rule_with_and_without_spread():
    c = Claim("x", "s", "q", ">", 1.0)
    assert c.holds(1.5) and not c.holds(1.0) and not c.holds(0.5)
    assert c.holds(1.5, spread=0.4) and not c.holds(1.5, spread=0.6)
    assert not c.holds(math.nan) and not c.holds(math.inf)
    lt = Claim("y", "s", "q", "<=", 0.0)
    assert lt.holds(0.0) and not lt.holds(1e-9)
    inside = Claim("z", "s", "q", "in", (0.5, 2.0))
    assert inside.holds(1.0) and inside.holds(0.5) and not inside.holds(2.1)
    assert inside.holds(1.0, spread=0.4) and not inside.holds(1.0, spread=0.6)
    assert inside.expected == "in [0.5, 2]" and c.expected == "> 1"


def test_t_interval_matches_the_formula_and_scipy():
    """mean ∓ t_{0.95, n-1} · s / √n, with t from an independent source: the tabulated
    quantiles t_{0.95,2} = 2.919986, t_{0.95,4} = 2.131847."""
    from trainlab.studies.base import t_interval

    lo, hi = t_interval(1.0, 0.3, 3)
    assert lo == pytest.approx(1.0 - 2.919986 * 0.3 / math.sqrt(3), abs=1e-6)
    assert hi == pytest.approx(1.0 + 2.919986 * 0.3 / math.sqrt(3), abs=1e-6)
    lo, hi = t_interval(-2.0, 1.0, 5)
    assert hi - lo == pytest.approx(2 * 2.131847 / math.sqrt(5), abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        t_interval(0.0, 1.0, 1)


def _check_study(claims, fn):
    return Study("chk", "checks", "nowhere", "verdict statistics", {"test": Cfg(), "quick": Cfg(),
                 "paper": Cfg()}, claims, fn, 1.0)


def test_check_decides_by_the_one_sided_t_bound_over_seeds(tmp_path):
    """Three seeds with mean 1.2 and s = 0.1: the lower 95% bound is 1.2 - 2.92·0.1/√3 =
    1.031, so '> 1' holds; with s = 0.2 (bound 0.863) it fails, although the mean is beyond
    the threshold by more than one s. 'in' is an equivalence test: both bounds inside."""
    claims = (Claim("a", "s", "q", ">", 1.0), Claim("b", "s", "q", ">", 1.0),
              Claim("c", "s", "q", "<", 0.0), Claim("d", "s", "q", "in", (0.9, 1.1)),
              Claim("e", "s", "q", "in", (0.9, 1.1)), Claim("f", "s", "q", "<=", 0.0),
              Claim("g", "s", "q", ">", 1.0))

    def fn(ctx, cfg):
        ctx.check("a", values=[1.1, 1.2, 1.3], seeds=[0, 1, 2])
        ctx.check("b", values=[1.0, 1.2, 1.4], seeds=[0, 1, 2])
        ctx.check("c", -0.5, spread=0.1, seeds=[0, 1, 2])          # mean and s given
        ctx.check("d", values=[0.99, 1.0, 1.01, 1.0])
        ctx.check("e", values=[0.9, 1.0, 1.1])                      # bounds leave [0.9, 1.1]
        ctx.check("f", 0.0, exact=True)
        ctx.check("g", values=[1.5])                                 # one seed: no interval

    res = run_study(_check_study(claims, fn), scale="test", out=tmp_path / "o", log=None)
    by = {c.id: c for c in res.claims}
    assert [by[k].status for k in "abcdefg"] == ["PASS", "FAIL", "PASS", "PASS", "FAIL",
                                                  "PASS", "PASS"]
    assert by["a"].test == "t" and by["a"].n == 3
    assert by["a"].interval[0] == pytest.approx(1.2 - 2.919986 * 0.1 / math.sqrt(3), abs=1e-5)
    assert by["b"].measured == pytest.approx(1.2) and by["b"].spread == pytest.approx(0.2)
    assert "3 seeds do not bound it there" in by["b"].detail  # a FAIL explained
    assert "do not bound" not in by["a"].detail
    assert by["f"].test == "exact" and by["f"].interval is None
    assert by["g"].test == "single" and by["g"].interval is None
    data = json.loads((tmp_path / "o" / "result.json").read_text())
    row = next(c for c in data["claims"] if c["id"] == "a")
    assert row["test"] == "t" and row["n"] == 3 and len(row["interval"]) == 2
    page = (tmp_path / "o" / "index.html").read_text()
    assert "Student t, n=3: one-sided 95% bounds" in page and ">exact<" in page


def test_check_with_two_seeds_and_a_single_value_with_spread(tmp_path):
    """Two seeds are the fewest that give an interval (t with 1 degree of freedom, 6.3138);
    a value with a spread but no seeds is compared 'by more than the spread'; the FAIL text
    quotes the bound's half-width; op and threshold are recorded as declared."""
    claims = (Claim("two", "s", "q", ">", 1.0), Claim("two-mean", "s", "q", ">", 1.0),
              Claim("spread", "s", "q", ">", 1.0), Claim("wide", "s", "q", ">", 1.0))

    def fn(ctx, cfg):
        ctx.check("two", values=[2.0, 2.25], seeds=[0, 1])
        ctx.check("two-mean", 2.0, spread=0.25, seeds=[0, 1])
        ctx.check("spread", 1.5, spread=0.75)                         # margin 0.5 < spread
        ctx.check("wide", values=[1.0, 1.5, 2.0], seeds=[0, 1, 2], detail="note")

    res = run_study(_check_study(claims, fn), scale="test", out=tmp_path / "o", log=None)
    by = {c.id: c for c in res.claims}
    t1 = 6.313752  # scipy.stats.t.ppf(0.95, 1)
    sd = math.sqrt(((2.0 - 2.125) ** 2 + (2.25 - 2.125) ** 2) / 1)
    assert by["two"].test == "t" and by["two"].n == 2
    assert by["two"].spread == pytest.approx(sd)
    assert by["two"].interval[0] == pytest.approx(2.125 - t1 * sd / math.sqrt(2), abs=1e-5)
    assert by["two"].status == "PASS"  # lower bound 2.125 - 0.789 = 1.336
    assert by["two-mean"].test == "t" and by["two-mean"].spread == pytest.approx(0.25)
    assert by["two-mean"].interval[0] == pytest.approx(2.0 - t1 * 0.25 / math.sqrt(2), abs=1e-5)
    assert by["spread"].test == "single" and by["spread"].status == "FAIL"
    half = 2.919986 * 0.5 / math.sqrt(3)
    assert by["wide"].status == "FAIL"
    assert by["wide"].detail.startswith("note; the mean is on the claim's side")
    assert f"t bound ±{half:.4g}" in by["wide"].detail, by["wide"].detail
    assert (by["wide"].op, by["wide"].threshold) == (">", 1.0)


def _control_study():
    claims = (Claim("bn-helps", "BN lowers the loss", "loss without - with", ">", 0.5,
                    control="BN -> none"),
              Claim("always", "a claim that holds whatever the study does", "1", ">", 0.0,
                    control="BN -> none"))

    def fn(ctx, cfg):
        norm = ctx.controlled("bn", "none")
        gain = {"bn": 1.0, "none": 0.0}[norm]
        ctx.check("bn-helps", values=[gain + 0.01 * k for k in range(3)], seeds=[0, 1, 2])
        ctx.check("always", 1.0, exact=True)

    return _check_study(claims, fn)


def test_controls_run_the_study_again_with_the_technique_swapped(tmp_path, capsys):
    """--controls: the claim whose control fails is shown so; the claim that holds under its
    control too is flagged as unable to fail, on the page, in result.json and the CLI."""
    res = run_study(_control_study(), scale="test", out=tmp_path / "o", log=print,
                    controls=True)
    by = {c.id: c for c in res.claims}
    assert by["bn-helps"].status == "PASS" and by["bn-helps"].control["status"] == "FAIL"
    assert by["bn-helps"].control["measured"] == pytest.approx(0.01)
    assert by["always"].control["status"] == "PASS"
    assert "could not fail" in by["always"].control_text
    assert "BN -> none" in by["bn-helps"].control_text
    out = capsys.readouterr().out
    assert "control  bn-helps: BN -> none" in out and "FAIL (as it must)" in out
    assert (tmp_path / "o" / "control" / "result.json").exists() is False  # one result
    data = json.loads((tmp_path / "o" / "result.json").read_text())
    row = next(c for c in data["claims"] if c["id"] == "bn-helps")
    assert row["control"]["status"] == "FAIL" and "--controls" in data["command"]
    page = (tmp_path / "o" / "index.html").read_text()
    assert "control (must FAIL)" in page and "this claim could not fail" in page
    from trainlab.studies import load_result

    assert load_result(tmp_path / "o").claims[0].control["status"] == "FAIL"
    # without --controls the page has no control column
    run_study(_control_study(), scale="test", out=tmp_path / "p", log=None)
    assert "control (must FAIL)" not in (tmp_path / "p" / "index.html").read_text()


def test_check_refuses_inconsistent_measurements(tmp_path):
    claims = (Claim("a", "s", "q", ">", 1.0),)
    for bad, match in [(lambda c: c.check("a", values=[]), "empty"),
                       (lambda c: c.check("a", values=[1.0, 2.0], seeds=[0]), "2 values for 1"),
                       (lambda c: c.check("a"), "give the measured value"),
                       (lambda c: c.check("a", 1.0, values=[1.0, 2.0]), "not both")]:
        res = run_study(_check_study(claims, lambda ctx, cfg, bad=bad: bad(ctx)), scale="test",
                        out=tmp_path / match.replace(" ", "_"), log=None)
        assert match in (res.error or ""), res.error


@pytest.mark.parametrize("op", ["<", "<="])
def test_claim_below_holds_by_more_than_its_spread(op):
    """A ``<``/``<=`` claim holds when the value is below the threshold by more than the
    spread, and fails when the spread reaches across it (the margin is negative here: a rule
    comparing the signed margin with the spread would reject every such claim)."""
    c = Claim("x", "s", "q", op, 1.0)
    assert c.holds(0.5, spread=0.1) and c.holds(0.5, spread=0.49)
    assert not c.holds(0.5, spread=0.6) and not c.holds(0.95, spread=0.1)
    assert not c.holds(1.5, spread=0.1)


# (op, threshold, value, spread, holds): every operator at and beside its threshold, and the
# spread exactly equal to the margin ("by more than the spread": not enough). Dyadic numbers,
# so that the boundaries are exact in floating point. Written against the surviving mutants
# of scripts/mutation.py on studies/base.py (`>=` read as `>`, `<` as `<=`, `>` as `>=`).
HOLDS_CASES = [
    (">", 1.0, 1.0, None, False), (">", 1.0, 1.5, 0.5, False), (">", 1.0, 1.5, 0.25, True),
    (">=", 1.0, 1.0, None, True), (">=", 1.0, 2.0, None, True), (">=", 1.0, 0.5, None, False),
    ("<", 1.0, 1.0, None, False), ("<", 1.0, 0.5, None, True), ("<", 1.0, 0.5, 0.5, False),
    ("<=", 1.0, 1.0, None, True), ("<=", 1.0, 1.5, None, False),
    ("in", (0.0, 1.0), 0.25, 0.25, True), ("in", (0.0, 1.0), 0.75, 0.25, True),
    ("in", (0.0, 1.0), 0.25, 0.5, False), ("in", (0.0, 1.0), 1.0, None, True),
    ("in", (0.0, 1.0), -0.25, None, False),
]


@pytest.mark.parametrize("op, threshold, value, spread, expected", HOLDS_CASES)
def test_claim_holds_at_its_boundaries(op, threshold, value, spread, expected):
    assert Claim("x", "s", "q", op, threshold).holds(value, spread=spread) is expected


# (op, threshold, low, high, decided): the interval must lie entirely on the claim's side;
# an infinite or NaN bound decides nothing
DECIDE_CASES = [
    (">", 1.0, 1.0, 2.0, False), (">", 1.0, 1.5, 2.0, True),
    (">=", 1.0, 1.0, 2.0, True), (">=", 1.0, 0.5, 2.0, False),
    ("<", 1.0, 0.0, 1.0, False), ("<", 1.0, 0.0, 0.5, True), ("<", 3.0, -math.inf, 2.0, False),
    ("<=", 1.0, 0.0, 1.0, True), ("<=", 1.0, 0.0, 1.5, False),
    ("in", (0.0, 1.0), 0.0, 1.0, True), ("in", (0.0, 1.0), -1.0, 0.5, False),
    ("in", (0.0, 1.0), 0.5, 2.0, False), (">", 0.0, math.nan, math.nan, False),
    (">", 0.0, 1.0, math.inf, False),
]


@pytest.mark.parametrize("op, threshold, low, high, expected", DECIDE_CASES)
def test_claim_decides_an_interval_only_on_its_side(op, threshold, low, high, expected):
    assert Claim("x", "s", "q", op, threshold).decide(low, high) is expected


def test_claim_rejects_bad_declarations():
    with pytest.raises(ValueError, match="op must be one of .*Received: op='=='"):
        Claim("x", "s", "q", "==", 1.0)
    with pytest.raises(ValueError, match=r"threshold=\(lo, hi\).*Received: threshold=3"):
        Claim("x", "s", "q", "in", 3)
    with pytest.raises(ValueError, match="threshold must be a number"):
        Claim("x", "s", "q", "<", (1, 2))


def test_study_decorator_checks_scales_and_claims():
    with pytest.raises(ValueError, match="must define the scales .*missing \\['paper'\\]"):
        study("bad", title="t", source="s", summary="", scales={"test": Cfg(), "quick": Cfg()},
              claims=())
    with pytest.raises(ValueError, match="repeated: \\['a'\\]"):
        study("bad", title="t", source="s", summary="",
              scales={"test": Cfg(), "quick": Cfg(), "paper": Cfg()},
              claims=(Claim("a", "s", "q", "<", 1), Claim("a", "s", "q", "<", 1)))

    @dataclass
    class Mutable:
        n: int = 1

    with pytest.raises(TypeError, match="frozen dataclass"):
        study("bad", title="t", source="s", summary="",
              scales={"test": Mutable(), "quick": Mutable(), "paper": Mutable()}, claims=())


def test_format_value():
    assert format_value(0.00025) == "2.500e-04" and format_value(123456.0) == "1.235e+05"
    assert format_value(3.0) == "3" and format_value(0.5) == "0.5" and format_value(None) == "—"


def test_run_study_writes_every_artifact(tmp_path):
    db = tmp_path / "db.sqlite"
    lines: list[str] = []
    res = run_study(TOY, scale="test", out=tmp_path / "toy", db=db, progress=False,
                    log=lines.append)
    out = tmp_path / "toy"
    data = json.loads((out / "result.json").read_text())
    assert data["study"] == "toy" and data["scale"] == "test" and data["seed"] == 0
    by_id = {c["id"]: c for c in data["claims"]}
    assert by_id["small"]["status"] == "PASS" and by_id["small"]["measured"] == 0.5
    assert by_id["big"]["status"] == "PASS" and by_id["big"]["spread"] == 0.5
    assert by_id["big"]["seeds"] == [0, 1, 2]
    assert by_id["never"]["status"] == "NOT MEASURED" and by_id["never"]["measured"] is None
    assert data["passed"] is False and not res.passed and res.n_passed == 2
    assert data["command"].startswith("trainlab study run toy --scale test --seed 0 --out ")
    assert (out / "squares.png").stat().st_size > 1000
    assert (out / "squares.csv").read_text().splitlines()[0] == "i,sq"
    page = (out / "index.html").read_text()
    for text in ("it is small", "NOT MEASURED", "squares.png", "The squares grow",
                 "a note", "trainlab study run toy", "nowhere 2026"):
        assert text in page
    assert (out / "runs" / "lin" / "metrics.csv").is_file()
    from trainlab.store import RunStore

    runs = RunStore(db, readonly=True).list_runs()
    assert len(runs) == 1 and runs[0]["status"] == "done"
    assert runs[0]["config"]["study"] == "toy" and runs[0]["config"]["label"] == "lin"
    assert runs[0]["name"] == "toy/lin"
    assert any("PASS" in line and "small" in line for line in lines)


def test_existing_folder_refused_unless_force(tmp_path):
    out = tmp_path / "toy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="already exists and is not empty; pass --force"):
        run_study(TOY, scale="test", out=out, log=None)
    assert (out / "keep.txt").exists()
    run_study(TOY, scale="test", out=out, force=True, log=None)
    assert not (out / "keep.txt").exists() and (out / "result.json").exists()


def test_bad_scale_and_seed(tmp_path):
    with pytest.raises(ValueError, match="scale must be one of .*Did you mean 'quick'.*"
                       "Received: scale='quik'"):
        run_study(TOY, scale="quik", out=tmp_path / "a", log=None)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        run_study(TOY, scale="test", seed=-1, out=tmp_path / "a", log=None)
    assert not (tmp_path / "a").exists()


def test_check_of_undeclared_claim_is_an_error_reported(tmp_path):
    def fn(ctx, cfg):
        ctx.check("nope", 1.0)

    s = Study("t2", "t", "s", "", TOY.scales, CLAIMS, fn, 1.0)
    res = run_study(s, scale="test", out=tmp_path / "t2", log=None)
    assert res.error is not None and "declares no claim 'nope'" in res.error
    assert (tmp_path / "t2" / "error.txt").read_text().startswith("Traceback")
    assert all(c.status == "NOT MEASURED" for c in res.claims)


def test_study_crash_is_reported_and_batch_goes_on(tmp_path):
    def boom(ctx, cfg):
        raise RuntimeError("kaboom")

    s = Study("boom", "t", "s", "", TOY.scales, CLAIMS[:1], boom, 1.0)
    results, page = run_all([s, TOY], scale="test", out=tmp_path / "all", progress=False,
                            log=None)
    assert [r.name for r in results] == ["boom", "toy"]
    assert results[0].error == "RuntimeError: kaboom" and not results[0].passed
    assert results[1].n_passed == 2
    html = page.read_text()
    assert 'href="boom/index.html"' in html and 'href="toy/index.html"' in html
    md = (tmp_path / "all" / "reproductions.md").read_text()
    assert ("| toy | generated | small: it is small (value) | < 1 | 0.5 | one measurement "
            "(no interval) | PASS |") in md
    assert "ERROR" in md


def _data_study(name="td", datasets=("mnist", "mnist1d"), seen=None):
    """A study on MNIST with MNIST-1D declared as its alternative (and its own thresholds)."""
    seen = {} if seen is None else seen

    def fn(ctx, cfg):
        ds = ctx.dataset("mnist", fallback="mnist1d", n_train=50, n_test=20,
                         fallback_kwargs={"n_train": 30, "n_test": 10})
        seen["name"], seen["n"] = ds.meta.name, len(ds.x_train)
        ctx.check("acc", 0.5)
        ctx.check("ratio", 0.5)

    claims = (
        Claim("acc", "it learns", "accuracy", ">", 0.9, why="the paper's MNIST number",
              on={"mnist1d": On(0.4, "Greydanus 2020's MLP baseline on MNIST-1D")}),
        Claim("ratio", "a ratio", "r", "<", 1.0, why="a derivation",
              on={"mnist1d": On(SAME, "a ratio of two setups on the same data")}),
        Claim("mnist-only", "only on MNIST", "q", ">", 0.0, why="digits",
              on={"mnist1d": On(None, "MNIST-1D has no such property")}),
    )
    return Study(name, "t", "s", "", TOY.scales, claims, fn, 1.0, datasets=datasets), seen


def test_missing_primary_runs_on_declared_alternative_and_says_so(tmp_path, capsys):
    s, seen = _data_study()
    res = run_study(s, scale="test", out=tmp_path / "td")
    out = capsys.readouterr().out
    assert seen == {"name": "mnist1d", "n": 30}  # the alternative's own arguments
    assert res.dataset == "mnist1d" and res.substituted_for == "mnist"
    # the console's second line says it, with the thresholds that applied
    line = out.splitlines()[1]
    assert "mnist1d, SUBSTITUTED for mnist (mnist not found)" in line
    assert "thresholds declared for mnist1d apply" in line and "TRAINLAB_DATA" in line
    by = {c.id: c for c in res.claims}
    assert by["acc"].status == "PASS" and by["acc"].expected == "> 0.4"
    assert "Greydanus" in by["acc"].why
    assert by["ratio"].status == "PASS" and by["ratio"].expected == "< 1"
    assert by["mnist-only"].status == "N/A" and "no such property" in by["mnist-only"].detail
    assert res.passed and res.n_applicable == 2
    d = json.loads((tmp_path / "td" / "result.json").read_text())
    assert d["dataset"] == "mnist1d" and d["substituted_for"] == "mnist"
    page = (tmp_path / "td" / "index.html").read_text()
    head = page[:page.index("<h2")]  # the header, next to the verdict
    assert "mnist1d, substituted for mnist" in head and "verdict" in head


def test_the_primary_thresholds_apply_on_the_primary(tmp_path, mnist_root):
    s, seen = _data_study()
    res = run_study(s, scale="test", out=tmp_path / "td", log=None)
    assert seen["name"] == "mnist" and res.dataset == "mnist" and res.substituted_for is None
    by = {c.id: c for c in res.claims}
    assert by["acc"].status == "FAIL" and by["acc"].expected == "> 0.9"  # 0.5 < 0.9
    assert by["mnist-only"].status == "NOT MEASURED"  # tested on MNIST, never checked here


def test_data_chosen_explicitly_and_unknown_names(tmp_path):
    s, seen = _data_study()
    res = run_study(s, scale="test", out=tmp_path / "a", log=None, data="mnist1d")
    assert res.dataset == "mnist1d" and "--data mnist1d" in res.command
    with pytest.raises(ValueError, match=r"runs on mnist, mnist1d; .*Did you mean 'mnist1d'.*"
                       r"Received: data='mnist_1d'"):
        run_study(s, scale="test", out=tmp_path / "b", log=None, data="mnist_1d")
    with pytest.raises(FileNotFoundError, match=r"--data mnist needs mnist.*trainlab data "
                       r"prepare mnist --download.*TRAINLAB_DATA"):
        run_study(s, scale="test", out=tmp_path / "c", log=None, data="mnist")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_no_declared_data_stops_with_one_line(tmp_path):
    from trainlab.studies import DataMissingError

    s, _ = _data_study("only", datasets=("mnist",))
    with pytest.raises(DataMissingError) as e:
        run_study(s, scale="test", out=tmp_path / "o", log=None)
    msg = str(e.value)
    assert "\n" not in msg and "declares no alternative" in msg
    assert "trainlab data prepare mnist --download" in msg and "TRAINLAB_DATA" in msg
    # in a batch it is recorded as NO DATA and the batch goes on
    results, page = run_all([s, TOY], scale="test", out=tmp_path / "all", log=None,
                            progress=False)
    assert results[0].claims[0].status == "NO DATA" and results[1].n_passed == 2
    assert "| only | missing |" in (tmp_path / "all" / "reproductions.md").read_text()


def test_claims_must_declare_every_alternative():
    with pytest.raises(ValueError, match=r"claim 'a': say what it expects on the alternative "
                       r"data \['mnist1d'\]"):
        study("bad-data", title="t", source="s", summary="", scales=TOY.scales,
              claims=[Claim("a", "s", "q", ">", 1.0)], datasets=("mnist", "mnist1d"))
    with pytest.raises(ValueError, match="needs a reason"):
        On(0.5, " ")


def test_ctx_dataset_outside_the_declared_data_is_a_bug(tmp_path):
    def fn(ctx, cfg):
        ctx.dataset("spirals")

    s = Study("t3", "t", "s", "", TOY.scales, (), fn, 1.0, datasets=("mnist1d",))
    res = run_study(s, scale="test", out=tmp_path / "t3", log=None)
    assert "asks for spirals but runs on 'mnist1d'" in res.error


def test_figure_needs_a_caption(tmp_path):
    def fn(ctx, cfg):
        import matplotlib.pyplot as plt

        ctx.figure("f", plt.figure(), " ")

    s = Study("t4", "t", "s", "", TOY.scales, (), fn, 1.0)
    res = run_study(s, scale="test", out=tmp_path / "t4", log=None)
    assert res.error is not None and "needs a caption" in res.error


def test_summary_rebuilt_from_folders(tmp_path):
    from trainlab.cli import main
    from trainlab.studies import load_result, summarize

    run_study(TOY, scale="test", out=tmp_path / "all" / "toy", log=None)
    r = load_result(tmp_path / "all" / "toy")
    assert r.name == "toy" and r.n_passed == 2 and r.claims[2].status == "NOT MEASURED"
    results, page = summarize(tmp_path / "all", markdown=tmp_path / "repro.md")
    assert page.read_text().count('href="toy/index.html"') == 1
    assert ("| toy | generated | small: it is small (value) | < 1 | 0.5 | one measurement "
            "(no interval) | PASS |") in (
        tmp_path / "repro.md").read_text()
    assert main(["study", "summary", str(tmp_path / "all")]) == 1  # a claim is not measured
    assert main(["study", "summary", str(tmp_path / "nothing")]) == 2


def test_summary_of_two_batches_one_table_each_with_its_data(tmp_path, monkeypatch):
    """docs/reproductions.md's form: one table with MNIST present, one without."""
    from trainlab.cli import main

    s, _ = _data_study("td2")
    run_study(s, scale="test", out=tmp_path / "without" / "td2", log=None)
    run_study(TOY, scale="test", out=tmp_path / "without" / "toy", log=None)
    # the same study as if MNIST had been present: its result.json says so
    d = json.loads((tmp_path / "without" / "td2" / "result.json").read_text())
    (tmp_path / "with" / "td2").mkdir(parents=True)
    d.update(dataset="mnist", substituted_for=None, data_reason="")
    (tmp_path / "with" / "td2" / "result.json").write_text(json.dumps(d))
    md = tmp_path / "repro.md"
    assert main(["study", "summary", str(tmp_path / "with"), str(tmp_path / "without"),
                 "--markdown", str(md)]) == 1  # toy has a NOT MEASURED claim
    text = md.read_text()
    first, second = text.index("## MNIST present — `with/`"), text.index("## MNIST absent")
    assert first < second
    assert "| td2 | mnist |" in text[first:second]
    assert "| td2 | mnist1d (for mnist) |" in text[second:]
    assert "1 studies ran on data substituted" in text[second:]
    assert "scripts/reproductions.sh DATA_ROOT" in text
    assert (tmp_path / "with" / "index.html").is_file()
    assert main(["study", "summary", str(tmp_path / "with"), str(tmp_path / "without")]) == 2


def test_cli_data_choice_and_missing_data(tmp_path, capsys, monkeypatch):
    from trainlab.cli import main

    s, _ = _data_study("td-cli", datasets=("mnist",))
    monkeypatch.setattr("trainlab.cli.study.get_study", lambda name: s)  # the name the CLI calls
    rc = main(["study", "run", "td-cli", "--scale", "test", "--no-db", "--out",
               str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "trainlab data prepare mnist --download" in err[0] and "TRAINLAB_DATA" in err[0]
    rc = main(["study", "run", "td-cli", "--scale", "test", "--no-db", "--data", "mnist1d",
               "--out", str(tmp_path / "y")])
    err = capsys.readouterr().err
    assert rc == 2 and "runs on mnist; data must be one of these" in err
    assert main(["study", "run", "--all", "--data", "mnist1d"]) == 2


def test_reference_scale_runs_quick_where_a_study_has_none_and_says_so(tmp_path):
    """A study without a reference scale runs its quick setup under --scale reference, says
    so on the console and the page; one with it runs its own; a misspelt scale is refused
    with the close match."""
    seen = []

    def fn(ctx, cfg):
        seen.append((ctx.scale, cfg.steps))
        ctx.check("a", 1.0, exact=True)

    claims = (Claim("a", "s", "q", ">", 0.0),)
    plain = Study("chk", "checks", "nowhere", "x", {"test": Cfg(), "quick": Cfg(steps=7),
                  "paper": Cfg()}, claims, fn, 1.0, reference_note="data-free")
    lines = []
    res = run_study(plain, scale="reference", out=tmp_path / "a", log=lines.append)
    assert seen[-1] == ("quick", 7) and res.scale == "quick"
    assert any("no reference scale (data-free): its quick setup ran" in x for x in lines)
    assert "no reference scale" in (tmp_path / "a" / "index.html").read_text()
    assert "--scale reference" in res.command
    with_ref = Study("chk", "checks", "nowhere", "x", {"test": Cfg(), "quick": Cfg(),
                     "reference": Cfg(steps=11), "paper": Cfg()}, claims, fn, 1.0)
    run_study(with_ref, scale="reference", out=tmp_path / "b", log=None)
    assert seen[-1] == ("reference", 11)
    with pytest.raises(ValueError, match="Did you mean 'reference'"):
        with_ref.config("refrence")
    with pytest.raises(ValueError, match="defines no 'reference' scale"):
        plain.config("reference")
    with pytest.raises(ValueError, match="unknown scale 'fast'"):
        study("chk-bad", title="t", source="s", summary="x", claims=claims,
              scales={"test": Cfg(), "quick": Cfg(), "paper": Cfg(), "fast": Cfg()})
