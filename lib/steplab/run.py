r"""The optimization loop and the History it records.

$$\theta_{t+1} = \theta_t + u_t, \qquad (u_t, s_{t+1}) = \mathrm{update}(g_t, s_t, \theta_t),$$

with $g_t = \nabla f(\theta_t)$ (full batch) or $g_t = \frac{1}{B}\sum_{i\in B_t}\nabla f_i(\theta_t)$
(a minibatch drawn without replacement, fresh each step).

- :func:`minimize` runs one optimizer on one problem and returns a :class:`History`.
- :func:`minimize_online` runs an online problem (a loss $f_t$ per round, a projection onto
  the feasible set), such as the Reddi et al. counterexample.
- :func:`sweep_lr` runs gradient descent (optionally with heavy-ball or Nesterov momentum) for many
  learning rates at once on a problem with ``batched = True``; it returns the same Histories as a
  loop of :func:`minimize` calls with ``steplab.optim.sgd``, several times faster.
- :func:`sgd_runs` runs many independent SGD runs at once (per-run minibatches and/or an additive
  Gaussian oracle noise), for expectations over the randomness of SGD, with the Polyak-Ruppert
  average.

A run *diverges* when the loss becomes non-finite, its magnitude exceeds
``diverge_factor * max(|f(theta_0)|, 1)``, or the gradient or the parameters become non-finite.
The run then stops: every recorded array holds finite values up to the last good iterate,
``History.diverged_at`` is the index of the first bad iterate, and ``History.reason`` says what
went wrong. :func:`minimize` also stops early on a small gradient norm (``grad_tol``) or a small
relative change of the loss (``rel_tol``); ``History.stop_reason`` names the rule that ended a run. Floating-point warnings (overflow, invalid values) raised by numpy inside the loop are
silenced, since the loop detects their result itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import optim
from ._checks import (
    DIVERGE_FACTOR,
    lr_at,
    check_bool,
    check_diverge_factor,
    check_int,
    check_nonnegative,
    check_unit_interval,
    divergence_limit,
    make_rng,
)
from ._tree import initial_params, tree_copy

__all__ = ["Record", "History", "Runs", "minimize", "minimize_online", "sweep_lr", "sgd_runs"]


class Record:
    r"""What every run record shares: series by name, the suboptimality and a plot.

    $$\Delta_t = f(\theta_t) - f^\star,$$

    for the recorded losses $f(\theta_t)$. :class:`History` (:func:`minimize`),
    :class:`steplab.finite_sum.EvalHistory` and
    :class:`steplab.distributed.SimulationHistory` derive from it; each names its
    built-in series (``_series_names``) and what the series are plotted against
    (``_plot_x``).

    Reference: Bottou, Curtis and Nocedal, "Optimization Methods for Large-Scale Machine
    Learning", SIAM Review 60(2), 2018, Section 4 (suboptimality against the step or the
    number of gradient evaluations).
    """

    _series_names: tuple[str, ...] = ("loss",)

    def __getitem__(self, key: str) -> np.ndarray:
        """A series by name: a built-in series of this record or a metric."""
        if key in self._series_names:
            value = getattr(self, key)
            if value is None:
                raise KeyError(f"this run recorded no {key!r}")
            return value
        if key in self.metrics:
            return self.metrics[key]
        known = [k for k in self._series_names if getattr(self, k) is not None]
        raise KeyError(f"no series {key!r}; this run has {known + sorted(self.metrics)}")

    def suboptimality(self, f_star: float | None = None) -> np.ndarray:
        r"""$f(\theta_t) - f^\star$ for every recorded loss (``f_star`` defaults to the run's own)."""
        if f_star is None:
            f_star = getattr(self, "f_star", None)
        if f_star is None:
            raise ValueError("f_star is unknown for this run; pass f_star=...")
        return self.loss - f_star

    def _plot_x(self, key: str, size: int) -> tuple[np.ndarray, str]:
        """The x values of a series of ``size`` entries, and the axis label."""
        return np.arange(size), "step $t$"

    def _plot(self, ax, key, log, f_star, label, **kwargs):
        from . import plotting

        return plotting.loss_curves({label: self}, ax=ax, key=key, log=log, f_star=f_star, **kwargs)


@dataclass
class History(Record):
    r"""What a run recorded.

    Attributes:
        loss: $f(\theta_t)$ for $t = 0, \dots, T$ (length ``steps + 1``; the full objective
            even for minibatch runs). For :func:`minimize_online`, the online losses
            $f_t(\theta_t)$, $t = 1, \dots, T$ (length ``steps``).
        grad_norm: $\|g_t\|$ of the gradient handed to the optimizer at step $t$ (a minibatch
            gradient when ``batch_size`` is set), length ``steps``.
        update_norm: $\|\theta_{t+1} - \theta_t\|$, length ``steps``.
        lr: the learning rate each update used (``None`` when the optimizer has none to read).
        metrics: extra series, name -> array with one value per entry of ``metric_steps``
            (every step unless ``metrics_every`` was set).
        params: the last good parameters $\theta_T$.
        trajectory: $\theta_0, \dots, \theta_T$ when kept (an array ``(T + 1, dim)`` for array
            parameters, a list of dicts for dict parameters), else ``None``.
        diverged_at: index of the first iterate that failed the divergence test, or ``None``.
        reason: why the run was stopped early (divergence or a stopping rule, with the numbers),
            or ``None`` when it used its whole budget.
        stop_reason: which rule ended the run: ``"steps"`` (the budget), ``"grad_tol"``,
            ``"rel_tol"``, ``"diverged"``, or ``"line_search"`` (see
            :func:`steplab.linesearch.gd_armijo`); ``None`` for a History built by hand.
        metric_steps: the steps $t$ at which the metrics were computed (metric values at
            $\theta_t$), or ``None`` for a History built by hand.
        loss_steps: the steps $t$ of the entries of ``loss`` when :func:`minimize` evaluated
            it only every ``eval_every`` steps; ``None`` when ``loss`` has every step.
    """

    loss: np.ndarray
    grad_norm: np.ndarray
    update_norm: np.ndarray
    lr: np.ndarray | None
    params: Any
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    trajectory: Any = None
    diverged_at: int | None = None
    reason: str | None = None
    stop_reason: str | None = None
    metric_steps: np.ndarray | None = None
    loss_steps: np.ndarray | None = None

    @property
    def steps(self) -> int:
        """Number of updates recorded."""
        return int(self.grad_norm.size)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    _series_names = ("loss", "grad_norm", "update_norm", "lr")

    def _plot_x(self, key: str, size: int) -> tuple[np.ndarray, str]:
        # the loss may be evaluated only every eval_every steps, the metrics every metrics_every
        steps = self.loss_steps if key == "loss" else self.metric_steps if key in self.metrics else None
        if steps is None or len(steps) != size:
            steps = np.arange(size)
        return np.asarray(steps), "step $t$"

    def plot(self, ax=None, key: str = "loss", log: bool = True, f_star: float | None = None,
             label: str | None = None, **kwargs):
        """Plot one series against the step (see :func:`steplab.plotting.loss_curves`).

        Returns the list with the one ``Line2D`` drawn.
        """
        return self._plot(ax, key, log, f_star, label or key, **kwargs)

    def __repr__(self) -> str:
        if self.diverged:
            status = f"diverged at {self.diverged_at} ({self.reason})"
        elif self.reason is not None:
            status = f"stopped: {self.reason}"
        else:
            status = "finished"
        last = f"{self.loss[-1]:.4g}" if self.loss.size else "n/a"
        return f"History(steps={self.steps}, final loss={last}, {status})"


# ------------------------------------------------------------------ validation


def _check_metrics(metrics) -> dict[str, Callable]:
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a dict name -> fn(theta, grad, update, state), got {metrics!r}")
    for name, fn in metrics.items():
        if not callable(fn):
            raise ValueError(f"metrics[{name!r}] must be callable, got {fn!r}")
        if name in ("loss", "grad_norm", "update_norm", "lr"):
            raise ValueError(f"metrics[{name!r}] would shadow a built-in series; choose another name")
    return dict(metrics)


def check_tol(name: str, value) -> float | None:
    """A stopping tolerance: ``None`` (off) or a finite number >= 0."""
    return None if value is None else check_nonnegative(name, value)


def stack_trajectory(thetas: list):
    """The iterates of a run: one stacked array for array parameters, the list of dicts otherwise."""
    if thetas and not isinstance(thetas[0], dict):
        return np.stack(thetas)
    return thetas


def _progress(steps: int, progress: bool):
    if not progress:
        return range(steps), None
    from tqdm.auto import tqdm

    bar = tqdm(range(steps), desc="steps", leave=False)
    return bar, bar


# ------------------------------------------------------------------ minimize


def minimize(
    problem,
    optimizer: optim.GradientTransformation,
    steps: int,
    batch_size: int | None = None,
    seed: int | None = None,
    theta0=None,
    metrics: dict[str, Callable] | None = None,
    keep_trajectory: bool = False,
    diverge_factor: float = DIVERGE_FACTOR,
    progress: bool = False,
    grad_tol: float | None = None,
    rel_tol: float | None = None,
    metrics_every: int = 1,
    eval_every: int = 1,
) -> History:
    r"""Run ``optimizer`` on ``problem`` for ``steps`` updates.

    $$g_t = \nabla f(\theta_t)\ \text{or}\ \tfrac1B\textstyle\sum_{i\in B_t}\nabla f_i(\theta_t),
    \qquad (u_t, s_{t+1}) = \mathrm{update}(g_t, s_t, \theta_t), \qquad \theta_{t+1} = \theta_t + u_t.$$

    Args:
        problem: has ``value``, ``grad``, ``init_params``; for minibatches also ``n`` and
            ``grad_batch``.
        optimizer: a ``steplab.optim.GradientTransformation``.
        steps: number of updates $T$.
        batch_size: ``None`` for the full gradient, else $B$ examples drawn without replacement
            at each step from ``np.random.default_rng(seed)`` (``seed=None``: 0).
        seed: seeds the minibatch sampler and, when ``theta0`` is None, ``problem.init_params``;
            ``None`` keeps the problem's own initialization (``MLP(seed=5)`` starts from its
            seed-5 weights).
        theta0: starting parameters (copied; default ``problem.init_params(seed)``).
        metrics: extra series, name -> ``fn(theta, grad, update, state) -> float``, called
            with $\theta_t$, $g_t$, $u_t$ and the optimizer state after the update.
        keep_trajectory: record every iterate in ``History.trajectory``.
        diverge_factor: the run stops when $|f(\theta_t)| > $ ``diverge_factor`` $\cdot
            \max(|f(\theta_0)|, 1)$ or anything becomes non-finite.
        progress: show a tqdm progress bar.
        grad_tol: stop before the update at step $t$ when $\|g_t\| \le$ ``grad_tol``. Under
            $\mu$-strong convexity (or PL) this certifies $f(\theta_t) - f^\star \le
            \|\nabla f(\theta_t)\|^2/(2\mu)$; with ``batch_size`` set, $g_t$ is the minibatch
            gradient and the rule certifies nothing.
        rel_tol: stop after the update at step $t$ when $|f(\theta_t) - f(\theta_{t+1})| \le$
            ``rel_tol`` $\cdot \max(|f(\theta_t)|, 1)$. Cheap, but a small step also makes
            the change small, so it certifies nothing.
        metrics_every: compute the metrics only at steps $t = 0, k, 2k, \dots$ (for costly
            ones such as the sharpness); ``History.metric_steps`` lists those steps.
        eval_every: evaluate the full objective only at $\theta_t$ for $t = 0, k, 2k, \dots$ and
            at the last step (a minibatch run then costs $B$ examples per step, not $n$);
            ``History.loss_steps`` lists those steps. The loss-based divergence test runs at
            those steps only (non-finite gradients and parameters are caught at every step);
            ``rel_tol`` needs ``eval_every=1``.

    Returns:
        A :class:`History`; ``stop_reason`` is ``"steps"``, ``"grad_tol"``, ``"rel_tol"`` or
        ``"diverged"``.

    Reference: Bottou, Curtis and Nocedal, "Optimization Methods for Large-Scale Machine
    Learning", SIAM Review 60(2), 2018, Algorithm 4.1.
    """
    steps = check_int("steps", steps)
    diverge_factor = check_diverge_factor(diverge_factor)
    metric_fns = _check_metrics(metrics)
    grad_tol = check_tol("grad_tol", grad_tol)
    rel_tol = check_tol("rel_tol", rel_tol)
    metrics_every = check_int("metrics_every", metrics_every, low=1)
    eval_every = check_int("eval_every", eval_every, low=1)
    if eval_every > 1 and rel_tol is not None:
        raise ValueError(f"rel_tol compares consecutive losses and needs eval_every=1, got eval_every={eval_every}")
    if not isinstance(optimizer, optim.GradientTransformation):
        raise ValueError(f"optimizer must be a steplab.optim.GradientTransformation, got {optimizer!r}")
    n = None
    if batch_size is not None:
        if not (hasattr(problem, "grad_batch") and hasattr(problem, "n")):
            raise ValueError(
                f"batch_size={batch_size!r} needs a finite-sum problem with n and grad_batch; "
                f"{type(problem).__name__} has none (use batch_size=None)"
            )
        n = int(problem.n)
        batch_size = check_int("batch_size", batch_size, low=1, high=n)
    rng = make_rng(seed)

    theta = initial_params(problem, theta0, seed)
    state = optimizer.init(theta)
    has_lr = optim.current_lr(state) is not None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss0 = float(problem.value(theta))
    threshold = divergence_limit(loss0, diverge_factor)

    losses, gnorms, unorms, lrs = [loss0], [], [], []
    loss_steps = [0]
    series = {name: [] for name in metric_fns}
    metric_steps = []
    thetas = [tree_copy(theta)] if keep_trajectory else None
    diverged_at, reason, stop_reason = None, None, "steps"
    it, bar = _progress(steps, progress)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for t in it:
            if batch_size is None:
                g = problem.grad(theta)
            else:
                g = problem.grad_batch(theta, rng.choice(n, size=batch_size, replace=False))
            if not optim.tree_all_finite(g):
                diverged_at, reason = t, "non-finite gradient"
                break
            g_norm = optim.tree_norm(g)
            if grad_tol is not None and g_norm <= grad_tol:
                stop_reason = "grad_tol"
                reason = f"||g_{t}|| = {g_norm:.3g} <= grad_tol = {grad_tol:g}"
                break
            updates, new_state = optimizer.update(g, state, theta)
            new_theta = optim.apply_updates(theta, updates)
            if not optim.tree_all_finite(new_theta):
                diverged_at, reason = t + 1, "non-finite parameters"
                break
            evaluate = eval_every == 1 or (t + 1) % eval_every == 0 or t == steps - 1
            if evaluate:
                loss = float(problem.value(new_theta))
                if not np.isfinite(loss):
                    diverged_at, reason = t + 1, f"loss is {loss}"
                    break
                if abs(loss) > threshold:
                    diverged_at = t + 1
                    reason = f"|loss| = {abs(loss):.3g} > diverge_factor * max(|f(theta_0)|, 1) = {threshold:.3g}"
                    break
            gnorms.append(g_norm)
            unorms.append(optim.tree_norm(updates))
            if has_lr:
                lrs.append(optim.current_lr(new_state))
            if t % metrics_every == 0:
                metric_steps.append(t)
                for name, fn in metric_fns.items():
                    series[name].append(float(fn(theta, g, updates, new_state)))
            loss_prev = losses[-1]
            if evaluate:
                losses.append(loss)
                loss_steps.append(t + 1)
            theta, state = new_theta, new_state
            if keep_trajectory:
                thetas.append(tree_copy(theta))
            if bar is not None and (t % max(1, steps // 100) == 0 or t == steps - 1):
                bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
            if rel_tol is not None and abs(loss_prev - loss) <= rel_tol * max(abs(loss_prev), 1.0):
                stop_reason = "rel_tol"
                reason = (
                    f"|f_{t} - f_{t + 1}| = {abs(loss_prev - loss):.3g} <= rel_tol * max(|f_{t}|, 1)"
                    f" = {rel_tol * max(abs(loss_prev), 1.0):.3g}"
                )
                break
    if bar is not None:
        bar.close()

    return History(
        loss=np.array(losses),
        grad_norm=np.array(gnorms),
        update_norm=np.array(unorms),
        lr=np.array(lrs, dtype=np.float64) if has_lr else None,
        params=theta,
        metrics={name: np.array(v) for name, v in series.items()},
        trajectory=stack_trajectory(thetas) if keep_trajectory else None,
        diverged_at=diverged_at,
        reason=reason,
        stop_reason="diverged" if diverged_at is not None else stop_reason,
        metric_steps=np.array(metric_steps, dtype=np.int64),
        loss_steps=np.array(loss_steps, dtype=np.int64) if eval_every > 1 else None,
    )


# ------------------------------------------------------------------ online


def minimize_online(
    problem,
    optimizer: optim.GradientTransformation,
    steps: int,
    theta0=None,
    metrics: dict[str, Callable] | None = None,
    keep_trajectory: bool = False,
    progress: bool = False,
) -> History:
    r"""Projected online optimization: one loss $f_t$ per round $t = 1, \dots, T$.

    $$g_t = \nabla f_t(\theta_t), \qquad (u_t, s_{t+1}) = \mathrm{update}(g_t, s_t, \theta_t),
    \qquad \theta_{t+1} = \Pi_{\mathcal F}(\theta_t + u_t).$$

    ``History.loss`` holds the online losses $f_t(\theta_t)$ (length ``steps``), and
    ``update_norm`` the projected step $\|\theta_{t+1} - \theta_t\|$. When the problem has
    ``average_regret(thetas)``, ``History.metrics["average_regret"]`` holds
    $R_t / t = \frac1t\sum_{s\le t} f_s(\theta_s) - f_s(\theta^\star)$.

    Args:
        problem: has ``value_at(theta, t)``, ``grad_at(theta, t)``, ``project(theta)`` and
            ``init_params()`` (e.g. ``steplab.problems.ReddiCounterexample``).
        optimizer: a ``steplab.optim.GradientTransformation``.
        steps: number of rounds $T$.
        theta0: starting point (default ``problem.init_params()``), projected first.
        metrics: as in :func:`minimize`.
        keep_trajectory: record $\theta_1, \dots, \theta_{T+1}$.
        progress: show a tqdm progress bar.

    A non-finite gradient or iterate stops the run as in :func:`minimize`.

    Reference: Zinkevich, "Online Convex Programming and Generalized Infinitesimal Gradient
    Ascent", ICML 2003; Reddi, Kale and Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
    """
    steps = check_int("steps", steps)
    metric_fns = _check_metrics(metrics)
    for attr in ("value_at", "grad_at", "project"):
        if not hasattr(problem, attr):
            raise ValueError(
                f"minimize_online needs problem.{attr}; {type(problem).__name__} has none (use minimize)"
            )
    if not isinstance(optimizer, optim.GradientTransformation):
        raise ValueError(f"optimizer must be a steplab.optim.GradientTransformation, got {optimizer!r}")
    theta = problem.project(initial_params(problem, theta0, 0))
    if not optim.tree_all_finite(theta):
        raise ValueError("theta0 must be finite, got non-finite entries")
    state = optimizer.init(theta)
    has_lr = optim.current_lr(state) is not None
    losses, gnorms, unorms, lrs, iterates = [], [], [], [], [tree_copy(theta)]
    series = {name: [] for name in metric_fns}
    diverged_at, reason = None, None
    it, bar = _progress(steps, progress)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for i in it:
            t = i + 1
            loss = float(problem.value_at(theta, t))
            g = problem.grad_at(theta, t)
            if not (np.isfinite(loss) and optim.tree_all_finite(g)):
                diverged_at, reason = i, "non-finite loss or gradient"
                break
            updates, new_state = optimizer.update(g, state, theta)
            new_theta = problem.project(optim.apply_updates(theta, updates))
            if not optim.tree_all_finite(new_theta):
                diverged_at, reason = i + 1, "non-finite parameters"
                break
            losses.append(loss)
            gnorms.append(optim.tree_norm(g))
            unorms.append(optim.tree_norm(optim.tree_map(np.subtract, new_theta, theta)))
            if has_lr:
                lrs.append(optim.current_lr(new_state))
            for name, fn in metric_fns.items():
                series[name].append(float(fn(theta, g, updates, new_state)))
            theta, state = new_theta, new_state
            iterates.append(tree_copy(theta))
            if bar is not None and (i % max(1, steps // 100) == 0 or i == steps - 1):
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
    if bar is not None:
        bar.close()
    out = {name: np.array(v) for name, v in series.items()}
    if hasattr(problem, "average_regret") and losses and "average_regret" not in out:
        out["average_regret"] = np.asarray(problem.average_regret(np.stack(iterates[:-1])))
    return History(
        loss=np.array(losses),
        grad_norm=np.array(gnorms),
        update_norm=np.array(unorms),
        lr=np.array(lrs, dtype=np.float64) if has_lr else None,
        params=theta,
        metrics=out,
        trajectory=stack_trajectory(iterates) if keep_trajectory else None,
        diverged_at=diverged_at,
        reason=reason,
        stop_reason="diverged" if diverged_at is not None else "steps",
        metric_steps=np.arange(len(losses), dtype=np.int64),
    )


# ------------------------------------------------------------------ vectorized sweeps


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


# ------------------------------------------------------------------ independent SGD runs


@dataclass
class Runs:
    r"""What :func:`sgd_runs` recorded: one column per run, one row per recorded step.

    Attributes:
        steps: the recorded steps $t$ (always $0$ and $T$), shape ``(m,)``.
        loss: $f(\theta_t^{(r)})$, shape ``(m, R)`` (``None`` with ``record_loss=False``).
        dist2: $\|\theta_t^{(r)} - \theta^\star\|^2$, shape ``(m, R)`` (``None`` when the
            problem has no ``minimizer``).
        params: the last iterates $\theta_T^{(r)}$, shape ``(R, dim)``.
        lr: the step size of every update, shape ``(T,)``.
        f_star: the problem's ``f_star`` (or ``None``).
        average: the running averages $\bar\theta_T^{(r)}$ at the end, shape ``(R, dim)``, when
            ``average`` was requested, else ``None``.
        avg_loss, avg_dist2: $f(\bar\theta_t^{(r)})$ and $\|\bar\theta_t^{(r)} - \theta^\star\|^2$
            at the recorded steps, when ``average`` was requested.
        grad_norm2: $\|\nabla f(\theta_t^{(r)})\|^2$ of the full gradient, shape ``(m, R)``, with
            ``record_grad_norm2=True`` (else ``None``).
    """

    steps: np.ndarray
    loss: np.ndarray | None
    dist2: np.ndarray | None
    params: np.ndarray
    lr: np.ndarray
    f_star: float | None = None
    average: np.ndarray | None = None
    avg_loss: np.ndarray | None = None
    avg_dist2: np.ndarray | None = None
    grad_norm2: np.ndarray | None = None

    @property
    def n_runs(self) -> int:
        return int(self.params.shape[0])

    def suboptimality(self) -> np.ndarray:
        r"""$f(\theta_t^{(r)}) - f^\star$, shape ``(m, R)``."""
        if self.f_star is None or self.loss is None:
            raise ValueError("suboptimality needs record_loss=True and a problem with f_star")
        return self.loss - self.f_star

    def mean(self, key: str = "dist2") -> np.ndarray:
        """The mean over runs of ``loss``, ``dist2``, ``suboptimality``, ``avg_loss``, ``avg_dist2``,
        ``avg_suboptimality`` or ``grad_norm2``, per recorded step: the Monte Carlo estimate of the
        expectation."""
        if key == "suboptimality":
            return self.suboptimality().mean(axis=1)
        if key == "avg_suboptimality":
            if self.f_star is None or self.avg_loss is None:
                raise ValueError("avg_suboptimality needs average, record_loss=True and a problem with f_star")
            return (self.avg_loss - self.f_star).mean(axis=1)
        if key not in ("loss", "dist2", "avg_loss", "avg_dist2", "grad_norm2"):
            raise ValueError(
                f"key must be one of 'loss', 'dist2', 'suboptimality', 'avg_loss', 'avg_dist2', "
                f"'avg_suboptimality', 'grad_norm2', got {key!r}"
            )
        value = getattr(self, key)
        if value is None:
            raise ValueError(f"these runs recorded no {key!r}")
        return value.mean(axis=1)

    def __repr__(self) -> str:
        return f"Runs(n_runs={self.n_runs}, steps={int(self.steps[-1])}, recorded={self.steps.size})"


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
