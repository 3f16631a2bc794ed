r"""The online counterexample on which Adam fails to converge (Reddi et al., 2018)."""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_number
from .base import Problem, as_float_array

__all__ = ["ReddiCounterexample"]


class ReddiCounterexample(Problem):
    r"""Reddi, Kale and Kumar's online linear problem on :math:`\mathcal F = [-1, 1]`.

    .. math::

        f_t(x) = \begin{cases} C x & t \bmod 3 = 1,\\ -x & \text{otherwise,} \end{cases}
        \qquad x \in [-1, 1],\; C > 2,\; t = 1, 2, 3, \dots

    Over one period the gradients sum to :math:`C - 1 - 1 = C - 2 > 0`, so
    the best fixed point is :math:`x^\star = -1` (for every horizon
    :math:`T`, since every partial sum of the coefficients is positive).
    Adam with :math:`\beta_1 = 0`, :math:`\beta_2 = 1/(1 + C^2)` and
    :math:`\eta_t = \eta/\sqrt t` (projected onto :math:`\mathcal F`) instead
    drifts to :math:`x = +1`: the rare large gradient :math:`C` is damped by
    its own second moment, while the two gradients :math:`-1` that follow
    are not, since :math:`v_t` forgets :math:`C^2` within a step or two.
    AMSGrad's running maximum of :math:`v_t` damps the :math:`-1` steps as
    much as the :math:`C` step, and converges to :math:`-1`. The online performance measure is the average regret

    .. math::

        \frac{R_T}{T} = \frac1T \sum_{t=1}^T \big(f_t(x_t) - f_t(x^\star)\big),

    which tends to 0 for a method with sublinear regret and to a positive
    constant for Adam here.

    Methods ``value_at(theta, t)`` and ``grad_at(theta, t)`` give
    :math:`f_t` and :math:`f_t'` (``t`` counts from 1 as in the paper;
    ``t = 0`` is accepted and behaves as ``t = 3``). ``value``/``grad`` are
    the period average :math:`\bar f(x) = \tfrac{C-2}{3} x`, whose
    constrained minimizer is ``minimizer`` :math:`= (-1,)` with
    ``f_star`` :math:`= -(C-2)/3`; ``L = mu = 0`` (linear). ``project``
    clips to ``feasible_set``. Parameters have shape ``(1,)``; ``value``,
    ``grad``, ``value_at`` and ``grad_at`` accept a stack ``(k, 1)``.

    Arguments:
        C: the large coefficient, > 2.

    Reference: S. J. Reddi, S. Kale and S. Kumar, "On the convergence of
    Adam and beyond", ICLR 2018, Section 3 (Theorem 1).
    """

    batched = True
    dim = 1
    lower = -1.0
    upper = 1.0

    def __init__(self, C=3.0):
        self.C = check_number("C", C, low=2.0, low_open=True)
        self.feasible_set = (self.lower, self.upper)
        self.minimizer = np.array([-1.0])
        self.f_star = -(self.C - 2.0) / 3.0
        self.L = 0.0
        self.mu = 0.0

    def coefficient(self, t):
        """The slope of :math:`f_t`: ``C`` if ``t % 3 == 1`` else ``-1``."""
        t = check_int("t", t, low=0)
        return self.C if t % 3 == 1 else -1.0

    def value_at(self, theta, t):
        """:math:`f_t(\\theta)`; a float, or shape ``(k,)`` for a stack."""
        theta, is_batch = self._check_theta(theta)
        return self._scalar_or_array(self.coefficient(t) * theta[..., 0].astype(np.float64), is_batch)

    def grad_at(self, theta, t):
        """:math:`f_t'(\\theta)`, same shape and dtype as ``theta``."""
        theta, _ = self._check_theta(theta)
        return self._out(np.full(theta.shape, self.coefficient(t)), theta)

    def _value(self, theta):
        return (self.C - 2.0) / 3.0 * theta[..., 0].astype(np.float64)

    def _grad(self, theta):
        return np.full(theta.shape, (self.C - 2.0) / 3.0)

    def _hvp(self, theta, v):
        return np.zeros_like(v)

    def hessian(self, theta=None):
        return np.zeros((1, 1))

    def project(self, theta):
        r"""Euclidean projection onto :math:`[-1, 1]`: :math:`\min(1, \max(-1, x))`."""
        theta, _ = self._check_theta(theta)
        return np.clip(theta, self.lower, self.upper)

    def _coefficients(self, T, t0):
        t = np.arange(t0, t0 + T)
        return np.where(t % 3 == 1, self.C, -1.0)

    def regret(self, thetas, t0=1):
        r"""Cumulative regret :math:`R_T = \sum_{t=1}^{T} f_t(x_t) - f_t(-1)` for every prefix.

        Arguments:
            thetas: the iterates :math:`x_{t_0}, x_{t_0+1}, \dots`, shape ``(T,)`` or ``(T, 1)``,
                all in the feasible set.
            t0: the time index of ``thetas[0]`` (default 1).

        Returns an array of shape ``(T,)`` whose entry ``i`` is the regret
        after the first ``i + 1`` rounds.
        """
        x = as_float_array("thetas", thetas).astype(np.float64)
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"thetas must have shape (T,) or (T, 1) with T >= 1, got shape {np.shape(thetas)}")
        t0 = check_int("t0", t0, low=0)
        outside = (x < self.lower - 1e-12) | (x > self.upper + 1e-12)
        if np.any(outside):
            i = int(np.flatnonzero(outside)[0])
            raise ValueError(f"thetas must lie in [-1, 1], got thetas[{i}] = {x[i].item()!r}")
        c = self._coefficients(x.size, t0)
        return np.cumsum(c * x - c * self.minimizer[0])

    def average_regret(self, thetas, t0=1):
        r"""Average regret :math:`R_T / T` for every prefix :math:`T = 1, \dots, \text{len(thetas)}`."""
        R = self.regret(thetas, t0)
        return R / np.arange(1, R.size + 1)

    def init_params(self, seed=0):
        """The centre of the feasible set, :math:`x_1 = 0` (``seed`` is accepted for a uniform interface)."""
        return np.array([0.0])

    def __repr__(self):
        return f"ReddiCounterexample(C={self.C:g})"
