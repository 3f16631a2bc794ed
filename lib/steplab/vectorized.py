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
    steps = check_int("steps", steps)
    diverge_factor = check_diverge_factor(diverge_factor)
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

    x0 = np.asarray(initial_params(problem, theta0, seed))
    if x0.ndim != 1:
        raise ValueError(f"theta0 must be a 1-D parameter vector, got shape {x0.shape}")
    k = lr.size
    loss0 = float(problem.value(x0))
    threshold = divergence_limit(loss0, diverge_factor)

    theta = np.tile(x0, (k, 1))
    buf = np.zeros_like(theta)
    loss = np.empty((k, steps + 1))
    loss[:, 0] = loss0
    gnorm = np.empty((k, steps))
    unorm = np.empty((k, steps))
    traj = np.empty((k, steps + 1, x0.size), dtype=x0.dtype) if keep_trajectory else None
    if keep_trajectory:
        traj[:, 0] = x0
    n_run = np.full(k, steps)
    diverged_at = [None] * k
    reasons = [None] * k
    alive = np.arange(k)
    factors = -lr[:, None]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for t in range(steps):
            if alive.size == 0:
                break
            th = theta[alive]
            g = np.asarray(problem.grad(th))
            bad_g = ~np.all(np.isfinite(g), axis=1)
            if momentum > 0:
                b = momentum * buf[alive] + g
                d = g + momentum * b if nesterov else b
            else:
                d = g
            u = d * factors[alive]
            new = np.add(th, u, dtype=th.dtype, casting="same_kind")
            bad_x = ~np.all(np.isfinite(new), axis=1)
            f_new = np.asarray(problem.value(new), dtype=np.float64)
            bad_f = ~np.isfinite(f_new)
            big = ~bad_f & (np.abs(f_new) > threshold)
            bad = bad_g | bad_x | bad_f | big
            for j in np.flatnonzero(bad):
                row = alive[j]
                n_run[row] = t
                if bad_g[j]:
                    diverged_at[row], reasons[row] = t, "non-finite gradient"
                elif bad_x[j]:
                    diverged_at[row], reasons[row] = t + 1, "non-finite parameters"
                elif bad_f[j]:
                    diverged_at[row], reasons[row] = t + 1, f"loss is {f_new[j]}"
                else:
                    diverged_at[row] = t + 1
                    reasons[row] = (
                        f"|loss| = {abs(f_new[j]):.3g} > diverge_factor * max(|f(theta_0)|, 1) = {threshold:.3g}"
                    )
            good = ~bad
            rows = alive[good]
            gnorm[rows, t] = np.linalg.norm(g[good], axis=1)
            unorm[rows, t] = np.linalg.norm(u[good], axis=1)
            loss[rows, t + 1] = f_new[good]
            theta[rows] = new[good]
            if momentum > 0:
                buf[rows] = b[good]
            if keep_trajectory:
                traj[rows, t + 1] = new[good]
            alive = rows

    return [
        History(
            loss=loss[j, : n_run[j] + 1].copy(),
            grad_norm=gnorm[j, : n_run[j]].copy(),
            update_norm=unorm[j, : n_run[j]].copy(),
            lr=np.full(n_run[j], lr[j]),
            params=theta[j].copy(),
            metrics={},
            trajectory=traj[j, : n_run[j] + 1].copy() if keep_trajectory else None,
            diverged_at=diverged_at[j],
            reason=reasons[j],
            stop_reason="diverged" if diverged_at[j] is not None else "steps",
            metric_steps=np.arange(n_run[j], dtype=np.int64),
        )
        for j in range(k)
    ]


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
    if not getattr(problem, "batched", False):
        raise ValueError(
            f"sgd_runs needs a problem with batched = True; {type(problem).__name__} is not "
            "(run minimize in a loop instead)"
        )
    lr = optim.check_lr(lr)
    noise_std = check_nonnegative("noise_std", noise_std)
    if average not in (False, True, "lr"):
        raise ValueError(f"average must be False, True or 'lr', got {average!r}")
    average_start = check_int("average_start", average_start)
    n = None
    if batch_size is not None:
        if not hasattr(problem, "grad_batches"):
            raise ValueError(f"batch_size={batch_size!r} needs a finite-sum problem; {type(problem).__name__} is not")
        n = int(problem.n)
        batch_size = check_int("batch_size", batch_size, low=1)
    rec = _record_steps(steps, record_every, record_steps)
    record_loss = check_bool("record_loss", record_loss)
    record_grad_norm2 = check_bool("record_grad_norm2", record_grad_norm2)

    x0 = np.asarray(initial_params(problem, theta0, seed), dtype=np.float64)
    if not np.all(np.isfinite(x0)):
        raise ValueError("theta0 must be finite, got non-finite entries")
    if x0.shape == (problem.dim,):
        theta = np.tile(x0, (n_runs, 1))
    elif x0.shape == (n_runs, problem.dim):
        theta = x0.copy()
    else:
        raise ValueError(f"theta0 must have shape ({problem.dim},) or ({n_runs}, {problem.dim}), got shape {x0.shape}")
    x_star = getattr(problem, "minimizer", None)
    x_star = None if x_star is None else np.asarray(x_star, dtype=np.float64)
    f_star = getattr(problem, "f_star", None)
    rng = make_rng(seed)
    dim = theta.shape[1]

    loss = np.empty((rec.size, n_runs)) if record_loss else None
    dist2 = np.empty((rec.size, n_runs)) if x_star is not None else None
    avg_loss = np.empty((rec.size, n_runs)) if average and record_loss else None
    avg_dist2 = np.empty((rec.size, n_runs)) if average and x_star is not None else None
    grad_norm2 = np.empty((rec.size, n_runs)) if record_grad_norm2 else None
    lrs = np.empty(steps)
    total = np.zeros_like(theta)
    weight = 0.0
    j = 0

    def record(t, j):
        """Fill row j; return the full gradient at theta_t when it was computed, else None."""
        g_full = None
        if grad_norm2 is not None:
            g_full = np.asarray(problem.grad(theta), dtype=np.float64)
            grad_norm2[j] = np.sum(g_full**2, axis=1)
        if loss is not None:
            loss[j] = problem.value(theta)
        if dist2 is not None:
            dist2[j] = np.sum((theta - x_star) ** 2, axis=1)
        if average:
            avg = total / weight if weight > 0 else theta
            if avg_loss is not None:
                avg_loss[j] = problem.value(avg)
            if avg_dist2 is not None:
                avg_dist2[j] = np.sum((avg - x_star) ** 2, axis=1)
        return g_full

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for t in range(steps + 1):
            g_full = None
            if j < rec.size and rec[j] == t:
                g_full = record(t, j)
                j += 1
            if t == steps:
                break
            eta_t = lr_at(lr, t)
            lrs[t] = eta_t
            if batch_size is None:
                g = g_full if g_full is not None else np.asarray(problem.grad(theta), dtype=np.float64)
            else:
                g = problem.grad_batches(theta, rng.integers(n, size=(n_runs, batch_size)))
            if noise_std > 0:
                g = g + noise_std * rng.standard_normal((n_runs, dim))
            if average and t >= average_start:
                w = 1.0 if average is True else eta_t
                total += w * theta
                weight += w
            theta = theta - eta_t * g

    return Runs(
        steps=rec,
        loss=loss,
        dist2=dist2,
        params=theta,
        lr=lrs,
        f_star=None if f_star is None else float(f_star),
        average=(total / weight if weight > 0 else theta.copy()) if average else None,
        avg_loss=avg_loss,
        avg_dist2=avg_dist2,
        grad_norm2=grad_norm2,
    )
