"""`trainlab data list|show|prepare` (driven through the subcommand module's own parser)."""

from __future__ import annotations

import argparse

import pytest

from trainlab.cli import data as cli


@pytest.fixture(autouse=True)
def _private_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "root"))
    # small files written by these tests are not the published ones (checksums:
    # test_data_checksums.py)
    from trainlab.data import images

    monkeypatch.setattr(images, "verify_files", lambda name, folder: None)


def _run(argv):
    p = argparse.ArgumentParser(prog="trainlab data")
    cli.add_arguments(p)
    return cli.run(p.parse_args(argv))


def test_list(capsys):
    assert _run(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("ring", "shapeset", "mnist1d", "mnist", "cifar10"):
        assert f"  {name} " in out
    assert "[generated]" in out


@pytest.mark.parametrize("name", ["ring", "mnist1d"])
def test_show_writes_png(tmp_path, capsys, name):
    out = tmp_path / f"{name}.png"
    assert _run(["show", name, "--out", str(out), "--count", "12"]) == 0
    text = capsys.readouterr().out
    assert "class counts" in text and f"wrote {out}" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_and_prepare_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="Did you mean 'ring'"):
        _run(["show", "rings", "--no-png"])
    with pytest.raises(FileNotFoundError, match="trainlab data prepare svhn --download"):
        _run(["prepare", "svhn"])
    with pytest.raises(ValueError, match="--count must be >= 1. Received: --count=0"):
        _run(["show", "ring", "--count", "0"])
    assert _run(["prepare", "ring"]) == 0
    assert "generated on the fly" in capsys.readouterr().out


def test_image_grid_png(tmp_path):
    from trainlab.data import load_dataset

    ds = load_dataset("shapeset", n_train=20, n_test=2)
    out = cli.save_examples_png(ds, tmp_path / "g" / "s.png", count=10)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_show_into_a_folder(tmp_path, capsys):
    out_dir = tmp_path / "pics"
    out_dir.mkdir()
    assert _run(["show", "ring", "--out", str(out_dir)]) == 0
    assert (out_dir / "ring.png").stat().st_size > 1000
    assert f"wrote {out_dir / 'ring.png'}" in capsys.readouterr().out
