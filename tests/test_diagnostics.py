"""steplab.diagnostics against the math: exact values where they exist, unbiasedness within stated
statistical tolerances where the diagnostic is a Monte Carlo estimate."""

import itertools

import numpy as np
import pytest

from steplab import diagnostics as dg
from steplab.problems import LeastSquares, Quadratic


def _least_squares(n=40, d=3, l2=0.1, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d))
    b = A @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n)
    theta = rng.standard_normal(d)
    return LeastSquares(A, b, l2=l2), A, b, l2, theta


def _per_example_grads(A, b, l2, theta):
    # f_i = 1/2 (a_i^T theta - b_i)^2 + l2/2 ||theta||^2
    return (A @ theta - b)[:, None] * A + l2 * theta


def _mean_and_stderr(samples):
    s = np.asarray(samples, dtype=float)
    return s.mean(), s.std(ddof=1) / np.sqrt(s.size)


# ---------------------------------------------------------------- norms and ratios


def test_grad_norm_global_over_dict():
    assert dg.grad_norm(np.array([3.0, 4.0])) == pytest.approx(5.0)
    g = {"W": np.array([[1.0, 2.0], [2.0, 0.0]]), "b": np.array([4.0], dtype=np.float32)}
    assert dg.grad_norm(g) == pytest.approx(5.0)  # sqrt(1 + 4 + 4 + 16)


def test_update_ratio():
    assert dg.update_ratio(np.array([3.0, 4.0]), np.array([6.0, 8.0])) == pytest.approx(0.5)
    u = {"W": np.array([0.3, 0.4]), "b": np.array([0.0])}
    p = {"W": np.array([6.0, 8.0]), "b": np.array([2.0])}
    assert dg.update_ratio(u, p) == pytest.approx(0.5 / np.sqrt(104.0))
    assert dg.update_ratio(u, p, per_array=True) == pytest.approx({"W": 0.05, "b": 0.0})
    assert dg.update_ratio(np.zeros(2), np.zeros(2)) == 0.0
    assert dg.update_ratio(np.ones(2), np.zeros(2)) == np.inf


# ---------------------------------------------------------------- sharpness


def test_sharpness_is_top_eigenvalue_of_quadratic():
    q = Quadratic([0.3, 2.0, 7.0, 6.5], seed=3)
    assert dg.sharpness(q, q.init_params(1), iters=500) == pytest.approx(7.0, rel=1e-6)


def test_sharpness_least_squares_matches_eigvalsh():
    p, A, b, l2, theta = _least_squares(n=30, d=5, l2=0.05)
    top = np.linalg.eigvalsh(A.T @ A / 30 + l2 * np.eye(5))[-1]
    assert dg.sharpness(p, theta, iters=1000, tol=1e-13) == pytest.approx(top, rel=1e-6)


def test_sharpness_on_dict_params():
    class DictQuadratic:
        # f = 1/2 (sum_j d_W[j] W_j^2 + d_b b^2): Hessian diag(1, 3, 2, 5)
        d = {"W": np.array([[1.0, 3.0], [2.0, 0.0]]), "b": np.array([5.0])}

        def hvp(self, theta, v):
            return {k: self.d[k] * v[k] for k in v}

    theta = {"W": np.ones((2, 2)), "b": np.ones(1)}
    assert dg.sharpness(DictQuadratic(), theta, iters=500) == pytest.approx(5.0, rel=1e-6)


def test_sharpness_validates():
    with pytest.raises(ValueError, match="iters must be an integer >= 1, got 0"):
        dg.sharpness(Quadratic([1.0, 2.0]), np.zeros(2), iters=0)


# ---------------------------------------------------------------- minibatch variance


@pytest.mark.parametrize("B", [1, 5, 20])
@pytest.mark.parametrize("replace", [False, True])
def test_minibatch_variance_matches_sigma2_over_B(B, replace):
    p, A, b, l2, theta = _least_squares()
    n = A.shape[0]
    G_i = _per_example_grads(A, b, l2, theta)
    sigma2 = np.mean(np.sum((G_i - G_i.mean(0)) ** 2, axis=1))
    expected = sigma2 / B if replace else sigma2 / B * (n - B) / (n - 1)
    # 20 independent estimates of 50 batches each; their mean is within 4 standard errors.
    est = [dg.minibatch_variance(p, theta, B, n_batches=50, seed=s, replace=replace) for s in range(20)]
    mean, se = _mean_and_stderr(est)
    assert abs(mean - expected) <= 4 * se, (mean, expected, se)


def test_minibatch_variance_full_batch_is_zero():
    p, *_, theta = _least_squares()
    assert dg.minibatch_variance(p, theta, p.n, n_batches=3) == pytest.approx(0.0, abs=1e-24)


def test_minibatch_variance_validates():
    p, *_, theta = _least_squares(n=10)
    with pytest.raises(ValueError, match="batch_size must be <= n = 10"):
        dg.minibatch_variance(p, theta, 11)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        dg.minibatch_variance(p, theta, 0)
    with pytest.raises(ValueError, match="finite-sum"):
        dg.minibatch_variance(Quadratic([1.0, 2.0]), np.zeros(2), 1)


# ---------------------------------------------------------------- noise scale


def _true_noise(A, b, l2, theta):
    G_i = _per_example_grads(A, b, l2, theta)
    G = G_i.mean(0)
    return np.mean(np.sum((G_i - G) ** 2, axis=1)), G @ G


def test_noise_scale_exact_matches_definition():
    p, A, b, l2, theta = _least_squares()
    tr, g2 = _true_noise(A, b, l2, theta)
    ns = dg.noise_scale_exact(p, theta)
    assert ns.trace_sigma == pytest.approx(tr, rel=1e-12)
    assert ns.grad_sq == pytest.approx(g2, rel=1e-12)
    assert ns.b_simple == pytest.approx(tr / g2, rel=1e-12)


def _batch_sq_norms(G_i, B, replace):
    """Every batch of size B with its probability: (|g_B|^2 values, weights)."""
    n = len(G_i)
    if replace:  # ordered draws with replacement, all n^B equally likely
        batches = itertools.product(range(n), repeat=B)
    else:  # subsets, all C(n, B) equally likely
        batches = itertools.combinations(range(n), B)
    sq = np.array([np.sum(G_i[list(c)].mean(0) ** 2) for c in batches])
    return sq, np.full(sq.size, 1.0 / sq.size)


@pytest.mark.parametrize("replace", [True, False])
def test_noise_scale_estimators_are_exactly_unbiased(replace):
    # The estimators are linear in |g_small|^2 and |g_big|^2, so their expectation is the estimator
    # applied to E|g_B|^2, computed here exactly by enumerating every batch of a 7-example problem.
    p, A, b, l2, theta = _least_squares(n=7)
    tr, g2 = _true_noise(A, b, l2, theta)
    G_i = _per_example_grads(A, b, l2, theta)
    e_small = np.dot(*_batch_sq_norms(G_i, 2, replace))
    e_big = np.dot(*_batch_sq_norms(G_i, 4, replace))
    ns = dg.noise_scale_from_norms(e_small, e_big, 2, 4, n=None if replace else 7)
    assert ns.trace_sigma == pytest.approx(tr, rel=1e-10)
    assert ns.grad_sq == pytest.approx(g2, rel=1e-10)
    assert ns.b_simple == pytest.approx(tr / g2, rel=1e-10)


@pytest.mark.parametrize("replace", [True, False])
def test_noise_scale_estimators_unbiased_by_sampling(replace):
    p, A, b, l2, theta = _least_squares(n=10)
    tr, g2 = _true_noise(A, b, l2, theta)
    draws = [dg.noise_scale(p, theta, 2, 8, n_batches=5, seed=s, replace=replace) for s in range(300)]
    # The mean of 300 independent draws is within 4 standard errors of the truth
    # (a false alarm has probability about 6e-5).
    for got, truth in [([d.trace_sigma for d in draws], tr), ([d.grad_sq for d in draws], g2)]:
        mean, se = _mean_and_stderr(got)
        assert abs(mean - truth) <= 4 * se, (mean, truth, se)


def test_noise_scale_without_replacement_full_batch_gives_exact_grad_sq():
    # c_n = (n - n)/(n (n-1)) = 0, so the |G|^2 estimate is |g_big|^2 = |G|^2 exactly.
    p, A, b, l2, theta = _least_squares()
    _, g2 = _true_noise(A, b, l2, theta)
    ns = dg.noise_scale(p, theta, 4, p.n, n_batches=1, replace=False)
    assert ns.grad_sq == pytest.approx(g2, rel=1e-10)


def test_noise_scale_consistent_with_many_batches():
    p, A, b, l2, theta = _least_squares()
    exact = dg.noise_scale_exact(p, theta).b_simple
    # With 3000 batches per size the ratio's spread across seeds is about 4% of its value here.
    est = dg.noise_scale(p, theta, 2, 20, n_batches=3000, seed=1).b_simple
    assert est == pytest.approx(exact, rel=0.15)


def test_noise_scale_validates():
    p, *_, theta = _least_squares()
    with pytest.raises(ValueError, match="batch_small must be < batch_big, got 8 and 4"):
        dg.noise_scale(p, theta, 8, 4)


# ---------------------------------------------------------------- adaptive step sizes


def test_effective_step_size():
    v = np.array([0.0, 0.04, 1.0])
    out = dg.effective_step_size(0.1, v, eps=1e-8)
    np.testing.assert_allclose(out, [0.1 / 1e-8, 0.1 / (0.2 + 1e-8), 0.1 / (1.0 + 1e-8)], rtol=1e-14)
    d = dg.effective_step_size(1e-3, {"W": np.full((2, 2), 1e-6)}, eps=0.0)
    np.testing.assert_allclose(d["W"], np.full((2, 2), 1.0), rtol=1e-12)
    with pytest.raises(ValueError, match=r"v_hat\['W'\] must be >= 0"):
        dg.effective_step_size(0.1, {"W": np.array([-1.0])})
    with pytest.raises(ValueError, match="lr must be >= 0, got -1"):
        dg.effective_step_size(-1, v)


# ---------------------------------------------------------------- loss ratio


def test_loss_ratio_of_geometric_losses():
    L = 2.0 + 3.0 * 0.8 ** np.arange(10)
    np.testing.assert_allclose(dg.loss_ratio(L, f_star=2.0), np.full(9, 0.8), rtol=1e-12)
    np.testing.assert_allclose(dg.loss_ratio(L, window=3, f_star=2.0), np.full(7, 0.512), rtol=1e-12)


def test_loss_ratio_of_gd_on_quadratic_tends_to_slowest_mode():
    # GD on f = 1/2 (0.1 x^2 + y^2) with eta = 0.5: x_t = 0.95^t x_0, y_t = 0.5^t y_0, so
    # f_{t+1}/f_t -> 0.95^2 and the loss ratio diagnoses the slowest direction.
    t = np.arange(60)
    f = 0.5 * (0.1 * (0.95**t) ** 2 + (0.5**t) ** 2)
    r = dg.loss_ratio(f)
    assert r[-1] == pytest.approx(0.95**2, rel=1e-9)
    assert np.all(r < 1)
    # a step above 2/L makes the ratio exceed 1
    f_bad = 0.5 * (1.0 - 2.5 * 1.0) ** (2 * t)
    assert np.all(dg.loss_ratio(f_bad) > 1)


# ---------------------------------------------------------------- sharpness: warm starts


def test_sharpness_from_the_top_eigenvector_is_exact_in_one_product():
    # v0 = top eigenvector: lambda_1 = v0^T H v0 = lambda_max with a single Hessian-vector product;
    # a random start needs many (its Rayleigh quotient is a weighted mean of all eigenvalues).
    q = Quadratic([0.3, 2.0, 7.0, 6.5], seed=3)
    top = q.eigenvectors[:, np.argmax(q.eigenvalues)]
    assert dg.sharpness(q, q.init_params(1), iters=1, v0=-4.0 * top) == pytest.approx(7.0, rel=1e-13)
    assert dg.sharpness(q, q.init_params(1), iters=1) < 0.99 * 7.0


def test_sharpness_warm_start_continues_the_power_iteration():
    # a iterations, then b more from the returned vector = a + b iterations from the same start
    # (tol=0: no early stop; eigenvalues 1 and 0.97 keep the iteration far from converged).
    q = Quadratic([1.0, 0.97, 0.5, 0.1], seed=2)
    theta = q.init_params(0)
    lam_a, v = dg.sharpness(q, theta, iters=7, tol=0.0, seed=4, return_vector=True)
    lam_ab = dg.sharpness(q, theta, iters=12, tol=0.0, v0=v)
    assert lam_ab == pytest.approx(dg.sharpness(q, theta, iters=19, tol=0.0, seed=4), rel=1e-13)
    assert lam_a < lam_ab < 1.0  # Rayleigh quotients of power iterates increase towards lambda_max
    np.testing.assert_allclose(np.linalg.norm(v), 1.0, rtol=1e-14)


def test_sharpness_returned_vector_is_an_eigenvector():
    p, A, b, l2, theta = _least_squares(n=30, d=5, l2=0.05)
    H = A.T @ A / 30 + l2 * np.eye(5)
    lam, v = dg.sharpness(p, theta, iters=2000, tol=1e-14, return_vector=True)
    assert np.linalg.norm(H @ v - lam * v) <= 1e-6 * lam


def test_sharpness_v0_on_dict_params_and_validation():
    class DictQuadratic:
        d = {"W": np.array([[1.0, 3.0], [2.0, 0.0]]), "b": np.array([5.0])}

        def hvp(self, theta, v):
            return {k: self.d[k] * v[k] for k in v}

    theta = {"W": np.ones((2, 2)), "b": np.ones(1)}
    v0 = {"W": np.zeros((2, 2)), "b": np.array([2.0])}  # the eigenvector of eigenvalue 5
    lam, v = dg.sharpness(DictQuadratic(), theta, iters=1, v0=v0, return_vector=True)
    assert lam == 5.0 and set(v) == {"W", "b"} and v["b"][0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="v0 must be finite and nonzero"):
        dg.sharpness(DictQuadratic(), theta, v0={"W": np.zeros((2, 2)), "b": np.zeros(1)})
    with pytest.raises(ValueError, match="v0 must have the structure of theta"):
        dg.sharpness(DictQuadratic(), theta, v0=np.ones(5))
    with pytest.raises(ValueError, match="v0 must have 3 entries like theta, got 2"):
        dg.sharpness(Quadratic([1.0, 2.0, 3.0]), np.zeros(3), v0=np.ones(2))


def test_sharpness_metric_with_warm_start_needs_two_products_per_measurement():
    # Constant Hessian, so a cold measurement costs the same number of products anywhere (same
    # random start). Once the first has converged, the next starts from the eigenvector:
    # lambda_1 and lambda_2 agree within tol and it stops after 2 products.
    from steplab import optim
    from steplab.run import minimize

    class Counting(Quadratic):
        calls = 0

        def hvp(self, theta, v):
            Counting.calls += 1
            return super().hvp(theta, v)

    q = Counting([0.2, 1.0, 3.0], seed=1)
    assert dg.sharpness(q, q.init_params(0), iters=200, tol=1e-10) == pytest.approx(3.0, rel=1e-9)
    cold, Counting.calls = Counting.calls, 0
    assert cold > 4

    def run(warm_start):
        Counting.calls = 0
        metric = dg.sharpness_metric(q, iters=200, tol=1e-10, warm_start=warm_start)
        h = minimize(q, optim.sgd(0.1), 50, metrics={"sharpness": metric}, metrics_every=10)
        np.testing.assert_array_equal(h.metric_steps, [0, 10, 20, 30, 40])
        np.testing.assert_allclose(h["sharpness"], 3.0, rtol=1e-9)
        return Counting.calls

    assert run(warm_start=True) == cold + 4 * 2
    assert run(warm_start=False) == 5 * cold


# ---------------------------------------------------------------- learning-rate range test


@pytest.mark.parametrize("L", [0.5, 3.0, 40.0])
@pytest.mark.parametrize("steps,smooth", [(60, 1), (100, 5), (200, 9)])
def test_lr_range_test_suggestion_below_two_over_L_in_one_dimension(L, steps, smooth):
    """On f(x) = L/2 x^2, GD multiplies f by (1 - eta L)^2 per step: < 1 iff 0 < eta < 2/L.

    Let D_j = f_{j+w} - f_j and j* the first argmin, with D_{j*} < 0. Suppose the last step of its
    window has eta_{j*+w-1} >= 2/L. Then f_{j*+w} >= f_{j*+w-1}. Not all of the window's steps are
    >= 2/L (else D_{j*} >= 0), so eta_{j*-1} < eta_{j*} < 2/L, with j* >= 1 because the first window
    lies below 2/L here; hence f_{j*} < f_{j*-1} and D_{j*-1} = f_{j*+w-1} - f_{j*-1} < D_{j*}, a
    contradiction. So every step of the window, its centre included, has eta < 2/L.
    The losses are the closed form f_{k+1} = f_0 prod_{i<=k} (1 - eta_i L)^2."""
    lr_min, lr_max = 1e-4 / L, 1e3 / L
    q = Quadratic([L], rotate=False)
    res = dg.lr_range_test(q, lr_min, lr_max, steps, theta0=np.array([3.0]), smooth=smooth)
    m = res.lrs.size
    np.testing.assert_allclose(res.lrs, lr_min * (lr_max / lr_min) ** (np.arange(m) / (steps - 1)), rtol=1e-12)
    assert lr_min * (lr_max / lr_min) ** ((smooth - 1) / (steps - 1)) < 2 / L  # the first window is below 2/L
    f0 = 0.5 * L * 9.0
    np.testing.assert_allclose(res.losses, f0 * np.cumprod((1 - res.lrs * L) ** 2), rtol=1e-9)
    assert res.history.diverged  # the test runs until the loss blows up
    assert 0 < res.suggested_lr < 2 / L
    # the documented rule, applied to the closed-form losses
    f = np.concatenate([[f0], f0 * np.cumprod((1 - res.lrs * L) ** 2)])
    j = int(np.argmin(f[smooth:] - f[:-smooth]))
    assert res.suggested_lr == res.lrs[j + (smooth - 1) // 2]


def test_lr_range_test_minibatch_is_seeded_and_validates():
    p, *_ = _least_squares(n=40)
    a = dg.lr_range_test(p, 1e-4, 10.0, 80, batch_size=8, seed=3)
    b = dg.lr_range_test(p, 1e-4, 10.0, 80, batch_size=8, seed=3)
    assert a.suggested_lr == b.suggested_lr
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.losses, a.history.loss[1:])
    q = Quadratic([1.0])
    with pytest.raises(ValueError, match="lr_min must be > 0, got 0.0"):
        dg.lr_range_test(q, 0.0, 1.0, 10)
    with pytest.raises(ValueError, match="lr_max must be > lr_min = 0.1, got 0.1"):
        dg.lr_range_test(q, 0.1, 0.1, 10)
    with pytest.raises(ValueError, match="steps must be an integer >= 2, got 1"):
        dg.lr_range_test(q, 0.1, 1.0, 1)
    with pytest.raises(ValueError, match="smooth must be an integer in \\[1, 10\\], got 11"):
        dg.lr_range_test(q, 0.1, 1.0, 10, smooth=11)
    with pytest.raises(ValueError, match="lower lr_min"):
        dg.lr_range_test(q, 10.0, 1e6, 10, theta0=np.array([1.0]))  # diverges at once


# ---------------------------------------------------------------- dense Hessian from Hessian-vector products


def test_hessian_of_a_quadratic_is_Q_diag_Q_transpose():
    lam = np.array([0.5, 1.0, 2.0, 8.0])
    q = Quadratic(lam, seed=3)
    H = dg.hessian(q, q.init_params(seed=1))
    Q = q.eigenvectors
    np.testing.assert_allclose(H, (Q * q.eigenvalues) @ Q.T, rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.linalg.eigvalsh(H), lam, rtol=1e-13)


def test_hessian_of_least_squares_is_AtA_over_n_plus_l2():
    problem, A, _, l2, theta = _least_squares(n=30, d=5, l2=0.3, seed=4)
    H = dg.hessian(problem, theta)
    np.testing.assert_allclose(H, A.T @ A / A.shape[0] + l2 * np.eye(5), rtol=1e-13, atol=1e-14)


def test_hessian_of_logistic_regression_matches_the_formula_and_the_method():
    from steplab.problems import LogisticRegression, make_classification

    X, y = make_classification(n=50, d=4, seed=5)
    problem = LogisticRegression(X, y, l2=0.1)
    theta = np.random.default_rng(6).standard_normal(problem.dim)
    # X^T diag(sigma(1 - sigma)) X / n + l2 I
    s = 1 / (1 + np.exp(-(X @ theta)))
    expected = (X.T * (s * (1 - s))) @ X / len(y) + 0.1 * np.eye(X.shape[1])
    H = dg.hessian(problem, theta)
    np.testing.assert_allclose(H, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(H, problem.hessian(theta), rtol=1e-12, atol=1e-14)


class _Quartic:
    """f(x) = sum x_i^4 / 4 + x_0 x_1, with a forward-difference hvp (not symmetric as a matrix)."""

    def grad(self, x):
        g = x**3
        g[0] += x[1]
        g[1] += x[0]
        return g

    def hvp(self, x, v):
        h = 1e-6
        return (self.grad(x + h * v) - self.grad(x)) / h


def test_hessian_symmetrizes_an_approximate_hvp():
    x = np.array([1.0, -2.0, 0.5])
    exact = np.diag(3 * x**2) + np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0.0]])
    M = np.column_stack([_Quartic().hvp(x, e) for e in np.eye(3)])
    assert not np.array_equal(M, M.T)  # the raw columns disagree in rounding
    H = dg.hessian(_Quartic(), x)
    np.testing.assert_array_equal(H, H.T)
    np.testing.assert_allclose(H, exact, rtol=0, atol=1e-4)  # forward differences: error O(h |f'''|)


class _DictQuadratic:
    """f = 1/2 z^T K z with z = concat(a, ravel(b)) (sorted keys a, b), params {"b": (2, 2), "a": (1,)}."""

    def __init__(self, K):
        self.K = K

    def hvp(self, theta, v):
        z = np.concatenate([v["a"].ravel(), v["b"].ravel()])
        w = self.K @ z
        return {"a": w[:1], "b": w[1:].reshape(2, 2)}


def test_hessian_on_dict_params_in_sorted_key_order():
    rng = np.random.default_rng(7)
    B = rng.standard_normal((5, 5))
    K = B @ B.T
    theta = {"b": np.zeros((2, 2)), "a": np.zeros(1)}
    np.testing.assert_allclose(dg.hessian(_DictQuadratic(K), theta), K, rtol=1e-15)


def test_hessian_validates():
    with pytest.raises(ValueError, match="hvp"):
        dg.hessian(object(), np.zeros(2))
    with pytest.raises(ValueError, match="at least one entry"):
        dg.hessian(Quadratic([1.0]), np.zeros(0))


# ---------------------------------------------------------------- mean of M oracle calls


def _var_of_squared_error(X, beta, N):
    r"""Exact variance of ||beta + mean of N i.i.d. draws of X||^2, X uniform over the rows (mean 0).

    With Sigma = E X X^T and Xbar the mean of N draws:
    Var ||Xbar||^2 = 2 tr(Sigma^2)/N^2 + (E||X||^4 - tr(Sigma)^2 - 2 tr(Sigma^2))/N^3 (expand
    ||sum X_i||^4 = sum_{ijkl} (X_i.X_j)(X_k.X_l); only i=j=k=l and the three pairings survive),
    Var 2 beta.Xbar = 4 beta^T Sigma beta / N, and 2 Cov(2 beta.Xbar, ||Xbar||^2) = 4 E[(beta.X)||X||^2]/N^2
    (only i=j=k survives in E[(beta.X_i)(X_j.X_k)]).
    """
    S = X.T @ X / len(X)
    tr, tr2 = np.trace(S), np.trace(S @ S)
    sq = np.sum(X**2, axis=1)
    v = 2 * tr2 / N**2 + (np.mean(sq**2) - tr**2 - 2 * tr2) / N**3
    return v + 4 * beta @ S @ beta / N + 4 * np.mean((X @ beta) * sq) / N**2


@pytest.mark.parametrize("B", [1, 3])
def test_oracle_mean_error_matches_sigma2_over_BM(B):
    # E||gbar_M - grad f||^2 = sigma^2/(B M): gbar_M is the mean of BM i.i.d. per-example gradients.
    # mse is a mean over R independent runs, so its standard deviation is sqrt(Var/R) with Var the exact
    # variance of one run's squared error (_var_of_squared_error); the check allows 4 of them per M.
    p, A, b, l2, theta = _least_squares()
    G_i = _per_example_grads(A, b, l2, theta)
    g = A.T @ (A @ theta - b) / len(b) + l2 * theta
    sigma2 = np.mean(np.sum((G_i - g) ** 2, axis=1))
    Ms, R = [1, 2, 4, 16, 64], 2000
    out = dg.oracle_mean_error(p, theta, B, Ms, R, seed=3)
    np.testing.assert_array_equal(out.Ms, Ms)
    assert out.sigma2 == pytest.approx(sigma2, rel=1e-12)
    assert out.bias2 == pytest.approx(0.0, abs=1e-24)
    np.testing.assert_allclose(out.predicted, sigma2 / (B * np.array(Ms)), rtol=1e-12)
    sd = np.sqrt([_var_of_squared_error(G_i - g, np.zeros(3), B * M) / R for M in Ms])
    assert np.all(np.abs(out.mse - sigma2 / (B * np.array(Ms))) <= 4 * sd), (out.mse, sigma2 / B / np.array(Ms), sd)
    # the reported standard error estimates the same standard deviation; a sample standard deviation of
    # R runs has relative error about sqrt((kurtosis - 1)/(4R)), a few percent at R = 2000, so 20% is > 4 of those
    np.testing.assert_allclose(out.se, sd, rtol=0.2)


def test_oracle_mean_error_of_a_clipped_oracle_levels_off_at_its_bias():
    # T(g_i) = g_i min(1, C/||g_i||): the mean of BM draws has mean grad f + beta, so the error is
    # ||beta||^2 + sigma_T^2/(BM), with beta and sigma_T^2 computed here from the clipped rows.
    p, A, b, l2, theta = _least_squares()
    G_i = _per_example_grads(A, b, l2, theta)
    g = A.T @ (A @ theta - b) / len(b) + l2 * theta
    C = 1.0
    T_i = G_i * np.minimum(1.0, C / np.linalg.norm(G_i, axis=1))[:, None]
    beta = T_i.mean(axis=0) - g
    sigma2_T = np.mean(np.sum((T_i - T_i.mean(axis=0)) ** 2, axis=1))
    assert beta @ beta > 0.1 * sigma2_T  # clipping really biases this oracle
    Ms, B, R = [1, 8, 256], 2, 2000
    out = dg.oracle_mean_error(p, theta, B, Ms, R, seed=4,
                               transform=lambda G: G * np.minimum(1.0, C / np.linalg.norm(G, axis=1))[:, None])
    assert out.bias2 == pytest.approx(beta @ beta, rel=1e-12)
    assert out.sigma2 == pytest.approx(sigma2_T, rel=1e-12)
    expected = beta @ beta + sigma2_T / (B * np.array(Ms))
    np.testing.assert_allclose(out.predicted, expected, rtol=1e-12)
    sd = np.sqrt([_var_of_squared_error(T_i - T_i.mean(axis=0), beta, B * M) / R for M in Ms])
    assert np.all(np.abs(out.mse - expected) <= 4 * sd), (out.mse, expected, sd)


def test_oracle_mean_error_replays_its_documented_draws_with_grad_batch():
    # call m takes integers(n, size=(R, B)) from default_rng(seed); run r's oracle is grad_batch(theta, idx[r])
    p, A, b, l2, theta = _least_squares()
    R, B, seed = 7, 4, 11
    rng = np.random.default_rng(seed)
    idx = [rng.integers(p.n, size=(R, B)) for _ in range(3)]
    calls = np.array([[p.grad_batch(theta, idx[m][r]) for r in range(R)] for m in range(3)])  # (M, R, d)
    out = dg.oracle_mean_error(p, theta, B, [3, 1], R, seed=seed)   # any order; results follow Ms
    for j, M in enumerate([3, 1]):
        err = np.sum((calls[:M].mean(axis=0) - p.grad(theta)) ** 2, axis=1)
        assert out.mse[j] == pytest.approx(err.mean(), rel=1e-12)
        assert out.se[j] == pytest.approx(err.std(ddof=1) / np.sqrt(R), rel=1e-10)


def test_oracle_mean_error_on_dict_params():
    from steplab.problems import MLP

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 3)), rng.integers(0, 2, 30)
    mlp = MLP(X, y, hidden=4, seed=0)
    theta = mlp.init_params(seed=0)
    pe = mlp.per_example_grads(theta)
    G_i = np.concatenate([pe[k].reshape(30, -1) for k in sorted(pe)], axis=1)    # global norm over every array
    g = np.concatenate([np.ravel(v) for _, v in sorted(mlp.grad(theta).items())])
    sigma2 = np.mean(np.sum((G_i - g) ** 2, axis=1))
    Ms, B, R = [1, 4], 5, 1000
    out = dg.oracle_mean_error(mlp, theta, B, Ms, R, seed=0)
    assert out.sigma2 == pytest.approx(sigma2, rel=1e-10)
    assert out.bias2 < 1e-20
    sd = np.sqrt([_var_of_squared_error(G_i - g, np.zeros(G_i.shape[1]), B * M) / R for M in Ms])
    assert np.all(np.abs(out.mse - sigma2 / (B * np.array(Ms))) <= 4 * sd), (out.mse, sd)


def test_oracle_mean_error_validates():
    p, *_, theta = _least_squares()
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        dg.oracle_mean_error(p, theta, 0, [1], 10)
    with pytest.raises(ValueError, match=r"n_runs must be an integer >= 2, got 1"):
        dg.oracle_mean_error(p, theta, 2, [1], 1)
    for bad in ([], [0, 1], [1.5], [[1, 2]]):
        with pytest.raises(ValueError, match="Ms must be a non-empty 1-D sequence of positive integers"):
            dg.oracle_mean_error(p, theta, 2, bad, 10)
    with pytest.raises(ValueError, match="transform must be None or callable, got 3"):
        dg.oracle_mean_error(p, theta, 2, [1], 10, transform=3)
    with pytest.raises(ValueError, match=r"transform must return per-example gradients of shape \(40, 3\)"):
        dg.oracle_mean_error(p, theta, 2, [1], 10, transform=lambda G: G[:5])
    with pytest.raises(ValueError, match="oracle_mean_error needs a finite-sum problem with attribute 'n'; Quadratic"):
        dg.oracle_mean_error(Quadratic([1.0, 2.0]), np.zeros(2), 2, [1], 10)
