"""Grader tests for problem set 1 (see exercises/bin/grader.py): gradient descent, Armijo."""

import numpy as np
import steplab.problems as problems
from grader import expect_error, test

LIBRARY = ("run.py", "optim", "linesearch.py")


def logistic(learner, n, d, seed, l2):
    """The same logistic regression here and in the kernel: (grader's problem, kernel handle)."""
    X, y = problems.make_classification(n, d, seed=seed)
    return problems.LogisticRegression(X, y, l2=l2), learner.new("steplab.problems.LogisticRegression", X, y, l2=l2)


def quadratic(learner, eigs, seed):
    return problems.Quadratic(eigs, seed=seed), learner.new("steplab.problems.Quadratic", eigs, seed=seed)


@test("test_gd_fixed_visible", visible=True)
def gd_fixed_visible(learner):
    p, k = logistic(learner, 400, 10, 0, 0.01)
    theta0 = learner.new("numpy.zeros", p.dim)
    theta, losses = learner.call("gradient_descent", k.value, k.grad, theta0, 1 / p.L, 200)
    losses = np.asarray(losses, dtype=float)
    assert losses.shape == (201,), losses.shape
    assert np.all(np.diff(losses) <= 1e-12), "with lr = 1/L the loss never increases"
    assert losses[-1] - p.f_star < 1e-3 * (losses[0] - p.f_star)
    assert np.all(learner.value(theta0) == 0), "theta0 was modified"


@test("test_gd_fixed_hidden")
def gd_fixed_hidden(learner):
    p, k = logistic(learner, 300, 7, 11, 0.05)
    lr, steps = 1.5 / p.L, 40
    want = np.zeros(p.dim)
    for _ in range(steps):
        want = want - lr * p.grad(want)
    (theta, losses), calls = learner.traced(LIBRARY, "gradient_descent", k.value, k.grad, np.zeros(p.dim), lr, steps)
    assert not calls
    assert np.linalg.norm(np.asarray(theta) - want) <= 1e-9 * np.linalg.norm(want)
    assert abs(float(losses[-1]) - float(p.value(want))) <= 1e-9
    assert len(losses) == steps + 1
    for bad in (0.0, -1.0):
        expect_error(learner, "ValueError", "gradient_descent", k.value, k.grad, np.zeros(p.dim), bad, 3)
    expect_error(learner, "ValueError", "gradient_descent", k.value, k.grad, np.zeros(p.dim), 0.1, -1)


@test("test_armijo_visible", visible=True)
def armijo_visible(learner):
    p, k = logistic(learner, 400, 10, 0, 0.01)
    (theta, losses, lrs), calls = learner.traced(LIBRARY, "gd_armijo", k.value, k.grad, np.zeros(p.dim), 100, 10.0)
    assert not calls, f"implement the search yourself; your code called {sorted(calls)}"
    losses, lrs = np.asarray(losses, dtype=float), np.asarray(lrs, dtype=float)
    assert len(lrs) == 100 and np.all(lrs > 0) and np.all(lrs <= 10.0)
    assert np.all(np.diff(losses) <= 0)
    assert losses[-1] - p.f_star < 1e-6


def armijo_replay(p, lrs, losses, lr0, c, shrink):
    """Each step restarts from lr0 and is the first lr0 * shrink**k that passes the test."""
    x = np.zeros(p.dim)
    for k, step in enumerate(np.asarray(lrs, dtype=float)[:20]):
        gx, fx = p.grad(x), p.value(x)
        j = round(float(np.log(step / lr0) / np.log(shrink)))
        assert abs(step - lr0 * shrink**j) <= 1e-12 * lr0
        assert p.value(x - step * gx) <= fx - c * step * (gx @ gx) + 1e-15
        bigger = step / shrink
        assert j == 0 or p.value(x - bigger * gx) > fx - c * bigger * (gx @ gx)
        x = x - step * gx
        assert abs(float(losses[k + 1]) - p.value(x)) <= 1e-10 * max(1.0, abs(p.value(x)))


@test("test_armijo_hidden")
def armijo_hidden(learner):
    p, k = logistic(learner, 250, 6, 23, 0.02)
    c, shrink, lr0 = 0.3, 0.7, 50.0
    th = np.full(p.dim, 0.3)
    g = p.grad(th)
    lr, calls = learner.traced(LIBRARY, "armijo_step", k.value, th, g, lr0=lr0, c=c, shrink=shrink)
    assert not calls
    lr = float(lr)
    j = round(float(np.log(lr / lr0) / np.log(shrink)))
    assert abs(lr - lr0 * shrink**j) <= 1e-12 * lr0
    assert p.value(th - lr * g) <= p.value(th) - c * lr * (g @ g) + 1e-15
    prev = lr / shrink
    assert j == 0 or p.value(th - prev * g) > p.value(th) - c * prev * (g @ g)
    (theta, losses, lrs), calls = learner.traced(LIBRARY, "gd_armijo", k.value, k.grad, np.zeros(p.dim), 60,
                                                 lr0=lr0, c=c, shrink=shrink)
    assert not calls
    assert float(losses[-1]) - p.f_star <= 1e-8
    armijo_replay(p, lrs, losses, lr0, c, shrink)


@test("test_descent_lemma_visible", visible=True)
def descent_lemma_visible(learner):
    p, k = logistic(learner, 400, 10, 0, 0.01)
    rng = np.random.default_rng(1)
    for lr in rng.uniform(0.01, 4 / p.L, size=50):
        gap = float(learner.data("descent_lemma_gap", k.value, k.grad, p.L, rng.normal(size=p.dim) * 3, float(lr)))
        assert gap >= -1e-12, gap


@test("test_descent_lemma_hidden")
def descent_lemma_hidden(learner):
    q, k = quadratic(learner, [0.5, 2.0, 8.0], 5)
    rng = np.random.default_rng(99)
    for _ in range(20):
        th, lr = rng.normal(size=3), float(rng.uniform(0.01, 0.3))
        g = q.grad(th)
        want = q.value(th) - lr * (1 - 8.0 * lr / 2) * (g @ g) - q.value(th - lr * g)
        assert abs(float(learner.data("descent_lemma_gap", k.value, k.grad, 8.0, th, lr)) - want) <= 1e-10
    assert float(learner.data("descent_lemma_gap", k.value, k.grad, 1.0, np.ones(3), 0.5)) < 0


@test("test_stable_step")
def stable_step(learner):
    q, k = quadratic(learner, [0.1, 1.0, 4.0], 0)
    eta = float(learner.data("largest_stable_step", q.L))
    _, below = learner.data("gradient_descent", k.value, k.grad, np.ones(3), 0.99 * eta, 2000)
    _, above = learner.data("gradient_descent", k.value, k.grad, np.ones(3), 1.01 * eta, 2000)
    assert below[-1] < 1e-6 * below[0]
    assert above[-1] > 1e6 * above[0]
    assert abs(float(learner.data("largest_stable_step", 7.5)) - 2 / 7.5) <= 1e-12
