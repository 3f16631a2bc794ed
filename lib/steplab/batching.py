r"""Batch size: steps to a target, the critical batch size, and what data parallelism costs.

Three pieces:

* :func:`steps_to_target` measures, for each batch size :math:`B`, how many SGD steps reach a
  loss target (median over seeds).
* :func:`critical_batch_size` fits McCandlish et al.'s relation between steps and examples,

  .. math::

      S(B) = S_{\min}\Bigl(1 + \frac{B_{\mathrm{crit}}}{B}\Bigr), \qquad
      E(B) = B\,S(B) = E_{\min}\Bigl(1 + \frac{B}{B_{\mathrm{crit}}}\Bigr), \qquad
      E_{\min} = S_{\min} B_{\mathrm{crit}},

  equivalently :math:`(S/S_{\min} - 1)(E/E_{\min} - 1) = 1`: below :math:`B_{\mathrm{crit}}`
  doubling the batch nearly halves the steps (linear regime); above it the steps saturate at
  :math:`S_{\min}` and the extra examples are wasted.
* :func:`allreduce_time`, :func:`data_parallel_step_time` and :func:`scale_batch` are a
  minimal cost model of synchronous data-parallel training (compute per example plus a ring
  all-reduce of the gradient per step), enough to see why 8x fewer steps need not be 8x
  faster (:func:`bert_base_example`).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Callable, Sequence

import numpy as np

from ._checks import (
    DIVERGE_FACTOR,
    check_diverge_factor,
    check_finite_sum,
    check_int,
    check_nonnegative,
    check_number,
    check_positive,
    divergence_limit,
    is_diverged,
)
from ._tree import initial_params
from .records import BatchScaling

__all__ = [
    "StepsToTarget",
    "steps_to_target",
    "CriticalBatchSize",
    "critical_batch_size",
    "linear_scaling_lr",
    "allreduce_time",
    "StepTime",
    "data_parallel_step_time",
    "scale_batch",
    "bert_base_example",
]


# ---------------------------------------------------------------------------
# steps to a target


@dataclass
class StepsToTarget:
    """Measured steps to reach a loss target.

    Attributes:
        batch_sizes: the batch sizes, shape ``(m,)``.
        lrs: the step size used at each batch size, shape ``(m,)``.
        per_seed: steps for each batch size and seed, shape ``(m, n_seeds)``; ``inf`` where the
            target was not reached within ``max_steps``.
        steps: median over seeds, shape ``(m,)`` (``inf`` when most seeds failed).
        examples: ``batch_sizes * steps``, the examples processed.
        grid: with ``lr_grid``, the candidate step sizes, shape ``(k, m)``; ``lrs`` is then the
            best of each column (fewest median steps; ties go to the smaller step size).
        grid_steps: with ``lr_grid``, the median steps of every candidate, shape ``(k, m)``.
    """

    batch_sizes: np.ndarray
    lrs: np.ndarray
    per_seed: np.ndarray
    steps: np.ndarray
    grid: np.ndarray | None = None
    grid_steps: np.ndarray | None = None

    @property
    def examples(self) -> np.ndarray:
        return self.batch_sizes * self.steps


def steps_to_target(
    problem,
    batch_sizes: Sequence[int],
    lr: float | Sequence[float] | Callable[[int], float] | None,
    target: float,
    max_steps: int,
    *,
    seeds: Sequence[int] = (0,),
    theta0=None,
    check_every: int = 1,
    lr_grid=None,
    diverge_factor: float = DIVERGE_FACTOR,
) -> StepsToTarget:
    r"""For each batch size :math:`B`, the number of SGD steps until :math:`f(\theta_t) \le` target.

    .. math::

        S(B) = \min\Bigl\{t : f(\theta_t) \le f_{\mathrm{target}}\Bigr\}, \qquad
        \theta_{t+1} = \theta_t - \eta_B\,\frac1B \sum_{i \in B_t} \nabla f_i(\theta_t),

    :math:`B_t` drawn without replacement from ``np.random.default_rng(seed)``; the median over
    ``seeds`` is reported. To target a suboptimality :math:`\varepsilon`, pass
    ``target = problem.f_star + eps``.

    Args:
        problem: a finite sum (``n``, ``value``, ``grad_batch``).
        batch_sizes: increasing or not, each in ``[1, n]``.
        lr: one step size for all :math:`B`, a list with one per batch size, or a function
            ``B -> lr`` (e.g. the linear scaling rule ``lambda B: lr0 * B / B0``).
        target: loss value to reach.
        max_steps: give up after this many steps (recorded as ``inf``).
        seeds: seeds of the minibatch draws (and of ``problem.init_params`` when ``theta0`` is
            None).
        theta0: common starting point.
        check_every: evaluate the full loss every this many steps (the count is then rounded up
            to a multiple of it).
        lr_grid: instead of ``lr`` (pass ``lr=None``), candidate step sizes: a 1-D array used at
            every batch size, or an array ``(k, m)`` with one column per batch size. Every
            candidate runs with every seed, and the result reports the best candidate per batch
            size (the learning rate retuned at each :math:`B`, as the critical-batch-size model
            assumes).
        diverge_factor: a run whose loss exceeds ``diverge_factor * max(|f(theta_0)|, 1)`` (or
            is not finite) has diverged: it stops and counts as never reaching the target, as
            in :func:`steplab.run.minimize`. Without it a slowly diverging step size would run
            all ``max_steps``.

    For every batch size the seeds and candidate step sizes run together as one stack of
    parameters when the problem is ``batched`` with ``grad_batches`` (least squares, logistic
    and softmax regression); runs that reached the target or diverged leave the stack. A seed's
    batches are the same for every step size (common random numbers), and identical to those
    of the one-run-at-a-time loop used for other problems, so both paths give the same counts.

    Reference: C. J. Shallue, J. Lee, J. Antognini, J. Sohl-Dickstein, R. Frostig and
    G. E. Dahl, "Measuring the effects of data parallelism on neural network training",
    JMLR 2019.
    """
    n = check_finite_sum(problem, ("n", "value", "grad_batch"), what="steps_to_target")
    sizes = _check_batch_sizes(batch_sizes, n)
    grid, lrs = _check_lrs(lr, lr_grid, sizes)
    target = check_number("target", target)
    max_steps = check_int("max_steps", max_steps, low=1)
    check_every = check_int("check_every", check_every, low=1)
    diverge_factor = check_diverge_factor(diverge_factor)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed, got []")

    fast = getattr(problem, "batched", False) and hasattr(problem, "grad_batches")
    runner = _steps_vectorized if fast else _steps_looped
    counts = np.stack([runner(problem, n, int(b), grid[:, i], target, max_steps, seeds, theta0, check_every,
                              diverge_factor) for i, b in enumerate(sizes)], axis=1)  # (k, m, n_seeds)
    medians = np.median(counts, axis=2)
    best = np.argmin(medians, axis=0)  # first minimum: the smaller step size on ties (grids ascending)
    cols = np.arange(sizes.size)
    out = StepsToTarget(sizes.astype(np.float64), grid[best, cols], counts[best, cols], medians[best, cols])
    if lr_grid is not None:
        out.grid, out.grid_steps = grid, medians
    return out


def _check_batch_sizes(batch_sizes, n: int) -> np.ndarray:
    sizes = np.asarray(batch_sizes)
    if sizes.ndim != 1 or sizes.size == 0 or not np.issubdtype(sizes.dtype, np.integer):
        raise ValueError(f"batch_sizes must be a non-empty list of integers, got {batch_sizes!r}")
    if sizes.min() < 1 or sizes.max() > n:
        raise ValueError(f"batch_sizes must lie in [1, n = {n}], got {sizes.tolist()}")
    return sizes


def _check_lrs(lr, lr_grid, sizes):
    """The candidate step sizes ``(k, m)`` per batch size and the first row, from ``lr`` or ``lr_grid``."""
    if lr_grid is not None:
        if lr is not None:
            raise ValueError(f"pass either lr or lr_grid, not both; got lr={lr!r}")
        grid = np.asarray(lr_grid, dtype=np.float64)
        if grid.ndim == 1:
            grid = np.repeat(grid[:, None], sizes.size, axis=1)
        if grid.ndim != 2 or grid.shape[1] != sizes.size or grid.shape[0] == 0:
            raise ValueError(f"lr_grid must have shape (k,) or (k, {sizes.size}), got shape {np.shape(lr_grid)}")
        if not np.all(np.isfinite(grid) & (grid >= 0)):
            raise ValueError(f"lr_grid must be >= 0, got {grid.tolist()}")
    elif lr is None:
        raise ValueError("lr must be given (a number, one per batch size, or a function of B) unless lr_grid is")
    if lr_grid is not None:
        lrs = grid[0]
    elif callable(lr):
        lrs = np.array([lr(int(b)) for b in sizes], dtype=np.float64)
    elif isinstance(lr, Real) and not isinstance(lr, bool):
        lrs = np.full(sizes.size, float(lr))
    else:
        lrs = np.asarray(lr, dtype=np.float64)
        if lrs.shape != sizes.shape:
            raise ValueError(f"lr must be a number, a function of B, or one value per batch size "
                             f"({sizes.size}), got {lr!r}")
    if not np.all(np.isfinite(lrs) & (lrs >= 0)):
        raise ValueError(f"lr must be >= 0 at every batch size, got {lrs.tolist()}")
    if lr_grid is None:
        grid = lrs[None, :]
    return grid, lrs


def _start(problem, seed, theta0) -> np.ndarray:
    return np.asarray(initial_params(problem, theta0, seed), dtype=np.float64)


def _steps_vectorized(problem, n, b, etas, target, max_steps, seeds, theta0, check_every,
                      diverge_factor):
    """Steps to target for every (step size, seed) pair of one batch size, as one stack."""
    k, s = etas.size, len(seeds)
    counts = np.full((k, s), np.inf)
    theta = np.stack([_start(problem, seed, theta0) for seed in seeds])  # (s, d)
    start_loss = np.asarray(problem.value(theta))
    counts[:, start_loss <= target] = 0
    limit = np.tile(divergence_limit(start_loss, diverge_factor), k)  # per row
    theta = np.repeat(theta[None], k, axis=0).reshape(k * s, -1)  # row = lr index * s + seed index
    eta = np.repeat(etas, s)
    seed_of = np.tile(np.arange(s), k)
    active = np.flatnonzero(np.isinf(counts.ravel()))
    rngs = [np.random.default_rng(seed) for seed in seeds]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for t in range(1, max_steps + 1):
            if active.size == 0:
                break
            # every seed draws every step, active or not, so its batches do not depend on the others
            draws = np.stack([rng.choice(n, size=b, replace=False) for rng in rngs])
            th = theta[active]
            theta[active] = th - eta[active, None] * problem.grad_batches(th, draws[seed_of[active]])
            if t % check_every == 0 or t == max_steps:
                loss = np.asarray(problem.value(theta[active]))
                hit = loss <= target
                counts.ravel()[active[hit]] = t
                active = active[~hit & ~is_diverged(loss, limit[active])]
    return counts


def _steps_looped(problem, n, b, etas, target, max_steps, seeds, theta0, check_every,
                  diverge_factor):
    per_seed = np.full((etas.size, len(seeds)), np.inf)
    for i, eta in enumerate(etas):
        for j, seed in enumerate(seeds):
            rng = np.random.default_rng(seed)
            theta = _start(problem, seed, theta0)
            start_loss = problem.value(theta)
            if start_loss <= target:
                per_seed[i, j] = 0
                continue
            limit = divergence_limit(start_loss, diverge_factor)
            for t in range(1, max_steps + 1):
                idx = rng.choice(n, size=b, replace=False)
                theta = theta - eta * problem.grad_batch(theta, idx)
                if t % check_every == 0 or t == max_steps:
                    loss = problem.value(theta)
                    if is_diverged(loss, limit):
                        break
                    if loss <= target:
                        per_seed[i, j] = t
                        break
    return per_seed


# ---------------------------------------------------------------------------
# the critical batch size


@dataclass
class CriticalBatchSize:
    r"""The fitted :math:`S(B) = S_{\min}(1 + B_{\mathrm{crit}}/B)`.

    Attributes:
        B_crit: the critical batch size (McCandlish et al.'s :math:`B_{\mathrm{crit}}`; it
            equals the noise scale :math:`B_{\mathrm{noise}}` when the model holds exactly).
        S_min: the fewest steps, approached as :math:`B \to \infty`.
        E_min: the fewest examples, :math:`S_{\min} B_{\mathrm{crit}}`, approached as
            :math:`B \to 0`.
    """

    B_crit: float
    S_min: float
    E_min: float

    def steps(self, batch_size):
        """Predicted steps :math:`S(B)`."""
        B = np.asarray(batch_size, dtype=np.float64)
        return self.S_min * (1.0 + self.B_crit / B)

    def examples(self, batch_size):
        """Predicted examples :math:`E(B) = B\\,S(B) = E_{\\min}(1 + B/B_{\\mathrm{crit}})`."""
        B = np.asarray(batch_size, dtype=np.float64)
        return self.E_min * (1.0 + B / self.B_crit)


def critical_batch_size(batch_sizes, steps) -> CriticalBatchSize:
    r"""Fit :math:`S(B) = S_{\min} + S_{\min} B_{\mathrm{crit}} / B` to measured steps.

    :math:`S` is linear in :math:`1/B`, :math:`S = a + c/B` with :math:`a = S_{\min}` and
    :math:`c = S_{\min} B_{\mathrm{crit}} = E_{\min}`; the fit minimizes the relative error
    :math:`\sum_i \bigl((S_i - a - c/B_i)/S_i\bigr)^2` (steps span orders of magnitude), a
    weighted linear least-squares problem. Then

    .. math::

        B_{\mathrm{crit}} = c/a, \qquad S_{\min} = a, \qquad E_{\min} = c .

    Points with infinite steps (target not reached) are dropped.

    Args:
        batch_sizes: the batch sizes :math:`B_i > 0`.
        steps: the steps :math:`S_i > 0` to reach a fixed target at each :math:`B_i`.

    Raises:
        ValueError: when fewer than two distinct finite points remain, or the fit is not of
            the form (steps must fall as the batch grows: :math:`a > 0`, :math:`c > 0`).

    Reference: S. McCandlish, J. Kaplan, D. Amodei and the OpenAI Dota Team, "An empirical model
    of large-batch training", arXiv:1812.06162, 2018 (Eq. 2.11).
    """
    B = np.asarray(batch_sizes, dtype=np.float64)
    S = np.asarray(steps, dtype=np.float64)
    if B.ndim != 1 or B.shape != S.shape:
        raise ValueError(f"batch_sizes and steps must be 1-D of equal length, got shapes {B.shape} "
                         f"and {S.shape}")
    if np.any(~np.isfinite(B)) or np.any(B <= 0):
        raise ValueError(f"batch_sizes must be positive and finite, got {B.tolist()}")
    if np.any(np.isnan(S)) or np.any(S <= 0):
        raise ValueError(f"steps must be positive (inf for 'not reached'), got {S.tolist()}")
    keep = np.isfinite(S)
    B, S = B[keep], S[keep]
    if np.unique(B).size < 2:
        raise ValueError(f"steps must be finite at two or more distinct batch sizes, got {B.tolist()}")
    design = np.column_stack([1.0 / S, 1.0 / (B * S)])
    (a, c), *_ = np.linalg.lstsq(design, np.ones_like(S), rcond=None)
    if not (a > 0 and c > 0):
        raise ValueError(
            f"steps do not follow S = S_min (1 + B_crit / B): fitted S_min = {a:.4g}, "
            f"S_min * B_crit = {c:.4g} (both must be positive; steps must fall as B grows)"
        )
    return CriticalBatchSize(B_crit=float(c / a), S_min=float(a), E_min=float(c))


def linear_scaling_lr(base_lr: float, base_batch: int, batch_size: int) -> float:
    r"""The linear scaling rule: :math:`\eta_B = \eta_{B_0}\, B / B_0`.

    Valid below the critical batch size (each step then does :math:`B/B_0` steps' worth of
    work); beyond it, and early in training without warmup, it breaks.

    Reference: P. Goyal et al., "Accurate, large minibatch SGD: training ImageNet in 1 hour",
    arXiv:1706.02677, 2017.
    """
    base_lr = check_positive("base_lr", base_lr)
    base_batch = check_int("base_batch", base_batch, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    return base_lr * batch_size / base_batch


# ---------------------------------------------------------------------------
# a cost model of data parallelism


def allreduce_time(n_params: float, n_workers: int, bandwidth: float, *, bytes_per_param: int = 4,
                   latency: float = 0.0) -> float:
    r"""Seconds for a ring all-reduce of :math:`P` parameters over :math:`K` workers.

    .. math::

        T_{\mathrm{comm}} = 2\,\frac{K-1}{K}\,\frac{P \cdot \text{bytes}}{\text{bandwidth}}
                            + 2(K-1)\,\text{latency},

    each worker sending and receiving :math:`2(K-1)/K` of the gradient (reduce-scatter, then
    all-gather) over its slowest link. Zero for :math:`K = 1`.

    Args:
        n_params: :math:`P`.
        n_workers: :math:`K`.
        bandwidth: bytes per second of the slowest link in the ring.
        bytes_per_param: 4 for float32 gradients, 2 for 16-bit.
        latency: seconds per message.

    Reference: P. Patarasuk and X. Yuan, "Bandwidth optimal all-reduce algorithms for clusters
    of workstations", J. Parallel Distrib. Comput. 2009; A. Sergeev and M. Del Balso,
    "Horovod", arXiv:1802.05799, 2018.
    """
    n_params = check_positive("n_params", n_params)
    n_workers = check_int("n_workers", n_workers, low=1)
    bandwidth = check_positive("bandwidth", bandwidth)
    bytes_per_param = check_int("bytes_per_param", bytes_per_param, low=1)
    latency = check_nonnegative("latency", latency)
    k = n_workers
    return 2 * (k - 1) / k * n_params * bytes_per_param / bandwidth + 2 * (k - 1) * latency


@dataclass
class StepTime:
    """Seconds per synchronous step: ``compute + communication = total``."""

    compute: float
    communication: float

    @property
    def total(self) -> float:
        return self.compute + self.communication


def data_parallel_step_time(batch_size: int, n_workers: int, n_params: float, time_per_example: float,
                            bandwidth: float, *, bytes_per_param: int = 4,
                            latency: float = 0.0) -> StepTime:
    r"""Seconds per step of synchronous data-parallel SGD (no overlap of compute and communication).

    .. math::

        T_{\mathrm{step}} = \frac{B}{K}\, t_{\mathrm{example}} + T_{\mathrm{comm}}(P, K),

    with :math:`T_{\mathrm{comm}}` from :func:`allreduce_time`.

    Args:
        batch_size: global batch :math:`B` (split evenly over the workers).
        n_workers: :math:`K` (must divide ``batch_size``).
        n_params: :math:`P`.
        time_per_example: seconds of forward and backward pass per example on one worker.
        bandwidth, bytes_per_param, latency: as in :func:`allreduce_time`.

    Reference: P. Goyal et al., "Accurate, large minibatch SGD: training ImageNet in 1 hour",
    arXiv:1706.02677, 2017, Section 5 (communication).
    """
    batch_size = check_int("batch_size", batch_size, low=1)
    n_workers = check_int("n_workers", n_workers, low=1)
    if batch_size % n_workers:
        raise ValueError(f"n_workers must divide batch_size = {batch_size}, got {n_workers}")
    time_per_example = check_positive("time_per_example", time_per_example)
    comm = allreduce_time(n_params, n_workers, bandwidth, bytes_per_param=bytes_per_param,
                          latency=latency)
    return StepTime(compute=batch_size // n_workers * time_per_example, communication=comm)


def scale_batch(*, base_batch: int, base_lr: float, base_steps: int, base_workers: int,
                base_bandwidth: float, batch_size: int, n_workers: int, bandwidth: float,
                n_params: float, time_per_example: float, base_warmup_steps: int = 0,
                bytes_per_param: int = 4, latency: float = 0.0) -> BatchScaling:
    r"""Scale a data-parallel run to a larger batch with the linear scaling rule.

    .. math::

        \eta' = \eta\,\frac{B'}{B}, \qquad S' = S\,\frac{B}{B'}, \qquad
        \text{speedup} = \frac{S\,T_{\mathrm{step}}(B, K)}{S'\,T_{\mathrm{step}}(B', K')}.

    The new run processes the same number of examples: :math:`S' = S\,B/B'` steps (warmup
    scaled the same way, so it lasts as many examples), :math:`\eta' = \eta\,B'/B`; its wall
    clock is :math:`S'\,T_{\mathrm{step}}(B', K')` against :math:`S\,T_{\mathrm{step}}(B, K)`
    (:func:`data_parallel_step_time`). This assumes the large batch is still below the
    critical batch size, so that it needs no more examples (else multiply :math:`S'` by
    :math:`E(B')/E(B)`, see :class:`CriticalBatchSize`).

    Returns a :class:`~steplab.records.BatchScaling` (items as a dict: ``plan["lr"]``) with ``lr``, ``steps``, ``warmup_steps``, ``step_ratio`` (:math:`S/S'`),
    ``base_step_time`` and ``step_time`` (:class:`StepTime`), ``base_hours``, ``hours`` and
    ``speedup`` (base wall clock over new).

    Reference: P. Goyal et al., "Accurate, large minibatch SGD: training ImageNet in 1 hour",
    arXiv:1706.02677, 2017; S. McCandlish, J. Kaplan, D. Amodei et al., "An empirical model of
    large-batch training", arXiv:1812.06162, 2018.
    """
    base_steps = check_int("base_steps", base_steps, low=1)
    base_warmup_steps = check_int("base_warmup_steps", base_warmup_steps)
    lr = linear_scaling_lr(base_lr, base_batch, batch_size)
    steps = base_steps * base_batch / batch_size
    base_time = data_parallel_step_time(base_batch, base_workers, n_params, time_per_example,
                                        base_bandwidth, bytes_per_param=bytes_per_param, latency=latency)
    new_time = data_parallel_step_time(batch_size, n_workers, n_params, time_per_example, bandwidth,
                                       bytes_per_param=bytes_per_param, latency=latency)
    base_seconds = base_steps * base_time.total
    seconds = steps * new_time.total
    return BatchScaling(
        lr=lr,
        planned_steps=steps,
        warmup_steps=base_warmup_steps * base_batch / batch_size,
        step_ratio=base_steps / steps,
        base_step_time=base_time,
        step_time=new_time,
        base_hours=base_seconds / 3600,
        hours=seconds / 3600,
        speedup=base_seconds / seconds,
    )


def bert_base_example() -> BatchScaling:
    r"""The chapter's worked example: BERT-base from batch 256 to batch 2048.

    Assumptions (round numbers of the kind a 2019 GPU cluster gives; change them and see):

    * BERT-base, :math:`P = 110\times10^6` parameters, float32 gradients (4 bytes);
      1,000,000 steps at batch 256, lr :math:`2\times10^{-4}`, 10,000 warmup steps;
    * 32 sequences per GPU per step at 1.7 ms each (forward and backward);
    * batch 256: 8 GPUs in one node, ring all-reduce over NVLink at 100 GB/s;
    * batch 2048: 64 GPUs in 8 nodes, the ring crossing 100 Gb/s links (12.5 GB/s).

    Under the linear scaling rule the large run uses lr :math:`1.6\times10^{-3}`, 125,000
    steps and 1,250 warmup steps: 8x fewer steps, but the all-reduce now crosses the slow
    inter-node links and takes longer than the compute, so the run is only about 4x faster.

    Returns the :class:`~steplab.records.BatchScaling` of :func:`scale_batch`.
    """
    return scale_batch(base_batch=256, base_lr=2e-4, base_steps=1_000_000, base_warmup_steps=10_000,
                       base_workers=8, base_bandwidth=100e9, batch_size=2048, n_workers=64,
                       bandwidth=12.5e9, n_params=110e6, time_per_example=1.7e-3)
