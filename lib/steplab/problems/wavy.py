r"""A one-dimensional quadratic with ripples: many local minima, one global."""

from __future__ import annotations

import numpy as np

from .._checks import check_number
from .base import Problem

__all__ = ["Wavy"]


class Wavy(Problem):
    r"""The wavy objective on :math:`\mathbb{R}`.

    .. math::

        f(x) = \tfrac12 a x^2 + 0.1\,\sin(k x), \qquad
        f'(x) = a x + 0.1\,k\cos(k x), \qquad
        f''(x) = a - 0.1\,k^2 \sin(k x).

    Hence :math:`|f''| \le L = a + 0.1 k^2`. The function is strongly convex
    with :math:`\mu = a - 0.1 k^2` when that is positive; otherwise it has
    several local minima and ``mu`` is ``None``. Because
    :math:`f(x) \ge \tfrac12 a x^2 - 0.1` and :math:`f(0) = 0`, the global
    minimizer lies in :math:`|x| \le \sqrt{0.2/a}`; it is found by a grid over
    that interval (spacing at most :math:`\pi/(8k)`, far below the spacing of
    the local minima) followed by Newton's method on :math:`f'`, and is stored
    as ``minimizer`` (shape ``(1,)``) with ``f_star``.

    Parameters have shape ``(1,)``; ``value`` and ``grad`` accept a stack
    ``(k, 1)`` (``batched = True``).

    Arguments:
        a: curvature of the quadratic part, > 0.
        k: frequency of the ripples, >= 0.

    Reference: J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd
    ed., Springer, 2006, Section 2.1 (local and global minimizers).
    """

    batched = True
    dim = 1

    def __init__(self, a=1.0, k=10.0):
        self.a = check_number("a", a, low=0.0, low_open=True)
        self.k = check_number("k", k, low=0.0)
        self.L = self.a + 0.1 * self.k**2
        m = self.a - 0.1 * self.k**2
        self.mu = m if m > 0 else None
        self.minimizer = np.array([self._global_minimizer()])
        self.f_star = float(self._f(self.minimizer[0]))

    def _f(self, x):
        return 0.5 * self.a * x**2 + 0.1 * np.sin(self.k * x)

    def _df(self, x):
        return self.a * x + 0.1 * self.k * np.cos(self.k * x)

    def _d2f(self, x):
        return self.a - 0.1 * self.k**2 * np.sin(self.k * x)

    def _global_minimizer(self):
        R = np.sqrt(0.2 / self.a)
        n_grid = max(2001, int(np.ceil(2 * R * 8 * max(self.k, 1.0) / np.pi)) + 1)
        grid = np.linspace(-R, R, n_grid)
        vals = self._f(grid)
        # Polish the best few grid points: the global minimum is near one of them.
        best = np.inf, 0.0
        for x in grid[np.argsort(vals)[:5]]:
            for _ in range(100):
                h = self._d2f(x)
                if h <= 0:
                    break
                step = self._df(x) / h
                x = x - step
                if abs(step) <= 1e-16 * max(1.0, abs(x)):
                    break
            if abs(x) <= R and self._d2f(x) > 0 and self._f(x) < best[0]:
                best = self._f(x), x
        return float(best[1])

    def _value(self, theta):
        return self._f(theta[..., 0].astype(np.float64))

    def _grad(self, theta):
        return self._df(theta.astype(np.float64))

    def _hvp(self, theta, v):
        return self._d2f(theta.astype(np.float64)) * v

    def hessian(self, theta):
        """The 1 x 1 Hessian :math:`f''(x)`."""
        theta, _ = self._check_theta(theta, allow_batch=False)
        return np.array([[self._d2f(float(theta[0]))]])

    def init_params(self, seed=0):
        """The fixed start :math:`x_0 = 2` (``seed`` is accepted for a uniform interface)."""
        return np.array([2.0])

    def __repr__(self):
        return f"Wavy(a={self.a:g}, k={self.k:g})"
