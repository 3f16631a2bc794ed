r"""Synchronous data-parallel SGD over simulated workers, with gradient accumulation and compression.

"Workers" are index sets into one finite-sum problem; the all-reduce is replaced by the mean it
computes, so the simulation shows what data parallelism does to the iterates, exactly.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .._checks import (
    DIVERGE_FACTOR,
    check_finite_sum,
    check_int,
    make_rng,
)
from .._tree import initial_params, tree_flatten, tree_map, tree_mean, tree_unflatten
from ..records import Logger, SimulationHistory
from ._common import ShardSampler, Stepper, check_batch_vs_shards, check_index_sets, check_step_rule
from .compression import error_feedback_step

__all__ = ["iid_shards", "worker_shards", "accumulated_grad", "data_parallel_grad", "simulate_data_parallel"]


def iid_shards(n: int, n_workers: int, seed: int | None = None) -> list[np.ndarray]:
    r"""Split :math:`\{0, \dots, n-1\}` into ``n_workers`` random shards of (nearly) equal size.

    .. math::

        S_k = \{\pi(i) : c_k \le i < c_{k+1}\}, \qquad
        c_k = k\lfloor n/K \rfloor + \min(k, n \bmod K),

    for a uniformly random permutation :math:`\pi` from ``np.random.default_rng(seed)`` (``seed=None``: 0);
    each shard is returned sorted.

    Args:
        n: number of examples.
        n_workers: number of shards :math:`K`; sizes differ by at most one.
        seed: seed of the permutation.

    Reference: J. Dean et al., "Large scale distributed deep networks", NeurIPS 2012.
    """
    n = check_int("n", n, low=1)
    n_workers = check_int("n_workers", n_workers, low=1)
    if n_workers > n:
        raise ValueError(f"n_workers must be <= n = {n}, got {n_workers}")
    perm = make_rng(seed).permutation(n)
    return [np.sort(s) for s in np.array_split(perm, n_workers)]


def accumulated_grad(problem, theta, batch, n_micro: int):
    r"""Gradient accumulation: the batch gradient computed as the mean of microbatch gradients.

    .. math::

        g = \frac{1}{k} \sum_{j=1}^{k} \frac{1}{|M_j|} \sum_{i \in M_j} \nabla f_i(\theta)
          = \frac{1}{|B|} \sum_{i \in B} \nabla f_i(\theta),

    where :math:`B = M_1 \cup \dots \cup M_k` is split into :math:`k` microbatches of equal size
    :math:`|B|/k`. Only one microbatch's activations are in memory at a time, and the result is
    the large-batch gradient, exactly (up to rounding).

    Args:
        problem: a finite sum (``grad_batch``).
        theta: parameters.
        batch: indices of the batch :math:`B`.
        n_micro: number of microbatches :math:`k`; must divide ``len(batch)``.

    Reference: P. Goyal et al., "Accurate, large minibatch SGD: training ImageNet in 1 hour",
    arXiv:1706.02677, 2017 (Section 2 and Appendix on gradient aggregation).
    """
    batch = np.asarray(batch)
    n_micro = check_int("n_micro", n_micro, low=1)
    if batch.ndim != 1 or batch.size % n_micro:
        raise ValueError(
            f"n_micro must divide the batch size {batch.size} into equal microbatches, got {n_micro}"
        )
    acc = None
    for micro in np.split(batch, n_micro):
        g = problem.grad_batch(theta, micro)
        acc = tree_map(lambda a: np.array(a, dtype=np.float64), g) if acc is None else tree_map(
            lambda a, b: a + b, acc, g
        )
    return tree_map(lambda a: a / n_micro, acc)


def data_parallel_grad(problem, theta, worker_batches, n_micro: int = 1):
    r"""The all-reduced gradient of synchronous data parallelism.

    .. math::

        g = \frac{1}{K} \sum_{k=1}^{K} \frac{1}{b} \sum_{i \in B_k} \nabla f_i(\theta),

    the mean of the :math:`K` workers' minibatch gradients (each worker's batch :math:`B_k`
    of size :math:`b`, possibly accumulated over ``n_micro`` microbatches). With equal batch
    sizes this is the gradient of the union batch of size :math:`Kb`.

    Args:
        problem: a finite sum.
        theta: parameters (every worker holds the same copy).
        worker_batches: sequence of :math:`K` index arrays of equal length.
        n_micro: microbatches per worker (see :func:`accumulated_grad`).

    Reference: J. Dean et al., "Large scale distributed deep networks", NeurIPS 2012;
    P. Goyal et al., arXiv:1706.02677, 2017.
    """
    if len(worker_batches) == 0:
        raise ValueError("worker_batches must hold at least one index array, got none")
    sizes = {len(b) for b in worker_batches}
    if len(sizes) != 1:
        raise ValueError(f"worker_batches must have equal lengths, got {sorted(sizes)}")
    grads = [accumulated_grad(problem, theta, b, n_micro) for b in worker_batches]
    return tree_mean(grads)


def simulate_data_parallel(
    problem,
    steps: int,
    *,
    n_workers: int,
    batch_size: int,
    lr=None,
    optimizer=None,
    n_micro: int = 1,
    shards: Sequence[np.ndarray] | None = None,
    compressor: Callable | None = None,
    error_feedback: bool = False,
    batches=None,
    keep_batches: bool = False,
    seed: int | None = None,
    theta0=None,
    log_every: int = 1,
    diverge_factor: float = DIVERGE_FACTOR,
) -> SimulationHistory:
    r"""Synchronous data-parallel SGD over :math:`K` simulated workers.

    At step :math:`t` every worker :math:`k` draws :math:`b` examples :math:`B_{t,k}` from its
    shard, computes its minibatch gradient (accumulated over ``n_micro`` microbatches), optionally
    compresses it (:math:`C`, with error feedback :math:`e_k`), and the mean is applied:

    .. math::

        g_{t,k} = \frac{1}{b}\sum_{i \in B_{t,k}} \nabla f_i(\theta_t), \qquad
        \theta_{t+1} = \theta_t - \eta\, \frac{1}{K} \sum_{k=1}^{K} C(g_{t,k} + e_{t,k}),
        \qquad e_{t+1,k} = g_{t,k} + e_{t,k} - C(g_{t,k} + e_{t,k})

    (:math:`e \equiv 0` without error feedback; :math:`C = \mathrm{id}` without a compressor;
    an ``optimizer`` replaces the :math:`-\eta\,\cdot` step). Without compression this is SGD
    with batch size :math:`Kb`.

    Args:
        problem: a finite sum (``n``, ``value``, ``grad_batch``).
        steps: number of synchronous steps.
        n_workers: :math:`K`.
        batch_size: per-worker batch size :math:`b` (the global batch is :math:`Kb`).
        lr: SGD step size (a number or a schedule); exactly one of ``lr`` and ``optimizer``.
        optimizer: a :mod:`steplab.optim` transformation applied to the averaged gradient.
        n_micro: microbatches per worker (gradient accumulation).
        shards: list of :math:`K` index arrays (default :func:`iid_shards` with ``seed``).
        compressor: ``fn(vector, rng) -> vector`` applied to each worker's flattened gradient,
            e.g. :func:`top_k_compressor` or :func:`quantize_compressor`.
        error_feedback: keep each worker's compression residual and add it to its next gradient.
        batches: explicit per-step index arrays, shape ``(steps, K, b)``, replacing the sampler.
        keep_batches: store the index arrays used in ``history.batches``.
        seed: seed of ``np.random.default_rng`` (shards, draws, compression; ``None``: 0) and of
            ``problem.init_params`` (``None``: the problem's own).
        theta0: starting point (default ``problem.init_params(seed)``, as in :func:`steplab.run.minimize`).
        log_every: log the full loss every this many steps.
        diverge_factor: stop when the loss exceeds this times ``max(initial loss, 1)``.

    Reference: J. Dean et al., "Large scale distributed deep networks", NeurIPS 2012;
    S. U. Stich, J.-B. Cordonnier and M. Jaggi, "Sparsified SGD with memory", NeurIPS 2018
    (error feedback).
    """
    n = check_finite_sum(problem, ("n", "value", "grad_batch"))
    steps = check_int("steps", steps, low=1)
    n_workers = check_int("n_workers", n_workers, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    lr = check_step_rule(lr, optimizer)
    _check_compression(compressor, error_feedback)
    rng = make_rng(seed)
    shards = worker_shards(shards, n, n_workers, seed)
    draw = _batch_source(shards, batches, steps, n_workers, batch_size, rng)
    theta = initial_params(problem, theta0, seed)
    step_fn = Stepper(theta, lr, optimizer)
    residuals = [np.zeros(tree_flatten(theta).size) for _ in range(n_workers)] if error_feedback else None
    log = Logger.simulation(problem, f"data-parallel SGD (K={n_workers}, b={batch_size})", log_every, diverge_factor)
    used = [] if keep_batches else None
    theta = _steps(problem, theta, steps, draw, n_micro, compressor, residuals, rng, step_fn, log, used)
    return log.history(theta, batches=used)


def _steps(problem, theta, steps, draw, n_micro, compressor, residuals, rng, step_fn, log, used):
    """The synchronous steps of :func:`simulate_data_parallel`; returns the last iterate."""
    evals = 0
    log(theta, 0, evals, force=True)
    for t in range(steps):
        worker_batches = draw(t)
        if used is not None:
            used.append(np.stack(worker_batches))
        grads = [accumulated_grad(problem, theta, b, n_micro) for b in worker_batches]
        evals += sum(len(b) for b in worker_batches)
        if compressor is not None:
            grads = [_compress(g, compressor, residuals, k, rng) for k, g in enumerate(grads)]
        theta = step_fn(theta, tree_mean(grads))
        if not log(theta, t + 1, evals):
            break
    log(theta, step_fn.count, evals, force=True)
    return theta


def _check_compression(compressor, error_feedback) -> None:
    if compressor is not None and not callable(compressor):
        raise ValueError(f"compressor must be callable fn(vector, rng), got {compressor!r}")
    if error_feedback and compressor is None:
        raise ValueError("error_feedback=True needs a compressor, got compressor=None")


def worker_shards(shards, n, n_workers, seed):
    """The workers' index sets: :func:`iid_shards` by default, else ``shards`` checked."""
    shards = iid_shards(n, n_workers, seed) if shards is None else check_index_sets("shards", shards, n)
    if len(shards) != n_workers:
        raise ValueError(f"shards must hold n_workers = {n_workers} index arrays, got {len(shards)}")
    return shards


def _batch_source(shards, batches, steps, n_workers, batch_size, rng):
    """``t -> [index array per worker]``: drawn from the shards, or the given ``batches[t]``."""
    if batches is None:
        check_batch_vs_shards(batch_size, shards)
        sampler = ShardSampler(shards, batch_size, rng)
        return lambda t: sampler()
    batches = np.asarray(batches)
    if batches.shape != (steps, n_workers, batch_size):
        raise ValueError(
            f"batches must have shape (steps, n_workers, batch_size) = "
            f"{(steps, n_workers, batch_size)}, got {batches.shape}"
        )
    return lambda t: list(batches[t])


def _compress(g, compressor, residuals, k, rng):
    """Worker ``k``'s message: its flattened gradient compressed, with error feedback when
    ``residuals`` is kept."""
    v = tree_flatten(g)
    if residuals is None:
        return tree_unflatten(compressor(v, rng), g)
    c, residuals[k] = error_feedback_step(v, residuals[k], compressor, rng)
    return tree_unflatten(c, g)
