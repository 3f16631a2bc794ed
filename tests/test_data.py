"""steplab.data: the digits split and standardization, IDX/npz reading with clear errors on
malformed files, and IID / non-IID client splits that partition the data."""

import gzip
import struct

import numpy as np
import pytest

from steplab import data


# ---------------------------------------------------------------- digits


def test_load_digits_split_and_standardization():
    ds = data.load_digits()
    assert ds.n_classes == 10
    assert ds.X_train.shape == (1438, 64) and ds.X_val.shape == (359, 64)  # 1797 = 1438 + 359
    assert len(ds.y_train) == 1438 and set(np.unique(ds.y_train)) == set(range(10))
    mean, std = ds.X_train.mean(0), ds.X_train.std(0)
    np.testing.assert_allclose(mean, 0.0, atol=1e-12)
    assert np.all((np.abs(std - 1) < 1e-12) | (std == 0))  # constant pixels stay constant
    # the validation part uses the training statistics, so it is not exactly standardized
    assert np.max(np.abs(ds.X_val.mean(0))) > 1e-3
    # fixed split: same seed same data, other seed other split
    again = data.load_digits()
    np.testing.assert_array_equal(ds.X_train, again.X_train)
    other = data.load_digits(seed=1)
    assert not np.array_equal(ds.y_train, other.y_train)
    with pytest.raises(ValueError, match="val_fraction must be in"):
        data.load_digits(val_fraction=1.0)


def test_load_digits_raw_values():
    # The UCI test set bundled with scikit-learn: 1797 images of 8x8 counts in 0..16,
    # between 174 and 183 of each digit.
    ds = data.load_digits(standardize=False)
    X = np.vstack([ds.X_train, ds.X_val])
    y = np.concatenate([ds.y_train, ds.y_val])
    assert X.shape == (1797, 64)
    assert X.min() == 0 and X.max() == 16 and np.all(X == np.round(X))
    counts = np.bincount(y, minlength=10)
    assert counts.size == 10 and counts.min() >= 174 and counts.max() <= 183


def test_load_digits_unit_scale_and_bias():
    # "unit" divides the counts 0..16 by 16, so features lie in [0, 1] with both ends attained;
    # the bias column is exactly one; rows and labels are those of the default split.
    raw = data.load_digits(standardize=False)
    ds = data.load_digits(scale="unit", bias=True)
    assert ds.X_train.shape == (1438, 65) and ds.X_val.shape == (359, 65)
    np.testing.assert_array_equal(ds.X_train[:, -1], 1.0)
    np.testing.assert_array_equal(ds.X_val[:, -1], 1.0)
    np.testing.assert_array_equal(ds.X_train[:, :64] * 16, raw.X_train)
    np.testing.assert_array_equal(ds.X_val[:, :64] * 16, raw.X_val)
    assert ds.X_train[:, :64].min() == 0.0 and ds.X_train[:, :64].max() == 1.0
    np.testing.assert_array_equal(ds.y_train, raw.y_train)
    # scale overrides standardize; "standard" is the default map, with or without a bias column
    std = data.load_digits(standardize=False, scale="standard", bias=True)
    np.testing.assert_array_equal(std.X_train[:, :64], data.load_digits().X_train)
    np.testing.assert_array_equal(std.X_train[:, 64], 1.0)
    np.testing.assert_array_equal(data.load_digits(scale="raw").X_train, raw.X_train)
    with pytest.raises(ValueError, match="scale must be 'standard', 'unit' or 'raw', got 'minmax'"):
        data.load_digits(scale="minmax")
    with pytest.raises(ValueError, match="bias must be True or False, got 1"):
        data.load_digits(bias=1)


# ---------------------------------------------------------------- IDX files


def _idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def _write_mnist(folder, n_train=12, n_test=5, side=4, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, arr in arrays.items():
        raw = _idx_bytes(arr)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_idx(tmp_path, gz):
    arrays = _write_mnist(tmp_path, gz=gz)
    ds = data.load_mnist(tmp_path, checksum=False, standardize=False)
    np.testing.assert_allclose(ds.X_train, arrays["train-images-idx3-ubyte"].reshape(12, 16) / 255.0)
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_allclose(ds.X_val, arrays["t10k-images-idx3-ubyte"].reshape(5, 16) / 255.0)
    np.testing.assert_array_equal(ds.y_val, arrays["t10k-labels-idx1-ubyte"])
    assert ds.n_classes == 10
    st = data.load_mnist(tmp_path, checksum=False)
    np.testing.assert_allclose(st.X_train.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(st.X_train.std(0), 1.0, rtol=1e-12)
    f32 = data.load_mnist(tmp_path, checksum=False, dtype=np.float32)
    assert f32.X_train.dtype == np.float32
    np.testing.assert_allclose(f32.X_val, st.X_val, rtol=1e-5, atol=1e-5)


def test_load_mnist_from_environment(tmp_path, monkeypatch):
    _write_mnist(tmp_path)
    monkeypatch.setenv("STEPLAB_MNIST", str(tmp_path))
    assert data.load_mnist(checksum=False).X_train.shape == (12, 16)
    monkeypatch.delenv("STEPLAB_MNIST")
    with pytest.raises(FileNotFoundError, match="STEPLAB_MNIST"):
        data.load_mnist()


def test_load_mnist_checksum_rejects_files_that_are_not_the_standard_ones(tmp_path):
    _write_mnist(tmp_path)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: MD5 .* does not match"):
        data.load_mnist(tmp_path)


def test_load_mnist_missing_file_named(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz"):
        data.load_mnist(tmp_path, checksum=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_mnist(tmp_path / "nowhere")


def test_load_mnist_wrong_magic(tmp_path):
    _write_mnist(tmp_path, gz=False)
    f = tmp_path / "train-labels-idx1-ubyte"
    raw = bytearray(f.read_bytes())
    raw[2] = 0x0D  # float32 type code instead of unsigned byte
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte is not an unsigned-byte IDX file: magic number 00000d01"):
        data.load_mnist(tmp_path, checksum=False)


@pytest.mark.parametrize("cut,what", [(-3, "is truncated"), (None, "has trailing bytes")])
def test_load_mnist_header_against_payload(tmp_path, cut, what):
    _write_mnist(tmp_path, gz=True)
    f = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(f.read_bytes())
    raw = raw[:cut] if cut else raw + b"\x00\x00"
    f.write_bytes(gzip.compress(raw))
    with pytest.raises(ValueError, match=rf"t10k-images-idx3-ubyte\.gz {what}: the header announces shape \(5, 4, 4\) = 80 bytes"):
        data.load_mnist(tmp_path, checksum=False)


def test_load_mnist_corrupt_gzip_and_label_count(tmp_path):
    _write_mnist(tmp_path)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:20])  # cut inside the compressed stream
    with pytest.raises(ValueError, match=r"cannot read IDX file .*train-images-idx3-ubyte\.gz"):
        data.load_mnist(tmp_path, checksum=False)
    _write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(7))))
    with pytest.raises(ValueError, match="7 labels for 12 images"):
        data.load_mnist(tmp_path, checksum=False)


def test_load_mnist_npz(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.integers(0, 256, (8, 3, 3), dtype=np.uint8), rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    f = tmp_path / "mnist.npz"
    np.savez(f, x_train=x_train, y_train=np.arange(8) % 10, x_test=x_test, y_test=np.arange(4))
    ds = data.load_mnist(f, checksum=False, standardize=False)
    np.testing.assert_allclose(ds.X_val, x_test.reshape(4, 9) / 255.0)
    np.testing.assert_array_equal(ds.y_train, np.arange(8))
    with pytest.raises(ValueError, match=r"mnist\.npz: SHA-256 .* does not match Keras' mnist\.npz"):
        data.load_mnist(f)
    np.savez(f, x_train=x_train, y_train=np.arange(8))
    with pytest.raises(ValueError, match=r"lacks arrays \['x_test', 'y_test'\]"):
        data.load_mnist(f, checksum=False)


# ---------------------------------------------------------------- client splits


def _labelled(n_per_class=7, n_classes=10, seed=0):
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = np.column_stack([np.arange(y.size), y])  # row i remembers its index and label
    return X, y


def _assert_partition(parts, X):
    rows = np.concatenate([Xk[:, 0] for Xk, _ in parts])
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(X)))  # each example exactly once
    for Xk, yk in parts:
        np.testing.assert_array_equal(Xk[:, 1], yk)  # rows stay with their labels


@pytest.mark.parametrize("n_clients,c", [(10, 2), (5, 2), (4, 3), (10, 1), (3, 10)])
def test_split_non_iid_each_client_sees_c_classes(n_clients, c):
    X, y = _labelled()
    parts = data.split_non_iid(X, y, n_clients, c, seed=1)
    assert len(parts) == n_clients
    _assert_partition(parts, X)
    for _, yk in parts:
        assert np.unique(yk).size == c
    again = data.split_non_iid(X, y, n_clients, c, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(parts, again))


def test_split_non_iid_validation():
    X, y = _labelled()
    with pytest.raises(ValueError, match=r"n_clients \* classes_per_client must be >= the number of classes 10 so every example is assigned, got 4 \* 2 = 8"):
        data.split_non_iid(X, y, 4, 2)
    with pytest.raises(ValueError, match="classes_per_client must be <= the number of classes 10, got 11"):
        data.split_non_iid(X, y, 4, 11)
    with pytest.raises(ValueError, match="n_clients must be an integer >= 1, got 0"):
        data.split_non_iid(X, y, 0, 2)


def test_split_iid():
    X, y = _labelled()
    parts = data.split_iid(X, y, 6, seed=0)
    _assert_partition(parts, X)
    sizes = [len(yk) for _, yk in parts]
    assert max(sizes) - min(sizes) <= 1
    # 70 examples at random: a client of ~12 sees many classes, unlike a non-IID client
    assert min(np.unique(yk).size for _, yk in parts) >= 4


@pytest.mark.parametrize("split", ["iid", "non_iid"])
def test_split_return_indices_match_the_data(split):
    # the index form names the same rows as the data form: X[idx_k] is client k's data
    X, y = _labelled()
    if split == "iid":
        parts = data.split_iid(X, y, 6, seed=3)
        idx = data.split_iid(X, y, 6, seed=3, return_indices=True)
    else:
        parts = data.split_non_iid(X, y, 5, 2, seed=3)
        idx = data.split_non_iid(X, y, 5, 2, seed=3, return_indices=True)
        # only the labels are needed for the index form
        idx_no_x = data.split_non_iid(None, y, 5, 2, seed=3, return_indices=True)
        assert all(np.array_equal(a, b) for a, b in zip(idx, idx_no_x))
        assert all(np.unique(y[k]).size == 2 and np.all(np.diff(k) > 0) for k in idx)
    assert len(idx) == len(parts)
    for k, (Xk, yk) in zip(idx, parts):
        assert k.dtype.kind == "i"
        np.testing.assert_array_equal(X[k], Xk)
        np.testing.assert_array_equal(y[k], yk)
    np.testing.assert_array_equal(np.sort(np.concatenate(idx)), np.arange(len(y)))
    with pytest.raises(ValueError, match="return_indices must be True or False, got 'yes'"):
        data.split_iid(X, y, 2, return_indices="yes")
