"""Real image datasets from their original files: MNIST, Fashion-MNIST, CIFAR-10, SVHN.

Where the files are looked for, in order (the first folder holding every file wins):

1. ``root=`` / ``--root FOLDER`` if given: ``FOLDER/<name>/`` then ``FOLDER`` itself;
2. otherwise the data root: ``$TRAINLAB_DATA`` if set, else ``$XDG_CACHE_HOME/trainlab/data``
   (default ``~/.cache/trainlab/data``), subfolder ``<name>/``;
3. a system package: Debian's ``dataset-fashion-mnist`` installs Fashion-MNIST in
   ``/usr/share/datasets/fashion-mnist/``;
4. with ``download=True`` (``trainlab data prepare NAME --download``) the canonical files are
   fetched into ``<root or data root>/<name>/``; each is checked against its published MD5
   before it is moved into place, so a corrupt or tampered download never enters the folder.

Raw files are checked against their published checksums before they are parsed (for ``.gz``
files the MD5 of the file or of its decompressed content, since local copies are often
recompressed): a corrupt file is refused with its name, never trained on.

Otherwise loading fails with one line saying how to get the data. Parsed data are cached as one
compact file of uint8 tensors (``<folder>/<name>.trainlab.pt`` next to the raw files when that
folder is writable and not a system package's, else ``<data root>/<name>/``), so later loads
skip the parsing; it is rebuilt when the raw files' sizes change.

File formats (each parser checks sizes and headers and rejects a truncated or corrupt file
with its path and the expected format; nothing is loaded partly):

* IDX (LeCun et al.): big-endian magic ``0x00 0x00 <type> <ndim>``, ``ndim`` 4-byte sizes, then
  the data; optionally gzip-compressed (``.gz``);
* CIFAR-10 python batches (Krizhevsky 2009): pickled dicts with ``data`` (10000 x 3072 uint8,
  channel-major 32x32) and ``labels``; read from ``cifar-10-batches-py/`` or straight from
  ``cifar-10-python.tar.gz``, with an unpickler that only accepts the types these files hold;
* SVHN (Netzer et al. 2011) cropped digits ``train_32x32.mat`` / ``test_32x32.mat``: MATLAB
  ``X`` (32 x 32 x 3 x N) and ``y`` (N x 1, digit 0 stored as 10), read with scipy.

Images are returned as float32 in ``[0, 1]`` with shape ``(N, C, H, W)``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab.data.base import DATASETS, Dataset, DatasetMeta
from trainlab.utils import atomic_torch_save

__all__ = [
    "DataFormatError",
    "Resource",
    "IMAGE_SPECS",
    "data_root",
    "download_dataset",
    "find_folder",
    "is_available",
    "load_images",
    "md5sum",
    "parse_idx",
    "parse_cifar10",
    "parse_svhn",
    "prepare",
    "verify_files",
]

ENV_VAR = "TRAINLAB_DATA"
CACHE_VERSION = 1


class DataFormatError(ValueError):
    """A data file is truncated, corrupt or not in the expected format."""


@dataclass(frozen=True)
class Resource:
    """One file of a dataset as published: its name, download URLs (mirrors) and MD5.

    ``content_md5``: the MD5 of the file's *decompressed* content, for ``.gz`` files. A local
    copy may be recompressed (Debian's packages and this project's shared copies are), so a
    local file is accepted when either its own MD5 equals ``md5`` or its decompressed content's
    MD5 equals ``content_md5``.
    """

    filename: str
    urls: tuple[str, ...]
    md5: str
    content_md5: str | None = None


@dataclass(frozen=True)
class ImageSpec:
    name: str
    resources: tuple[Resource, ...]
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    source: str
    licence: str
    description: str
    parse: Callable[[Path], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    system_dirs: tuple[str, ...] = ()
    # alternative file names accepted in a folder (e.g. IDX files without .gz)
    alternatives: Callable[[str], tuple[str, ...]] = lambda f: (f,)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$TRAINLAB_DATA``, else ``$XDG_CACHE_HOME/trainlab/data``
    (``~/.cache/trainlab/data``)."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "trainlab" / "data"


# -- parsers --------------------------------------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_EXPECT = (
    "expected an IDX file: bytes 0x00 0x00, a type code in {0x08, 0x09, 0x0B, 0x0C, 0x0D, "
    "0x0E}, the number of dimensions, one 4-byte big-endian size per dimension, then exactly "
    "prod(sizes) items (gzip-compressed when the name ends in .gz)"
)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, OSError, ValueError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DataFormatError(f"{path}: cannot read ({e}); {_IDX_EXPECT}.") from e


def parse_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw); checks magic, dimensions and exact length."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataFormatError(f"{path}: bad IDX header {data[:4].hex() or 'empty'}; {_IDX_EXPECT}.")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataFormatError(f"{path}: truncated IDX header; {_IDX_EXPECT}.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DataFormatError(
            f"{path}: IDX header says shape {shape} of {dtype} ({expected} bytes) but the file "
            f"holds {len(data)} bytes ({'truncated' if len(data) < expected else 'extra data'})"
            f"; {_IDX_EXPECT}."
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def _idx_pair(folder: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    x = parse_idx(_existing(folder, images, _idx_names))
    y = parse_idx(_existing(folder, labels, _idx_names))
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or x.dtype != np.uint8:
        raise DataFormatError(
            f"{folder}: {images} and {labels} must hold N uint8 images (N, H, W) and N labels "
            f"(N,). Received shapes {x.shape} ({x.dtype}) and {y.shape}."
        )
    return x[:, None], y.astype(np.int64)


def _parse_mnist_like(folder: Path):
    xtr, ytr = _idx_pair(folder, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    xte, yte = _idx_pair(folder, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return xtr, ytr, xte, yte


class _SafeUnpickler(pickle.Unpickler):
    """Only the types a CIFAR batch holds: dicts, lists, str/bytes/ints, NumPy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"disallowed type {module}.{name}")


_CIFAR_EXPECT = (
    "expected a CIFAR-10 python batch: a pickled dict with 'data' (10000 x 3072 uint8) and "
    "'labels' (10000 ints in 0..9)"
)


def read_cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse the bytes of one CIFAR-10 python batch file (``where`` names it in errors)."""
    try:
        d = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # any unpickling failure is a format error
        raise DataFormatError(f"{where}: cannot unpickle ({e}); {_CIFAR_EXPECT}.") from e
    if not isinstance(d, dict):
        raise DataFormatError(f"{where}: not a dict; {_CIFAR_EXPECT}.")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    x, y = d.get("data"), d.get("labels")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        got = getattr(x, "shape", type(x).__name__)
        raise DataFormatError(f"{where}: 'data' is {got}; {_CIFAR_EXPECT}.")
    y = np.asarray(y if y is not None else [], dtype=np.int64)
    if y.shape != (len(x),) or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise DataFormatError(f"{where}: 'labels' shape {y.shape} for {len(x)} images; "
                              f"{_CIFAR_EXPECT}.")
    return x.reshape(-1, 3, 32, 32), y


_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def parse_cifar10(path: str | os.PathLike):
    """CIFAR-10 from ``cifar-10-batches-py/`` (or a folder holding it), or the ``.tar.gz``."""
    path = Path(path)
    raws: dict[str, tuple[bytes, str]] = {}
    if path.is_file():
        try:
            with tarfile.open(path, "r:gz") as tar:
                for m in tar.getmembers():
                    base = m.name.rsplit("/", 1)[-1]
                    if base in (*_CIFAR_TRAIN, "test_batch") and m.isfile():
                        raws[base] = (tar.extractfile(m).read(), f"{path}:{m.name}")
        except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as e:
            raise DataFormatError(
                f"{path}: cannot read the archive ({e}); expected cifar-10-python.tar.gz "
                "holding cifar-10-batches-py/data_batch_1..5 and test_batch."
            ) from e
    else:
        folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        for base in (*_CIFAR_TRAIN, "test_batch"):
            f = folder / base
            if f.is_file():
                raws[base] = (f.read_bytes(), str(f))
    missing = [b for b in (*_CIFAR_TRAIN, "test_batch") if b not in raws]
    if missing:
        raise DataFormatError(f"{path}: missing CIFAR-10 batches {missing}; {_CIFAR_EXPECT}.")
    tr = [read_cifar_batch(*raws[b]) for b in _CIFAR_TRAIN]
    xte, yte = read_cifar_batch(*raws["test_batch"])
    return np.concatenate([a for a, _ in tr]), np.concatenate([b for _, b in tr]), xte, yte


_SVHN_EXPECT = (
    "expected an SVHN cropped-digits .mat file with 'X' (32 x 32 x 3 x N uint8) and 'y' "
    "(N x 1, labels 1..10 with 10 for digit 0)"
)


def parse_svhn(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN ``*_32x32.mat`` file -> ``(x (N, 3, 32, 32) uint8, y (N,) int64 in 0..9)``."""
    import scipy.io

    path = Path(path)
    try:
        m = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise DataFormatError(f"{path}: cannot read ({e}); {_SVHN_EXPECT}.") from e
    x, y = m.get("X"), m.get("y")
    if (
        not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[:3] != (32, 32, 3)
        or not isinstance(y, np.ndarray) or y.size != x.shape[3]
    ):
        raise DataFormatError(
            f"{path}: found X {getattr(x, 'shape', None)} and y {getattr(y, 'shape', None)}; "
            f"{_SVHN_EXPECT}."
        )
    y = y.reshape(-1).astype(np.int64)
    if y.min() < 1 or y.max() > 10:
        raise DataFormatError(f"{path}: labels outside 1..10; {_SVHN_EXPECT}.")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), y % 10


def _parse_svhn_folder(folder: Path):
    xtr, ytr = parse_svhn(folder / "train_32x32.mat")
    xte, yte = parse_svhn(folder / "test_32x32.mat")
    return xtr, ytr, xte, yte


def _parse_cifar_folder(folder: Path):
    if (folder / "cifar-10-batches-py").is_dir() or (folder / "data_batch_1").is_file():
        return parse_cifar10(folder)
    return parse_cifar10(folder / "cifar-10-python.tar.gz")


# -- specs ----------------------------------------------------------------------------------

def _idx_names(f: str) -> tuple[str, ...]:
    # accept the compressed name, the uncompressed name, and the '.' variant some mirrors use
    base = f[:-3] if f.endswith(".gz") else f
    return (f, base, base.replace("-idx", ".idx"), base.replace("-idx", ".idx") + ".gz")


def _cifar_names(f: str) -> tuple[str, ...]:
    return (f, "cifar-10-batches-py/data_batch_1", "data_batch_1")


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)


def _res(filename: str, mirrors: Sequence[str], md5: str, content_md5: str | None = None
         ) -> Resource:
    return Resource(filename, tuple(m + filename for m in mirrors), md5, content_md5)


# The ``content_md5`` of MNIST are those of the canonical decompressed files; those of
# Fashion-MNIST were taken from Debian's ``dataset-fashion-mnist`` (upstream git 55506a9),
# whose gzip wrappers are recompressed but whose content is upstream's.
IMAGE_SPECS: dict[str, ImageSpec] = {
    "mnist": ImageSpec(
        "mnist",
        (
            _res("train-images-idx3-ubyte.gz", _MNIST_MIRRORS, "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                 "6bbc9ace898e44ae57da46a324031adb"),
            _res("train-labels-idx1-ubyte.gz", _MNIST_MIRRORS, "d53e105ee54ea40749a09fcbcd1e9432",
                 "a25bea736e30d166cdddb491f175f624"),
            _res("t10k-images-idx3-ubyte.gz", _MNIST_MIRRORS, "9fb629c4189551a2d022fa330f9573f3",
                 "2646ac647ad5339dbf082846283269ea"),
            _res("t10k-labels-idx1-ubyte.gz", _MNIST_MIRRORS, "ec29112dd5afa0611ce80d1b7f02629c",
                 "27ae3e4e09519cfbb04c329615203637"),
        ),
        tuple(str(d) for d in range(10)),
        (1, 28, 28),
        "LeCun, Cortes & Burges, THE MNIST DATABASE, http://yann.lecun.com/exdb/mnist/",
        "MNIST: CC BY-SA 3.0 (as stated by its authors); derived from NIST SD-1/SD-3",
        "handwritten digits, 60000/10000, 28x28 grey",
        _parse_mnist_like,
        alternatives=_idx_names,
    ),
    "fashion_mnist": ImageSpec(
        "fashion_mnist",
        (
            _res("train-images-idx3-ubyte.gz", _FASHION_MIRRORS,
                 "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            _res("train-labels-idx1-ubyte.gz", _FASHION_MIRRORS,
                 "25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
            _res("t10k-images-idx3-ubyte.gz", _FASHION_MIRRORS,
                 "bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
            _res("t10k-labels-idx1-ubyte.gz", _FASHION_MIRRORS,
                 "bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
        ),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"),
        (1, 28, 28),
        "Xiao, Rasul & Vollgraf 2017, Fashion-MNIST, github.com/zalandoresearch/fashion-mnist",
        "Fashion-MNIST: MIT licence (Zalando SE)",
        "Zalando article images, 60000/10000, 28x28 grey",
        _parse_mnist_like,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        alternatives=_idx_names,
    ),
    "cifar10": ImageSpec(
        "cifar10",
        (Resource("cifar-10-python.tar.gz",
                  ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                  "c58f30108f718f92721af3b95e74349a"),),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"),
        (3, 32, 32),
        "Krizhevsky 2009, Learning Multiple Layers of Features from Tiny Images, "
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        "CIFAR-10: free for research use; cite Krizhevsky 2009 (no formal licence)",
        "tiny colour images, 50000/10000, 32x32x3",
        _parse_cifar_folder,
        alternatives=_cifar_names,
    ),
    "svhn": ImageSpec(
        "svhn",
        (
            Resource("train_32x32.mat", ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",),
                     "e26dedcc434d2e4c54c9b2d4a06d8373"),
            Resource("test_32x32.mat", ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",),
                     "eb5a983be6a315427106f1b164d9cef3"),
        ),
        tuple(str(d) for d in range(10)),
        (3, 32, 32),
        "Netzer et al. 2011, Reading Digits in Natural Images with Unsupervised Feature "
        "Learning, http://ufldl.stanford.edu/housenumbers/",
        "SVHN: non-commercial use only (as stated by its authors)",
        "street-view house-number digits, 73257/26032, 32x32x3",
        _parse_svhn_folder,
    ),
}


# -- finding, downloading, caching -------------------------------------------------------------

def _existing(folder: Path, filename: str, alternatives: Callable[[str], tuple[str, ...]]) -> Path:
    for cand in alternatives(filename):
        if (folder / cand).exists():
            return folder / cand
    return folder / filename


def _candidates(spec: ImageSpec, root: str | os.PathLike | None) -> list[Path]:
    if root is not None:
        r = data_root(root)
        return [r / spec.name, r]
    return [data_root() / spec.name, *(Path(d) for d in spec.system_dirs)]


def _has_all(spec: ImageSpec, folder: Path) -> bool:
    return all(_existing(folder, r.filename, spec.alternatives).exists() for r in spec.resources)


def find_folder(name: str, root: str | os.PathLike | None = None) -> Path | None:
    """The first folder holding every raw file of ``name`` (see the module docstring)."""
    spec = _spec(name)
    for folder in _candidates(spec, root):
        if folder.is_dir() and _has_all(spec, folder):
            return folder
    return None


def is_available(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether ``name`` can be loaded without a download: embedded and generated datasets
    always; a file-backed one when its raw files or a cache of them are found."""
    key = DATASETS.get(name).name
    if key not in IMAGE_SPECS:
        return True
    spec = IMAGE_SPECS[key]
    if find_folder(key, root) is not None:
        return True
    return any(_cache_file(d, key).is_file() for d in (*_candidates(spec, root),
                                                       data_root() / key))


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: Path) -> None:
    """Copy ``url`` (http, https or file) to ``dest``. Tests replace this function."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:  # noqa: S310
        shutil.copyfileobj(r, f)


def verify_files(name: str, folder: str | os.PathLike) -> None:
    """Check every raw file of ``name`` in ``folder`` against its published checksum.

    A file passes when its MD5 equals the published one, or (for ``.gz`` files) when the MD5
    of its decompressed content equals the published content MD5. A file that matches
    neither raises :class:`DataFormatError` naming it and both checksums: a truncated
    download, a corrupt copy or another dataset under the same name is never trained on.
    Files stored uncompressed are checked by their content MD5. A layout with no published
    checksum (CIFAR-10's extracted batch folder) is checked by its format only.
    """
    spec = _spec(name)
    folder = Path(folder)
    for res in spec.resources:
        path = _existing(folder, res.filename, spec.alternatives)
        if not path.is_file():
            continue  # missing files are the parser's to report
        if path.name != res.filename and res.content_md5 is None:
            continue  # another layout (extracted batches): nothing published to compare with
        got = md5sum(path)
        if got == res.md5:
            continue
        if res.content_md5 is None:
            raise DataFormatError(
                f"{path}: checksum mismatch: md5 {got}, expected {res.md5} (the published "
                f"{res.filename}); the file is corrupt or not {spec.name}. Delete it and run "
                f"`trainlab data prepare {spec.name} --download`.")
        content = hashlib.md5(_read_bytes(path), usedforsecurity=False).hexdigest()
        if content != res.content_md5:
            raise DataFormatError(
                f"{path}: checksum mismatch: the md5 of its content is {content}, expected "
                f"{res.content_md5} (the published {res.filename}); the file is corrupt or "
                f"not {spec.name}. Delete it and run `trainlab data prepare {spec.name} "
                "--download`.")


def download_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    urls: dict[str, Sequence[str]] | None = None,
    verbose: bool = True,
) -> Path:
    """Fetch the canonical files of ``name`` into ``<root or data root>/<name>/``.

    Each file goes to a temporary name first and is moved into place only when its MD5
    matches the published one; on a mismatch it is deleted and ``ValueError`` names the file
    and both checksums. ``urls`` overrides the mirrors per file name (for tests and private
    mirrors). Files already present with the right checksum are kept.
    """
    spec = _spec(name)
    folder = data_root(root) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    for res in spec.resources:
        dest = folder / res.filename
        if dest.exists() and md5sum(dest) == res.md5:
            continue
        errors = []
        for url in (urls or {}).get(res.filename, res.urls):
            fd, tmp = tempfile.mkstemp(prefix=f".{res.filename}.", suffix=".part", dir=folder)
            os.close(fd)
            tmp = Path(tmp)
            try:
                if verbose:
                    print(f"downloading {url}")
                fetch(url, tmp)
                got = md5sum(tmp)
                if got != res.md5:
                    raise ValueError(
                        f"checksum mismatch for {res.filename} from {url}: expected md5 "
                        f"{res.md5}, got {got}; the file was not kept."
                    )
                os.replace(tmp, dest)
                break
            except (OSError, ValueError) as e:
                errors.append(e)
                # a mismatch is not a network problem: do not silently try other mirrors
                if isinstance(e, ValueError):
                    raise
            finally:
                tmp.unlink(missing_ok=True)
        else:
            raise OSError(
                f"could not download {res.filename} from any mirror: "
                + "; ".join(str(e) for e in errors)
            )
    return folder


def _how_to(spec: ImageSpec, tried: list[Path]) -> str:
    files = ", ".join(r.filename for r in spec.resources)
    sys_hint = (
        " or `apt-get install dataset-fashion-mnist`" if spec.name == "fashion_mnist" else ""
    )
    return (
        f"{spec.name} data not found (looked in {', '.join(str(t) for t in tried)}). Get them "
        f"with `trainlab data prepare {spec.name} --download` (load_dataset({spec.name!r}, "
        f"download=True)){sys_hint}, or put {files} in a folder and pass root=FOLDER / "
        f"--root FOLDER / {ENV_VAR}=FOLDER."
    )


def _cache_file(folder: Path, name: str) -> Path:
    return folder / f"{name}.trainlab.pt"


def _source_sizes(spec: ImageSpec, folder: Path) -> dict[str, int]:
    out = {}
    for r in spec.resources:
        p = _existing(folder, r.filename, spec.alternatives)
        out[p.name] = p.stat().st_size if p.is_file() else -1
    return out


def _read_cache(path: Path, spec: ImageSpec, sizes: dict[str, int] | None) -> dict | None:
    try:
        c = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        warnings.warn(f"ignoring unreadable cache {path} ({e}); re-parsing the raw files.",
                      stacklevel=3)
        return None
    ok = (
        isinstance(c, dict) and c.get("version") == CACHE_VERSION and c.get("name") == spec.name
        and all(isinstance(c.get(k), torch.Tensor) for k in ("x_train", "y_train", "x_test",
                                                            "y_test"))
        and tuple(c["x_train"].shape[1:]) == spec.input_shape
        and len(c["x_train"]) == len(c["y_train"]) and len(c["x_test"]) == len(c["y_test"])
    )
    if not ok:
        warnings.warn(f"ignoring invalid cache {path}; re-parsing the raw files.", stacklevel=3)
        return None
    if sizes is not None and c.get("sources") != sizes:
        return None  # raw files changed since the cache was written
    return c


def _cache_dir(spec: ImageSpec, folder: Path) -> Path:
    # Never write into a system package's folder or one marked read-only (even as root):
    # then the cache lives under the data root.
    try:
        read_only = not (folder.stat().st_mode & 0o222) or not os.access(folder, os.W_OK)
    except OSError:
        read_only = True
    if str(folder) in spec.system_dirs or read_only:
        return data_root() / spec.name
    return folder


def _write_cache(c: dict, folder: Path, spec: ImageSpec) -> Path | None:
    for target in (_cache_dir(spec, folder), data_root() / spec.name):
        try:
            return atomic_torch_save(c, _cache_file(target, spec.name))
        except OSError:
            continue
    warnings.warn(f"could not write a cache for {spec.name}; it will be parsed again next time.",
                  stacklevel=3)
    return None


def _spec(name: str) -> ImageSpec:
    key = DATASETS.get(name).name
    if key not in IMAGE_SPECS:
        raise ValueError(
            f"{name!r} is not a file-backed dataset. File-backed: {', '.join(IMAGE_SPECS)}."
        )
    return IMAGE_SPECS[key]


def prepare(
    name: str, root: str | os.PathLike | None = None, download: bool = False, cache: bool = True,
    verify: bool = True,
) -> dict[str, Any]:
    """Find (or download) and parse ``name``; return the uint8 tensors and where they came from.

    Returns ``{"x_train", "y_train", "x_test", "y_test"}`` (uint8 images, int64 labels) plus
    ``"folder"`` and ``"cache"`` paths. Raw files are checked against their published
    checksums before they are parsed (:func:`verify_files`; ``verify=False`` skips this, for
    data of your own in the same format); a cache written after that check is trusted while
    the raw files keep their sizes.
    """
    spec = _spec(name)
    tried = _candidates(spec, root)
    folder = find_folder(spec.name, root)
    # a cache next to raw files must match them; a cache alone (raw files deleted) is fine
    if folder is not None:
        cache_dirs = [_cache_dir(spec, folder)]
    else:
        cache_dirs = [*tried, data_root() / spec.name]
    if cache:
        for d in cache_dirs:
            p = _cache_file(d, spec.name)
            if p.is_file():
                sizes = _source_sizes(spec, folder) if folder is not None else None
                c = _read_cache(p, spec, sizes)
                if c is not None:
                    return {**c, "folder": folder, "cache": p}
    if folder is None and download:
        folder = download_dataset(spec.name, root)
    if folder is None:
        raise FileNotFoundError(_how_to(spec, tried))
    if verify:
        verify_files(spec.name, folder)
    xtr, ytr, xte, yte = spec.parse(folder)
    for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        if tuple(x.shape[1:]) != spec.input_shape or len(x) != len(y):
            raise DataFormatError(
                f"{folder}: {split} images have shape {x.shape} for {len(y)} labels; expected "
                f"(N, {', '.join(map(str, spec.input_shape))}) for N labels."
            )
        if len(y) and (y.min() < 0 or y.max() >= len(spec.classes)):
            raise DataFormatError(f"{folder}: {split} labels outside 0..{len(spec.classes) - 1}.")
    c = {
        "version": CACHE_VERSION,
        "name": spec.name,
        "x_train": torch.from_numpy(np.ascontiguousarray(xtr)),
        "y_train": torch.from_numpy(ytr.astype(np.int64)),
        "x_test": torch.from_numpy(np.ascontiguousarray(xte)),
        "y_test": torch.from_numpy(yte.astype(np.int64)),
        "sources": _source_sizes(spec, folder),
    }
    path = _write_cache(c, folder, spec) if cache else None
    return {**c, "folder": folder, "cache": path}


def load_images(
    name: str,
    root: str | os.PathLike | None = None,
    download: bool = False,
    n_train: int | None = None,
    n_test: int | None = None,
    cache: bool = True,
    verify: bool = True,
) -> Dataset:
    """Load a file-backed image dataset as float32 in ``[0, 1]``, ``(N, C, H, W)``.

    ``n_train`` / ``n_test`` keep only the first examples of each split (quick runs).
    ``verify``: check the raw files' checksums first (see :func:`prepare`).
    """
    spec = _spec(name)
    for arg, val in (("n_train", n_train), ("n_test", n_test)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 0):
            raise ValueError(f"{arg} must be None or an integer >= 0. Received: {arg}={val!r}.")
    c = prepare(spec.name, root=root, download=download, cache=cache, verify=verify)

    def conv(x: torch.Tensor, n: int | None) -> torch.Tensor:
        return x[:n].to(torch.float32).div_(255.0)

    meta = DatasetMeta(
        spec.name, spec.classes, spec.input_shape, spec.source, spec.licence, spec.description,
        {"folder": str(c["folder"]) if c["folder"] else None,
         "cache": str(c["cache"]) if c["cache"] else None},
    )
    return Dataset(
        conv(c["x_train"], n_train), c["y_train"][:n_train].clone(),
        conv(c["x_test"], n_test), c["y_test"][:n_test].clone(), meta,
    )


def _loader(name: str) -> Callable[..., Dataset]:
    def load(root=None, download=False, n_train=None, n_test=None, cache=True,
             verify=True) -> Dataset:
        return load_images(name, root=root, download=download, n_train=n_train, n_test=n_test,
                           cache=cache, verify=verify)

    load.__name__ = name
    load.__doc__ = f"Load {name} (see :func:`trainlab.data.images.load_images`)."
    return load


for _name, _aliases in (("mnist", ()), ("fashion_mnist", ("fashionmnist", "fmnist")),
                        ("cifar10", ("cifar_10",)), ("svhn", ())):
    _s = IMAGE_SPECS[_name]
    DATASETS.add(_name, _loader(_name), description=_s.description, reference=_s.source,
                 aliases=_aliases, meta={"embedded": False, "kind": "image"})
