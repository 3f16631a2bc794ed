r"""Quadratics with a chosen spectrum: the model problem of every rate in the course."""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_number
from .base import Problem, as_float_array

__all__ = ["Quadratic", "random_orthogonal"]


def random_orthogonal(dim, seed=0):
    r"""A Haar-distributed random orthogonal matrix :math:`Q \in O(d)`.

    .. math::

        G = QR,\; G_{ij} \sim \mathcal N(0, 1), \qquad
        Q \leftarrow Q\,\mathrm{diag}(\mathrm{sign}(R_{ii}))

    Arguments:
        dim: the size :math:`d`.
        seed: seed of ``np.random.default_rng``.

    Reference: F. Mezzadri, "How to generate random matrices from the
    classical compact groups", Notices of the AMS 54(5), 2007.
    """
    dim = check_int("dim", dim, low=1)
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


class Quadratic(Problem):
    r"""A quadratic with prescribed Hessian eigenvalues.

    .. math::

        f(\theta) = \tfrac12 (\theta - c)^\top H (\theta - c), \qquad
        H = Q\,\mathrm{diag}(\lambda_1, \dots, \lambda_d)\,Q^\top,

    so :math:`\nabla f(\theta) = H(\theta - c)`, :math:`\nabla^2 f = H`,
    :math:`L = \max_i \lambda_i`, :math:`\mu = \min_i \lambda_i`, the
    minimizer is :math:`c` and :math:`f^\star = 0`. Column :math:`i` of
    :math:`Q` (attribute ``eigenvectors``) is the eigenvector of
    :math:`\lambda_i`; gradient descent acts on each of these directions
    independently, with factor :math:`1 - \eta\lambda_i` per step.

    Arguments:
        eigenvalues: the spectrum :math:`(\lambda_1, \dots, \lambda_d)`, in the
            order of the eigenvectors. All must be > 0 (:math:`\mu > 0`).
        seed: seed for the rotation :math:`Q` and for nothing else.
        rotate: if True, :math:`Q` is a seeded random orthogonal matrix; if
            False, :math:`Q = I` and the axes are the eigendirections.
        center: the minimizer :math:`c` (default: the origin).
        allow_singular: accept zero eigenvalues (:math:`\mu = 0`; ``c`` is
            still a minimizer).
        allow_indefinite: accept any real eigenvalues, e.g. a saddle
            :math:`\tfrac12(x^2 - y^2)`; then ``L`` is
            :math:`\max_i|\lambda_i|`, ``mu`` is ``None`` and, if some
            :math:`\lambda_i < 0`, ``minimizer`` and ``f_star`` are ``None``
            (``c`` is a stationary point).

    ``value`` and ``grad`` accept a stack of parameters of shape ``(k, dim)``
    (``batched = True``).

    Reference: Y. Nesterov, *Lectures on Convex Optimization*, 2nd ed.,
    Springer, 2018, Section 2.1.
    """

    batched = True

    def __init__(self, eigenvalues, seed=0, rotate=True, center=None,
                 allow_singular=False, allow_indefinite=False):
        eig = as_float_array("eigenvalues", eigenvalues)
        if eig.ndim != 1 or eig.size == 0:
            raise ValueError(f"eigenvalues must be a non-empty 1-D array, got shape {eig.shape}")
        eig = eig.astype(np.float64)
        if not np.all(np.isfinite(eig)):
            raise ValueError(f"eigenvalues must be finite, got {eig.tolist()}")
        if not allow_indefinite:
            if allow_singular:
                bad = eig < 0
                rule = ">= 0 (allow_singular=True)"
            else:
                bad = eig <= 0
                rule = "> 0 (mu > 0 is required; pass allow_singular=True for zeros)"
            if np.any(bad):
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"eigenvalues must be {rule}, got eigenvalues[{i}] = {eig[i].item()!r}")
        self.dim = eig.size
        self.eigenvalues = eig
        self.seed = seed
        self.rotate = bool(rotate)
        self.eigenvectors = random_orthogonal(self.dim, seed) if rotate else np.eye(self.dim)
        Q = self.eigenvectors
        H = (Q * eig) @ Q.T
        self.H = 0.5 * (H + H.T)
        if center is None:
            c = np.zeros(self.dim)
        else:
            c = as_float_array("center", center).astype(np.float64)
            if c.shape != (self.dim,):
                raise ValueError(f"center must have shape ({self.dim},), got shape {c.shape}")
        self.center = c
        self.L = float(np.max(np.abs(eig)))
        if np.all(eig >= 0):
            self.mu = float(np.min(eig))
            self.minimizer = c.copy()
            self.f_star = 0.0
        else:
            self.mu = None
            self.minimizer = None
            self.f_star = None

    @classmethod
    def with_condition(cls, kappa, dim=2, L=1.0, seed=0, rotate=True, center=None,
                       spacing="geometric"):
        r"""A quadratic with condition number :math:`\kappa = L/\mu`.

        .. math::

            \lambda_i = \mu \left(\frac{L}{\mu}\right)^{(i-1)/(d-1)}
            \;(\text{geometric}), \qquad
            \lambda_i = \mu + \frac{i-1}{d-1}(L - \mu)\;(\text{linear}),
            \qquad \mu = L/\kappa,

        for :math:`i = 1, \dots, d`; the extreme eigenvalues are exactly
        :math:`\mu` and :math:`L`.

        Arguments:
            kappa: condition number, >= 1 (exactly 1 when ``dim == 1``).
            dim: dimension :math:`d`.
            L: largest eigenvalue, > 0.
            seed, rotate, center: as in :class:`Quadratic`.
            spacing: ``"geometric"`` or ``"linear"`` placement of the
                eigenvalues between :math:`\mu` and :math:`L`.
        """
        kappa = check_number("kappa", kappa, low=1.0)
        dim = check_int("dim", dim, low=1)
        L = check_number("L", L, low=0.0, low_open=True)
        if dim == 1 and kappa != 1.0:
            raise ValueError(f"kappa must be 1 when dim == 1, got kappa={kappa!r}")
        mu = L / kappa
        if spacing == "geometric":
            eig = np.geomspace(mu, L, dim)
        elif spacing == "linear":
            eig = np.linspace(mu, L, dim)
        else:
            raise ValueError(f"spacing must be 'geometric' or 'linear', got {spacing!r}")
        eig[0], eig[-1] = mu, L
        return cls(eig, seed=seed, rotate=rotate, center=center)

    @property
    def kappa(self):
        """Condition number :math:`L/\\mu` (``inf`` when :math:`\\mu = 0`, ``None`` if indefinite)."""
        if self.mu is None:
            return None
        return float(np.inf) if self.mu == 0 else self.L / self.mu

    def _value(self, theta):
        d = theta.astype(np.float64, copy=False) - self.center
        return 0.5 * np.sum(d * (d @ self.H), axis=-1)

    def _grad(self, theta):
        d = theta.astype(np.float64, copy=False) - self.center
        return d @ self.H

    def hvp(self, theta, v):
        r""":math:`H v`; ``v`` may be a stack ``(k, dim)``."""
        theta, _ = self._check_theta(theta)
        v, _ = self._check_theta(v, name="v")
        return self._out(v.astype(np.float64, copy=False) @ self.H, v)

    def hessian(self, theta=None):
        """The constant Hessian :math:`H` (``theta`` is accepted and ignored)."""
        return self.H.copy()

    def init_params(self, seed=0):
        r""":math:`\theta_0 = c + z`, :math:`z \sim \mathcal N(0, I)` from ``default_rng(seed)``."""
        rng = np.random.default_rng(seed)
        return self.center + rng.standard_normal(self.dim)

    def __repr__(self):
        return f"Quadratic(dim={self.dim}, L={self.L:.4g}, mu={self.mu if self.mu is None else format(self.mu, '.4g')})"
