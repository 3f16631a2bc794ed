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

from typing import Callable

import numpy as np

from . import optim
from ._checks import (
    DIVERGE_FACTOR,
    check_diverge_factor,
    check_int,
    check_tol,
    divergence_limit,
    make_rng,
)
from ._tree import initial_params, tree_copy
from .records import History, Record, Runs, stack_trajectory

__all__ = ["Record", "History", "Runs", "minimize", "minimize_online", "sweep_lr", "sgd_runs"]


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
    steps, metric_fns, grad_tol, rel_tol, n, batch_size = _check_minimize(
        problem, optimizer, steps, batch_size, metrics, grad_tol, rel_tol, metrics_every, eval_every)
    diverge_factor = check_diverge_factor(diverge_factor)
    rng = make_rng(seed)
    theta = initial_params(problem, theta0, seed)
    state = optimizer.init(theta)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss0 = float(problem.value(theta))
    trace = _Trace(loss0, metric_fns, optim.current_lr(state) is not None, theta if keep_trajectory else None)
    threshold = divergence_limit(loss0, diverge_factor)
    it, bar = _progress(steps, progress)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        theta, diverged_at, reason, stop_reason = _loop(
            problem, optimizer, theta, state, trace, it, bar, threshold, rng, n, batch_size, grad_tol,
            rel_tol, eval_every, metrics_every, steps)
    if bar is not None:
        bar.close()
    return trace.history(theta, diverged_at, reason, stop_reason, eval_every > 1)


def _loop(problem, optimizer, theta, state, trace, it, bar, threshold, rng, n, batch_size, grad_tol,
          rel_tol, eval_every, metrics_every, steps):
    """The updates of :func:`minimize`; returns the last good iterate and why the run ended."""
    for t in it:
        if batch_size is None:
            g = problem.grad(theta)
        else:
            g = problem.grad_batch(theta, rng.choice(n, size=batch_size, replace=False))
        if not optim.tree_all_finite(g):
            return theta, t, "non-finite gradient", "diverged"
        g_norm = optim.tree_norm(g)
        if grad_tol is not None and g_norm <= grad_tol:
            return theta, None, f"||g_{t}|| = {g_norm:.3g} <= grad_tol = {grad_tol:g}", "grad_tol"
        updates, new_state = optimizer.update(g, state, theta)
        new_theta = optim.apply_updates(theta, updates)
        evaluate = eval_every == 1 or (t + 1) % eval_every == 0 or t == steps - 1
        loss = float(problem.value(new_theta)) if evaluate and optim.tree_all_finite(new_theta) else None
        diverged_at, reason = _diverged(t, new_theta, loss, threshold)
        if diverged_at is not None:
            return theta, diverged_at, reason, "diverged"
        loss_prev = trace.losses[-1]
        trace.add(t, theta, g, g_norm, updates, new_state, new_theta, loss, metrics_every)
        theta, state = new_theta, new_state
        if bar is not None and (t % max(1, steps // 100) == 0 or t == steps - 1):
            bar.set_postfix(loss=f"{trace.losses[-1]:.4g}", refresh=False)
        reason = _rel_tol_reached(t, loss_prev, loss, rel_tol)
        if reason is not None:
            return theta, None, reason, "rel_tol"
    return theta, None, None, "steps"


def _check_minimize(problem, optimizer, steps, batch_size, metrics, grad_tol, rel_tol, metrics_every,
                    eval_every):
    """The arguments of :func:`minimize`, checked: steps, metrics, tolerances, n and batch size."""
    steps = check_int("steps", steps)
    metric_fns = _check_metrics(metrics)
    grad_tol = check_tol("grad_tol", grad_tol)
    rel_tol = check_tol("rel_tol", rel_tol)
    check_int("metrics_every", metrics_every, low=1)
    eval_every = check_int("eval_every", eval_every, low=1)
    if eval_every > 1 and rel_tol is not None:
        raise ValueError(f"rel_tol compares consecutive losses and needs eval_every=1, got eval_every={eval_every}")
    _check_optimizer(optimizer)
    n = None
    if batch_size is not None:
        if not (hasattr(problem, "grad_batch") and hasattr(problem, "n")):
            raise ValueError(
                f"batch_size={batch_size!r} needs a finite-sum problem with n and grad_batch; "
                f"{type(problem).__name__} has none (use batch_size=None)"
            )
        n = int(problem.n)
        batch_size = check_int("batch_size", batch_size, low=1, high=n)
    return steps, metric_fns, grad_tol, rel_tol, n, batch_size


def _check_optimizer(optimizer) -> None:
    if not isinstance(optimizer, optim.GradientTransformation):
        raise ValueError(f"optimizer must be a steplab.optim.GradientTransformation, got {optimizer!r}")


def _diverged(t: int, new_theta, loss, threshold: float):
    """``(diverged_at, reason)`` by the divergence rule for the iterate of step ``t + 1``, or ``(None, None)``.

    ``loss`` is ``None`` when the objective was not evaluated at this step."""
    if not optim.tree_all_finite(new_theta):
        return t + 1, "non-finite parameters"
    if loss is None:
        return None, None
    if not np.isfinite(loss):
        return t + 1, f"loss is {loss}"
    if abs(loss) > threshold:
        return t + 1, f"|loss| = {abs(loss):.3g} > diverge_factor * max(|f(theta_0)|, 1) = {threshold:.3g}"
    return None, None


def _rel_tol_reached(t: int, loss_prev: float, loss, rel_tol):
    """The reason text when the relative change of the loss fell to ``rel_tol``, else ``None``."""
    if rel_tol is None or loss is None:
        return None
    change, scale = abs(loss_prev - loss), rel_tol * max(abs(loss_prev), 1.0)
    if change > scale:
        return None
    return f"|f_{t} - f_{t + 1}| = {change:.3g} <= rel_tol * max(|f_{t}|, 1) = {scale:.3g}"


class _Trace:
    """The series a run of :func:`minimize` accumulates, turned into a :class:`History` at the end."""

    def __init__(self, loss0, metric_fns, has_lr, theta0=None):
        # an online run records f_t(theta_t) from t = 1 on, so it starts with no loss
        self.losses, self.loss_steps = ([], []) if loss0 is None else ([loss0], [0])
        self.gnorms, self.unorms, self.lrs = [], [], [] if has_lr else None
        self.metric_fns, self.series, self.metric_steps = metric_fns, {k: [] for k in metric_fns}, []
        self.thetas = None if theta0 is None else [tree_copy(theta0)]

    def add(self, t, theta, g, g_norm, updates, new_state, new_theta, loss, metrics_every, moved=None):
        """Record step ``t``: the norms, the rate, the metrics (every ``metrics_every``) and the loss
        (of ``new_theta``; for an online run, ``moved`` is the projected step and ``loss`` is
        $f_{t+1}(\theta_t)$, recorded at round $t + 1$)."""
        self.gnorms.append(g_norm)
        self.unorms.append(optim.tree_norm(updates if moved is None else moved))
        if self.lrs is not None:
            self.lrs.append(optim.current_lr(new_state))
        if t % metrics_every == 0:
            self.metric_steps.append(t)
            for name, fn in self.metric_fns.items():
                self.series[name].append(float(fn(theta, g, updates, new_state)))
        if loss is not None:
            self.losses.append(loss)
            self.loss_steps.append(t + 1)
        if self.thetas is not None:
            self.thetas.append(tree_copy(new_theta))

    def history(self, params, diverged_at, reason, stop_reason, sparse_loss: bool) -> History:
        return History(
            loss=np.array(self.losses),
            grad_norm=np.array(self.gnorms),
            update_norm=np.array(self.unorms),
            lr=None if self.lrs is None else np.array(self.lrs, dtype=np.float64),
            params=params,
            metrics={name: np.array(v) for name, v in self.series.items()},
            trajectory=None if self.thetas is None else stack_trajectory(self.thetas),
            diverged_at=diverged_at,
            reason=reason,
            stop_reason="diverged" if diverged_at is not None else stop_reason,
            metric_steps=np.array(self.metric_steps, dtype=np.int64),
            loss_steps=np.array(self.loss_steps, dtype=np.int64) if sparse_loss else None,
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
    _check_optimizer(optimizer)
    theta = problem.project(initial_params(problem, theta0, 0))
    if not optim.tree_all_finite(theta):
        raise ValueError("theta0 must be finite, got non-finite entries")
    state = optimizer.init(theta)
    trace = _Trace(None, metric_fns, optim.current_lr(state) is not None, theta)
    diverged_at, reason = None, None
    it, bar = _progress(steps, progress)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for i in it:
            loss = float(problem.value_at(theta, i + 1))
            g = problem.grad_at(theta, i + 1)
            if not (np.isfinite(loss) and optim.tree_all_finite(g)):
                diverged_at, reason = i, "non-finite loss or gradient"
                break
            updates, new_state = optimizer.update(g, state, theta)
            new_theta = problem.project(optim.apply_updates(theta, updates))
            if not optim.tree_all_finite(new_theta):
                diverged_at, reason = i + 1, "non-finite parameters"
                break
            # the projected step, not the raw update, is what moved the iterate
            step = optim.tree_map(np.subtract, new_theta, theta)
            trace.add(i, theta, g, optim.tree_norm(g), updates, new_state, new_theta, loss, 1, moved=step)
            theta, state = new_theta, new_state
            if bar is not None and (i % max(1, steps // 100) == 0 or i == steps - 1):
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
    if bar is not None:
        bar.close()
    history = trace.history(theta, diverged_at, reason, "steps", True)
    if hasattr(problem, "average_regret") and trace.gnorms and "average_regret" not in history.metrics:
        history.metrics["average_regret"] = np.asarray(problem.average_regret(np.stack(trace.thetas[:-1])))
    if not keep_trajectory:
        history.trajectory = None
    return history


from .vectorized import sgd_runs, sweep_lr  # noqa: E402  (kept reachable as steplab.run.*)
