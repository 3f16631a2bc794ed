"""Sign descent, Lion and the orthogonalized (Muon) update against steps computed by hand."""

import numpy as np
import pytest

from steplab import diagnostics, optim
from test_optim import run  # the one replay helper: the iterates along a gradient sequence


def test_signsgd_moves_every_coordinate_by_lr():
    theta = np.array([1.0, -2.0, 0.5])
    (after,) = run(optim.signsgd(0.1), theta, [np.array([3.0, -1e-6, 0.0])])
    np.testing.assert_allclose(after, [0.9, -1.9, 0.5], rtol=0, atol=1e-15)


def test_signum_uses_the_sign_of_the_momentum():
    theta = np.zeros(2)
    g1, g2 = np.array([1.0, 1.0]), np.array([-3.0, -0.5])
    # m1 = 0.1 g1 = (0.1, 0.1); m2 = 0.9 m1 + 0.1 g2 = (-0.21, 0.04)
    p1, p2 = run(optim.signsgd(0.5, momentum=0.9), theta, [g1, g2])
    np.testing.assert_allclose(p1, [-0.5, -0.5], atol=1e-15)
    np.testing.assert_allclose(p2, [0.0, -1.0], atol=1e-15)


def test_lion_two_steps_by_hand():
    theta = {"w": np.array([1.0, -1.0]), "b": np.array([2.0])}
    g1 = {"w": np.array([0.5, -2.0]), "b": np.array([1.0])}
    g2 = {"w": np.array([-0.06, 0.1]), "b": np.array([-0.05])}
    lr, wd, b1, b2 = 0.1, 0.5, 0.9, 0.99
    p1, p2 = run(optim.lion(lr, beta1=b1, beta2=b2, weight_decay=wd), theta, [g1, g2])
    # step 1: c = 0.1 g1, sign(g1); theta -= lr (sign + wd theta)
    w1 = np.array([1.0, -1.0]) - lr * (np.array([1.0, -1.0]) + wd * np.array([1.0, -1.0]))
    np.testing.assert_allclose(p1["w"], w1, atol=1e-15)
    np.testing.assert_allclose(p1["b"], [2.0 - lr * (1.0 + wd * 2.0)], atol=1e-15)
    # m1 = 0.01 g1; step 2: c = 0.9 * 0.01 g1 + 0.1 g2
    c_w = 0.9 * 0.01 * g1["w"] + 0.1 * g2["w"]   # (-0.0015, -0.008): signs (-1, -1)
    c_b = 0.9 * 0.01 * g1["b"] + 0.1 * g2["b"]   # 0.009 - 0.005 = 0.004: sign +1
    np.testing.assert_array_equal(np.sign(c_w), [-1.0, -1.0])
    # the stored momentum itself points the other way in the first coordinate: m2 = 0.99 m1 + 0.01 g2
    assert 0.99 * 0.01 * g1["w"][0] + 0.01 * g2["w"][0] > 0
    np.testing.assert_allclose(p2["w"], w1 - lr * (np.sign(c_w) + wd * w1), atol=1e-15)
    np.testing.assert_allclose(p2["b"], p1["b"] - lr * (np.sign(c_b) + wd * p1["b"]), atol=1e-15)


def test_lion_state_is_one_copy():
    params = {"w": np.zeros((4, 3)), "b": np.zeros(3)}
    counted = diagnostics.optimizer_state_bytes(optim.lion(0.1), params)
    assert counted == diagnostics.optimizer_state_formula("lion", {"w": (4, 3), "b": (3,)}, bytes_per_number=8)
    assert diagnostics.optimizer_state_bytes(optim.signsgd(0.1), params) == 0


@pytest.mark.parametrize("make,arg", [
    (lambda v: optim.lion(0.1, beta1=v), "beta1"),
    (lambda v: optim.lion(0.1, beta2=v), "beta2"),
    (lambda v: optim.lion(v), "lr"),
    (lambda v: optim.lion(0.1, weight_decay=v), "weight_decay"),
    (lambda v: optim.signsgd(0.1, momentum=v), "momentum"),
    (lambda v: optim.signsgd(v), "lr"),
])
def test_bad_hyperparameters_raise(make, arg):
    bad = 1.0 if arg in ("beta1", "beta2", "momentum") else -0.1
    with pytest.raises(ValueError, match=arg):
        make(bad)


def test_newton_schulz_is_the_quintic_on_the_singular_values():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((5, 8)) @ np.diag(np.geomspace(1, 100, 8))
    U, s, Vt = np.linalg.svd(G, full_matrices=False)
    a, b, c = 3.4445, -4.7750, 2.0315
    x = s / (np.linalg.norm(G) + 1e-7)
    for _ in range(5):
        x = a * x + b * x**3 + c * x**5
    np.testing.assert_allclose(optim.newton_schulz(G), U @ np.diag(x) @ Vt, rtol=0, atol=1e-10)
    np.testing.assert_allclose(optim.newton_schulz(G.T), (U @ np.diag(x) @ Vt).T, rtol=0, atol=1e-10)
    sv = np.linalg.svd(optim.newton_schulz(G), compute_uv=False)
    assert sv.min() > 0.6 and sv.max() < 1.25  # near-orthogonal although s spans a factor 100
    with pytest.raises(ValueError, match="2-D"):
        optim.newton_schulz(np.ones(3))


def test_scale_by_orthogonalized_only_touches_matrices():
    g = {"w": np.random.default_rng(1).standard_normal((6, 3)), "b": np.array([5.0, -1.0])}
    u, _ = optim.scale_by_orthogonalized().update(g, optim.EmptyState())
    np.testing.assert_array_equal(u["b"], g["b"])
    np.testing.assert_allclose(u["w"], optim.newton_schulz(g["w"]) * np.sqrt(2.0), rtol=1e-14)


def test_partition_gives_each_group_its_own_optimizer():
    params = {"w": np.ones((3, 2)), "b": np.ones(2)}
    grads = {"w": np.full((3, 2), 2.0), "b": np.array([1.0, -1.0])}
    opt = optim.partition({"matrix": optim.sgd(0.1), "vector": optim.signsgd(0.5)},
                          lambda key: "matrix" if key == "w" else "vector")
    state = opt.init(params)
    u, state = opt.update(grads, state, params)
    np.testing.assert_allclose(u["w"], -0.2)
    np.testing.assert_allclose(u["b"], [-0.5, 0.5])
    assert list(u) == list(params)
    with pytest.raises(ValueError, match="not one of"):
        optim.partition({"a": optim.sgd(0.1)}, lambda key: "b").init(params)
