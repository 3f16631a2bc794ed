"""Grader tests for problem set 2 (see exercises/bin/grader.py): minibatches, variance, noise scale."""

import numpy as np
import steplab.problems as problems
from grader import Lib, expect_error, test


def logistic(learner, n, d, seed, l2):
    """The same logistic regression here and in the kernel: (grader's problem, kernel handle)."""
    X, y = problems.make_classification(n, d, seed=seed)
    return problems.LogisticRegression(X, y, l2=l2), learner.new("steplab.problems.LogisticRegression", X, y, l2=l2)


def course_problem(learner):
    return logistic(learner, 2000, 20, 0, 0.01)


@test("test_sgd_visible", visible=True)
def sgd_visible(learner):
    idx = np.asarray(learner.data("sample_minibatch", Lib("numpy.random.default_rng", 0), 10, 4))
    assert len(idx) == 4 and len(set(idx.tolist())) == 4 and all(0 <= i < 10 for i in idx)
    p, k = course_problem(learner)
    theta, losses = learner.data("sgd", k, np.zeros(p.dim), 0.5, 300, 32)
    losses = np.asarray(losses, dtype=float)
    assert losses.shape == (301,) and losses[-1] < 0.5 * losses[0]


@test("test_sgd_hidden")
def sgd_hidden(learner):
    rng = learner.new("numpy.random.default_rng", 3)
    counts = np.zeros(7)
    for batch in learner.repeat(7000, "sample_minibatch", rng, 7, 3):
        batch = np.asarray(batch)
        assert len(set(batch.tolist())) == 3
        counts[batch] += 1
    assert np.max(np.abs(counts / 7000 - 3 / 7)) < 0.05  # each index appears in 3/7 of the batches
    for bad in (0, 8):
        expect_error(learner, "ValueError", "sample_minibatch", rng, 7, bad)
    p, k = logistic(learner, 300, 5, 41, 0.05)
    # with batch_size = n the sampler returns a permutation: SGD is gradient descent
    theta, _ = learner.data("sgd", k, np.zeros(p.dim), Lib("steplab.optim.inverse_time", 1.0, 1.0), 25, p.n, seed=5)
    want = np.zeros(p.dim)
    for t in range(25):
        want = want - 1.0 / (t + 1) * p.grad(want)
    assert np.linalg.norm(np.asarray(theta) - want) <= 1e-9 * np.linalg.norm(want)


@test("test_variance_visible", visible=True)
def variance_visible(learner):
    p, k = course_problem(learner)
    sizes, theta_mid = [1, 2, 4, 8, 16, 32, 64], np.full(p.dim, 0.1)
    variances = [float(learner.data("minibatch_variance", k, theta_mid, b, 400, seed=b)) for b in sizes]
    slope = float(learner.data("loglog_slope", sizes, variances))
    assert -1.15 < slope < -0.85, slope


@test("test_variance_hidden")
def variance_hidden(learner):
    p, k = logistic(learner, 500, 8, 77, 0.01)
    th = np.full(p.dim, -0.2)
    G = p.per_example_grads(th)
    trace = float(np.sum((G - G.mean(0)) ** 2) / p.n)
    for B in (1, 10, 50):  # 3000 draws: the estimate's relative standard error is a few percent
        exact = trace / B * (p.n - B) / (p.n - 1)
        v = float(learner.data("minibatch_variance", k, th, B, 3000, seed=B))
        assert abs(v - exact) <= 0.15 * exact
    assert abs(float(learner.data("loglog_slope", [1, 10, 100], [5.0, 0.5, 0.05])) + 1) < 1e-9
    assert abs(float(learner.data("loglog_slope", [2, 4, 8], [1.0, 0.25, 0.0625])) + 2) < 1e-9


def noise_exact(p, th):
    G = p.per_example_grads(th)
    return float(np.sum((G - G.mean(0)) ** 2) / p.n / np.sum(G.mean(0) ** 2))


@test("test_noise_scale_visible", visible=True)
def noise_scale_visible(learner):
    p, k = course_problem(learner)
    theta_mid = np.full(p.dim, 0.1)
    est, exact = float(learner.data("noise_scale", k, theta_mid, 2, 64, 500, seed=0)), noise_exact(p, theta_mid)
    assert abs(est - exact) < 0.2 * exact, (est, exact)  # 500 draws per batch size: a wide margin


@test("test_noise_scale_hidden")
def noise_scale_hidden(learner):
    p, k = logistic(learner, 4000, 5, 8, 0.01)
    th = np.full(p.dim, 0.05)
    est = float(learner.data("noise_scale", k, th, 2, 64, 2000, seed=1))
    assert abs(est - noise_exact(p, th)) <= 0.25 * noise_exact(p, th)


@test("test_robbins_monro")
def robbins_monro(learner):
    p, k = course_problem(learner)
    _, const = learner.data("sgd", k, np.zeros(p.dim), 2.0, 2000, 1, seed=0)
    schedule = learner.call("robbins_monro", 2.0, 0.75)
    _, decay = learner.data("sgd", k, np.zeros(p.dim), schedule, 2000, 1, seed=0)
    assert np.mean(np.asarray(decay)[-200:]) < np.mean(np.asarray(const)[-200:])
    s = learner.call("robbins_monro", 0.3, 0.6)
    for t in (0, 1, 10, 1000):
        assert abs(float(learner.data(s, t)) - 0.3 / (t + 1) ** 0.6) <= 1e-15
    for args in ((0.3, 0.5), (0.3, 1.2), (0.0, 0.7), (0.3, 0.2)):
        expect_error(learner, "ValueError", "robbins_monro", *args)
    learner.call("robbins_monro", 0.3, 1.0)
