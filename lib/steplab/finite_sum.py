r"""Variance-reduced methods for finite sums, compared with SGD by gradient evaluations.

Every method here minimizes

.. math::

    f(\theta) = \frac{1}{n} \sum_{i=1}^{n} f_i(\theta)

through the finite-sum interface of :mod:`steplab.problems` (``n``, ``value``, ``grad``,
``grad_batch(theta, idx)``, ``per_example_grads(theta, idx)``, ``f_star``) and counts
gradient evaluations the same way: one per-example gradient :math:`\nabla f_i` costs 1,
a full gradient :math:`\nabla f` costs :math:`n`. The cost axis, not the step count, is the
fair way to compare SGD (1 evaluation per step at batch size 1) with SVRG and SARAH
(2 per inner step plus :math:`n` per snapshot) and SAGA (1 per step plus :math:`n` for its
table). All four share one signature::

    method(problem, lr, budget, *, batch_size=1, seed=None, theta0=None, log_every=None, ...)

and return an :class:`EvalHistory`. A run stops before any operation whose cost would take
the count above ``budget``, so every method spends at most ``budget`` evaluations.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._checks import (
    DIVERGE_FACTOR,
    check_choice,
    check_finite_sum,
    check_int,
    check_lr,
    lr_at,
    make_rng,
)
from ._tree import initial_params, sgd_step, tree_copy, tree_map
from .records import EvalHistory, Logger

__all__ = [
    "EvalHistory",
    "sgd",
    "svrg",
    "saga",
    "sarah",
    "svrg_estimator",
    "saga_estimator",
    "sarah_estimator",
]


# ---------------------------------------------------------------------------
# validation


def _check_batch_size(batch_size, n):
    return check_int("batch_size", batch_size, low=1, high=n)


def _sample(rng, n, batch_size):
    """``batch_size`` distinct indices, uniformly at random."""
    if batch_size == 1:
        return rng.integers(0, n, size=1)
    return rng.choice(n, size=batch_size, replace=False)


def _setup(problem, lr, budget, batch_size, seed, theta0, log_every, diverge_factor, method, need):
    n = check_finite_sum(problem, need, what=method)
    lr = check_lr(lr)
    budget = check_int("budget", budget, low=1)
    batch_size = _check_batch_size(batch_size, n)
    log_every = n if log_every is None else check_int("log_every", log_every, low=1)
    theta = initial_params(problem, theta0, seed)
    return n, lr, budget, batch_size, theta, Logger(problem, method, log_every, diverge_factor=diverge_factor)


def _check_epochs(m, snapshot, n, batch_size) -> int:
    """The inner steps per snapshot of SVRG and SARAH (default ``2n // batch_size``), after
    checking ``m`` and the ``snapshot`` rule."""
    check_choice("snapshot", snapshot, ("last", "random"))
    if m is None:
        return max(1, (2 * n) // batch_size)
    return check_int("m", m, low=1)


# ---------------------------------------------------------------------------
# estimators (one step's gradient estimate; exposed so their expectations can be checked)


def svrg_estimator(problem, theta, idx, snapshot, snapshot_grad):
    r"""SVRG's control-variate gradient estimate.

    .. math::

        g = \nabla f_{I}(\theta) - \nabla f_{I}(\tilde\theta) + \nabla f(\tilde\theta),
        \qquad \nabla f_I = \frac{1}{|I|} \sum_{i \in I} \nabla f_i .

    Averaged over a uniformly drawn index :math:`I`, the first two terms give
    :math:`\nabla f(\theta) - \nabla f(\tilde\theta)`, so :math:`\mathbb E[g] = \nabla f(\theta)`;
    its variance vanishes as :math:`\theta` and :math:`\tilde\theta` approach the minimizer.

    Args:
        problem: a finite sum.
        theta: current parameters.
        idx: indices of the sampled examples.
        snapshot: the snapshot :math:`\tilde\theta`.
        snapshot_grad: the full gradient :math:`\nabla f(\tilde\theta)`.

    Cost: ``2 * len(idx)`` gradient evaluations.

    Reference: R. Johnson and T. Zhang, "Accelerating stochastic gradient descent using
    predictive variance reduction", NeurIPS 2013.
    """
    g_theta = problem.grad_batch(theta, idx)
    g_snap = problem.grad_batch(snapshot, idx)
    return tree_map(lambda a, b, c: a - b + c, g_theta, g_snap, snapshot_grad)


def saga_estimator(problem, theta, idx, table, table_mean):
    r"""SAGA's gradient estimate from a table of stored per-example gradients.

    .. math::

        g = \frac{1}{|I|} \sum_{i \in I} \bigl(\nabla f_i(\theta) - \phi_i\bigr)
            + \frac{1}{n} \sum_{j=1}^{n} \phi_j ,

    where :math:`\phi_j` is the gradient of :math:`f_j` stored when example :math:`j` was last
    drawn. For any table, :math:`\mathbb E_I[g] = \nabla f(\theta)`.

    Args:
        problem: a finite sum with ``per_example_grads``.
        theta: current parameters.
        idx: indices of the sampled examples.
        table: stored per-example gradients, shape ``(n, dim)`` (a dict of such arrays for
            dict parameters).
        table_mean: the mean of ``table`` over its first axis.

    Cost: ``len(idx)`` gradient evaluations.

    Reference: A. Defazio, F. Bach and S. Lacoste-Julien, "SAGA: A fast incremental gradient
    method with support for non-strongly convex composite objectives", NeurIPS 2014.
    """
    idx = np.asarray(idx)
    new = problem.per_example_grads(theta, idx)
    return _saga_combine(new, tree_map(lambda t: t[idx], table), table_mean)


def _saga_combine(new, old, table_mean):
    return tree_map(lambda a, b, c: (a - b).mean(axis=0) + c, new, old, table_mean)


def sarah_estimator(problem, theta, theta_prev, v_prev, idx):
    r"""SARAH's recursive gradient estimate.

    .. math::

        v_t = \nabla f_{I}(\theta_t) - \nabla f_{I}(\theta_{t-1}) + v_{t-1}.

    Unlike SVRG and SAGA it is biased: :math:`\mathbb E_I[v_t] = \nabla f(\theta_t)
    - \nabla f(\theta_{t-1}) + v_{t-1}`, which equals :math:`\nabla f(\theta_t)` only when
    :math:`v_{t-1} = \nabla f(\theta_{t-1})`; the restart with a full gradient every ``m`` steps
    keeps the accumulated error in check.

    Args:
        problem: a finite sum.
        theta: current parameters :math:`\theta_t`.
        theta_prev: previous parameters :math:`\theta_{t-1}`.
        v_prev: previous estimate :math:`v_{t-1}`.
        idx: indices of the sampled examples.

    Cost: ``2 * len(idx)`` gradient evaluations.

    Reference: L. M. Nguyen, J. Liu, K. Scheinberg and M. Takac, "SARAH: A novel method for
    machine learning problems using stochastic recursive gradient", ICML 2017.
    """
    g_new = problem.grad_batch(theta, idx)
    g_old = problem.grad_batch(theta_prev, idx)
    return tree_map(lambda a, b, c: a - b + c, g_new, g_old, v_prev)


# ---------------------------------------------------------------------------
# methods


def sgd(
    problem,
    lr: float | Callable[[int], float],
    budget: int,
    *,
    batch_size: int = 1,
    seed: int | None = None,
    theta0=None,
    log_every: int | None = None,
    diverge_factor: float = DIVERGE_FACTOR,
) -> EvalHistory:
    r"""Minibatch SGD with its gradient evaluations counted.

    .. math::

        \theta_{t+1} = \theta_t - \eta_t \frac{1}{|I_t|} \sum_{i \in I_t} \nabla f_i(\theta_t),

    :math:`I_t` drawn uniformly without replacement, ``batch_size`` evaluations per step.

    Args:
        problem: a finite sum (``n``, ``value``, ``grad_batch``).
        lr: step size :math:`\eta`, a positive number or a schedule ``step -> float``.
        budget: maximum number of gradient evaluations.
        batch_size: examples per step.
        seed: seed of ``np.random.default_rng`` for the index draws (``None``: 0) and of
            ``problem.init_params`` (``None``: the problem's own), as in :func:`steplab.run.minimize`.
        theta0: starting point (default ``problem.init_params(seed)``).
        log_every: log the full loss every this many evaluations (default ``n``).
        diverge_factor: stop when the loss exceeds this times ``max(initial loss, 1)``.

    Reference: H. Robbins and S. Monro, "A stochastic approximation method",
    Ann. Math. Statist. 1951.
    """
    n, lr, budget, b, theta, log = _setup(
        problem, lr, budget, batch_size, seed, theta0, log_every, diverge_factor, "SGD",
        ("n", "value", "grad_batch"),
    )
    rng = make_rng(seed)
    evals = steps = 0
    log(theta, steps, evals, force=True)
    while evals + b <= budget:
        idx = _sample(rng, n, b)
        g = problem.grad_batch(theta, idx)
        evals += b
        theta = sgd_step(theta, g, lr_at(lr, steps))
        steps += 1
        if not log(theta, steps, evals):
            break
    log(theta, steps, evals, force=True)
    return log.history(theta)


def svrg(
    problem,
    lr: float | Callable[[int], float],
    budget: int,
    *,
    m: int | None = None,
    snapshot: str = "last",
    batch_size: int = 1,
    seed: int | None = None,
    theta0=None,
    log_every: int | None = None,
    diverge_factor: float = DIVERGE_FACTOR,
) -> EvalHistory:
    r"""Stochastic variance-reduced gradient (SVRG).

    Every ``m`` inner steps, take a snapshot :math:`\tilde\theta` and its full gradient
    :math:`\nabla f(\tilde\theta)` (cost :math:`n`), then for :math:`t = 0, \dots, m-1`

    .. math::

        \theta_{t+1} = \theta_t - \eta \bigl(\nabla f_{I_t}(\theta_t)
            - \nabla f_{I_t}(\tilde\theta) + \nabla f(\tilde\theta)\bigr)

    (cost :math:`2|I_t|`, see :func:`svrg_estimator`). The next snapshot is the last inner
    iterate :math:`\theta_m` (option I of the paper, ``snapshot="last"``) or an inner iterate
    :math:`\theta_t`, :math:`t` uniform in :math:`\{0, \dots, m-1\}`, from which the next
    epoch restarts (option II, ``snapshot="random"``, the one the linear-rate proof uses).

    Args:
        problem: a finite sum (``n``, ``value``, ``grad``, ``grad_batch``).
        lr: step size :math:`\eta` (the analysis takes :math:`\eta \approx 1/(10 L_{\max})`;
            :math:`1/(4 L_{\max})` or more usually works), or a schedule.
        budget: maximum number of gradient evaluations.
        m: inner steps per snapshot (default ``2n // batch_size``, the paper's choice
            for convex problems).
        snapshot: ``"last"`` or ``"random"``.
        batch_size, seed, theta0, log_every, diverge_factor: as in :func:`sgd`.

    Reference: R. Johnson and T. Zhang, "Accelerating stochastic gradient descent using
    predictive variance reduction", NeurIPS 2013.
    """
    n, lr, budget, b, theta, log = _setup(
        problem, lr, budget, batch_size, seed, theta0, log_every, diverge_factor, "SVRG",
        ("n", "value", "grad", "grad_batch"),
    )
    m = _check_epochs(m, snapshot, n, b)
    rng = make_rng(seed)
    evals = steps = 0
    ok = log(theta, steps, evals, force=True)
    while ok and evals + n <= budget:
        snap = tree_copy(theta)
        snap_grad = problem.grad(snap)
        evals += n
        keep_at = int(rng.integers(0, m)) if snapshot == "random" else None
        kept = None
        for t in range(m):
            if t == keep_at:
                kept = tree_copy(theta)
            if evals + 2 * b > budget:
                ok = False
                break
            idx = _sample(rng, n, b)
            g = svrg_estimator(problem, theta, idx, snap, snap_grad)
            evals += 2 * b
            theta = sgd_step(theta, g, lr_at(lr, steps))
            steps += 1
            if not log(theta, steps, evals):
                ok = False
                break
        if ok and kept is not None:
            theta = kept
    log(theta, steps, evals, force=True)
    return log.history(theta)


def saga(
    problem,
    lr: float | Callable[[int], float],
    budget: int,
    *,
    batch_size: int = 1,
    seed: int | None = None,
    theta0=None,
    log_every: int | None = None,
    diverge_factor: float = DIVERGE_FACTOR,
) -> EvalHistory:
    r"""SAGA: SGD corrected by a table of stored per-example gradients.

    The table starts as :math:`\phi_j = \nabla f_j(\theta_0)` for all :math:`j` (cost :math:`n`).
    Each step draws :math:`I_t`, computes :math:`\nabla f_i(\theta_t)` for :math:`i \in I_t`
    (cost :math:`|I_t|`) and

    .. math::

        \theta_{t+1} = \theta_t - \eta \Bigl(\frac{1}{|I_t|} \sum_{i \in I_t}
            \bigl(\nabla f_i(\theta_t) - \phi_i\bigr) + \frac{1}{n} \sum_{j} \phi_j\Bigr),
        \qquad \phi_i \leftarrow \nabla f_i(\theta_t) \ (i \in I_t).

    Memory: one stored gradient per example (``n * dim`` numbers).

    Args:
        problem: a finite sum with ``per_example_grads(theta, idx)``.
        lr: step size :math:`\eta` (the analysis takes :math:`1/(3 L_{\max})`), or a schedule.
        budget, batch_size, seed, theta0, log_every, diverge_factor: as in :func:`sgd`.

    Reference: A. Defazio, F. Bach and S. Lacoste-Julien, "SAGA: A fast incremental gradient
    method with support for non-strongly convex composite objectives", NeurIPS 2014.
    """
    n, lr, budget, b, theta, log = _setup(
        problem, lr, budget, batch_size, seed, theta0, log_every, diverge_factor, "SAGA",
        ("n", "value", "per_example_grads"),
    )
    rng = make_rng(seed)
    evals = steps = 0
    log(theta, steps, evals, force=True)
    if n <= budget:
        table = problem.per_example_grads(theta, np.arange(n))
        table = tree_map(lambda a: np.array(a, dtype=np.float64), table)
        evals += n
        table_mean = tree_map(lambda a: a.mean(axis=0), table)
        while evals + b <= budget:
            idx = _sample(rng, n, b)
            new = problem.per_example_grads(theta, idx)
            old = tree_map(lambda t: t[idx], table)
            g = _saga_combine(new, old, table_mean)
            evals += b
            theta = sgd_step(theta, g, lr_at(lr, steps))
            steps += 1

            def refresh(t, mean, a, o):
                mean += (a - o).sum(axis=0) / n
                t[idx] = a
                return mean

            table_mean = tree_map(refresh, table, table_mean, new, old)
            if not log(theta, steps, evals):
                break
    log(theta, steps, evals, force=True)
    return log.history(theta)


def sarah(
    problem,
    lr: float | Callable[[int], float],
    budget: int,
    *,
    m: int | None = None,
    snapshot: str = "last",
    batch_size: int = 1,
    seed: int | None = None,
    theta0=None,
    log_every: int | None = None,
    diverge_factor: float = DIVERGE_FACTOR,
) -> EvalHistory:
    r"""SARAH: stochastic recursive gradient with a full-gradient restart every ``m`` steps.

    Each outer loop starts from :math:`\theta_0 = \tilde\theta` with
    :math:`v_0 = \nabla f(\theta_0)` (cost :math:`n`) and :math:`\theta_1 = \theta_0 - \eta v_0`;
    then for :math:`t = 1, \dots, m-1`

    .. math::

        v_t = \nabla f_{I_t}(\theta_t) - \nabla f_{I_t}(\theta_{t-1}) + v_{t-1}, \qquad
        \theta_{t+1} = \theta_t - \eta v_t

    (cost :math:`2|I_t|`, see :func:`sarah_estimator`). The restart point is the last
    iterate :math:`\theta_m` (``snapshot="last"``) or :math:`\theta_t` with :math:`t` uniform in
    :math:`\{0, \dots, m\}` (``snapshot="random"``, the paper's Algorithm 1).

    Args:
        problem: a finite sum (``n``, ``value``, ``grad``, ``grad_batch``).
        lr: step size :math:`\eta` (the analysis takes :math:`\eta \le 1/(2L)`), or a schedule.
        budget: maximum number of gradient evaluations.
        m: updates per outer loop (default ``2n // batch_size``).
        snapshot: ``"last"`` or ``"random"``.
        batch_size, seed, theta0, log_every, diverge_factor: as in :func:`sgd`.

    Reference: L. M. Nguyen, J. Liu, K. Scheinberg and M. Takac, "SARAH: A novel method for
    machine learning problems using stochastic recursive gradient", ICML 2017.
    """
    n, lr, budget, b, theta, log = _setup(
        problem, lr, budget, batch_size, seed, theta0, log_every, diverge_factor, "SARAH",
        ("n", "value", "grad", "grad_batch"),
    )
    m = _check_epochs(m, snapshot, n, b)
    rng = make_rng(seed)
    evals = steps = 0
    ok = log(theta, steps, evals, force=True)
    while ok and evals + n <= budget:
        keep_at = int(rng.integers(0, m + 1)) if snapshot == "random" else None
        kept = tree_copy(theta) if keep_at == 0 else None
        v = problem.grad(theta)
        evals += n
        theta_prev = theta
        theta = sgd_step(theta, v, lr_at(lr, steps))
        steps += 1
        ok = log(theta, steps, evals)
        for t in range(1, m):
            if not ok:
                break
            if t == keep_at:
                kept = tree_copy(theta)
            if evals + 2 * b > budget:
                ok = False
                break
            idx = _sample(rng, n, b)
            v = sarah_estimator(problem, theta, theta_prev, v, idx)
            evals += 2 * b
            theta_prev = theta
            theta = sgd_step(theta, v, lr_at(lr, steps))
            steps += 1
            ok = log(theta, steps, evals)
        if ok and kept is not None:
            theta = kept
    log(theta, steps, evals, force=True)
    return log.history(theta)
