r"""The one set of argument checks, and the one divergence rule.

Every check returns the checked value (as a Python number) or raises ``ValueError`` naming the
argument and the value, in one format: ``lr must be >= 0, got -1.0``.

A run *diverges* at the first loss that is non-finite or whose magnitude exceeds
:math:`\kappa \max(|f(\theta_0)|, 1)`, :math:`\kappa` = ``diverge_factor`` (default
:data:`DIVERGE_FACTOR`): see :func:`divergence_limit` and :func:`is_diverged`.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "DIVERGE_FACTOR", "check_number", "check_nonnegative", "check_positive", "check_unit_interval",
    "check_int", "check_bool", "check_lr", "lr_at", "check_choice", "check_callable", "check_tol",
    "check_finite_sum", "check_diverge_factor", "divergence_limit", "is_diverged", "make_rng",
]

DIVERGE_FACTOR = 1e6
"""A run counts as diverged once its loss exceeds this factor times ``max(|f(theta_0)|, 1)``."""


def _is_real_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name: str, value, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """Return ``float(value)`` after checking it is a finite real in the given interval.

    Args:
        name: the argument's name for the message.
        value: the value to check.
        low, high: the bounds (None for unbounded).
        low_open, high_open: whether the bound itself is excluded.
    """
    if not _is_real_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if low is not None and high is not None:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise ValueError(f"{name} must be in {interval}, got {value!r}")
        if low is not None:
            raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return value


def check_nonnegative(name: str, value) -> float:
    """``value >= 0``, finite."""
    return check_number(name, value, low=0.0)


def check_positive(name: str, value) -> float:
    """``value > 0``, finite."""
    return check_number(name, value, low=0.0, low_open=True)


def check_unit_interval(name: str, value) -> float:
    """``0 <= value < 1`` (betas, momentum, decay rates)."""
    return check_number(name, value, low=0.0, high=1.0, high_open=True)


def check_int(name: str, value, *, low: int = 0, high: int | None = None) -> int:
    """An integer (not a bool, not a float) with ``low <= value`` (and ``value <= high`` when given)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """A bool (numpy bools accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_lr(value, name: str = "lr"):
    """A learning rate: a finite number >= 0 or a schedule (a callable of the step count).

    A schedule's values are checked where it is called, by :func:`lr_at`.
    """
    if callable(value):
        return value
    return check_nonnegative(name, value)


def lr_at(lr, step: int, name: str = "lr") -> float:
    """The learning rate at ``step``: ``lr`` itself, or a schedule's value checked finite and >= 0.

    A schedule may decay to 0, but a negative or NaN rate would run the method backwards.
    """
    if not callable(lr):
        return lr
    eta = lr(step)
    if not _is_real_number(eta) or not math.isfinite(eta) or eta < 0:
        raise ValueError(f"{name} must be >= 0 at every step, got {eta!r} at step {step}")
    return float(eta)


def check_tol(name: str, value) -> float | None:
    """A stopping tolerance: ``None`` (off) or a finite number >= 0."""
    return None if value is None else check_nonnegative(name, value)


def check_choice(name: str, value, choices):
    """``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_callable(name: str, value):
    """``value`` is callable."""
    if not callable(value):
        raise ValueError(f"{name} must be callable, got {value!r}")
    return value


def check_finite_sum(problem, need=("n", "value", "grad", "grad_batch"), what: str = "this method") -> int:
    """``problem.n`` after checking that the problem has the finite-sum attributes ``need``."""
    for attr in need:
        if not hasattr(problem, attr):
            raise ValueError(
                f"{what} needs a finite-sum problem with attribute {attr!r}; "
                f"{type(problem).__name__} has none"
            )
    return check_int("problem.n", problem.n, low=1)


def check_diverge_factor(value) -> float:
    """The divergence factor: a finite number > 1."""
    return check_number("diverge_factor", value, low=1.0, low_open=True)


def divergence_limit(loss0, diverge_factor: float = DIVERGE_FACTOR):
    r"""The loss magnitude above which a run has diverged, :math:`\kappa \max(|f(\theta_0)|, 1)`
    (elementwise for an array of initial losses)."""
    loss0 = np.asarray(loss0, dtype=np.float64)
    if not np.all(np.isfinite(loss0)):
        raise ValueError(f"the initial loss f(theta0) must be finite, got {loss0.tolist()}")
    with np.errstate(over="ignore"):  # a huge f(theta0) gives an infinite limit, not a warning
        limit = diverge_factor * np.maximum(np.abs(loss0), 1.0)
    return float(limit) if limit.ndim == 0 else limit


def is_diverged(loss, limit: float):
    """True where ``loss`` is non-finite or its magnitude exceeds ``limit`` (elementwise for arrays)."""
    loss = np.asarray(loss, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = ~np.isfinite(loss) | (np.abs(loss) > limit)
    return bool(out) if out.ndim == 0 else out


def make_rng(seed) -> np.random.Generator:
    """``np.random.default_rng(seed)``, with ``seed=None`` meaning 0 (runs are deterministic)."""
    return np.random.default_rng(0 if seed is None else seed)
