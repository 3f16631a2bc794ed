r"""Linear least squares, optionally ridge-regularized."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from .._checks import check_number
from .base import FiniteSumProblem, as_float_array, check_data_matrix

__all__ = ["LeastSquares"]


class LeastSquares(FiniteSumProblem):
    r"""Least squares with an optional L2 penalty, as a finite sum.

    .. math::

        f(\theta) = \frac{1}{2n}\|A\theta - b\|_2^2 + \frac{\lambda}{2}\|\theta\|_2^2
        = \frac1n \sum_{i=1}^n f_i(\theta), \qquad
        f_i(\theta) = \tfrac12 (a_i^\top\theta - b_i)^2 + \tfrac{\lambda}{2}\|\theta\|_2^2,

    .. math::

        \nabla f(\theta) = \tfrac1n A^\top(A\theta - b) + \lambda\theta, \qquad
        \nabla^2 f = \tfrac1n A^\top A + \lambda I.

    ``L`` and ``mu`` are the largest and smallest eigenvalues of
    :math:`\nabla^2 f` (``mu`` is exactly :math:`\lambda` when :math:`A` has
    rank below :math:`d`); ``mu_pl`` is the smallest *nonzero* eigenvalue,
    the Polyak-Lojasiewicz constant
    :math:`\tfrac12\|\nabla f\|^2 \ge \mu_{PL}(f - f^\star)`, which is
    positive even for an over-parameterized problem (:math:`d > n`,
    :math:`\lambda = 0`); ``L_max`` is :math:`\max_i \|a_i\|^2 + \lambda`.
    The minimizer solves :math:`(A^\top A/n + \lambda I)\theta = A^\top b/n`;
    when that system is singular it is the minimum-norm solution (the point
    gradient descent from 0 converges to). Spectral quantities are computed
    on first access.

    Arguments:
        A: design matrix of shape ``(n, d)``.
        b: targets of shape ``(n,)``.
        l2: ridge coefficient :math:`\lambda \ge 0`.

    ``value`` and ``grad`` (and their batch versions) accept a stack of
    parameters of shape ``(k, d)`` (``batched = True``).

    Reference: H. Karimi, J. Nutini and M. Schmidt, "Linear convergence of
    gradient and proximal-gradient methods under the Polyak-Lojasiewicz
    condition", ECML PKDD 2016 (PL constant of least squares).
    """

    batched = True

    def __init__(self, A, b, l2=0.0):
        A = check_data_matrix("A", A)
        b = as_float_array("b", b)
        if b.ndim != 1:
            raise ValueError(f"b must be a 1-D array of targets, got shape {b.shape}")
        if b.shape[0] != A.shape[0]:
            raise ValueError(f"b has length {b.shape[0]} but A has {A.shape[0]} rows")
        if not np.all(np.isfinite(b)):
            raise ValueError("b has non-finite entries")
        self.l2 = check_number("l2", l2, low=0.0)
        self.A = A.astype(np.float64)
        self.b = b.astype(np.float64)
        self.n, self.dim = A.shape

    # -- finite-sum pieces ---------------------------------------------------
    def _rows(self, idx):
        return (self.A, self.b) if idx is None else (self.A[idx], self.b[idx])

    def _value(self, theta, idx):
        A, b = self._rows(idx)
        theta = theta.astype(np.float64, copy=False)
        r = theta @ A.T - b
        return 0.5 * np.mean(r * r, axis=-1) + 0.5 * self.l2 * np.sum(theta * theta, axis=-1)

    def _grad(self, theta, idx):
        A, b = self._rows(idx)
        theta = theta.astype(np.float64, copy=False)
        r = theta @ A.T - b
        return r @ A / A.shape[0] + self.l2 * theta

    def _per_example_grads(self, theta, idx):
        A, b = self._rows(idx)
        r = A @ theta - b
        return r[:, None] * A + self.l2 * theta

    def _per_example_values(self, theta, idx):
        A, b = self._rows(idx)
        theta = theta.astype(np.float64, copy=False)
        r = theta @ A.T - b
        return 0.5 * r * r + 0.5 * self.l2 * np.sum(theta * theta, axis=-1, keepdims=True)

    def _grad_batches(self, theta, idx):
        A, b = self.A[idx], self.b[idx]  # (R, B, d), (R, B)
        theta = theta.astype(np.float64, copy=False)
        r = np.einsum("rbd,rd->rb", A, theta) - b
        return np.einsum("rb,rbd->rd", r, A) / idx.shape[1] + self.l2 * theta

    def _hvp(self, theta, v):
        return (self.A.T @ (self.A @ v)) / self.n + self.l2 * v

    def hessian(self, theta=None):
        r""":math:`A^\top A/n + \lambda I` (``theta`` is accepted and ignored)."""
        return self.A.T @ self.A / self.n + self.l2 * np.eye(self.dim)

    # -- constants -----------------------------------------------------------
    @cached_property
    def _gram_eigenvalues(self):
        """Eigenvalues of A^T A / n in ascending order, zeros included when rank < d."""
        n, d = self.A.shape
        if d <= n:
            eig = np.linalg.eigvalsh(self.A.T @ self.A / n)
        else:
            eig = np.concatenate([np.zeros(d - n), np.linalg.eigvalsh(self.A @ self.A.T / n)])
        eig = np.maximum(eig, 0.0)
        tol = max(n, d) * np.finfo(np.float64).eps * max(eig[-1], np.finfo(np.float64).tiny)
        eig[eig <= tol] = 0.0
        return eig

    @cached_property
    def L(self):
        return float(self._gram_eigenvalues[-1] + self.l2)

    @cached_property
    def mu(self):
        return float(self._gram_eigenvalues[0] + self.l2)

    @cached_property
    def mu_pl(self):
        if self.l2 > 0:
            return self.mu
        positive = self._gram_eigenvalues[self._gram_eigenvalues > 0]
        return float(positive[0]) if positive.size else 0.0

    @cached_property
    def L_max(self):
        return float(np.max(np.sum(self.A * self.A, axis=1)) + self.l2)

    @cached_property
    def minimizer(self):
        A, b, n = self.A, self.b, self.n
        if self.l2 > 0:
            if self.dim <= n:
                x = np.linalg.solve(A.T @ A / n + self.l2 * np.eye(self.dim), A.T @ b / n)
            else:
                # Dual form: x = A^T (A A^T + n l2 I)^{-1} b, an n x n solve.
                x = A.T @ np.linalg.solve(A @ A.T + n * self.l2 * np.eye(n), b)
        else:
            x = np.linalg.lstsq(A, b, rcond=None)[0]
        return x

    @cached_property
    def f_star(self):
        return self.value(self.minimizer)

    def init_params(self, seed=0):
        r""":math:`\theta_0 \sim \mathcal N(0, I/d)` from ``default_rng(seed)``."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal(self.dim) / np.sqrt(self.dim)
