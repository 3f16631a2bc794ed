r"""Data sets for the course: the bundled handwritten digits, MNIST from files, client splits.

Every loader returns a :class:`Dataset` with features standardized by the training
statistics, $x \mapsto (x - \bar x_{\text{train}}) / s_{\text{train}}$ (a constant feature
keeps $s = 1$), so a step size tuned on one data set transfers to the other.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._checks import check_bool, check_int

__all__ = ["Dataset", "load_digits", "load_mnist", "read_idx", "split_iid", "split_non_iid", "MNIST_ENV"]

MNIST_ENV = "STEPLAB_MNIST"

# Digests published with the standard distributions, as torchvision and Keras check them.
# The four .gz files: MD5 (the digests torchvision's MNIST class verifies).
_MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# Keras' mnist.npz: SHA-256.
_MNIST_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

_IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class Dataset:
    """A classification data set split into training and validation parts.

    Attributes:
        X_train: features, shape ``(n_train, d)``, float64, standardized with training statistics.
        y_train: integer labels in ``{0, ..., n_classes - 1}``, shape ``(n_train,)``.
        X_val, y_val: the validation part, standardized with the *training* statistics.
        n_classes: number of classes.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    n_classes: int

    def __repr__(self) -> str:
        return (
            f"Dataset(n_train={len(self.y_train)}, n_val={len(self.y_val)}, "
            f"d={self.X_train.shape[1]}, n_classes={self.n_classes})"
        )


def _standardize(X_train: np.ndarray, X_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In place (the arrays are fresh copies); statistics in float64."""
    mean = X_train.mean(axis=0, dtype=np.float64)
    std = X_train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    for X in (X_train, X_val):
        X -= mean.astype(X.dtype)
        X /= std.astype(X.dtype)
    return X_train, X_val


# ------------------------------------------------------------------ digits


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of the digits, read from the CSV that scikit-learn ships (importing sklearn costs
    seconds); falls back to ``sklearn.datasets.load_digits`` if the file is not where expected."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise ImportError("load_digits needs scikit-learn (pip install scikit-learn)")
    for location in spec.submodule_search_locations or []:
        csv = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            table = np.loadtxt(csv, delimiter=",", dtype=np.float64)
            if table.shape == (1797, 65):
                X, y = table[:, :64], table[:, 64].astype(np.int64)
                X.setflags(write=False)
                y.setflags(write=False)
                return X, y
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)



def load_digits(val_fraction: float = 0.2, seed: int = 0, standardize: bool = True, scale: str | None = None,
                bias: bool = False) -> Dataset:
    r"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 64 features, 10 classes).

    A fixed split: a permutation from ``np.random.default_rng(seed)``, the last
    ``round(val_fraction * 1797)`` examples held out; features standardized with the training
    mean and standard deviation. No download is needed.

    Args:
        val_fraction: share of examples held out for validation, in (0, 1).
        seed: seed of the split.
        standardize: standardize the features (else raw pixel values 0..16 as float64).
            Ignored when ``scale`` is given.
        scale: the feature map, overriding ``standardize``: ``"standard"`` (standardized with
            the training statistics), ``"unit"`` (pixels divided by 16, so in $[0, 1]$; no
            statistics, so nothing leaks from one split to the other) or ``"raw"`` (0..16).
        bias: append a constant column of ones (the intercept), after scaling: 65 features.

    ``load_digits(scale="unit", bias=True)`` gives $x \mapsto (x/16, 1)$, the features of
    chapter 2's logistic-regression examples.

    Reference: Alpaydin and Kaynak, "Optical Recognition of Handwritten Digits", UCI, 1998.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if scale is None:
        scale = "standard" if standardize else "raw"
    if scale not in ("standard", "unit", "raw"):
        raise ValueError(f"scale must be 'standard', 'unit' or 'raw', got {scale!r}")
    check_bool("bias", bias)
    X, y = _digits_arrays()
    perm = np.random.default_rng(seed).permutation(len(y))
    n_val = int(round(val_fraction * len(y)))
    tr, va = perm[: len(y) - n_val], perm[len(y) - n_val :]
    X_tr, X_va = X[tr], X[va]
    if scale == "standard":
        X_tr, X_va = _standardize(X_tr, X_va)
    elif scale == "unit":
        X_tr, X_va = X_tr / 16.0, X_va / 16.0
    if bias:
        X_tr = np.hstack([X_tr, np.ones((len(X_tr), 1))])
        X_va = np.hstack([X_va, np.ones((len(X_va), 1))])
    return Dataset(X_tr, y[tr], X_va, y[va], 10)


# ------------------------------------------------------------------ MNIST


def _file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_idx(path) -> np.ndarray:
    r"""Read one IDX file (plain or gzip-compressed) into a uint8 array.

    The IDX format: two zero bytes, a type byte (``0x08`` = unsigned byte), the number of
    dimensions $k$, then $k$ big-endian 32-bit sizes, then $\prod_i n_i$ bytes of data. The
    header is checked against the payload, so a wrong magic number, a truncated file or
    trailing bytes raise ``ValueError`` naming the file.

    Reference: LeCun, Cortes and Burges, "The MNIST database", file format section.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4:
        raise ValueError(f"{path} is not an IDX file: only {len(raw)} bytes")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(
            f"{path} is not an unsigned-byte IDX file: magic number {raw[:4].hex()} "
            "(expected 000008 followed by the number of dimensions)"
        )
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    payload = len(raw) - 4 - 4 * ndim
    if payload != expected:
        what = "is truncated" if payload < expected else "has trailing bytes"
        raise ValueError(
            f"{path} {what}: the header announces shape {shape} = {expected} bytes, "
            f"the file holds {payload}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _resolve_mnist_path(path) -> Path:
    if path is None:
        env = os.environ.get(MNIST_ENV)
        if not env:
            raise FileNotFoundError(
                f"no MNIST path given: pass load_mnist(path=...) or set the environment variable "
                f"{MNIST_ENV} to a folder with the four IDX files or to an mnist.npz"
            )
        path = env
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"MNIST path {p} does not exist")
    return p


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"MNIST file {folder / (stem + '.gz')} (or without .gz) is missing")


def _check_labels(path, labels: np.ndarray, n_images: int) -> None:
    if labels.ndim != 1:
        raise ValueError(f"{path}: labels must be 1-D, got shape {labels.shape}")
    if labels.size != n_images:
        raise ValueError(f"{path}: {labels.size} labels for {n_images} images")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{path}: labels must be digits 0..9, found {int(labels.max())}")


def _mnist_npz(p: Path, checksum: bool):
    """Keras' mnist.npz: the four arrays, checked."""
    if p.suffix != ".npz":
        raise ValueError(f"MNIST path {p} must be a folder of IDX files or a .npz file")
    if checksum:
        digest = _file_digest(p, "sha256")
        if digest != _MNIST_NPZ_SHA256:
            raise ValueError(
                f"{p}: SHA-256 {digest} does not match Keras' mnist.npz ({_MNIST_NPZ_SHA256}); "
                "pass checksum=False to load it anyway"
            )
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
            if missing:
                raise ValueError(f"{p} lacks arrays {sorted(missing)} (has {sorted(z.files)})")
            arrays = {k: np.asarray(z[k]) for k in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read {p} as .npz: {exc}") from exc
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim < 2:
            raise ValueError(f"{p}: x_{split} must hold images, got shape {x.shape}")
        _check_labels(f"{p} (y_{split})", y, x.shape[0])
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


def _mnist_idx(p: Path, checksum: bool):
    """A folder of the four IDX files (gzipped or not): the four arrays, checked."""
    files = {key: _find_idx(p, stem) for key, stem in _IDX_STEMS.items()}
    if checksum:
        for f in files.values():
            if f.name in _MNIST_GZ_MD5:
                digest = _file_digest(f, "md5")
                if digest != _MNIST_GZ_MD5[f.name]:
                    raise ValueError(
                        f"{f}: MD5 {digest} does not match the standard MNIST file "
                        f"({_MNIST_GZ_MD5[f.name]}); pass checksum=False to load other IDX data"
                    )
    data = {key: read_idx(f) for key, f in files.items()}
    for split in ("train", "test"):
        images, labels = data[f"{split}_images"], data[f"{split}_labels"]
        if images.ndim != 3:
            raise ValueError(f"{files[f'{split}_images']}: images must have 3 dimensions, got shape {images.shape}")
        _check_labels(files[f"{split}_labels"], labels, images.shape[0])
    return data["train_images"], data["train_labels"], data["test_images"], data["test_labels"]


def load_mnist(path=None, checksum: bool = True, standardize: bool = True, dtype=np.float64) -> Dataset:
    r"""MNIST from local files: the standard IDX files or a Keras-style ``mnist.npz``.

    Training set as ``X_train``/``y_train`` (60000 images), the standard test set as
    ``X_val``/``y_val`` (10000), images flattened to 784 features and standardized with the
    training statistics (or scaled to [0, 1] when ``standardize=False``).

    Args:
        path: a folder holding ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
            ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``; or a ``.npz`` file
            with arrays ``x_train, y_train, x_test, y_test``. Default: the environment variable
            ``STEPLAB_MNIST``.
        checksum: verify files against the published digests: MD5 of the four standard ``.gz``
            files (the digests torchvision checks) and SHA-256 of Keras' ``mnist.npz``. Files
            stored uncompressed have no published digest; for them (and always) the internal
            consistency is checked: IDX magic numbers, header sizes against payload, as many
            labels as images, labels in 0..9. Pass ``checksum=False`` for other data in the same
            format (e.g. Fashion-MNIST, which uses the same file names).
        standardize: standardize features with training statistics.
        dtype: floating dtype of the features; the full training set takes about 380 MB in
            float64, half in float32.

    Raises:
        FileNotFoundError: no path, or a missing file (the message names it).
        ValueError: a malformed file, or a digest mismatch (the message names the file).
    """
    p = _resolve_mnist_path(path)
    Xtr, ytr, Xte, yte = _mnist_npz(p, checksum) if p.is_file() else _mnist_idx(p, checksum)
    if Xtr.shape[1:] != Xte.shape[1:]:
        raise ValueError(f"{p}: training images {Xtr.shape[1:]} and test images {Xte.shape[1:]} differ in size")
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    Xtr = Xtr.reshape(len(Xtr), -1).astype(dtype)
    Xte = Xte.reshape(len(Xte), -1).astype(dtype)
    Xtr /= 255.0
    Xte /= 255.0
    if standardize:
        Xtr, Xte = _standardize(Xtr, Xte)
    return Dataset(Xtr, ytr.astype(np.int64), Xte, yte.astype(np.int64), 10)


# ------------------------------------------------------------------ client splits


def _check_xy(X, y):
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim < 1 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"X and y must have the same number of rows, got shapes {X.shape} and {y.shape}")
    return X, y


def split_iid(X, y, n_clients: int, seed: int = 0, return_indices: bool = False) -> list:
    r"""Split a data set uniformly at random into ``n_clients`` parts of (nearly) equal size.

    .. math::

        D_k = \{\pi(i) : c_k \le i < c_{k+1}\}, \qquad
        c_k = k\lfloor n/K \rfloor + \min(k, n \bmod K),

    for :math:`K` = ``n_clients``. A permutation from ``np.random.default_rng(seed)`` cut into ``n_clients`` contiguous
    pieces (sizes differ by at most one). Every example goes to exactly one client, and each
    client's label distribution matches the whole in expectation.

    Args:
        return_indices: return each client's row indices into ``X`` (in the order of its data)
            instead of its data, the form ``steplab.distributed`` takes: clients as index arrays
            into one problem.

    Returns:
        A list of ``(X_k, y_k)``, one per client (or of index arrays with ``return_indices``).

    Reference: H. B. McMahan et al., "Communication-efficient learning of deep networks from
    decentralized data", AISTATS 2017 (the IID partition of their experiments).
    """
    X, y = _check_xy(X, y)
    n_clients = check_int("n_clients", n_clients, low=1)
    check_bool("return_indices", return_indices)
    if n_clients > len(y):
        raise ValueError(f"n_clients must be <= the number of examples {len(y)}, got {n_clients}")
    perm = np.random.default_rng(seed).permutation(len(y))
    if return_indices:
        return list(np.array_split(perm, n_clients))
    return [(X[idx], y[idx]) for idx in np.array_split(perm, n_clients)]


def split_non_iid(
    X, y, n_clients: int, classes_per_client: int, seed: int = 0, return_indices: bool = False
) -> list:
    r"""Split a data set so that each client sees only ``classes_per_client`` classes.

    With the classes $0, \dots, C-1$ present in ``y`` and $c$ = ``classes_per_client``,
    client $k$ holds the classes $\{(kc + j) \bmod C : j = 0, \dots, c-1\}$; the examples of
    each class (shuffled by ``np.random.default_rng(seed)``) are divided evenly among the
    clients that hold it. Every example goes to exactly one client. This is the pathological
    non-IID partition of McMahan et al. (2017), with each client's classes distinct.

    Args:
        X, y: the data set (``y`` integer labels).
        n_clients: number of clients $K$.
        classes_per_client: $c$, with $1 \le c \le C$ and $Kc \ge C$ (every class is held).
        seed: seed of the shuffles.
        return_indices: return each client's sorted row indices into ``X`` instead of its data
            (the form ``steplab.distributed`` takes). ``X`` may then be ``None``.

    Returns:
        A list of ``(X_k, y_k)``, one per client (or of index arrays with ``return_indices``).

    Reference: McMahan et al., "Communication-Efficient Learning of Deep Networks from
    Decentralized Data", AISTATS 2017.
    """
    check_bool("return_indices", return_indices)
    if X is None and return_indices:
        X = np.arange(len(np.asarray(y)))
    X, y = _check_xy(X, y)
    n_clients = check_int("n_clients", n_clients, low=1)
    c = check_int("classes_per_client", classes_per_client, low=1)
    classes = np.unique(y)
    C = classes.size
    if c > C:
        raise ValueError(f"classes_per_client must be <= the number of classes {C}, got {c}")
    if n_clients * c < C:
        raise ValueError(
            f"n_clients * classes_per_client must be >= the number of classes {C} so every example "
            f"is assigned, got {n_clients} * {c} = {n_clients * c}"
        )
    holders: dict[int, list[int]] = {j: [] for j in range(C)}
    for k in range(n_clients):
        for j in range(c):
            holders[(k * c + j) % C].append(k)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    for j, label in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(y == label))
        if idx.size < len(holders[j]):
            raise ValueError(
                f"class {label.item()!r} has {idx.size} examples for {len(holders[j])} clients; "
                "use fewer clients or more classes_per_client"
            )
        for k, piece in zip(holders[j], np.array_split(idx, len(holders[j]))):
            parts[k].append(piece)
    out = []
    for k in range(n_clients):
        idx = np.sort(np.concatenate(parts[k]))
        out.append(idx if return_indices else (X[idx], y[idx]))
    return out


# ------------------------------------------------------------------ character corpus

__all__ += ["Corpus", "load_corpus"]

_CORPUS_FILE = Path(__file__).parent / "data_files" / "lesson_text.txt"


@dataclass(frozen=True)
class Corpus:
    """A character corpus: ``text``, its alphabet ``vocab`` (sorted characters) and ``tokens``,
    the text as integer ids (``vocab[tokens[i]] == text[i]``)."""

    text: str
    vocab: str
    tokens: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """Integer ids of ``text``; every character must be in ``vocab``."""
        index = {c: i for i, c in enumerate(self.vocab)}
        missing = sorted(set(text) - set(index))
        if missing:
            raise ValueError(f"text has characters outside the vocabulary: {''.join(missing)!r}")
        return np.array([index[c] for c in text], dtype=np.int64)

    def decode(self, ids) -> str:
        """The string of integer ids ``ids``."""
        return "".join(self.vocab[int(i)] for i in np.asarray(ids).ravel())

    def split(self, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """(train, validation) tokens: the first ``1 - val_fraction`` of the text, then the rest."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        cut = int(round(len(self.tokens) * (1.0 - val_fraction)))
        return self.tokens[:cut], self.tokens[cut:]


def load_corpus(n_chars: int | None = None) -> Corpus:
    """The course's own lesson prose as a character corpus, shipped with the package.

    The markdown of the chapter 1 and 2 lessons with code, math and markup removed,
    lowercased, restricted to letters, digits, space and ``.,:;-()'`` (45 characters) and
    with runs of whitespace joined to one space: about 112,000 characters.

    Args:
        n_chars: keep only the first ``n_chars`` characters (default: all), at least 2.
    """
    text = " ".join(_CORPUS_FILE.read_text(encoding="utf-8").split())
    if n_chars is not None:
        text = text[: check_int("n_chars", n_chars, low=2)]
    vocab = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocab)}
    tokens = np.array([index[c] for c in text], dtype=np.int64)
    tokens.setflags(write=False)
    return Corpus(text=text, vocab=vocab, tokens=tokens)
