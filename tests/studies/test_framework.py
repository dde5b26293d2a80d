"""The study framework: claims, the context, run_study's files, the summary and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch

from trainlab.studies import Claim, Study, run_all, run_study
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
    assert "| toy | small: it is small (value) | < 1 | 0.5 | PASS |" in md
    assert "ERROR" in md


def test_dataset_fallback_is_noted(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "nowhere"))
    seen = {}

    def fn(ctx, cfg):
        ds = ctx.dataset("mnist", fallback="mnist1d", n_train=50, n_test=20, root=tmp_path,
                         fallback_kwargs={"n_train": 50, "n_test": 20})
        seen["name"] = ds.meta.name
        with pytest.raises(FileNotFoundError, match="study 't3' needs mnist"):
            ctx.dataset("mnist", root=tmp_path)

    s = Study("t3", "t", "s", "", TOY.scales, (), fn, 1.0)
    res = run_study(s, scale="test", out=tmp_path / "t3", log=None)
    assert res.error is None, res.error
    assert seen["name"] == "mnist1d"
    assert any("mnist not found" in n and "mnist1d" in n for n in res.notes)
    assert "mnist not found" in (tmp_path / "t3" / "index.html").read_text()


def test_figure_needs_a_caption(tmp_path):
    def fn(ctx, cfg):
        import matplotlib.pyplot as plt

        ctx.figure("f", plt.figure(), " ")

    s = Study("t4", "t", "s", "", TOY.scales, (), fn, 1.0)
    res = run_study(s, scale="test", out=tmp_path / "t4", log=None)
    assert res.error is not None and "needs a caption" in res.error
