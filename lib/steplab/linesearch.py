r"""Backtracking line search: the step size from function values.

A line search needs $f$ at trial points, not only the gradient, so it does not fit the
``init``/``update(grads)`` shape of ``steplab.optim``; it is a loop of its own here.

- :func:`armijo` finds one step $t$ satisfying the Armijo sufficient-decrease condition.
- :func:`gd_armijo` runs gradient descent with that step at every iteration and returns a
  ``steplab.run.History``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import optim
from ._checks import check_bool, check_int, check_tol, divergence_limit
from ._tree import initial_params, tree_copy
from .records import History, stack_trajectory

__all__ = ["LineSearchError", "armijo", "gd_armijo"]


class LineSearchError(RuntimeError):
    """No step satisfied the sufficient-decrease condition within ``max_backtracks`` reductions."""


def _value_fn(problem_or_f) -> Callable:
    if hasattr(problem_or_f, "value") and callable(problem_or_f.value):
        return problem_or_f.value
    if callable(problem_or_f):
        return problem_or_f
    raise ValueError(f"problem_or_f must be a problem with .value or a callable f(theta), got {problem_or_f!r}")


def _check_search(t0, beta, c, max_backtracks) -> tuple[float, float, float, int]:
    t0 = optim.check_positive("t0", t0)
    beta = optim.check_number("beta", beta, low=0.0, high=1.0, low_open=True, high_open=True)
    c = optim.check_number("c", c, low=0.0, high=1.0, low_open=True, high_open=True)
    max_backtracks = optim.check_int("max_backtracks", max_backtracks, low=0)
    return t0, beta, c, max_backtracks


def _armijo(f, theta, grad, f0, g_sq, t0, beta, c, max_backtracks):
    """The search itself, arguments already checked. Returns (t, trial point, f there, evaluations)."""
    t, evals = t0, 0
    for _ in range(max_backtracks + 1):
        trial = optim.tree_map(lambda p, g: np.subtract(p, t * g, dtype=np.asarray(p).dtype), theta, grad)
        f_trial = float(f(trial))
        evals += 1
        # NaN fails the comparison, so a trial point where f is not finite is rejected.
        if f_trial <= f0 - c * t * g_sq:
            return t, trial, f_trial, evals
        t *= beta
    raise LineSearchError(
        f"no step satisfied f(theta - t g) <= f(theta) - c t ||g||^2 after {max_backtracks} backtracks "
        f"(last t = {t / beta:.3g}, ||g||^2 = {g_sq:.3g}); check that grad is the gradient of f at theta"
    )


def armijo(
    problem_or_f,
    theta,
    grad,
    t0: float = 1.0,
    beta: float = 0.5,
    c: float = 1e-4,
    max_backtracks: int = 60,
    f0: float | None = None,
) -> tuple[float, int]:
    r"""Backtracking line search with the Armijo condition along $-g$.

    Starting from $t = t_0$, replace $t \leftarrow \beta t$ until

    $$f(\theta - t g) \le f(\theta) - c\, t\, \|g\|^2 .$$

    If $f$ is $L$-smooth and $g = \nabla f(\theta)$, every $t \le 2(1-c)/L$ satisfies the
    condition (descent lemma), so the accepted step is $t \ge \min(t_0, 2\beta(1-c)/L)$ and the
    search stops after at most $\lceil \log(t_0 L / (2(1-c))) / \log(1/\beta) \rceil^+$ reductions.

    Args:
        problem_or_f: a problem (its ``value`` is used) or a callable ``f(theta) -> float``.
        theta: the current point (ndarray or dict of ndarrays).
        grad: $g$, the gradient at ``theta`` (same structure).
        t0: the first trial step, $t_0 > 0$.
        beta: the reduction factor, $\beta \in (0, 1)$.
        c: the sufficient-decrease constant, $c \in (0, 1)$.
        max_backtracks: at most this many reductions.
        f0: $f(\theta)$ if already known (saves one evaluation).

    Returns:
        ``(t, n_evals)``: the accepted step and the number of evaluations of $f$ made
        (including $f(\theta)$ when ``f0`` is None).

    Raises:
        LineSearchError: no step was accepted within ``max_backtracks`` reductions (usually
            ``grad`` is not the gradient of ``f``).

    Reference: L. Armijo, "Minimization of functions having Lipschitz continuous first partial
    derivatives", Pacific Journal of Mathematics 16(1), 1966; Nocedal and Wright, *Numerical
    Optimization*, 2nd ed., Algorithm 3.1.
    """
    f = _value_fn(problem_or_f)
    t0, beta, c, max_backtracks = _check_search(t0, beta, c, max_backtracks)
    optim.check_tree_match(grad, theta, name="grad")
    evals = 0
    if f0 is None:
        f0 = float(f(theta))
        evals = 1
    if not np.isfinite(f0):
        raise ValueError(f"f(theta) must be finite, got {f0}")
    g_sq = optim.tree_norm(grad) ** 2
    if not np.isfinite(g_sq):
        raise ValueError(f"grad must be finite, got ||grad||^2 = {g_sq}")
    t, _, _, n = _armijo(f, theta, grad, float(f0), g_sq, t0, beta, c, max_backtracks)
    return t, evals + n


def gd_armijo(
    problem,
    steps: int,
    t0: float = 1.0,
    beta: float = 0.5,
    c: float = 1e-4,
    theta0=None,
    seed: int = 0,
    max_backtracks: int = 60,
    grad_tol: float | None = None,
    keep_trajectory: bool = False,
) -> History:
    r"""Gradient descent with an Armijo backtracking step at every iteration.

    $$g_k = \nabla f(\theta_k), \qquad t_k = \max\{t_0\beta^j : j \ge 0,\ f(\theta_k - t_0\beta^j g_k)
    \le f(\theta_k) - c\, t_0\beta^j \|g_k\|^2\}, \qquad \theta_{k+1} = \theta_k - t_k g_k .$$

    Each search starts again from $t_0$. If $f$ is $L$-smooth, $t_k \ge t_{\min} =
    \min(t_0, 2\beta(1-c)/L)$; if it also satisfies the PL inequality with constant $\mu$,
    $f(\theta_{k+1}) - f^\star \le (1 - 2c\mu t_{\min})(f(\theta_k) - f^\star)$.

    Args:
        problem: has ``value``, ``grad`` and ``init_params``.
        steps: number of iterations.
        t0, beta, c: as in :func:`armijo`.
        theta0: starting point (copied; default ``problem.init_params(seed)``).
        seed: seed of ``problem.init_params`` when ``theta0`` is None.
        max_backtracks: as in :func:`armijo`; a failed search ends the run
            (``stop_reason = "line_search"``).
        grad_tol: stop before iteration $k$ when $\|g_k\| \le$ ``grad_tol``.
        keep_trajectory: record every iterate.

    Returns:
        A ``steplab.run.History``: ``loss`` ($f(\theta_k)$, length ``steps + 1``), ``grad_norm``,
        ``update_norm``, ``lr`` and ``metrics["step_size"]`` (both the accepted $t_k$), and
        ``metrics["n_evals"]``, the evaluations of $f$ the search made at iteration $k$
        ($1 +$ the number of reductions; $f(\theta_k)$ itself is reused from the previous
        search). ``stop_reason`` is ``"steps"``, ``"grad_tol"``, ``"line_search"`` or
        ``"diverged"`` (a non-finite gradient).

    Reference: Armijo (1966); Nocedal and Wright, *Numerical Optimization*, 2nd ed., Sec. 3.1.
    """
    steps = check_int("steps", steps)
    t0, beta, c, max_backtracks = _check_search(t0, beta, c, max_backtracks)
    grad_tol = check_tol("grad_tol", grad_tol)
    keep_trajectory = check_bool("keep_trajectory", keep_trajectory)
    theta = initial_params(problem, theta0, seed)
    f_0 = float(problem.value(theta))
    divergence_limit(f_0)  # raises unless the initial loss is finite
    series = {"loss": [f_0], "grad_norm": [], "update_norm": [], "step_size": [], "n_evals": []}
    thetas = [tree_copy(theta)] if keep_trajectory else None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        theta, diverged_at, reason, stop_reason = _armijo_steps(
            problem, theta, steps, (t0, beta, c, max_backtracks), grad_tol, series, thetas)
    step_sizes = np.array(series["step_size"], dtype=np.float64)
    return History(
        loss=np.array(series["loss"]),
        grad_norm=np.array(series["grad_norm"]),
        update_norm=np.array(series["update_norm"]),
        lr=step_sizes,
        params=theta,
        metrics={"step_size": step_sizes.copy(), "n_evals": np.array(series["n_evals"], dtype=np.int64)},
        trajectory=stack_trajectory(thetas) if keep_trajectory else None,
        diverged_at=diverged_at,
        reason=reason,
        stop_reason=stop_reason,
        metric_steps=np.arange(len(step_sizes), dtype=np.int64),
    )


def _armijo_steps(problem, theta, steps, search, grad_tol, series, thetas):
    """The iterations of :func:`gd_armijo`, appending to ``series`` (and ``thetas``); returns the
    last iterate, ``diverged_at``, ``reason`` and ``stop_reason``."""
    f_k = series["loss"][-1]
    for k in range(steps):
        g = problem.grad(theta)
        g_norm = optim.tree_norm(g)
        if not np.isfinite(g_norm):
            return theta, k, "non-finite gradient", "diverged"
        if grad_tol is not None and g_norm <= grad_tol:
            return theta, None, f"||g_{k}|| = {g_norm:.3g} <= grad_tol = {grad_tol:g}", "grad_tol"
        try:
            t, theta_new, f_new, evals = _armijo(problem.value, theta, g, f_k, g_norm**2, *search)
        except LineSearchError as err:
            return theta, None, f"step {k}: {err}", "line_search"
        for name, value in (("grad_norm", g_norm), ("update_norm", t * g_norm), ("step_size", t),
                            ("n_evals", evals), ("loss", f_new)):
            series[name].append(value)
        theta, f_k = theta_new, f_new
        if thetas is not None:
            thetas.append(tree_copy(theta))
    return theta, None, None, "steps"
