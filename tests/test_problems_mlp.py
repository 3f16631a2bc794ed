"""steplab.problems.MLP: backprop and the R-operator against finite differences in float64."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steplab.problems import MLP, make_classification

FAST = settings(max_examples=8, deadline=None)


def fd_grad_flat(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def make_mlp(seed, n, d, hidden, task, activation, l2, outputs=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if task == "classification":
        y = rng.integers(0, outputs, size=n)
        return MLP(X, y, hidden=hidden, seed=seed, task=task, activation=activation,
                   n_classes=outputs, l2=l2)
    y = rng.standard_normal((n, outputs)) if outputs > 1 else rng.standard_normal(n)
    return MLP(X, y, hidden=hidden, seed=seed, task=task, activation=activation, l2=l2)


configs = st.fixed_dictionaries({
    "seed": st.integers(0, 2**16),
    "n": st.integers(2, 12),
    "d": st.integers(1, 4),
    "hidden": st.integers(1, 5),
    "task": st.sampled_from(["classification", "regression"]),
    "activation": st.sampled_from(["tanh", "relu"]),
    "l2": st.sampled_from([0.0, 0.1]),
    "outputs": st.integers(1, 3),
})


def build(cfg):
    cfg = dict(cfg)
    if cfg["task"] == "classification":
        cfg["outputs"] = max(2, cfg["outputs"])
    return make_mlp(**cfg)


@FAST
@given(cfg=configs)
def test_mlp_gradient_matches_finite_differences(cfg):
    m = build(cfg)
    theta = m.init_params(seed=cfg["seed"] + 1)
    theta = {k: v + 0.3 * np.random.default_rng(1).standard_normal(v.shape) for k, v in theta.items()}
    x = m.flatten(theta)
    fd = fd_grad_flat(lambda z: m.value(m.unflatten(z)), x)
    g = m.flatten(m.grad(theta))
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)


@FAST
@given(cfg=configs)
def test_mlp_hvp_matches_finite_differences_of_the_gradient(cfg):
    m = build(cfg)
    rng = np.random.default_rng(cfg["seed"])
    theta = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in m.init_params().items()}
    v = {k: rng.standard_normal(s) for k, s in m.shapes.items()}
    x, vx = m.flatten(theta), m.flatten(v)
    h = 1e-5
    fd = (m.flatten(m.grad(m.unflatten(x + h * vx))) - m.flatten(m.grad(m.unflatten(x - h * vx)))) / (2 * h)
    Hv = m.flatten(m.hvp(theta, v))
    np.testing.assert_allclose(Hv, fd, rtol=1e-5, atol=1e-6 * max(1.0, np.max(np.abs(fd))))


def test_mlp_hvp_is_symmetric():
    m = make_mlp(0, 10, 3, 4, "classification", "tanh", 0.05)
    rng = np.random.default_rng(2)
    theta = m.init_params()
    u = {k: rng.standard_normal(s) for k, s in m.shapes.items()}
    v = {k: rng.standard_normal(s) for k, s in m.shapes.items()}
    # <u, H v> = <v, H u> because the Hessian is symmetric
    lhs = m.flatten(u) @ m.flatten(m.hvp(theta, v))
    rhs = m.flatten(v) @ m.flatten(m.hvp(theta, u))
    assert lhs == pytest.approx(rhs, rel=1e-10)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_mlp_batches_and_per_example_gradients(task):
    m = make_mlp(3, 15, 3, 4, task, "tanh", 0.1)
    theta = m.init_params()
    every = np.arange(m.n)
    assert m.value_batch(theta, every) == pytest.approx(m.value(theta), rel=1e-13)
    for k, g in m.grad_batch(theta, every).items():
        np.testing.assert_allclose(g, m.grad(theta)[k], rtol=1e-12, atol=1e-15)
    idx = np.array([4, 0, 9, 2])
    per = m.per_example_grads(theta, idx)
    batch = m.grad_batch(theta, idx)
    for k in ("W1", "b1", "W2", "b2"):
        assert per[k].shape == (4,) + m.shapes[k]
        np.testing.assert_allclose(per[k].mean(axis=0), batch[k], rtol=1e-12, atol=1e-15)
    # each slice is the gradient of the one-example objective
    single = m.grad_batch(theta, [9])
    for k in single:
        np.testing.assert_allclose(per[k][2], single[k], rtol=1e-12, atol=1e-15)


def test_mlp_init_is_seeded_and_scaled():
    X, y = make_classification(50, 20, n_classes=3, seed=0)
    m = MLP(X, y, hidden=200, seed=4, activation="relu")
    a, b = m.init_params(), m.init_params()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(m.init_params(seed=5)["W1"], a["W1"])
    # He initialization for ReLU: Var(W1) = 2/d; LeCun for W2: Var = 1/h (4000 and 600 draws)
    assert np.var(a["W1"]) == pytest.approx(2 / 20, rel=0.1)
    assert np.var(a["W2"]) == pytest.approx(1 / 200, rel=0.2)
    assert np.all(a["b1"] == 0) and np.all(a["b2"] == 0)


def test_mlp_classification_loss_at_zero_output_is_log_k():
    # with W2 = 0 and b2 = 0 every class has probability 1/K, so the loss is log K
    X, y = make_classification(30, 4, n_classes=5, seed=1)
    m = MLP(X, y, hidden=3)
    theta = m.init_params()
    theta["W2"][:] = 0.0
    assert m.value(theta) == pytest.approx(np.log(5), rel=1e-14)


def test_mlp_float32_runs_in_float32():
    m = make_mlp(0, 8, 3, 4, "classification", "tanh", 0.0)
    theta = {k: v.astype(np.float32) for k, v in m.init_params().items()}
    g = m.grad(theta)
    assert all(v.dtype == np.float32 for v in g.values())
    g64 = m.grad(m.init_params())
    for k in g:
        np.testing.assert_allclose(g[k], g64[k], rtol=1e-4, atol=1e-6)


def test_mlp_bad_inputs():
    X, y = make_classification(10, 3, n_classes=3, seed=0)
    m = MLP(X, y, hidden=4)
    theta = m.init_params()
    with pytest.raises(ValueError, match=r"theta is missing key 'b2'"):
        m.grad({k: v for k, v in theta.items() if k != "b2"})
    with pytest.raises(ValueError, match=r"theta has unexpected key 'W3'"):
        m.grad({**theta, "W3": np.zeros(2)})
    with pytest.raises(ValueError, match=r"theta\['W1'\] has shape \(4, 3\) but the model expects \(3, 4\)"):
        m.grad({**theta, "W1": np.zeros((4, 3))})
    with pytest.raises(ValueError, match=r"y has length 9 but X has 10 rows"):
        MLP(X, y[:9])
    with pytest.raises(ValueError, match=r"y must be in \{0, ..., 2\} \(n_classes=3\), got 3"):
        MLP(X, np.where(y == 0, 3, y), n_classes=3)
    with pytest.raises(ValueError, match=r"task must be 'classification' or 'regression', got 'ranking'"):
        MLP(X, y, task="ranking")
    with pytest.raises(ValueError, match=r"activation must be 'tanh' or 'relu', got 'gelu'"):
        MLP(X, y, activation="gelu")
    with pytest.raises(ValueError, match=r"hidden must be an integer >= 1, got 0"):
        MLP(X, y, hidden=0)
    with pytest.raises(ValueError, match=r"l2 must be >= 0, got -0.5"):
        MLP(X, y, l2=-0.5)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_mlp_per_example_values_and_flat_gradients(task):
    m = make_mlp(3, 15, 3, 4, task, "tanh", 0.1)
    theta = m.init_params()
    per = m.per_example_values(theta)
    assert per.shape == (m.n,)
    assert per.mean() == pytest.approx(m.value(theta), rel=1e-13)
    idx = np.array([4, 0, 9, 2])
    sub = m.per_example_values(theta, idx)
    assert sub.mean() == pytest.approx(m.value_batch(theta, idx), rel=1e-13)
    assert sub[2] == pytest.approx(m.value_batch(theta, [9]), rel=1e-13)
    # flat rows: row j is flatten of the gradient of f_{idx[j]}; their mean, the batch gradient
    G = m.per_example_grads_flat(theta, idx)
    assert G.shape == (4, m.dim)
    np.testing.assert_allclose(G[2], m.flatten(m.grad_batch(theta, [9])), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(G.mean(axis=0), m.flatten(m.grad_batch(theta, idx)), rtol=1e-12, atol=1e-15)


def test_mlp_classification_per_example_loss_at_zero_output_is_log_k():
    m = make_mlp(0, 12, 3, 5, "classification", "tanh", 0.0)
    theta = m.init_params()
    theta["W2"][:] = 0.0
    np.testing.assert_allclose(m.per_example_values(theta), np.log(m.n_outputs), rtol=1e-14)
