r"""Many step sizes or many seeds of plain SGD, advanced together as one stacked run.

- :func:`sweep_lr` runs gradient descent (optionally with heavy-ball or Nesterov momentum) for
  many learning rates at once on a problem with ``batched = True``; it returns the same
  Histories as a loop of :func:`steplab.run.minimize` calls with ``steplab.optim.sgd``,
  several times faster.
- :func:`sgd_runs` runs many independent SGD runs at once (per-run minibatches and/or an
  additive Gaussian oracle noise), for expectations over the randomness of SGD, with the
  Polyak-Ruppert average.

Both need a problem whose ``value`` and ``grad`` take a ``(k, dim)`` stack of parameters.
"""

from __future__ import annotations

import numpy as np

from . import optim
from ._checks import (
    DIVERGE_FACTOR,
    check_bool,
    check_diverge_factor,
    check_int,
    check_nonnegative,
    check_unit_interval,
    divergence_limit,
    lr_at,
    make_rng,
)
from ._tree import initial_params
from .records import History, Runs

__all__ = ["sweep_lr", "sgd_runs"]


def sweep_lr(
    problem,
    lrs,
    steps: int,
    momentum: float = 0.0,
    nesterov: bool = False,
    theta0=None,
    seed: int = 0,
    keep_trajectory: bool = False,
    diverge_factor: float = DIVERGE_FACTOR,
) -> list[History]:
    r"""Full-batch gradient descent for many learning rates at once.

    For each $\eta_j$ in ``lrs``, from the same $\theta_0$ (torch's SGD, dampening 0):

    $$b_t = \mu\, b_{t-1} + \nabla f(\theta_t),\ b_{-1} = 0, \qquad
    \theta_{t+1} = \theta_t - \eta_j \cdot \begin{cases} b_t & \text{heavy ball (or GD, } \mu = 0)\\
    \nabla f(\theta_t) + \mu b_t & \text{Nesterov}\end{cases}$$

    All rates advance together as one stack of parameters of shape ``(k, dim)``, so the problem
    must have ``batched = True`` (``Quadratic``, ``LeastSquares``). A rate that diverges is frozen
    at its last good iterate and its History trimmed, exactly as :func:`minimize` would do; the
    others go on.

    Args:
        problem: a problem with ``batched = True``.
        lrs: the learning rates $\eta_j \ge 0$ (1-D).
        steps: number of updates.
        momentum: $\mu \in [0, 1)$.
        nesterov: Nesterov's form (needs ``momentum > 0``).
        theta0: common starting point (default ``problem.init_params(seed)``).
        seed: seed of ``problem.init_params`` when ``theta0`` is None.
        keep_trajectory: keep every iterate of every run.
        diverge_factor: as in :func:`minimize`.

    Returns:
        One :class:`History` per learning rate, equal (to rounding) to
        ``minimize(problem, optim.sgd(lr, momentum, nesterov), steps, theta0=theta0)``.

    Reference: B. T. Polyak, "Some methods of speeding up the convergence of iteration
    methods", USSR Comput. Math. Math. Phys. 4(5), 1964; I. Sutskever, J. Martens, G. Dahl and
    G. Hinton, "On the importance of initialization and momentum in deep learning", ICML 2013.
    """
    steps, lr, momentum, nesterov = _check_sweep(problem, lrs, steps, momentum, nesterov)
    diverge_factor = check_diverge_factor(diverge_factor)
    x0 = np.asarray(initial_params(problem, theta0, seed))
    if x0.ndim != 1:
        raise ValueError(f"theta0 must be a 1-D parameter vector, got shape {x0.shape}")
    loss0 = float(problem.value(x0))
    sweep = _Sweep(x0, loss0, lr, steps, momentum, nesterov, keep_trajectory)
    threshold = divergence_limit(loss0, diverge_factor)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for t in range(steps):
            if sweep.alive.size == 0:
                break
            sweep.advance(problem, t, threshold)
    return sweep.histories()


def _check_sweep(problem, lrs, steps, momentum, nesterov):
    steps = check_int("steps", steps)
    if not getattr(problem, "batched", False):
        raise ValueError(
            f"sweep_lr needs a problem with batched = True; {type(problem).__name__} is not "
            "(run minimize in a loop instead)"
        )
    lr = np.asarray(lrs, dtype=np.float64)
    if lr.ndim != 1 or lr.size == 0:
        raise ValueError(f"lrs must be a non-empty 1-D sequence, got shape {lr.shape}")
    if not np.all(np.isfinite(lr) & (lr >= 0)):
        raise ValueError(f"lrs must be finite and >= 0, got {lr.tolist()}")
    momentum = check_unit_interval("momentum", momentum)
    nesterov = check_bool("nesterov", nesterov)
    if nesterov and momentum == 0.0:
        raise ValueError(f"nesterov=True requires momentum > 0, got momentum={momentum!r}")
    return steps, lr, momentum, nesterov


class _Sweep:
    """The stacked runs of :func:`sweep_lr`: one row per learning rate, rows leave when they diverge."""

    def __init__(self, x0, loss0, lr, steps, momentum, nesterov, keep_trajectory):
        k = lr.size
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.theta = np.tile(x0, (k, 1))
        self.buf = np.zeros_like(self.theta)
        self.loss = np.empty((k, steps + 1))
        self.loss[:, 0] = loss0
        self.gnorm, self.unorm = np.empty((k, steps)), np.empty((k, steps))
        self.traj = np.empty((k, steps + 1, x0.size), dtype=x0.dtype) if keep_trajectory else None
        if keep_trajectory:
            self.traj[:, 0] = x0
        self.n_run = np.full(k, steps)
        self.diverged_at, self.reasons = [None] * k, [None] * k
        self.alive = np.arange(k)

    def advance(self, problem, t, threshold):
        """Step ``t`` of every live row: the momentum update, then the divergence rule per row."""
        alive, th = self.alive, self.theta[self.alive]
        g = np.asarray(problem.grad(th))
        if self.momentum > 0:
            b = self.momentum * self.buf[alive] + g
            d = g + self.momentum * b if self.nesterov else b
        else:
            d = g
        u = -d * self.lr[alive, None]
        new = np.add(th, u, dtype=th.dtype, casting="same_kind")
        f_new = np.asarray(problem.value(new), dtype=np.float64)
        checks = (
            (~np.all(np.isfinite(g), axis=1), 0, lambda j: "non-finite gradient"),
            (~np.all(np.isfinite(new), axis=1), 1, lambda j: "non-finite parameters"),
            (~np.isfinite(f_new), 1, lambda j: f"loss is {f_new[j]}"),
            (np.abs(f_new) > threshold, 1, lambda j: (
                f"|loss| = {abs(f_new[j]):.3g} > diverge_factor * max(|f(theta_0)|, 1) = {threshold:.3g}")),
        )
        bad = np.zeros(alive.size, dtype=bool)
        for failed, offset, why in checks:
            for j in np.flatnonzero(failed & ~bad):  # the first failed check names the reason
                row = alive[j]
                self.n_run[row], self.diverged_at[row], self.reasons[row] = t, t + offset, why(j)
            bad |= failed
        good = ~bad
        rows = alive[good]
        self.gnorm[rows, t] = np.linalg.norm(g[good], axis=1)
        self.unorm[rows, t] = np.linalg.norm(u[good], axis=1)
        self.loss[rows, t + 1] = f_new[good]
        self.theta[rows] = new[good]
        if self.momentum > 0:
            self.buf[rows] = b[good]
        if self.traj is not None:
            self.traj[rows, t + 1] = new[good]
        self.alive = rows

    def histories(self) -> list[History]:
        out = []
        for j, n in enumerate(self.n_run):
            out.append(History(
                loss=self.loss[j, : n + 1].copy(),
                grad_norm=self.gnorm[j, :n].copy(),
                update_norm=self.unorm[j, :n].copy(),
                lr=np.full(n, self.lr[j]),
                params=self.theta[j].copy(),
                metrics={},
                trajectory=self.traj[j, : n + 1].copy() if self.traj is not None else None,
                diverged_at=self.diverged_at[j],
                reason=self.reasons[j],
                stop_reason="diverged" if self.diverged_at[j] is not None else "steps",
                metric_steps=np.arange(n, dtype=np.int64),
            ))
        return out


def _record_steps(steps: int, record_every, record_steps) -> np.ndarray:
    if record_steps is not None:
        rec = np.unique(np.asarray(record_steps, dtype=np.int64).ravel())
        if rec.size and (rec[0] < 0 or rec[-1] > steps):
            raise ValueError(f"record_steps must lie in [0, steps = {steps}], got {np.asarray(record_steps).tolist()}")
        return np.union1d(rec, [0, steps])
    record_every = check_int("record_every", record_every, low=1)
    return np.union1d(np.arange(0, steps + 1, record_every), [steps])


def sgd_runs(
    problem,
    lr,
    steps: int,
    n_runs: int,
    batch_size: int | None = None,
    noise_std: float = 0.0,
    seed: int = 0,
    theta0=None,
    average: bool | str = False,
    average_start: int = 0,
    record_every: int = 1,
    record_steps=None,
    record_loss: bool = True,
    record_grad_norm2: bool = False,
) -> Runs:
    r"""$R$ independent runs of plain SGD, advanced together as one ``(R, dim)`` stack.

    $$\theta_{t+1}^{(r)} = \theta_t^{(r)} - \eta_t\, g_t^{(r)}, \qquad
    g_t^{(r)} = \frac1B\sum_{b=1}^{B}\nabla f_{i_{t,b}^{(r)}}(\theta_t^{(r)}) + \sigma\,\zeta_t^{(r)},
    \qquad \zeta_t^{(r)} \sim \mathcal N(0, I_d),$$

    with $g_t^{(r)} = \nabla f(\theta_t^{(r)}) + \sigma\zeta_t^{(r)}$ when ``batch_size`` is None
    (a noisy gradient oracle: $\mathbb E\|g - \nabla f\|^2 = d\sigma^2$). Every run has its own
    draws; the indices $i_{t,b}^{(r)}$ are i.i.d. uniform on $\{0, \dots, n-1\}$ (with
    replacement, the setting of $\mathbb E\|g_B - \nabla f\|^2 = \sigma^2/B$; for $B = 1$ the
    same law as :func:`minimize`). The draws come from one ``np.random.default_rng(seed)``, at
    each step first ``integers(n, size=(R, B))`` (when ``batch_size`` is set), then
    ``standard_normal((R, dim))`` (when ``noise_std > 0``).

    With ``average``, the running average of the iterates
    $\bar\theta_t = \sum_{s=s_0}^{t-1} w_s\theta_s \big/ \sum_{s=s_0}^{t-1} w_s$ for $t > s_0$
    ($\bar\theta_t = \theta_t$ for $t \le s_0$), $s_0$ = ``average_start``, with $w_s = 1$
    (``average=True``: Polyak-Ruppert) or $w_s = \eta_s$ (``average="lr"``: the weighting of the
    convex SGD bound).

    Args:
        problem: a problem with ``batched = True`` (value and gradient of a ``(R, dim)`` stack);
            with ``batch_size``, a finite sum with ``grad_batches``.
        lr: a step size $\eta \ge 0$ or a schedule ``t -> eta_t`` (``steplab.optim.schedules``).
        steps: number of updates $T$.
        n_runs: number of independent runs $R$.
        batch_size: $B$ examples per run and step, or ``None`` for the full gradient.
        noise_std: $\sigma \ge 0$, the standard deviation of the added noise per coordinate.
        seed: seeds the draws and, when ``theta0`` is None, ``problem.init_params``.
        theta0: common start ``(dim,)`` or one start per run ``(R, dim)``.
        average: ``False``, ``True`` (uniform weights) or ``"lr"`` (weights $\eta_s$).
        average_start: $s_0$, the first iterate in the average (tail averaging).
        record_every: record loss and distance every this many steps (and at step $T$); the
            full loss costs a pass over the data per run, so record sparsely on long runs.
        record_steps: explicit steps to record instead (0 and $T$ are always added).
        record_loss: evaluate $f$ at the recorded steps; ``False`` records only the distances
            (``loss`` and ``avg_loss`` are then ``None``), which costs $O(\mathrm{dim})$ per run.
        record_grad_norm2: record $\|\nabla f(\theta_t^{(r)})\|^2$ of the full gradient at the
            recorded steps in ``Runs.grad_norm2``, the quantity the nonconvex SGD bound controls:
            with ``record_every=1``, ``runs.mean("grad_norm2")[:-1].mean()`` is the Monte Carlo
            estimate of $\frac1T\sum_{t<T}\mathbb E\|\nabla f(\theta_t)\|^2$. It costs a full
            gradient per recorded step, except without ``batch_size``, where the step reuses it.

    Returns:
        :class:`Runs`. No run is stopped on divergence: it shows as ``inf`` or ``nan`` in its column.

    Reference: Bottou, Curtis and Nocedal, "Optimization Methods for Large-Scale Machine
    Learning", SIAM Review 60(2), 2018, Section 4; Polyak and Juditsky, "Acceleration of
    stochastic approximation by averaging", SIAM J. Control Optim. 30(4), 1992.
    """
    steps = check_int("steps", steps)
    n_runs = check_int("n_runs", n_runs, low=1)
    lr, noise_std, n, batch_size = _check_sgd_runs(problem, lr, noise_std, average, batch_size)
    average_start = check_int("average_start", average_start)
    rec = _record_steps(steps, record_every, record_steps)
    record = _RunsRecord(problem, rec, _start_stack(problem, theta0, seed, n_runs), average,
                         check_bool("record_loss", record_loss),
                         check_bool("record_grad_norm2", record_grad_norm2), steps)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _sgd_loop(problem, record, lr, make_rng(seed), n, batch_size, noise_std, average, average_start, steps)
    return record.runs()


def _sgd_loop(problem, record, lr, rng, n, batch_size, noise_std, average, average_start, steps):
    """The updates of :func:`sgd_runs`, recording at the steps ``record.rec``."""
    n_runs = record.theta.shape[0]
    for t in range(steps + 1):
        g_full = record.at(t)
        if t == steps:
            break
        eta_t = record.lr[t] = lr_at(lr, t)
        theta = record.theta
        if batch_size is None:
            g = g_full if g_full is not None else np.asarray(problem.grad(theta), dtype=np.float64)
        else:
            g = problem.grad_batches(theta, rng.integers(n, size=(n_runs, batch_size)))
        if noise_std > 0:
            g = g + noise_std * rng.standard_normal(theta.shape)
        if average and t >= average_start:
            record.accumulate(1.0 if average is True else eta_t)
        record.theta = theta - eta_t * g


def _check_sgd_runs(problem, lr, noise_std, average, batch_size):
    if not getattr(problem, "batched", False):
        raise ValueError(
            f"sgd_runs needs a problem with batched = True; {type(problem).__name__} is not "
            "(run minimize in a loop instead)"
        )
    lr = optim.check_lr(lr)
    noise_std = check_nonnegative("noise_std", noise_std)
    if average not in (False, True, "lr"):
        raise ValueError(f"average must be False, True or 'lr', got {average!r}")
    n = None
    if batch_size is not None:
        if not hasattr(problem, "grad_batches"):
            raise ValueError(f"batch_size={batch_size!r} needs a finite-sum problem; {type(problem).__name__} is not")
        n = int(problem.n)
        batch_size = check_int("batch_size", batch_size, low=1)
    return lr, noise_std, n, batch_size


def _start_stack(problem, theta0, seed, n_runs) -> np.ndarray:
    """The ``(R, dim)`` starting stack: one start repeated, or one start per run."""
    x0 = np.asarray(initial_params(problem, theta0, seed), dtype=np.float64)
    if x0.shape == (problem.dim,):
        return np.tile(x0, (n_runs, 1))
    if x0.shape == (n_runs, problem.dim):
        return x0.copy()
    raise ValueError(f"theta0 must have shape ({problem.dim},) or ({n_runs}, {problem.dim}), got shape {x0.shape}")


class _RunsRecord:
    """The stack of :func:`sgd_runs` and what it records at the steps ``rec``."""

    def __init__(self, problem, rec, theta, average, record_loss, record_grad_norm2, steps):
        self.problem, self.rec, self.theta, self.average = problem, rec, theta, average
        x_star = getattr(problem, "minimizer", None)
        self.x_star = None if x_star is None else np.asarray(x_star, dtype=np.float64)
        shape = (rec.size, theta.shape[0])
        self.loss = np.empty(shape) if record_loss else None
        self.dist2 = np.empty(shape) if self.x_star is not None else None
        self.avg_loss = np.empty(shape) if average and record_loss else None
        self.avg_dist2 = np.empty(shape) if average and self.x_star is not None else None
        self.grad_norm2 = np.empty(shape) if record_grad_norm2 else None
        self.lr = np.empty(steps)
        self.total, self.weight, self.j = np.zeros_like(theta), 0.0, 0

    def accumulate(self, w: float) -> None:
        """Add the current iterates to the running average with weight ``w``."""
        self.total += w * self.theta
        self.weight += w

    def _mean(self):
        return self.total / self.weight if self.weight > 0 else self.theta

    def at(self, t: int):
        """Record row ``j`` if ``t`` is a recorded step; return the full gradient when computed."""
        if self.j >= self.rec.size or self.rec[self.j] != t:
            return None
        j, theta, g_full = self.j, self.theta, None
        if self.grad_norm2 is not None:
            g_full = np.asarray(self.problem.grad(theta), dtype=np.float64)
            self.grad_norm2[j] = np.sum(g_full**2, axis=1)
        if self.loss is not None:
            self.loss[j] = self.problem.value(theta)
        if self.dist2 is not None:
            self.dist2[j] = np.sum((theta - self.x_star) ** 2, axis=1)
        if self.average:
            avg = self._mean()
            if self.avg_loss is not None:
                self.avg_loss[j] = self.problem.value(avg)
            if self.avg_dist2 is not None:
                self.avg_dist2[j] = np.sum((avg - self.x_star) ** 2, axis=1)
        self.j += 1
        return g_full

    def runs(self) -> Runs:
        f_star = getattr(self.problem, "f_star", None)
        return Runs(
            steps=self.rec, loss=self.loss, dist2=self.dist2, params=self.theta, lr=self.lr,
            f_star=None if f_star is None else float(f_star),
            average=self._mean().copy() if self.average else None,
            avg_loss=self.avg_loss, avg_dist2=self.avg_dist2, grad_norm2=self.grad_norm2,
        )
