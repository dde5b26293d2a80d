"""The demo page: data described, wall time named, gradient figure, relative run links
(issue 10, item 10)."""

from __future__ import annotations

import re

import torch

import trainlab
from trainlab.cli.demo_app import gradient_stds, run_demo


def test_gradient_stds_match_a_hand_computed_backward():
    torch.manual_seed(0)
    m = trainlab.mlp([5, 7, 7, 3], activation="tanh", init="xavier_uniform")
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    got = gradient_stds(m, x, y)
    # independent: keep each pre-activation s and read s.grad after backward
    s1 = m.block1.linear(x)
    s1.retain_grad()
    s2 = m.block2.linear(torch.tanh(s1))
    s2.retain_grad()
    torch.nn.functional.cross_entropy(m.head(torch.tanh(s2)), y).backward()
    assert list(got) == ["block1", "block2"]
    assert abs(got["block1"] - s1.grad.std().item()) < 1e-7
    assert abs(got["block2"] - s2.grad.std().item()) < 1e-7


def test_demo_page_is_self_explaining(tmp_path):
    res = run_demo(tmp_path / "demo", steps=6, depth=3, width=16, db=tmp_path / "t.db",
                   progress=False, echo=lambda s: None, studies=())
    text = res.index.read_text()
    assert "Greydanus" in text and "4000 training and 1000 test examples" in text
    assert "wall time (s)" in text and "seconds of wall-clock time" in text
    assert 'src="gradient_std.png"' in text and (tmp_path / "demo" / "gradient_std.png").exists()
    links = re.findall(r'href="([^"]+)"', text)
    assert "runs/run1/" in links and all(not h.startswith("/") for h in links)
    for h in links:  # every link resolves relative to the page
        assert (tmp_path / "demo" / h).exists(), h


def test_demo_runs_its_studies_and_links_them(tmp_path):
    from trainlab.cli.demo_app import DEMO_STUDIES

    lines = []
    res = run_demo(tmp_path / "demo", steps=4, depth=2, width=8, db=tmp_path / "t.db",
                   progress=False, echo=lines.append, study_scale="test")
    text = res.index.read_text()
    for name in DEMO_STUDIES:
        page = tmp_path / "demo" / "studies" / name / "index.html"
        assert page.is_file(), name
        assert f'href="studies/{name}/index.html"' in text
        assert any(line.startswith(f"study {name}:") for line in lines)
    assert lines[-1].startswith("Report: ")


def test_demo_unknown_study_fails_before_anything_runs(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="Unknown study 'nope'"):
        run_demo(tmp_path / "demo", steps=2, depth=2, width=8, studies=("nope",),
                 echo=lambda s: None)
