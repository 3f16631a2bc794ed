r"""DP-SGD: per-example clipping and Gaussian noise, and the simulated private training loop.

.. math::

    \tilde g = \frac{1}{B}\Bigl(\sum_{i=1}^{B} g_i \min\bigl(1, C/\|g_i\|\bigr)
               + \mathcal N(0, \sigma^2 C^2 I)\Bigr).

Reference: M. Abadi et al., "Deep learning with differential privacy", CCS 2016.
"""
from __future__ import annotations

import numpy as np

from ._checks import (
    DIVERGE_FACTOR,
    check_finite_sum,
    check_int,
    check_nonnegative,
    check_positive,
    make_rng,
)
from ._tree import initial_params, tree_leaves, tree_map
from .distributed._common import Stepper, check_step_rule
from .records import Logger, SimulationHistory

__all__ = ["clip_per_example", "dp_sgd_gradient", "simulate_dp_sgd"]


def _per_example_norms(per_example_grads):
    leaves = sorted(per_example_grads.items()) if isinstance(per_example_grads, dict) else [(None, per_example_grads)]
    sq = 0.0
    for key, a in leaves:
        a = np.asarray(a)
        name = "per_example_grads" if key is None else f"per_example_grads[{key!r}]"
        if a.ndim < 2 or a.shape[0] == 0:
            raise ValueError(
                f"{name} must have a leading example axis with at least one example "
                f"(shape (B, ...), B >= 1), got shape {a.shape}"
            )
        sq = sq + np.sum(np.square(a).reshape(a.shape[0], -1), axis=1)
    return np.sqrt(sq)


def clip_per_example(per_example_grads, clip_norm: float):
    r"""Clip every per-example gradient to norm at most :math:`C`.

    .. math::

        \bar g_i = g_i \,\min\Bigl(1, \frac{C}{\|g_i\|}\Bigr).

    Args:
        per_example_grads: array ``(B, dim)`` (or a dict of arrays with a leading example axis;
            the norm is over all of an example's entries).
        clip_norm: :math:`C > 0`.

    Reference: M. Abadi et al., "Deep learning with differential privacy", CCS 2016.
    """
    clip_norm = check_positive("clip_norm", clip_norm)
    norms = _per_example_norms(per_example_grads)
    factor = np.minimum(1.0, clip_norm / np.maximum(norms, np.finfo(np.float64).tiny))

    def scale(a):
        a = np.asarray(a)
        return a * factor.reshape((-1,) + (1,) * (a.ndim - 1)).astype(a.dtype, copy=False)

    return tree_map(scale, per_example_grads)


def dp_sgd_gradient(per_example_grads, clip_norm: float, noise_multiplier: float, rng):
    r"""The DP-SGD gradient: clip each example, sum, add Gaussian noise, divide by the batch size.

    .. math::

        \tilde g = \frac{1}{B}\Bigl(\sum_{i=1}^{B} g_i \min\bigl(1, C/\|g_i\|\bigr)
                   + \mathcal N(0, \sigma^2 C^2 I)\Bigr),

    so every coordinate of the noise in :math:`\tilde g` has standard deviation
    :math:`\sigma C / B`. (The privacy guarantee also depends on how batches are sampled and
    on the accountant; neither is modelled here.)

    Args:
        per_example_grads: array ``(B, dim)`` or a dict of arrays with a leading example axis.
        clip_norm: :math:`C > 0`.
        noise_multiplier: :math:`\sigma \ge 0`.
        rng: a ``np.random.Generator``.

    Reference: M. Abadi et al., "Deep learning with differential privacy", CCS 2016.
    """
    check_nonnegative("noise_multiplier", noise_multiplier)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    clipped = clip_per_example(per_example_grads, clip_norm)
    batch = next(iter(tree_leaves(clipped))).shape[0]
    std = noise_multiplier * float(clip_norm)

    def noisy_mean(a):
        total = a.sum(axis=0, dtype=np.float64)
        if std > 0:
            total = total + rng.normal(0.0, std, size=total.shape)
        return total / batch

    return tree_map(noisy_mean, clipped)


def simulate_dp_sgd(
    problem,
    steps: int,
    *,
    batch_size: int,
    clip_norm: float,
    noise_multiplier: float,
    lr=None,
    optimizer=None,
    keep_batches: bool = False,
    seed: int | None = None,
    theta0=None,
    log_every: int = 1,
    diverge_factor: float = DIVERGE_FACTOR,
) -> SimulationHistory:
    r"""DP-SGD: SGD on clipped, noised minibatch gradients (:func:`dp_sgd_gradient`).

    .. math::

        \theta_{t+1} = \theta_t - \eta\,\frac{1}{B}\Bigl(\sum_{i \in B_t}
            \nabla f_i(\theta_t)\min\bigl(1, C/\|\nabla f_i(\theta_t)\|\bigr)
            + \mathcal N(0, \sigma^2 C^2 I)\Bigr),

    :math:`B_t` of fixed size :math:`B` drawn without replacement (the privacy analysis of
    Abadi et al. assumes Poisson sampling; no accountant is included).

    Args:
        problem: a finite sum with ``per_example_grads(theta, idx)``.
        steps: number of steps.
        batch_size: :math:`B`.
        clip_norm: :math:`C > 0`.
        noise_multiplier: :math:`\sigma \ge 0`.
        lr: step size (a number or a schedule); exactly one of ``lr`` and ``optimizer``.
        optimizer: a :mod:`steplab.optim` transformation applied to the private gradient.
        keep_batches, seed, theta0, log_every, diverge_factor: as in
            :func:`simulate_data_parallel`.

    Reference: M. Abadi et al., "Deep learning with differential privacy", CCS 2016.
    """
    n = check_finite_sum(problem, ("n", "value", "per_example_grads"))
    steps = check_int("steps", steps, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= problem.n = {n}, got {batch_size}")
    clip_norm = check_positive("clip_norm", clip_norm)
    lr = check_step_rule(lr, optimizer)
    rng = make_rng(seed)
    check_nonnegative("noise_multiplier", noise_multiplier)
    theta = initial_params(problem, theta0, seed)
    step_fn = Stepper(theta, lr, optimizer)
    log = Logger.simulation(problem, f"DP-SGD (C={clip_norm:g}, sigma={noise_multiplier:g})", log_every, diverge_factor)
    used = [] if keep_batches else None
    evals = 0
    log(theta, 0, evals, force=True)
    for t in range(steps):
        idx = rng.choice(n, size=batch_size, replace=False)
        if used is not None:
            used.append(idx)
        g = dp_sgd_gradient(problem.per_example_grads(theta, idx), clip_norm, noise_multiplier, rng)
        evals += batch_size
        theta = step_fn(theta, tree_map(lambda gi, t_: gi.astype(t_.dtype, copy=False), g, theta))
        if not log(theta, t + 1, evals):
            break
    log(theta, step_fn.count, evals, force=True)
    return log.history(theta, batches=used)
