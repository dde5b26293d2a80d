"""File-backed image datasets: parsers on small files written here, corrupt and truncated
files, the cache, the download path (file:// URLs, checksum mismatch) and the how-to error."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from trainlab.data import images as im
from trainlab.data import load_dataset


@pytest.fixture(autouse=True)
def _private_data_root(tmp_path, monkeypatch):
    # never touch the user's cache; no system folders
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "root"))
    # the small files written here are not the published ones: their checksums are tested
    # in test_data_checksums.py, the formats here
    monkeypatch.setattr(im, "verify_files", lambda name, folder: None)
    spec = im.IMAGE_SPECS["fashion_mnist"]
    monkeypatch.setitem(im.IMAGE_SPECS, "fashion_mnist", _replace(spec, system_dirs=()))


def _idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    # written independently of the parser: magic, dims, big-endian data
    head = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write_mnist(folder: Path, n_train=12, n_test=5, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for name, arr in data.items():
        raw = _idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return data


def test_parse_idx_types_and_gzip(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    (tmp_path / "a.idx").write_bytes(_idx_bytes(a, 0x0C))
    assert np.array_equal(im.parse_idx(tmp_path / "a.idx"), a)
    f = np.linspace(-1, 1, 6).astype(np.float32)
    (tmp_path / "f.idx.gz").write_bytes(gzip.compress(_idx_bytes(f, 0x0D)))
    assert np.array_equal(im.parse_idx(tmp_path / "f.idx.gz"), f)


def test_mnist_from_root_values_and_cache(tmp_path):
    data = _write_mnist(tmp_path / "mine")
    d = load_dataset("mnist", root=tmp_path / "mine")
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_test.shape == (5, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    ref = data["train-images-idx3-ubyte"].astype(np.float32) / 255
    assert np.array_equal(d.x_train[:, 0].numpy(), ref)
    assert d.y_test.tolist() == data["t10k-labels-idx1-ubyte"].tolist()
    cache = tmp_path / "mine" / "mnist.trainlab.pt"
    assert cache.is_file() and d.meta.extra["cache"] == str(cache)
    # the second load reads the cache (raw files unchanged) and gives the same tensors
    d2 = load_dataset("mnist", root=tmp_path / "mine")
    assert torch.equal(d2.x_train, d.x_train)
    # raw files replaced by different ones (other size): the cache is rebuilt
    _write_mnist(tmp_path / "mine", n_train=7)
    assert load_dataset("mnist", root=tmp_path / "mine").x_train.shape[0] == 7
    sub = load_dataset("mnist", root=tmp_path / "mine", n_train=3, n_test=2)
    assert sub.x_train.shape[0] == 3 and sub.x_test.shape[0] == 2


def test_uncompressed_idx_and_subfolder_layout(tmp_path):
    _write_mnist(tmp_path / "r" / "fashion_mnist", gz=False)
    d = load_dataset("fashion_mnist", root=tmp_path / "r")
    assert d.num_classes == 10 and d.meta.classes[9] == "Ankle boot"


@pytest.mark.parametrize("damage", ["truncate", "extra", "magic", "gzip"])
def test_corrupt_idx_is_rejected_with_path_and_format(tmp_path, damage):
    data = _write_mnist(tmp_path / "bad", gz=damage == "gzip")
    name = "train-images-idx3-ubyte"
    raw = _idx_bytes(data[name])
    if damage == "truncate":
        (tmp_path / "bad" / f"{name}.gz").write_bytes(gzip.compress(raw[:-100]))
    elif damage == "extra":
        (tmp_path / "bad" / f"{name}.gz").write_bytes(gzip.compress(raw + b"\0"))
    elif damage == "magic":
        (tmp_path / "bad" / f"{name}.gz").write_bytes(gzip.compress(b"\1\2" + raw[2:]))
    else:
        (tmp_path / "bad" / f"{name}.gz").write_bytes(gzip.compress(raw)[:-50])
    with pytest.raises(im.DataFormatError, match=rf"{name}.gz: .*expected an IDX file") as e:
        load_dataset("mnist", root=tmp_path / "bad")
    assert isinstance(e.value, ValueError)
    assert not (tmp_path / "bad" / "mnist.trainlab.pt").exists()  # nothing cached


def _cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"x", b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"f"] * n}


def _write_cifar(folder: Path, as_tar: bool):
    batches = {f"data_batch_{i}": _cifar_batch(4, i) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(3, 9)
    folder.mkdir(parents=True, exist_ok=True)
    if as_tar:
        with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, b in batches.items():
                raw = pickle.dumps(b, protocol=2)
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        sub = folder / "cifar-10-batches-py"
        sub.mkdir()
        for name, b in batches.items():
            (sub / name).write_bytes(pickle.dumps(b, protocol=2))
    return batches


@pytest.mark.parametrize("as_tar", [True, False])
def test_cifar10_parser(tmp_path, as_tar):
    batches = _write_cifar(tmp_path / "c", as_tar)
    d = load_dataset("cifar10", root=tmp_path / "c")
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    # channel-major layout: the first 1024 bytes are the red plane of image 0
    red = batches["data_batch_1"][b"data"][0, :1024].reshape(32, 32) / 255
    assert np.allclose(d.x_train[0, 0].numpy(), red)
    assert d.y_train[:4].tolist() == batches["data_batch_1"][b"labels"]


def test_cifar_rejects_foreign_pickles_and_bad_shapes(tmp_path):
    _write_cifar(tmp_path / "c", as_tar=False)
    sub = tmp_path / "c" / "cifar-10-batches-py"

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (sub / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(im.DataFormatError, match="data_batch_3: cannot unpickle .*disallowed"):
        load_dataset("cifar10", root=tmp_path / "c", cache=False)
    bad = _cifar_batch(4, 3)
    bad[b"data"] = bad[b"data"][:, :100]
    (sub / "data_batch_3").write_bytes(pickle.dumps(bad))
    with pytest.raises(im.DataFormatError, match=r"data_batch_3: 'data' is \(4, 100\)"):
        load_dataset("cifar10", root=tmp_path / "c", cache=False)


def test_svhn_parser(tmp_path):
    import scipy.io

    rng = np.random.default_rng(0)
    folder = tmp_path / "s"
    folder.mkdir()
    x = rng.integers(0, 256, (32, 32, 3, 6), dtype=np.uint8)
    y = np.array([[10], [1], [2], [3], [10], [9]], dtype=np.uint8)
    scipy.io.savemat(folder / "train_32x32.mat", {"X": x, "y": y})
    scipy.io.savemat(folder / "test_32x32.mat", {"X": x[..., :2], "y": y[:2]})
    d = load_dataset("svhn", root=folder)
    assert d.x_train.shape == (6, 3, 32, 32)
    assert d.y_train.tolist() == [0, 1, 2, 3, 0, 9]  # label 10 is digit 0
    assert np.allclose(d.x_train[2, 1].numpy(), x[:, :, 1, 2] / 255)  # (H, W, C, N) -> NCHW
    (folder / "test_32x32.mat").write_bytes(b"MATLAB 5.0 junk" * 3)
    with pytest.raises(im.DataFormatError, match="test_32x32.mat: cannot read .*expected an SVHN"):
        load_dataset("svhn", root=folder, cache=False)


def test_missing_data_says_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mnist data not found .*trainlab data prepare "
                       r"mnist --download.*TRAINLAB_DATA=FOLDER"):
        load_dataset("mnist", root=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist")


def _file_urls(src: Path):
    return {p.name: [p.resolve().as_uri()] for p in src.iterdir()}


def test_download_with_checksum(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    _write_mnist(src)
    md5s = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in src.iterdir()}
    spec = im.IMAGE_SPECS["mnist"]
    fake = tuple(im.Resource(r.filename, r.urls, md5s[r.filename]) for r in spec.resources)
    monkeypatch.setitem(im.IMAGE_SPECS, "mnist", _replace(spec, resources=fake))
    # route downloads to file:// copies of the test files (no network)
    real_fetch = im.fetch
    monkeypatch.setattr(im, "fetch", lambda url, dest: real_fetch(
        (src / url.rsplit("/", 1)[-1]).resolve().as_uri(), dest))
    d = load_dataset("mnist", download=True)
    assert d.x_train.shape == (12, 1, 28, 28)
    assert (tmp_path / "root" / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_checksum_mismatch_keeps_file_out(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    _write_mnist(src)
    with pytest.raises(ValueError, match=r"checksum mismatch for train-images-idx3-ubyte.gz .*"
                       r"expected md5 f68b3c2dcbeaaa9fbdd348bbdeb94873, got [0-9a-f]{32}"):
        im.download_dataset("mnist", tmp_path / "dl", urls=_file_urls(src), verbose=False)
    folder = tmp_path / "dl" / "mnist"
    assert list(folder.iterdir()) == []  # neither the file nor a partial download


def test_download_network_failure_is_oserror(tmp_path):
    urls = {r.filename: [(tmp_path / "nope").as_uri()] for r in im.IMAGE_SPECS["svhn"].resources}
    with pytest.raises(OSError, match="could not download train_32x32.mat from any mirror"):
        im.download_dataset("svhn", tmp_path / "dl", urls=urls, verbose=False)


def _replace(spec, **kw):
    import dataclasses

    return dataclasses.replace(spec, **kw)


def test_truncated_cifar_archive_is_rejected(tmp_path):
    _write_cifar(tmp_path / "c", as_tar=True)
    tgz = tmp_path / "c" / "cifar-10-python.tar.gz"
    tgz.write_bytes(tgz.read_bytes()[: tgz.stat().st_size // 2])
    with pytest.raises(im.DataFormatError, match=r"cifar-10-python.tar.gz: cannot read the "
                       r"archive .*expected cifar-10-python.tar.gz holding"):
        load_dataset("cifar10", root=tmp_path / "c")
