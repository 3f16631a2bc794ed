"""Tests of steplab.finite_sum: estimators by enumeration, exact cost accounting, convergence."""

from itertools import combinations

import numpy as np
import pytest

from steplab import finite_sum as fs
from steplab.problems import LeastSquares, LogisticRegression, make_classification, make_least_squares


def logistic(n=200, d=10, l2=1e-2, seed=0):
    """L2-logistic regression on unit-norm rows, so L_max = 1/4 + l2."""
    X, y = make_classification(n, d, seed=seed)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return LogisticRegression(X, y, l2=l2)


class Counting:
    """Wraps a finite sum and counts per-example gradients actually computed."""

    def __init__(self, problem):
        self.p = problem
        self.n = problem.n
        self.f_star = problem.f_star
        self.count = 0

    def value(self, theta):
        return self.p.value(theta)

    def init_params(self, seed=0):
        return self.p.init_params(seed)

    def grad(self, theta):
        self.count += self.n
        return self.p.grad(theta)

    def grad_batch(self, theta, idx):
        self.count += len(idx)
        return self.p.grad_batch(theta, idx)

    def per_example_grads(self, theta, idx=None):
        self.count += self.n if idx is None else len(idx)
        return self.p.per_example_grads(theta, idx)


# ----------------------------------------------------------------- estimators


def test_svrg_estimator_is_unbiased_by_enumeration():
    p = logistic(n=12, d=4)
    rng = np.random.default_rng(1)
    theta, snap = rng.standard_normal(4), rng.standard_normal(4)
    snap_grad = p.grad(snap)
    # batch size 1: average over all n indices
    mean1 = np.mean([fs.svrg_estimator(p, theta, [i], snap, snap_grad) for i in range(p.n)], axis=0)
    np.testing.assert_allclose(mean1, p.grad(theta), rtol=0, atol=1e-12)
    # batch size 3: average over all C(12, 3) subsets drawn without replacement
    subsets = list(combinations(range(p.n), 3))
    mean3 = np.mean([fs.svrg_estimator(p, theta, list(s), snap, snap_grad) for s in subsets], axis=0)
    np.testing.assert_allclose(mean3, p.grad(theta), rtol=0, atol=1e-12)
    # and it is not the plain stochastic gradient: its terms differ per index
    assert not np.allclose(fs.svrg_estimator(p, theta, [0], snap, snap_grad), p.grad_batch(theta, [0]))


def test_svrg_estimator_variance_vanishes_at_the_snapshot_minimizer():
    p = logistic(n=12, d=4)
    x = p.minimizer
    g = [fs.svrg_estimator(p, x, [i], x, p.grad(x)) for i in range(p.n)]
    np.testing.assert_allclose(g, np.zeros((p.n, 4)), atol=1e-10)


def test_saga_estimator_is_unbiased_for_any_table():
    p = logistic(n=10, d=3)
    rng = np.random.default_rng(2)
    theta = rng.standard_normal(3)
    table = rng.standard_normal((p.n, 3))  # arbitrary stored gradients
    mean = np.mean(
        [fs.saga_estimator(p, theta, [i], table, table.mean(axis=0)) for i in range(p.n)], axis=0
    )
    np.testing.assert_allclose(mean, p.grad(theta), rtol=0, atol=1e-12)


def test_sarah_estimator_expectation_is_recursive_not_the_gradient():
    p = logistic(n=10, d=3)
    rng = np.random.default_rng(3)
    theta, prev, v_prev = rng.standard_normal((3, 3))
    mean = np.mean([fs.sarah_estimator(p, theta, prev, v_prev, [i]) for i in range(p.n)], axis=0)
    np.testing.assert_allclose(mean, p.grad(theta) - p.grad(prev) + v_prev, atol=1e-12)
    assert np.linalg.norm(mean - p.grad(theta)) > 1e-3  # biased when v_prev != grad(prev)
    # unbiased right after a restart, when v_prev is the full gradient at prev
    mean0 = np.mean([fs.sarah_estimator(p, theta, prev, p.grad(prev), [i]) for i in range(p.n)], axis=0)
    np.testing.assert_allclose(mean0, p.grad(theta), atol=1e-12)


# ----------------------------------------------------------- cost accounting


@pytest.mark.parametrize(
    "method, kwargs, budget, evals, steps",
    [
        # SGD, batch 3: 3 per step; budget 10 affords 3 steps (9), a 4th would need 12
        (fs.sgd, dict(batch_size=3), 10, 9, 3),
        # SVRG, n=5, m=3: snapshot 5 + 3 inner steps x 2 = 11 per epoch; 2 epochs = 22,
        # a third snapshot would need 27 > 25
        (fs.svrg, dict(m=3), 25, 22, 6),
        # ... with budget 29: 22 + snapshot 5 = 27, one inner step 29, then stop
        (fs.svrg, dict(m=3), 29, 29, 7),
        # SAGA: table 5, then 1 per step: budget 12 gives 7 steps
        (fs.saga, dict(), 12, 12, 7),
        # SAGA with batch 2: 5 + 3 x 2 = 11 <= 12, a 4th step would need 13
        (fs.saga, dict(batch_size=2), 12, 11, 3),
        # SARAH, m=3: full gradient 5 (one step) + 2 inner steps x 2 = 9 per loop, 3 steps
        (fs.sarah, dict(m=3), 20, 18, 6),
    ],
)
def test_gradient_evaluations_counted_exactly(method, kwargs, budget, evals, steps):
    A, b = make_least_squares(5, 2, seed=0)
    p = Counting(LeastSquares(A, b, l2=0.1))
    h = method(p, 0.05, budget, seed=0, **kwargs)
    assert h.grad_evals[-1] == evals
    assert h.n_steps == steps and h.steps[-1] == steps
    assert p.count == evals  # what the method reports is what it computed
    assert h.grad_evals[0] == 0 and h.steps[0] == 0


def test_logging_points_and_epochs():
    p = logistic(n=20, d=3)
    h = fs.sgd(p, 0.1, 100, log_every=20)
    np.testing.assert_array_equal(h.grad_evals, [0, 20, 40, 60, 80, 100])
    np.testing.assert_array_equal(h.epochs, [0, 1, 2, 3, 4, 5])
    np.testing.assert_allclose(h.loss[0], p.value(p.init_params(0)))
    np.testing.assert_allclose(h.loss[-1], p.value(h.params))
    np.testing.assert_allclose(h.suboptimality(), h.loss - p.f_star)


# --------------------------------------------------------------- the methods


def test_sgd_with_the_full_batch_is_gradient_descent():
    A, b = make_least_squares(30, 4, seed=1)
    p = LeastSquares(A, b, l2=0.01)
    lr = 1 / p.L
    h = fs.sgd(p, lr, 30 * 7, batch_size=30)
    x = p.init_params(0)
    for _ in range(7):
        x = x - lr * p.grad(x)
    np.testing.assert_allclose(h.params, x, rtol=0, atol=1e-12)


def test_svrg_update_matches_the_rule_by_hand():
    p = logistic(n=8, d=3)
    lr, m = 0.3, 4
    h = fs.svrg(p, lr, p.n + 2 * m, m=m, seed=5)
    # replay: the same generator draws the same single indices
    rng = np.random.default_rng(5)
    x = p.init_params(5)
    snap, mu = x.copy(), p.grad(x)
    for _ in range(m):
        i = rng.integers(0, p.n, size=1)
        x = x - lr * (p.grad_batch(x, i) - p.grad_batch(snap, i) + mu)
    np.testing.assert_allclose(h.params, x, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "method, kwargs",
    [(fs.svrg, dict(m=200)), (fs.saga, dict()), (fs.sarah, dict(m=200))],
    ids=["svrg", "saga", "sarah"],
)
def test_variance_reduction_reaches_1e_8(method, kwargs):
    p = logistic()
    budget = 20 * p.n
    lr = 0.25 / p.L_max
    h = method(p, lr, budget, seed=0, **kwargs)
    assert h.grad_evals[-1] <= budget
    assert h.suboptimality()[-1] < 1e-8


def test_constant_step_sgd_plateaus_at_the_same_budget():
    p = logistic()
    budget = 20 * p.n
    for c in (1.0, 0.1):
        h = fs.sgd(p, c / p.L_max, budget, seed=0)
        assert h.grad_evals[-1] == budget
        assert h.suboptimality().min() > 1e-6


def test_svrg_random_snapshot_option_converges():
    p = logistic()
    h = fs.svrg(p, 0.25 / p.L_max, 20 * p.n, m=200, snapshot="random", seed=0)
    assert h.suboptimality()[-1] < 1e-5 * h.suboptimality()[0]


def test_runs_are_deterministic_in_the_seed():
    p = logistic(n=50, d=4)
    a = fs.saga(p, 0.5, 500, seed=3)
    b = fs.saga(p, 0.5, 500, seed=3)
    c = fs.saga(p, 0.5, 500, seed=4)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


def test_schedule_lr_and_divergence():
    p = logistic(n=50, d=4)
    h = fs.sgd(p, lambda t: 1.0 / (t + 1), 200, seed=0)
    assert h.loss[-1] < h.loss[0]
    A, b = make_least_squares(20, 3, seed=0)
    ls = LeastSquares(A, b)
    h = fs.sgd(ls, 100.0 / ls.L_max, 2000, seed=0)
    assert h.diverged and h.diverged_at is not None and h.grad_evals[-1] < 2000


@pytest.mark.parametrize(
    "method, kwargs, arg",
    [
        (fs.sgd, dict(lr=-0.1), "lr"),
        (fs.sgd, dict(lr=float("nan")), "lr"),
        (fs.sgd, dict(budget=0), "budget"),
        (fs.sgd, dict(batch_size=51), "batch_size"),
        (fs.saga, dict(batch_size=0), "batch_size"),
        (fs.svrg, dict(m=0), "m"),
        (fs.svrg, dict(snapshot="first"), "snapshot"),
        (fs.sarah, dict(snapshot=None), "snapshot"),
        (fs.sgd, dict(log_every=0), "log_every"),
    ],
)
def test_bad_arguments_name_the_argument(method, kwargs, arg):
    p = logistic(n=50, d=4)
    args = dict(lr=0.1, budget=100)
    args.update(kwargs)
    with pytest.raises(ValueError, match=arg):
        method(p, args.pop("lr"), args.pop("budget"), **args)


def test_not_a_finite_sum_is_rejected():
    class NoSum:
        def value(self, x):
            return 0.0

    with pytest.raises(ValueError, match="problem"):
        fs.svrg(NoSum(), 0.1, 10)


def test_dict_parameters_estimators_and_runs():
    from steplab.problems import MLP

    X, y = make_classification(12, 3, seed=0)
    p = MLP(X, y, hidden=4)
    theta, snap = p.init_params(0), p.init_params(1)
    snap_grad, full = p.grad(snap), p.grad(theta)
    ests = [fs.svrg_estimator(p, theta, [i], snap, snap_grad) for i in range(p.n)]
    table = p.per_example_grads(snap, np.arange(p.n))
    means = {k: v.mean(axis=0) for k, v in table.items()}
    sagas = [fs.saga_estimator(p, theta, [i], table, means) for i in range(p.n)]
    for key in full:
        np.testing.assert_allclose(np.mean([e[key] for e in ests], axis=0), full[key], atol=1e-12)
        np.testing.assert_allclose(np.mean([e[key] for e in sagas], axis=0), full[key], atol=1e-12)
    h = fs.saga(p, 0.1, 10 * p.n, seed=0)
    assert set(h.params) == set(theta) and h.loss[-1] < h.loss[0]


def test_bad_starting_point_and_schedule_values_are_named():
    A, b = make_least_squares(20, 3, seed=0)
    p = LeastSquares(A, b, l2=0.1)
    with pytest.raises(ValueError, match="theta0 must be finite"):
        fs.sgd(p, 0.1, 50, theta0=np.array([np.nan, 0.0, 0.0]))
    # a schedule that returns a negative step would run the method uphill
    with pytest.raises(ValueError, match=r"lr must be >= 0 at every step, got -1.0 at step 0"):
        fs.svrg(p, lambda t: -1.0, 100)
    with np.errstate(over="ignore"), pytest.raises(ValueError, match="initial loss f\\(theta0\\) must be finite"):
        fs.saga(p, 0.1, 50, theta0=np.full(3, 1e200))  # finite, but f overflows
    # one that decays to zero is legitimate: theta stops moving
    h = fs.sgd(p, lambda t: 0.0, 50, theta0=np.ones(3))
    np.testing.assert_array_equal(h.params, np.ones(3))
