"""Grader tests for problem set 5 (see exercises/bin/grader.py): client update, FedAvg, FedProx."""

import numpy as np
import steplab.data as data
import steplab.problems as problems
from grader import Lib, test


def softmax(learner, X, y, n_classes, l2):
    """The same softmax regression here and in the kernel: (grader's problem, kernel handle)."""
    return (problems.SoftmaxRegression(X, y, n_classes=n_classes, l2=l2),
            learner.new("steplab.problems.SoftmaxRegression", X, y, n_classes=n_classes, l2=l2))


@test("test_fedavg_visible", visible=True)
def fedavg_visible(learner):
    ds = data.load_digits()
    central, k = softmax(learner, ds.X_train, ds.y_train, 10, 0.001)
    one = np.asarray(learner.data("fedavg", [k], np.zeros(central.dim), 3, 1, 0.1, None))
    gd = np.zeros(central.dim)
    for _ in range(3):
        gd = gd - 0.1 * central.grad(gd)
    assert np.allclose(one, gd), "one client, one full-batch local step per round: gradient descent"


@test("test_fedavg_hidden")
def fedavg_hidden(learner):
    X, y = problems.make_classification(240, 4, n_classes=4, seed=57)
    pairs = [softmax(learner, a, b, 4, 0.05) for a, b in data.split_non_iid(X, y, 6, 2, seed=3)]
    glob = problems.SoftmaxRegression(X, y, n_classes=4, l2=0.05)
    want = np.zeros(glob.dim)  # one full-batch local step: the weighted average of client gradients
    for _ in range(5):
        want = want - 0.3 * glob.grad(want)
    mine = np.asarray(learner.data("fedavg", [k for _, k in pairs], np.zeros(glob.dim), 5, 1, 0.3, None, seed=1))
    assert np.max(np.abs(mine - want)) <= 1e-10 * max(1.0, np.max(np.abs(want)))
    (c, k), tg, mu, lr = pairs[0], np.full(glob.dim, 0.2), 2.0, 0.1  # FedProx, two full-batch steps
    a = tg - lr * c.grad(tg)
    b = a - lr * (c.grad(a) + mu * (a - tg))
    got = np.asarray(learner.data("client_update", k, tg, lr, 2, None, Lib("numpy.random.default_rng", 0), prox_mu=mu))
    assert np.max(np.abs(got - b)) <= 1e-10


@test("test_heterogeneity", visible=True)
def heterogeneity(learner):
    ds = data.load_digits()
    central, k = softmax(learner, ds.X_train, ds.y_train, 10, 0.001)
    runs = {"centralized": [k],
            "iid": [softmax(learner, a, b, 10, 0.001)[1] for a, b in data.split_iid(ds.X_train, ds.y_train, 10, seed=0)],
            "non_iid": [softmax(learner, a, b, 10, 0.001)[1]
                        for a, b in data.split_non_iid(ds.X_train, ds.y_train, 10, 2, seed=0)]}
    acc = {}
    for name, clients in runs.items():
        theta = learner.data("fedavg", clients, np.zeros(central.dim), rounds=3, local_steps=100, lr=0.3,
                             batch_size=10, seed=0, timeout=120)
        acc[name] = central.accuracy(np.asarray(theta, dtype=float), ds.X_val, ds.y_val)
    assert acc["iid"] > 0.9 and acc["centralized"] > 0.9, acc
    assert acc["iid"] - acc["non_iid"] > 0.01, "non-IID clients lose accuracy against IID clients"
