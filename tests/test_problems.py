"""steplab.problems: derivatives against finite differences, constants against the Hessian's spectrum."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steplab.problems import (
    LeastSquares,
    LogisticRegression,
    Problem,
    Quadratic,
    ReddiCounterexample,
    Rosenbrock,
    SoftmaxRegression,
    Wavy,
    make_classification,
    make_least_squares,
    random_orthogonal,
)

FAST = settings(max_examples=12, deadline=None)
seeds = st.integers(0, 2**16)


# ---------------------------------------------------------------- helpers


def fd_grad(f, x, h=1e-6):
    """Central differences of a scalar function, coordinate by coordinate."""
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def fd_jacobian(grad, x, h=1e-6):
    """Central differences of a vector function: column i is d grad / d x_i."""
    x = np.asarray(x, dtype=np.float64)
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        cols.append((grad(x + e) - grad(x - e)) / (2 * h))
    return np.stack(cols, axis=1)


def assert_close(a, b, rtol=1e-6, atol=1e-7):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.max(np.abs(b))))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale)


def random_quadratic(draw_seed, dim, rotate):
    rng = np.random.default_rng(draw_seed)
    eig = rng.uniform(0.1, 5.0, size=dim)
    center = rng.standard_normal(dim)
    return Quadratic(eig, seed=draw_seed, rotate=rotate, center=center), rng


def random_least_squares(seed, n, d, l2):
    A, b = make_least_squares(n, d, noise=0.3, seed=seed)
    return LeastSquares(A, b, l2=l2)


def random_logistic(seed, n, d, l2):
    X, y = make_classification(n, d, seed=seed)
    return LogisticRegression(X, y, l2=l2)


def random_softmax(seed, n, d, k, l2):
    X, y = make_classification(n, d, n_classes=k, seed=seed)
    return SoftmaxRegression(X, y, n_classes=k, l2=l2)


# --------------------------------------------------------------- Quadratic


@FAST
@given(seed=seeds, dim=st.integers(1, 6), rotate=st.booleans())
def test_quadratic_grad_hvp_and_spectrum(seed, dim, rotate):
    q, rng = random_quadratic(seed, dim, rotate)
    x = rng.standard_normal(dim)
    assert_close(q.grad(x), fd_grad(q.value, x))
    v = rng.standard_normal(dim)
    assert_close(q.hvp(x, v), fd_jacobian(q.grad, x) @ v)
    # Hessian from finite differences of grad, independent of how H was built
    H = fd_jacobian(q.grad, x)
    eig = np.linalg.eigvalsh(0.5 * (H + H.T))
    assert q.L == pytest.approx(eig[-1], rel=1e-6)
    assert q.mu == pytest.approx(eig[0], rel=1e-6)
    np.testing.assert_allclose(np.sort(eig), np.sort(q.eigenvalues), rtol=1e-6)
    # minimizer: zero gradient, f* = f(minimizer), and f >= f* at other points
    assert np.linalg.norm(q.grad(q.minimizer)) < 1e-10
    assert q.f_star == q.value(q.minimizer)
    assert q.value(x) >= q.f_star


def test_quadratic_eigenvectors_are_the_eigenvectors():
    q = Quadratic([0.5, 2.0, 7.0], seed=3)
    Q = q.eigenvectors
    np.testing.assert_allclose(Q.T @ Q, np.eye(3), atol=1e-12)
    for i, lam in enumerate(q.eigenvalues):
        np.testing.assert_allclose(q.hvp(np.zeros(3), Q[:, i]), lam * Q[:, i], atol=1e-12)


def test_quadratic_axis_aligned_is_diagonal_in_the_given_order():
    q = Quadratic([1.0, 10.0], rotate=False)
    np.testing.assert_array_equal(q.hessian(), np.diag([1.0, 10.0]))
    # f = (x^2 + 10 y^2) / 2
    assert q.value(np.array([1.0, 1.0])) == pytest.approx(5.5)


@FAST
@given(kappa=st.floats(1.0, 1e4), dim=st.integers(2, 8), L=st.floats(0.1, 10.0),
       spacing=st.sampled_from(["geometric", "linear"]))
def test_with_condition_has_the_requested_extremes(kappa, dim, L, spacing):
    q = Quadratic.with_condition(kappa, dim=dim, L=L, seed=1, spacing=spacing)
    eig = np.linalg.eigvalsh(q.hessian())
    assert eig[-1] == pytest.approx(L, rel=1e-9)
    assert eig[0] == pytest.approx(L / kappa, rel=1e-9)
    assert q.kappa == pytest.approx(kappa, rel=1e-12)


def test_random_orthogonal_is_orthogonal_and_seeded():
    Q = random_orthogonal(5, seed=7)
    np.testing.assert_allclose(Q @ Q.T, np.eye(5), atol=1e-12)
    np.testing.assert_array_equal(Q, random_orthogonal(5, seed=7))
    assert not np.allclose(Q, random_orthogonal(5, seed=8))


def test_quadratic_singular_and_indefinite():
    q = Quadratic([0.0, 1.0], allow_singular=True, rotate=False)
    assert q.mu == 0.0 and q.kappa == np.inf
    assert np.linalg.norm(q.grad(q.minimizer)) == 0.0
    s = Quadratic([1.0, -1.0], rotate=False, allow_indefinite=True)
    assert s.mu is None and s.minimizer is None and s.L == 1.0
    # origin is a saddle: f decreases along y, increases along x
    assert s.value(np.array([0.0, 0.1])) < 0 < s.value(np.array([0.1, 0.0]))


# ------------------------------------------------------------ LeastSquares


@FAST
@given(seed=seeds, n=st.integers(3, 30), d=st.integers(1, 8), l2=st.sampled_from([0.0, 0.01, 1.0]))
def test_least_squares_derivatives_and_constants(seed, n, d, l2):
    p = random_least_squares(seed, n, d, l2)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal(d)
    assert_close(p.grad(x), fd_grad(p.value, x))
    H = fd_jacobian(p.grad, x)
    v = rng.standard_normal(d)
    assert_close(p.hvp(x, v), H @ v)
    eig = np.linalg.eigvalsh(0.5 * (H + H.T))
    assert p.L == pytest.approx(eig[-1], rel=1e-5)
    assert p.mu == pytest.approx(eig[0], rel=1e-5, abs=1e-7)
    g = p.grad(p.minimizer)
    assert np.linalg.norm(g) < 1e-10
    assert p.f_star == p.value(p.minimizer)
    assert p.value(x) >= p.f_star


def test_overparameterized_least_squares_interpolates_and_is_pl():
    A, b = make_least_squares(10, 30, noise=0.5, seed=2, overparameterized=True)
    p = LeastSquares(A, b)
    assert p.mu == 0.0  # d > n: A^T A is singular
    assert p.f_star < 1e-20  # some x fits b exactly
    assert np.linalg.norm(p.grad(p.minimizer)) < 1e-10
    nonzero = np.linalg.eigvalsh(A @ A.T / 10)
    assert p.mu_pl == pytest.approx(nonzero.min(), rel=1e-8)
    # PL: 1/2 ||grad||^2 >= mu_pl (f - f*) at random points
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.standard_normal(30)
        g = p.grad(x)
        assert 0.5 * g @ g >= p.mu_pl * (p.value(x) - p.f_star) * (1 - 1e-10)


def test_least_squares_minimum_norm_minimizer_lies_in_the_row_space():
    A, b = make_least_squares(5, 12, seed=4, overparameterized=True)
    x = LeastSquares(A, b).minimizer
    # x = A^T z for some z (what GD from 0 converges to)
    z = np.linalg.lstsq(A.T, x, rcond=None)[0]
    np.testing.assert_allclose(A.T @ z, x, atol=1e-12)


def test_ridge_with_more_features_than_examples_uses_the_dual_correctly():
    A, b = make_least_squares(6, 15, seed=5)
    p = LeastSquares(A, b, l2=0.3)
    assert p.mu == pytest.approx(0.3)
    assert np.linalg.norm(p.grad(p.minimizer)) < 1e-12


# ---------------------------------------------------------------- logistic


@FAST
@given(seed=seeds, n=st.integers(5, 60), d=st.integers(1, 6), l2=st.sampled_from([1e-3, 0.1, 1.0]))
def test_logistic_derivatives_and_constants(seed, n, d, l2):
    p = random_logistic(seed, n, d, l2)
    rng = np.random.default_rng(seed + 1)
    for scale in (0.1, 3.0):
        w = scale * rng.standard_normal(d)
        assert_close(p.grad(w), fd_grad(p.value, w))
        Hfd = fd_jacobian(p.grad, w)
        assert_close(p.hessian(w), Hfd, atol=1e-6)
        v = rng.standard_normal(d)
        assert_close(p.hvp(w, v), Hfd @ v, atol=1e-6)
        eig = np.linalg.eigvalsh(p.hessian(w))
        assert eig[-1] <= p.L * (1 + 1e-12)
        assert eig[0] >= p.mu * (1 - 1e-9) and p.mu == l2
    assert np.linalg.norm(p.grad(p.minimizer)) < 1e-10
    assert p.f_star == p.value(p.minimizer)
    assert p.value(w) >= p.f_star


def test_logistic_L_bound_is_attained_at_zero_for_centred_margins():
    # At w = 0 every sigma(1 - sigma) = 1/4, so the Hessian is X^T X/(4n) + l2 I: the bound is tight.
    X, y = make_classification(40, 3, seed=0)
    p = LogisticRegression(X, y, l2=0.05)
    assert np.linalg.eigvalsh(p.hessian(np.zeros(3)))[-1] == pytest.approx(p.L, rel=1e-10)


def test_separable_data_without_l2_have_no_minimizer():
    X = np.array([[1.0, 0.5], [2.0, -1.0], [-1.0, 0.3], [-2.0, 1.0]])
    y = np.array([1, 1, 0, 0])  # separated by the first coordinate
    assert LogisticRegression(X, y, l2=0.0).minimizer is None
    assert SoftmaxRegression(X, y, l2=0.0).f_star is None
    # overlapping classes: the unregularized minimizer exists and is a stationary point
    X2, y2 = make_classification(200, 2, seed=0, separation=1.0)
    p = LogisticRegression(X2, y2, l2=0.0)
    assert np.linalg.norm(p.grad(p.minimizer)) < 1e-10


def test_logistic_accepts_minus_one_one_labels():
    X, y = make_classification(30, 3, seed=1)
    a = LogisticRegression(X, y, l2=0.1)
    b = LogisticRegression(X, 2 * y - 1, l2=0.1)
    w = np.array([0.3, -0.2, 0.5])
    assert a.value(w) == b.value(w)
    np.testing.assert_array_equal(a.grad(w), b.grad(w))


def test_logistic_value_is_stable_for_huge_margins():
    X = np.array([[1000.0], [-1000.0]])
    p = LogisticRegression(X, np.array([1, 0]), l2=0.0)
    # log(1 + e^{-1000}) ~ e^{-1000}: the loss is 0 to double precision, not nan/inf
    assert p.value(np.array([1.0])) == pytest.approx(0.0, abs=1e-300)
    assert p.value(np.array([-1.0])) == pytest.approx(1000.0)
    assert np.all(np.isfinite(p.grad(np.array([-1.0]))))


@FAST
@given(seed=seeds, n=st.integers(6, 50), d=st.integers(1, 4), k=st.integers(2, 4),
       l2=st.sampled_from([1e-2, 0.5]))
def test_softmax_derivatives_and_constants(seed, n, d, k, l2):
    p = random_softmax(seed, n, d, k, l2)
    rng = np.random.default_rng(seed + 1)
    w = rng.standard_normal(p.dim)
    assert_close(p.grad(w), fd_grad(p.value, w))
    Hfd = fd_jacobian(p.grad, w)
    assert_close(p.hessian(w), Hfd, atol=1e-6)
    v = rng.standard_normal(p.dim)
    assert_close(p.hvp(w, v), Hfd @ v, atol=1e-6)
    eig = np.linalg.eigvalsh(p.hessian(w))
    assert eig[-1] <= p.L * (1 + 1e-12)
    # mu = l2 is exact: shifting every class column by the same vector leaves the loss unchanged
    assert eig[0] == pytest.approx(l2, rel=1e-8)
    assert np.linalg.norm(p.grad(p.minimizer)) < 1e-10
    assert p.f_star == p.value(p.minimizer)


def test_softmax_layout_is_W_ravel():
    X = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 1.0]])
    y = np.array([0, 2, 1])
    p = SoftmaxRegression(X, y, n_classes=3, l2=0.0)
    W = np.arange(6.0).reshape(2, 3) / 10
    logits = X @ W
    expected = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(3), y])
    assert p.value(W.ravel()) == pytest.approx(expected, rel=1e-14)
    np.testing.assert_array_equal(p.unflatten(W.ravel()), W)


def test_classifier_shapes_are_checked_by_name():
    X, y = make_classification(20, 3, n_classes=3, seed=0)
    soft = SoftmaxRegression(X, y, n_classes=3, l2=0.1)
    with pytest.raises(ValueError, match=r"theta must have shape \(9,\) or \(k, 9\)"):
        soft.unflatten(np.zeros(5))
    with pytest.raises(ValueError, match=r"X must have 3 columns, got shape \(20, 2\)"):
        soft.predict(np.zeros(9), X[:, :2])
    binary = LogisticRegression(X, (y == 1).astype(int), l2=0.1)
    with pytest.raises(ValueError, match=r"X must have 3 columns, got shape \(20, 2\)"):
        binary.predict(np.zeros(3), X[:, :2])


def test_softmax_with_two_classes_matches_binary_logistic_on_logit_differences():
    # p(y=1) = sigma(z_1 - z_0): softmax with W = [0, w] equals binary logistic with w (l2 = 0).
    X, y = make_classification(25, 3, seed=9)
    w = np.array([0.4, -0.7, 0.2])
    soft = SoftmaxRegression(X, y, n_classes=2)
    binary = LogisticRegression(X, y)
    W = np.stack([np.zeros(3), w], axis=1)
    assert soft.value(W.ravel()) == pytest.approx(binary.value(w), rel=1e-13)


@pytest.mark.parametrize("l2", [0.05, 0.0])
def test_softmax_minimizer_by_newton_cg_for_large_dim(monkeypatch, l2):
    import steplab.problems.logistic as logistic

    X, y = make_classification(300, 4, n_classes=3, seed=3, separation=0.5)  # overlapping classes
    monkeypatch.setattr(logistic, "_DENSE_SOFTMAX_MAX_DIM", 5)
    p = SoftmaxRegression(X, y, n_classes=3, l2=l2)  # dim 12 > 5: preconditioned CG Newton steps
    assert np.linalg.norm(p.grad(p.minimizer)) < 1e-10
    monkeypatch.setattr(logistic, "_DENSE_SOFTMAX_MAX_DIM", 10**6)
    dense = SoftmaxRegression(X, y, n_classes=3, l2=l2)
    # the optimal value is unique even when (l2 = 0) the minimizer is not
    assert p.f_star == pytest.approx(dense.f_star, rel=1e-12)
    if l2 > 0:
        np.testing.assert_allclose(p.minimizer, dense.minimizer, atol=1e-9)


def test_binary_logistic_minimizer_by_cg_for_large_dim(monkeypatch):
    import steplab.problems.logistic as logistic

    monkeypatch.setattr(logistic, "_DENSE_NEWTON_MAX_DIM", 2)
    p = random_logistic(4, 60, 5, 0.1)  # dim 5 > 2: conjugate-gradient Newton steps
    assert np.linalg.norm(p.grad(p.minimizer)) < 1e-10


@pytest.mark.parametrize("with_precond", [False, True])
def test_cg_solves_spd_systems_to_the_requested_residual(with_precond):
    from steplab.problems.base import cg as _cg

    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.standard_normal((30, 30)))[0]
    A = Q @ np.diag(np.logspace(0, 4, 30)) @ Q.T
    b = rng.standard_normal(30)
    precond = (lambda r: r / np.diag(A)) if with_precond else None
    x = _cg(lambda v: A @ v, b, tol=1e-10, max_iter=1000, precond=precond)
    assert np.linalg.norm(A @ x - b) <= 1e-10 * np.linalg.norm(b)
    # in exact arithmetic CG ends in at most dim steps; capped at 1 step it is one steepest-descent step
    x1 = _cg(lambda v: A @ v, b, tol=0.0, max_iter=1)
    np.testing.assert_allclose(x1, (b @ b) / (b @ A @ b) * b, rtol=1e-12)


# --------------------------------------------------- Rosenbrock and Wavy


@FAST
@given(x=st.floats(-2, 2), y=st.floats(-1, 3), a=st.floats(-2, 2), b=st.floats(1, 200))
def test_rosenbrock_derivatives(x, y, a, b):
    p = Rosenbrock(a=a, b=b)
    t = np.array([x, y])
    assert_close(p.grad(t), fd_grad(p.value, t))
    Hfd = fd_jacobian(p.grad, t)
    assert_close(p.hessian(t), Hfd, atol=1e-6)
    v = np.array([0.3, -1.1])
    assert_close(p.hvp(t, v), Hfd @ v, atol=1e-6)
    assert np.linalg.norm(p.grad(p.minimizer)) < 1e-10
    assert p.f_star == p.value(p.minimizer) == 0.0
    assert p.value(t) >= 0.0


@FAST
@given(x=st.floats(-3, 3), a=st.floats(0.1, 5), k=st.one_of(st.just(0.0), st.floats(0.1, 30)))
def test_wavy_derivatives_and_constants(x, a, k):
    p = Wavy(a=a, k=k)
    t = np.array([x])
    assert_close(p.grad(t), fd_grad(p.value, t))
    assert_close(p.hessian(t), fd_jacobian(p.grad, t), atol=1e-5)
    assert_close(p.hvp(t, np.array([2.0])), 2.0 * fd_jacobian(p.grad, t)[:, 0], atol=1e-5)
    # L = sup |f''|: f'' = a - 0.1 k^2 sin(kx) reaches a + 0.1 k^2 where sin(kx) = -1
    grid = np.linspace(-4, 4, 20001)[:, None]
    curv = np.array([p.hessian(g)[0, 0] for g in grid[::50]])
    assert np.all(np.abs(curv) <= p.L * (1 + 1e-12))
    if k > 0:
        x_peak = np.array([-np.pi / (2 * k)])
        assert p.hessian(x_peak)[0, 0] == pytest.approx(p.L, rel=1e-12)
    assert (p.mu is None) == (a <= 0.1 * k**2)
    # the global minimizer: zero gradient and no lower value anywhere on a fine grid
    assert np.linalg.norm(p.grad(p.minimizer)) < 1e-10
    assert p.f_star == p.value(p.minimizer)
    assert p.f_star <= np.min(p.value(grid)) + 1e-12


# ---------------------------------------------------------------- Reddi


@FAST
@given(C=st.floats(2.01, 20), x=st.floats(-1, 1), start=st.integers(0, 30))
def test_reddi_period_sum_and_optimum(C, x, start):
    p = ReddiCounterexample(C=C)
    t = np.array([x])
    total = sum(p.grad_at(t, s)[0] for s in range(start, start + 3))
    assert total == pytest.approx(C - 2)
    assert total > 0
    # grad_at is the derivative of value_at
    for s in range(1, 4):
        assert p.grad_at(t, s)[0] == pytest.approx(fd_grad(lambda z: p.value_at(z, s), t)[0])
    # for every horizon T the best fixed point of sum_{t<=T} f_t on [-1, 1] is -1
    grid = np.linspace(-1, 1, 201)[:, None]
    for T in range(1, 10):
        cumulative = sum(p.value_at(grid, s) for s in range(1, T + 1))
        assert grid[np.argmin(cumulative), 0] == -1.0
    assert p.value(p.minimizer) == p.f_star == pytest.approx(-(C - 2) / 3)


def test_reddi_paper_definition_and_regret():
    p = ReddiCounterexample(C=3)
    x = np.array([0.5])
    assert [p.value_at(x, t) for t in (1, 2, 3, 4)] == [1.5, -0.5, -0.5, 1.5]
    # staying at the optimum has zero regret
    np.testing.assert_array_equal(p.regret(-np.ones(12)), np.zeros(12))
    # staying at +1 costs 2C - 2 - 2 = 2(C - 2) per period of three steps
    avg = p.average_regret(np.ones(300))
    assert avg[-1] == pytest.approx(2 * (3 - 2) / 3)
    np.testing.assert_allclose(p.regret(np.ones(6))[[2, 5]], [2.0, 4.0])
    np.testing.assert_array_equal(p.project(np.array([[1.7], [-3.0], [0.2]])), [[1.0], [-1.0], [0.2]])
    assert p.feasible_set == (-1.0, 1.0)


@pytest.mark.parametrize("C", [3.0, 5.0])
def test_reddi_adam_goes_to_plus_one_and_amsgrad_to_minus_one(C):
    # Theorem 1 of Reddi et al.: beta1 = 0, beta2 = 1/(1 + C^2), lr_t = lr/sqrt(t), projected.
    # A few lines of Adam here so that the problem is tested independently of steplab.optim.
    p = ReddiCounterexample(C=C)
    beta2 = 1 / (1 + C**2)
    finals, regrets = {}, {}
    for amsgrad in (False, True):
        x, v, v_max, xs = p.init_params(), 0.0, 0.0, []
        for t in range(1, 3001):
            xs.append(x[0])
            g = p.grad_at(x, t)[0]
            v = beta2 * v + (1 - beta2) * g * g
            v_max = max(v_max, v)
            x = p.project(x - 0.5 / np.sqrt(t) * g / np.sqrt(v_max if amsgrad else v))
        finals[amsgrad], regrets[amsgrad] = x[0], p.average_regret(np.array(xs))[-1]
    assert finals[False] == 1.0  # Adam sits at the worst point of the feasible set
    assert regrets[False] > 0.9 * 2 * (C - 2) / 3  # near the regret of staying at +1
    assert finals[True] < -0.95  # AMSGrad approaches x* = -1
    assert regrets[True] < 0.05


# ------------------------------------------------------------ finite sums


FINITE_SUMS = {
    "least_squares": lambda: random_least_squares(0, 17, 4, 0.1),
    "logistic": lambda: random_logistic(1, 23, 3, 0.01),
    "softmax": lambda: random_softmax(2, 19, 3, 3, 0.01),
}


@pytest.mark.parametrize("name", sorted(FINITE_SUMS))
def test_finite_sum_batches_agree_with_the_full_objective(name):
    p = FINITE_SUMS[name]()
    rng = np.random.default_rng(5)
    w = rng.standard_normal(p.dim)
    every = np.arange(p.n)
    assert p.value_batch(w, every) == pytest.approx(p.value(w), rel=1e-13)
    np.testing.assert_allclose(p.grad_batch(w, every), p.grad(w), rtol=1e-12, atol=1e-14)
    idx = rng.choice(p.n, size=7, replace=False)
    G = p.per_example_grads(w, idx)
    assert G.shape == (7, p.dim)
    np.testing.assert_allclose(G.mean(axis=0), p.grad_batch(w, idx), rtol=1e-12, atol=1e-14)
    # each row is the gradient of the one-example objective f_i
    i = int(idx[0])
    assert_close(G[0], fd_grad(lambda z: p.value_batch(z, [i]), w))
    np.testing.assert_allclose(p.per_example_grads(w).mean(axis=0), p.grad(w), rtol=1e-12, atol=1e-14)
    # the mean of the f_i is f
    per_value = np.mean([p.value_batch(w, [j]) for j in range(p.n)])
    assert per_value == pytest.approx(p.value(w), rel=1e-12)


@pytest.mark.parametrize("name", sorted(FINITE_SUMS))
def test_L_max_bounds_every_example(name):
    p = FINITE_SUMS[name]()
    rng = np.random.default_rng(6)
    ratios = []
    for _ in range(30):
        x, y = rng.standard_normal((2, p.dim))
        diff = p.per_example_grads(x) - p.per_example_grads(y)
        ratios.append(np.linalg.norm(diff, axis=1) / np.linalg.norm(x - y))
    assert np.max(ratios) <= p.L_max * (1 + 1e-10)
    assert p.L <= p.L_max * (1 + 1e-12)


def test_least_squares_L_max_is_attained():
    p = random_least_squares(0, 17, 4, 0.1)
    i = int(np.argmax(np.sum(p.A**2, axis=1)))
    x = np.zeros(4)
    y = p.A[i]  # along a_i the i-th Hessian a_i a_i^T + l2 I has eigenvalue ||a_i||^2 + l2
    diff = p.per_example_grads(y, [i]) - p.per_example_grads(x, [i])
    assert np.linalg.norm(diff) / np.linalg.norm(y) == pytest.approx(p.L_max, rel=1e-12)


BATCHED = {
    "quadratic": lambda: Quadratic.with_condition(20.0, dim=4, seed=1),
    "least_squares": lambda: random_least_squares(0, 17, 4, 0.1),
    "logistic": lambda: random_logistic(1, 23, 4, 0.01),
    "softmax": lambda: random_softmax(2, 19, 2, 2, 0.01),
    "rosenbrock": lambda: Rosenbrock(),
    "wavy": lambda: Wavy(),
    "reddi": lambda: ReddiCounterexample(),
}


@pytest.mark.parametrize("name", sorted(BATCHED))
def test_batched_evaluation_equals_row_by_row(name):
    p = BATCHED[name]()
    assert p.batched
    thetas = np.random.default_rng(3).standard_normal((5, p.dim))
    values = p.value(thetas)
    grads = p.grad(thetas)
    assert values.shape == (5,) and grads.shape == (5, p.dim)
    for k in range(5):
        assert values[k] == pytest.approx(p.value(thetas[k]), rel=1e-13, abs=1e-15)
        np.testing.assert_allclose(grads[k], p.grad(thetas[k]), rtol=1e-13, atol=1e-15)
    if hasattr(p, "grad_batch"):
        idx = np.array([0, 3, 4])
        gb = p.grad_batch(thetas, idx)
        for k in range(5):
            np.testing.assert_allclose(gb[k], p.grad_batch(thetas[k], idx), rtol=1e-13, atol=1e-15)


def test_float32_parameters_give_float32_gradients():
    for p in (Quadratic([1.0, 3.0]), random_logistic(0, 10, 2, 0.1), Rosenbrock()):
        g = p.grad(np.ones(p.dim, dtype=np.float32))
        assert g.dtype == np.float32


def test_accuracy_counts_correct_predictions():
    X = np.array([[1.0], [-1.0], [2.0]])
    p = LogisticRegression(X, np.array([1, 1, 0]), l2=0.0)
    # w = 1 predicts [1, 0, 1]: only the first example is right
    assert p.accuracy(np.array([1.0])) == pytest.approx(1 / 3)
    s = SoftmaxRegression(X, np.array([1, 1, 0]), n_classes=2)
    W = np.array([[0.0, 1.0]])  # class 1 wins when x > 0
    assert s.accuracy(W.ravel()) == pytest.approx(1 / 3)
    assert s.accuracy(W.ravel(), X=np.array([[-3.0]]), y=np.array([0])) == 1.0


def test_default_hvp_is_a_central_difference_of_grad():
    class Cosh(Problem):
        """f(x) = sum_i cosh(x_i), Hessian diag(cosh(x))."""

        dim = 3

        def _value(self, theta):
            return np.sum(np.cosh(theta), axis=-1)

        def _grad(self, theta):
            return np.sinh(theta)

    p = Cosh()
    x = np.array([0.3, -1.2, 2.0])
    v = np.array([1.0, 2.0, -0.5])
    np.testing.assert_allclose(p.hvp(x, v), np.cosh(x) * v, rtol=1e-8)
    np.testing.assert_array_equal(p.hvp(x, np.zeros(3)), np.zeros(3))


# ------------------------------------------------------------ synthetic


def test_synthetic_data_are_deterministic():
    A1, b1 = make_least_squares(20, 3, noise=0.1, seed=4)
    A2, b2 = make_least_squares(20, 3, noise=0.1, seed=4)
    np.testing.assert_array_equal(A1, A2)
    np.testing.assert_array_equal(b1, b2)
    assert not np.array_equal(A1, make_least_squares(20, 3, noise=0.1, seed=5)[0])
    X1, y1 = make_classification(30, 4, n_classes=3, seed=2)
    X2, y2 = make_classification(30, 4, n_classes=3, seed=2)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert np.bincount(y1).tolist() == [10, 10, 10]


def test_noise_free_least_squares_recovers_the_coefficients():
    A, b, x_true = make_least_squares(50, 5, noise=0.0, seed=1, return_coef=True)
    np.testing.assert_allclose(LeastSquares(A, b).minimizer, x_true, atol=1e-12)
    assert LeastSquares(A, b).f_star < 1e-25


# ------------------------------------------------------------ bad input


def test_bad_inputs_raise_value_errors_naming_the_argument():
    q = Quadratic([1.0, 2.0])
    with pytest.raises(ValueError, match=r"theta must have shape \(2,\) or \(k, 2\).*got shape \(3,\)"):
        q.grad(np.zeros(3))
    with pytest.raises(ValueError, match=r"eigenvalues\[1\] = -0.5"):
        Quadratic([1.0, -0.5])
    with pytest.raises(ValueError, match=r"eigenvalues\[0\] = 0.0"):
        Quadratic([0.0, 1.0])
    with pytest.raises(ValueError, match=r"kappa must be >= 1, got 0.5"):
        Quadratic.with_condition(0.5)
    with pytest.raises(ValueError, match=r"center must have shape \(2,\), got shape \(3,\)"):
        Quadratic([1.0, 2.0], center=np.zeros(3))
    A, b = make_least_squares(10, 3)
    with pytest.raises(ValueError, match=r"l2 must be >= 0, got -0.1"):
        LeastSquares(A, b, l2=-0.1)
    with pytest.raises(ValueError, match=r"b has length 9 but A has 10 rows"):
        LeastSquares(A, b[:9])
    X, y = make_classification(10, 3)
    with pytest.raises(ValueError, match=r"y has length 8 but X has 10 rows"):
        LogisticRegression(X, y[:8], l2=0.1)
    with pytest.raises(ValueError, match=r"y must hold labels in \{0, 1\} or \{-1, 1\}, got 2"):
        LogisticRegression(X, np.where(y == 1, 2, 0), l2=0.1)
    with pytest.raises(ValueError, match=r"l2 must be >= 0, got -1"):
        LogisticRegression(X, y, l2=-1)
    with pytest.raises(ValueError, match=r"y must be in \{0, ..., 2\} \(n_classes=3\), got 5"):
        SoftmaxRegression(X, np.where(y == 1, 5, 0), n_classes=3)
    with pytest.raises(ValueError, match=r"y must be in .* got -1"):
        SoftmaxRegression(X, y - 1, n_classes=3)
    p = LogisticRegression(X, y, l2=0.1)
    with pytest.raises(ValueError, match=r"idx must be in \[0, 10\) \(n=10\), got 10"):
        p.grad_batch(np.zeros(3), np.array([0, 10]))
    with pytest.raises(ValueError, match=r"idx must hold at least one"):
        p.grad_batch(np.zeros(3), np.array([], dtype=int))
    with pytest.raises(ValueError, match=r"v must have shape \(3,\) for LogisticRegression, got shape \(2,\)"):
        p.hvp(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"C must be > 2, got 2.0"):
        ReddiCounterexample(C=2)
    with pytest.raises(ValueError, match=r"t must be an integer >= 0, got 1.5"):
        ReddiCounterexample().grad_at(np.zeros(1), 1.5)
    with pytest.raises(ValueError, match=r"thetas must lie in \[-1, 1\], got thetas\[1\] = 2.0"):
        ReddiCounterexample().regret(np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match=r"a must be > 0, got 0.0"):
        Wavy(a=0.0)
    with pytest.raises(ValueError, match=r"b must be > 0, got -1.0"):
        Rosenbrock(b=-1.0)
    with pytest.raises(ValueError, match=r"overparameterized=True needs d > n, got d=3, n=10"):
        make_least_squares(10, 3, overparameterized=True)


@pytest.mark.parametrize("name", sorted(FINITE_SUMS))
def test_per_example_values_average_to_value_batch(name):
    # f_i(theta) with the regularizer inside every f_i: entry i is the one-example objective,
    # and the mean over any index set is value_batch (over all examples, the full objective)
    p = FINITE_SUMS[name]()
    rng = np.random.default_rng(7)
    w = rng.standard_normal(p.dim)
    per = p.per_example_values(w)
    assert per.shape == (p.n,)
    assert per.mean() == pytest.approx(p.value(w), rel=1e-13)
    idx = rng.choice(p.n, size=6, replace=False)
    sub = p.per_example_values(w, idx)
    assert sub.mean() == pytest.approx(p.value_batch(w, idx), rel=1e-13)
    for j, i in enumerate(idx):
        assert sub[j] == pytest.approx(p.value_batch(w, [int(i)]), rel=1e-13)
    # batched problems accept a stack of parameters: one row of losses per parameter vector
    W = rng.standard_normal((3, p.dim))
    stack = p.per_example_values(W, idx)
    assert stack.shape == (3, 6)
    for k in range(3):
        np.testing.assert_allclose(stack[k], p.per_example_values(W[k], idx), rtol=1e-13)


def test_per_example_values_closed_forms():
    # at theta = 0 every logistic loss is log 2 and every softmax loss log K (uniform prediction);
    # least squares: f_i(x) = (a_i^T x - b_i)^2 / 2 + l2/2 |x|^2, at x = 0 it is b_i^2 / 2
    lg = random_logistic(1, 23, 3, 0.0)
    np.testing.assert_allclose(lg.per_example_values(np.zeros(3)), np.log(2.0), rtol=1e-15)
    sm = random_softmax(2, 19, 3, 4, 0.0)
    np.testing.assert_allclose(sm.per_example_values(np.zeros(sm.dim)), np.log(4.0), rtol=1e-15)
    ls = random_least_squares(0, 17, 4, 0.5)
    np.testing.assert_allclose(ls.per_example_values(np.zeros(4)), ls.b**2 / 2, rtol=1e-15)
    x = np.ones(4)
    np.testing.assert_allclose(ls.per_example_values(x), (ls.A @ x - ls.b) ** 2 / 2 + 0.25 * 4, rtol=1e-13)


@pytest.mark.parametrize("name", sorted(FINITE_SUMS))
def test_grad_batches_is_one_minibatch_gradient_per_row(name):
    p = FINITE_SUMS[name]()
    rng = np.random.default_rng(8)
    W = rng.standard_normal((4, p.dim))
    idx = rng.integers(p.n, size=(4, 3))
    idx[0] = idx[0, 0]  # repeated indices count with their multiplicity
    G = p.grad_batches(W, idx)
    assert G.shape == (4, p.dim)
    for r in range(4):
        np.testing.assert_allclose(G[r], p.per_example_grads(W[r], idx[r]).mean(axis=0), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(G[r], p.grad_batch(W[r], idx[r]), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"idx must have shape \(R, B\) with R = 4 and B >= 1, got shape \(3, 3\)"):
        p.grad_batches(W, idx[:3])
    with pytest.raises(ValueError, match=rf"idx must be in \[0, {p.n}\)"):
        p.grad_batches(W, idx + p.n)
