r"""The Rosenbrock function: a curved, narrow valley."""

from __future__ import annotations

import numpy as np

from .._checks import check_number
from .base import Problem

__all__ = ["Rosenbrock"]


class Rosenbrock(Problem):
    r"""The two-dimensional Rosenbrock function.

    .. math::

        f(x, y) = (a - x)^2 + b\,(y - x^2)^2,

    .. math::

        \nabla f = \begin{pmatrix} -2(a - x) - 4 b x (y - x^2) \\ 2 b (y - x^2) \end{pmatrix},
        \qquad
        \nabla^2 f = \begin{pmatrix} 2 - 4b(y - x^2) + 8 b x^2 & -4 b x \\ -4 b x & 2b \end{pmatrix}.

    The unique minimizer is :math:`(a, a^2)` with :math:`f^\star = 0`. The
    function is nonconvex and its gradient is not globally Lipschitz, so
    ``L`` and ``mu`` are ``None``; ``hessian(theta)`` gives the local
    curvature.

    Arguments:
        a: position of the minimizer along :math:`x`.
        b: steepness of the valley walls, > 0.

    ``value`` and ``grad`` accept a stack of points ``(k, 2)`` (``batched = True``).

    Reference: H. H. Rosenbrock, "An automatic method for finding the
    greatest or least value of a function", The Computer Journal 3(3), 1960.
    """

    batched = True
    dim = 2

    def __init__(self, a=1.0, b=100.0):
        self.a = check_number("a", a)
        self.b = check_number("b", b, low=0.0, low_open=True)
        self.minimizer = np.array([self.a, self.a**2])
        self.f_star = 0.0

    def _value(self, theta):
        x, y = theta[..., 0].astype(np.float64), theta[..., 1].astype(np.float64)
        return (self.a - x) ** 2 + self.b * (y - x**2) ** 2

    def _grad(self, theta):
        x, y = theta[..., 0].astype(np.float64), theta[..., 1].astype(np.float64)
        r = y - x**2
        return np.stack([-2 * (self.a - x) - 4 * self.b * x * r, 2 * self.b * r], axis=-1)

    def hessian(self, theta):
        """The exact 2 x 2 Hessian at ``theta``."""
        theta, _ = self._check_theta(theta, allow_batch=False)
        x, y = float(theta[0]), float(theta[1])
        b = self.b
        return np.array([[2 - 4 * b * (y - x**2) + 8 * b * x**2, -4 * b * x], [-4 * b * x, 2 * b]])

    def _hvp(self, theta, v):
        return self.hessian(theta) @ v

    def init_params(self, seed=0):
        """The classic start :math:`(-1.2, 1)` (fixed; ``seed`` is accepted for a uniform interface)."""
        return np.array([-1.2, 1.0])

    def __repr__(self):
        return f"Rosenbrock(a={self.a:g}, b={self.b:g})"
