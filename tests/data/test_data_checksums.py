"""Raw data files are checked against their published checksums before they are parsed.

The real MNIST test uses the project's shared copy (the ``mnist_root`` fixture, which skips
where there is none); the others write their own files and compute the expected MD5s with
``hashlib`` here, independently of the loader.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
import struct

import numpy as np
import pytest

from trainlab.data import images as im
from trainlab.data import load_dataset

NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _write_fake_mnist(folder, level=9):
    """Small MNIST-format files; returns each file's decompressed content."""
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    content = {
        NAMES[0]: _idx(g.integers(0, 256, (6, 28, 28))),
        NAMES[1]: _idx(g.integers(0, 10, (6,))),
        NAMES[2]: _idx(g.integers(0, 256, (4, 28, 28))),
        NAMES[3]: _idx(g.integers(0, 10, (4,))),
    }
    for name, raw in content.items():
        (folder / name).write_bytes(gzip.compress(raw, compresslevel=level, mtime=0))
    return content


@pytest.fixture
def fake_published(tmp_path, monkeypatch):
    """MNIST's spec with 'published' checksums of files written here (compressed at level 9)."""
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "root"))
    content = _write_fake_mnist(tmp_path / "published")
    spec = im.IMAGE_SPECS["mnist"]
    res = tuple(dataclasses.replace(
        r, md5=hashlib.md5((tmp_path / "published" / r.filename).read_bytes()).hexdigest(),
        content_md5=hashlib.md5(content[r.filename]).hexdigest()) for r in spec.resources)
    monkeypatch.setitem(im.IMAGE_SPECS, "mnist", dataclasses.replace(spec, resources=res))
    return content


def test_published_and_recompressed_files_pass(tmp_path, fake_published):
    d = load_dataset("mnist", root=tmp_path / "published", cache=False)
    assert d.x_train.shape == (6, 1, 28, 28)
    # the same content under another gzip wrapper (as Debian and shared copies are): accepted
    _write_fake_mnist(tmp_path / "recompressed", level=1)
    assert (tmp_path / "recompressed" / NAMES[0]).read_bytes() != \
        (tmp_path / "published" / NAMES[0]).read_bytes()
    d2 = load_dataset("mnist", root=tmp_path / "recompressed", cache=False)
    assert np.array_equal(d.x_train.numpy(), d2.x_train.numpy())


def test_uncompressed_copy_is_checked_by_its_content(tmp_path, fake_published):
    folder = tmp_path / "raw"
    folder.mkdir()
    for name, raw in fake_published.items():
        (folder / name[:-3]).write_bytes(raw)
    assert load_dataset("mnist", root=folder, cache=False).x_test.shape == (4, 1, 28, 28)
    bad = bytearray(fake_published[NAMES[3]])
    bad[-1] = (bad[-1] + 1) % 10
    (folder / NAMES[3][:-3]).write_bytes(bytes(bad))
    with pytest.raises(im.DataFormatError, match=r"t10k-labels-idx1-ubyte: checksum mismatch"):
        load_dataset("mnist", root=folder, cache=False)


def test_a_corrupt_file_is_refused_naming_it(tmp_path, fake_published):
    folder = tmp_path / "copy"
    shutil.copytree(tmp_path / "published", folder)
    raw = bytearray(fake_published[NAMES[1]])
    raw[-1] = (raw[-1] + 1) % 10  # one label changed: still a valid IDX file
    (folder / NAMES[1]).write_bytes(gzip.compress(bytes(raw)))
    want = hashlib.md5(fake_published[NAMES[1]]).hexdigest()
    with pytest.raises(im.DataFormatError,
                       match=rf"copy/train-labels-idx1-ubyte.gz: checksum mismatch: .*expected "
                             rf"{want}"):
        load_dataset("mnist", root=folder)
    assert not list(folder.glob("*.trainlab.pt"))  # nothing cached from the refused files
    # verify=False: data of your own in the same format
    assert load_dataset("mnist", root=folder, verify=False, cache=False).y_train[-1] == raw[-1]


def test_is_available(tmp_path, fake_published, monkeypatch):
    assert im.is_available("mnist1d") and im.is_available("spirals")
    assert not im.is_available("mnist")
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path))
    shutil.copytree(tmp_path / "published", tmp_path / "mnist")
    assert im.is_available("mnist")


def test_real_mnist_passes_its_checksums(mnist_root):
    d = load_dataset("mnist")
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert d.class_counts("test") == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert d.meta.extra["folder"] == str(mnist_root / "mnist")


def test_corrupted_real_mnist_is_refused(mnist_root):
    f = mnist_root / "mnist" / NAMES[3]
    keep = f.read_bytes()
    raw = bytearray(gzip.decompress(keep))
    raw[100] = (raw[100] + 1) % 10
    try:
        f.write_bytes(gzip.compress(bytes(raw)))
        for c in (mnist_root / "mnist").glob("*.trainlab.pt"):
            c.unlink()
        with pytest.raises(im.DataFormatError, match=r"t10k-labels-idx1-ubyte.gz: checksum "
                           r"mismatch.*expected 27ae3e4e09519cfbb04c329615203637"):
            load_dataset("mnist")
    finally:
        f.write_bytes(keep)
