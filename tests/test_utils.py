"""Device choice, seeding and atomic writes."""

import os

import pytest
import torch

from trainlab.report.html import HtmlPage, format_cell
from trainlab.utils import (
    atomic_torch_save,
    atomic_write_text,
    resolve_device,
    seed_everything,
)


def test_resolve_device_auto_and_explicit():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_resolve_device_errors():
    with pytest.raises(ValueError, match=r"Received: device='gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_seed_everything_reproducible():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    with pytest.raises(ValueError, match=r"Received: seed=-1"):
        seed_everything(-1)


def test_atomic_write_replaces_whole(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert [f.name for f in p.parent.iterdir()] == ["f.txt"]  # no temporary left behind


def test_atomic_write_gives_normal_permissions(tmp_path):
    p = atomic_write_text(tmp_path / "page.html", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_write_crash_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "ckpt.pt"
    atomic_torch_save({"w": torch.ones(3)}, p)

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        atomic_torch_save({"w": torch.zeros(3)}, p)
    monkeypatch.undo()
    assert torch.equal(torch.load(p)["w"], torch.ones(3))
    assert [f.name for f in tmp_path.iterdir()] == ["ckpt.pt"]


def test_html_page(tmp_path):
    page = HtmlPage("T <1>")
    page.heading("Claims").table([["a", 0.123456, "PASS"], ["b<", float("nan"), "FAIL"]],
                                 header=["name", "value", "verdict"])
    page.figure("f.png", caption="cap").paragraph("x & y")
    out = page.write(tmp_path / "index.html")
    text = out.read_text()
    assert "<title>T &lt;1&gt;</title>" in text
    assert '<td class="num">0.1235</td>' in text and "<td>a</td>" in text
    assert "b&lt;" in text and 'class="pass"' in text
    assert "x &amp; y" in text and '<img src="f.png"' in text
    assert format_cell(1e-7) == "1e-07" and format_cell(3) == "3"
