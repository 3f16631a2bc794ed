"""steplab.linesearch against the definition of Armijo backtracking and the closed form of a
quadratic along a line: f(x - t g) = f(x) - t ||g||^2 + t^2/2 g^T H g."""

import numpy as np
import pytest

from steplab.linesearch import LineSearchError, armijo, gd_armijo
from steplab.problems import LogisticRegression, Quadratic, Rosenbrock, make_classification


def _quadratic(eigenvalues=(0.01, 0.3, 1.0, 4.0), seed=5):
    return Quadratic(list(eigenvalues), seed=seed, center=np.linspace(-1.0, 1.0, len(eigenvalues)))


def _hessian(q):
    Q = q.eigenvectors
    return Q @ np.diag(q.eigenvalues) @ Q.T


def _logistic():
    X, y = make_classification(120, 5, seed=1)
    return LogisticRegression(X, y, l2=0.05)


# ---------------------------------------------------------------- the definition


@pytest.mark.parametrize("make", [Rosenbrock, _logistic, _quadratic])
@pytest.mark.parametrize("t0,beta,c", [(1.0, 0.5, 1e-4), (50.0, 0.3, 0.5), (0.01, 0.8, 0.9)])
def test_every_step_is_the_first_accepted_trial(make, t0, beta, c):
    """Recomputed from the trajectory with fresh calls to value and grad: each update is
    theta_{k+1} = theta_k - t_k g_k with t_k = t0 beta^j, the sufficient-decrease condition
    f(theta_{k+1}) <= f(theta_k) - c t_k ||g_k||^2 holds, and the previous trial t_k / beta (if any)
    violates it, so t_k is the first accepted trial. n_evals[k] = j + 1."""
    p = make()
    theta0 = np.array([-1.2, 1.0]) if isinstance(p, Rosenbrock) else p.init_params(0)
    h = gd_armijo(p, 40, t0=t0, beta=beta, c=c, theta0=theta0, keep_trajectory=True)
    assert h.n_steps == 40 and h.stop_reason == "steps"
    xs, t = h.trajectory, h.metrics["step_size"]
    np.testing.assert_array_equal(h.lr, t)
    for k in range(h.n_steps):
        x, g = xs[k], p.grad(xs[k])
        g2 = g @ g
        np.testing.assert_allclose(xs[k + 1], x - t[k] * g, rtol=0, atol=1e-15 * (1 + np.abs(x).max()))
        assert p.value(xs[k + 1]) <= p.value(x) - c * t[k] * g2
        j = int(round(np.log(t[k] / t0) / np.log(beta)))
        assert t[k] == pytest.approx(t0 * beta**j, rel=1e-12) and j >= 0
        assert h.metrics["n_evals"][k] == j + 1
        if j > 0:
            t_prev = t[k] / beta
            assert not p.value(x - t_prev * g) <= p.value(x) - c * t_prev * g2
    np.testing.assert_allclose(h.loss, [p.value(x) for x in xs], rtol=1e-14)
    np.testing.assert_allclose(h.grad_norm, [np.linalg.norm(p.grad(x)) for x in xs[:-1]], rtol=1e-14)
    assert np.all(np.diff(h.loss) <= 0)


# ---------------------------------------------------------------- quadratics: exact predictions


def test_accepted_step_on_quadratic_is_predicted_exactly_and_bounded():
    """On f(x) = 1/2 (x - x*)^T H (x - x*), with g = H (x - x*),

        f(x - t g) = f(x) - t ||g||^2 + t^2/2 g^T H g,

    so t is accepted iff t <= tau := 2 (1 - c) ||g||^2 / (g^T H g). The search therefore returns the
    largest t0 beta^j <= tau. Since g^T H g <= L ||g||^2, tau >= 2 (1 - c)/L: if t0 is rejected,
    the accepted t follows the rejected t/beta > tau >= 2(1 - c)/L, so t > 2 beta (1 - c)/L; if t0 is
    accepted, t = t0. Hence t >= min(t0, 2 beta (1 - c)/L)."""
    q = _quadratic()
    H, L = _hessian(q), q.L
    rng = np.random.default_rng(0)
    for t0, beta, c in [(100.0, 0.5, 1e-4), (10.0, 0.7, 0.5), (1.0 / 4.0, 0.5, 0.3), (3.0, 0.2, 0.9)]:
        t_min = min(t0, 2 * beta * (1 - c) / L)
        for _ in range(25):
            x = q.center + rng.standard_normal(4) * rng.choice([1e-3, 1.0, 1e3])
            g = H @ (x - q.center)
            tau = 2 * (1 - c) * (g @ g) / (g @ H @ g)
            j = 0 if t0 <= tau else int(np.ceil(np.log(tau / t0) / np.log(beta)))
            t, n_evals = armijo(q, x, g, t0=t0, beta=beta, c=c)
            assert t == pytest.approx(t0 * beta**j, rel=1e-12)
            assert n_evals == 1 + (j + 1)  # f(x) plus j + 1 trials
            assert t >= t_min * (1 - 1e-12)


def test_threshold_is_sharp_along_the_top_eigenvector():
    """With x - x* along the top eigenvector, g^T H g = L ||g||^2, so tau = 2 (1 - c)/L exactly:
    t0 just below it is accepted at once, t0 just above it is halved once."""
    q = _quadratic()
    top = q.eigenvectors[:, np.argmax(q.eigenvalues)]
    x = q.center + 3.0 * top
    g = q.grad(x)
    for c in (1e-4, 0.5, 0.9):
        tau = 2 * (1 - c) / q.L
        assert armijo(q, x, g, t0=0.999 * tau, c=c, f0=q.value(x)) == (pytest.approx(0.999 * tau), 1)
        assert armijo(q, x, g, t0=1.001 * tau, c=c, f0=q.value(x)) == (pytest.approx(0.5 * 1.001 * tau), 2)


@pytest.mark.parametrize("c", [1e-4, 0.25, 0.5])
def test_no_backtracking_when_t0_at_most_one_over_L(c):
    """t0 <= 1/L <= 2(1 - c)/L for c <= 1/2, so by the threshold above every first trial is accepted:
    one evaluation per step and the run is GD with constant step t0."""
    q = _quadratic()
    for t0 in (1.0 / q.L, 0.3 / q.L):
        h = gd_armijo(q, 60, t0=t0, c=c, theta0=q.center + 5.0)
        np.testing.assert_array_equal(h.metrics["n_evals"], np.ones(60))
        np.testing.assert_array_equal(h.metrics["step_size"], np.full(60, t0))


def test_linear_rate_under_strong_convexity():
    """Sufficient decrease with t_k >= t_min and the PL inequality ||g||^2 >= 2 mu (f - f*) give
    f_{k+1} - f* <= (1 - 2 c mu t_min)(f_k - f*)."""
    q = _quadratic((0.1, 0.5, 2.0))
    for t0, beta, c in [(100.0, 0.5, 0.5), (1.0, 0.5, 1e-4), (20.0, 0.9, 0.3)]:
        t_min = min(t0, 2 * beta * (1 - c) / q.L)
        h = gd_armijo(q, 80, t0=t0, beta=beta, c=c, theta0=q.center + 10.0)
        gap = h.loss - q.f_star
        k = np.arange(gap.size)
        assert np.all(gap <= (1 - 2 * c * q.mu * t_min) ** k * gap[0] * (1 + 1e-10) + 1e-15)


# ---------------------------------------------------------------- trees, callables, stopping


def test_dict_params_and_plain_callable_agree_with_flat_array():
    d = {"W": np.array([[1.0, 3.0], [2.0, 0.5]]), "b": np.array([5.0])}

    def f_dict(th):
        return 0.5 * sum(float(np.sum(d[k] * th[k] ** 2)) for k in th)

    flat_d = np.concatenate([d["b"], d["W"].ravel()])

    def f_flat(x):
        return 0.5 * float(np.sum(flat_d * x**2))

    th = {"W": np.array([[1.0, -2.0], [0.5, 1.0]]), "b": np.array([0.3])}
    g = {k: d[k] * th[k] for k in th}
    x = np.concatenate([th["b"], th["W"].ravel()])
    assert armijo(f_dict, th, g, t0=2.0) == armijo(f_flat, x, flat_d * x, t0=2.0)


def test_grad_tol_stops_and_records_reason():
    q = _quadratic()
    h = gd_armijo(q, 10_000, t0=10.0, theta0=q.center + 1.0, grad_tol=1e-6)
    assert h.stop_reason == "grad_tol" and h.n_steps < 10_000 and "grad_tol" in h.reason
    assert np.linalg.norm(q.grad(h.params)) <= 1e-6 < h.grad_norm.min()


def test_wrong_gradient_ends_in_line_search_error():
    q = _quadratic()
    x = q.center + 1.0
    with pytest.raises(LineSearchError, match="after 10 backtracks"):
        armijo(q, x, -q.grad(x), max_backtracks=10)  # an ascent direction: nothing is accepted

    class WrongGrad(Quadratic):
        def grad(self, theta):
            return -super().grad(theta)

    w = WrongGrad([1.0, 2.0], rotate=False)
    h = gd_armijo(w, 5, max_backtracks=10, theta0=np.ones(2))
    assert h.stop_reason == "line_search" and h.n_steps == 0 and not h.diverged
    np.testing.assert_array_equal(h.params, np.ones(2))


def test_validation():
    q = _quadratic()
    x = q.center + 1.0
    g = q.grad(x)
    with pytest.raises(ValueError, match="t0 must be > 0, got 0.0"):
        armijo(q, x, g, t0=0.0)
    with pytest.raises(ValueError, match=r"beta must be in \(0, 1\), got 1.0"):
        armijo(q, x, g, beta=1.0)
    with pytest.raises(ValueError, match=r"c must be in \(0, 1\), got 0.0"):
        armijo(q, x, g, c=0.0)
    with pytest.raises(ValueError, match="max_backtracks must be an integer >= 0, got -1"):
        armijo(q, x, g, max_backtracks=-1)
    with pytest.raises(ValueError, match="problem_or_f must be a problem with .value or a callable"):
        armijo(3.0, x, g)
    with pytest.raises(ValueError, match="grad has shape"):
        armijo(q, x, g[:2])
    with pytest.raises(ValueError, match="steps must be an integer >= 0, got -2"):
        gd_armijo(q, -2)
    with pytest.raises(ValueError, match="grad_tol must be >= 0, got -1.0"):
        gd_armijo(q, 3, grad_tol=-1.0)


def test_armijo_rejects_a_non_finite_gradient():
    q = Quadratic([1.0, 0.1])
    with pytest.raises(ValueError, match="grad must be finite"):
        armijo(q, np.ones(2), np.array([np.nan, 1.0]))
