r"""The interface every objective in :mod:`steplab.problems` shares.

A problem is an object with

.. math::

    f : \mathbb{R}^d \to \mathbb{R}, \qquad
    \texttt{value}(\theta) = f(\theta), \quad
    \texttt{grad}(\theta) = \nabla f(\theta), \quad
    \texttt{hvp}(\theta, v) = \nabla^2 f(\theta)\, v,

plus, where they exist, the constants the theory uses: the smoothness ``L``
(:math:`\|\nabla f(x) - \nabla f(y)\| \le L \|x - y\|`), the strong convexity
``mu``, a ``minimizer`` and ``f_star`` :math:`= f(\theta^\star)`. A constant
that does not exist (a nonconvex problem has no ``mu``) is ``None``.

A finite sum :math:`f(\theta) = \frac1n \sum_{i=1}^n f_i(\theta)` (the
regularizer sits inside every :math:`f_i`) adds ``n``,
``value_batch(theta, idx)``, ``grad_batch(theta, idx)`` (means over ``idx``)
and ``per_example_grads(theta, idx)``.

Problems whose class attribute ``batched`` is ``True`` also accept a stack of
parameter vectors of shape ``(k, dim)`` in ``value`` and ``grad`` (returning
shapes ``(k,)`` and ``(k, dim)``), so many step sizes or seeds run at once.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int
__all__ = ["Problem", "FiniteSumProblem"]


# ---------------------------------------------------------------- validation


def as_float_array(name, x):
    """``x`` as a floating ndarray (integers become float64); finite entries only."""
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    ):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr


def check_n_classes(y, n_classes) -> int:
    """The number of classes: ``n_classes`` checked (>= 2), or inferred as ``max(y) + 1`` (at least 2)."""
    if n_classes is None:
        y_arr = np.asarray(y)
        if y_arr.ndim != 1 or y_arr.size == 0 or not np.issubdtype(y_arr.dtype, np.number):
            raise ValueError(f"y must be a 1-D array of integer labels, got shape {y_arr.shape}")
        n_classes = max(2, int(np.max(y_arr)) + 1)
    return check_int("n_classes", n_classes, low=2)


def check_data_matrix(name, X):
    X = as_float_array(name, X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, d), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} has non-finite entries")
    return X


def check_labels(name, y, n_classes, n):
    """Integer class labels in {0, ..., n_classes - 1}, one per row of X."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has length {y.shape[0]} but X has {n} rows")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    yi = y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating) and not np.array_equal(yi, y):
        bad = y[yi != y][0]
        raise ValueError(f"{name} must hold integer class labels, got {bad!r}")
    outside = (yi < 0) | (yi >= n_classes)
    if np.any(outside):
        raise ValueError(
            f"{name} must be in {{0, ..., {n_classes - 1}}} (n_classes={n_classes}), "
            f"got {yi[outside][0]} at index {int(np.flatnonzero(outside)[0])}"
        )
    return yi


# ------------------------------------------------------------- problem bases


class Problem:
    r"""Base class: a differentiable objective :math:`f:\mathbb{R}^d\to\mathbb{R}`.

    Subclasses implement ``_value(theta)`` and ``_grad(theta)`` on a checked
    float array of shape ``(dim,)`` (or ``(k, dim)`` when ``batched``), and
    usually ``_hvp``. The public methods check the shape of ``theta`` and
    return the gradient in ``theta``'s floating dtype.

    Attributes
    ----------
    dim : int
        Number of parameters.
    L, mu, minimizer, f_star
        Smoothness, strong convexity, a minimizer and the optimal value, or
        ``None`` where they do not exist or are not known in closed form.
    batched : bool
        Whether ``value`` and ``grad`` accept a stack ``(k, dim)``.

    The default ``hvp`` is a central finite difference of ``grad``,

    .. math::

        \nabla^2 f(\theta) v \approx
        \frac{\nabla f(\theta + h \hat v) - \nabla f(\theta - h \hat v)}{2h}\,\|v\|,
        \qquad \hat v = v/\|v\|,\; h = \epsilon^{1/3} \max(1, \|\theta\|),

    with :math:`\epsilon` the float64 machine epsilon (error
    :math:`O(h^2)` from truncation plus :math:`O(\epsilon/h)` from rounding,
    balanced at this :math:`h`). Problems with an exact Hessian-vector
    product override it.

    Reference: J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed.,
    Springer, 2006, Sections 2.2 and 8.1.
    """

    batched = False
    dim: int
    L = None
    mu = None
    minimizer = None
    f_star = None

    # -- checks ------------------------------------------------------------
    def _check_theta(self, theta, name="theta", allow_batch=None):
        """Return (array, is_batch) after checking the shape ``(dim,)`` or ``(k, dim)``."""
        if allow_batch is None:
            allow_batch = self.batched
        arr = as_float_array(name, theta)
        if arr.ndim == 1 and arr.shape[0] == self.dim:
            return arr, False
        if allow_batch and arr.ndim == 2 and arr.shape[1] == self.dim and arr.shape[0] > 0:
            return arr, True
        expected = f"({self.dim},)" + (f" or (k, {self.dim})" if allow_batch else "")
        raise ValueError(
            f"{name} must have shape {expected} for {type(self).__name__}, got shape {arr.shape}"
        )

    @staticmethod
    def _out(x, like):
        """Cast a computed array to the dtype of the parameters it belongs to."""
        return np.asarray(x).astype(like.dtype, copy=False)

    @staticmethod
    def _scalar_or_array(values, is_batch):
        return np.asarray(values, dtype=np.float64) if is_batch else float(values)

    # -- public interface ---------------------------------------------------
    def value(self, theta):
        """:math:`f(\\theta)`; a float, or shape ``(k,)`` for a batch of parameters."""
        theta, is_batch = self._check_theta(theta)
        return self._scalar_or_array(self._value(theta), is_batch)

    def grad(self, theta):
        """:math:`\\nabla f(\\theta)`, same shape and floating dtype as ``theta``."""
        theta, _ = self._check_theta(theta)
        return self._out(self._grad(theta), theta)

    def hvp(self, theta, v):
        """Hessian-vector product :math:`\\nabla^2 f(\\theta) v`."""
        theta, _ = self._check_theta(theta, allow_batch=False)
        v, _ = self._check_theta(v, name="v", allow_batch=False)
        return self._out(self._hvp(theta, v), theta)

    def _hvp(self, theta, v):
        return _fd_hvp(self._grad, theta, v)

    def init_params(self, seed=0):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(dim={self.dim})"


def _fd_hvp(grad, theta, v):
    """Central finite difference of ``grad`` along ``v`` (see :class:`Problem`)."""
    theta = np.asarray(theta, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    norm_v = np.linalg.norm(v)
    if norm_v == 0.0:
        return np.zeros_like(theta)
    h = np.finfo(np.float64).eps ** (1 / 3) * max(1.0, float(np.linalg.norm(theta)))
    u = v / norm_v
    return (grad(theta + h * u) - grad(theta - h * u)) / (2 * h) * norm_v


class FiniteSumProblem(Problem):
    r"""A finite sum :math:`f(\theta) = \frac1n \sum_{i=1}^n f_i(\theta)`.

    Subclasses implement ``_value(theta, idx)``, ``_grad(theta, idx)`` and
    ``_per_example_grads(theta, idx)`` where ``idx`` is ``None`` (all examples)
    or a checked integer array. The regularizer is inside every :math:`f_i`,
    so a minibatch mean :math:`\frac1{|B|}\sum_{i\in B} \nabla f_i` is an
    unbiased estimate of :math:`\nabla f`.

    Attributes
    ----------
    n : int
        Number of examples.
    L_max : float or None
        :math:`\max_i L_i`, the largest smoothness constant of one
        :math:`f_i`, which sets SGD's and SAGA's step-size limits.

    Reference: L. Bottou, F. E. Curtis and J. Nocedal, "Optimization methods
    for large-scale machine learning", SIAM Review 60(2), 2018, Section 4.
    """

    n: int
    L_max = None

    def _check_idx(self, idx):
        if idx is None:
            return None
        arr = np.asarray(idx)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise ValueError(f"idx must be a 1-D array of example indices, got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError("idx must hold at least one example index, got an empty array")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"idx must hold integers, got dtype {arr.dtype}")
        bad = (arr < 0) | (arr >= self.n)
        if np.any(bad):
            raise ValueError(
                f"idx must be in [0, {self.n}) (n={self.n}), got {int(arr[bad][0])}"
            )
        return arr

    def value(self, theta):
        theta, is_batch = self._check_theta(theta)
        return self._scalar_or_array(self._value(theta, None), is_batch)

    def grad(self, theta):
        theta, _ = self._check_theta(theta)
        return self._out(self._grad(theta, None), theta)

    def value_batch(self, theta, idx):
        r""":math:`\frac1{|B|}\sum_{i\in B} f_i(\theta)` for the indices ``idx``."""
        theta, is_batch = self._check_theta(theta)
        idx = self._check_idx(idx)
        return self._scalar_or_array(self._value(theta, idx), is_batch)

    def grad_batch(self, theta, idx):
        r""":math:`\frac1{|B|}\sum_{i\in B} \nabla f_i(\theta)` for the indices ``idx``."""
        theta, _ = self._check_theta(theta)
        idx = self._check_idx(idx)
        return self._out(self._grad(theta, idx), theta)

    def per_example_grads(self, theta, idx=None):
        r"""Rows :math:`\nabla f_i(\theta)` for ``i`` in ``idx`` (all when ``None``): shape ``(m, dim)``."""
        theta, _ = self._check_theta(theta, allow_batch=False)
        idx = self._check_idx(idx)
        return self._out(self._per_example_grads(theta, idx), theta)

    def per_example_values(self, theta, idx=None):
        r"""The losses :math:`f_i(\theta)` for ``i`` in ``idx`` (all when ``None``), regularizer included.

        Shape ``(m,)``, or ``(k, m)`` for a stack of parameters on a ``batched`` problem; the mean
        over the examples of ``idx`` is ``value_batch(theta, idx)``. On a held-out set (a problem
        built on validation data with ``l2=0``) these are the per-example losses whose mean
        estimates the population risk, with standard error ``std / sqrt(m)``.
        """
        theta, _ = self._check_theta(theta)
        idx = self._check_idx(idx)
        return np.asarray(self._per_example_values(theta, idx), dtype=np.float64)

    def _per_example_values(self, theta, idx):
        raise NotImplementedError(f"{type(self).__name__} does not provide per-example values")

    def grad_batches(self, theta, idx):
        r"""One minibatch gradient per row: row :math:`r` is
        :math:`\frac1B\sum_{b} \nabla f_{i_{rb}}(\theta_r)` = ``grad_batch(theta[r], idx[r])``.

        ``theta`` has shape ``(R, dim)`` and ``idx`` shape ``(R, B)`` (integer indices in
        ``[0, n)``): R independent SGD runs, each with its own batch, in one call.
        """
        theta = as_float_array("theta", theta)
        if theta.ndim != 2 or theta.shape[1] != self.dim:
            raise ValueError(f"theta must have shape (R, {self.dim}) for grad_batches, got shape {theta.shape}")
        arr = np.asarray(idx)
        if arr.ndim != 2 or arr.shape[0] != theta.shape[0] or arr.shape[1] == 0:
            raise ValueError(
                f"idx must have shape (R, B) with R = {theta.shape[0]} and B >= 1, got shape {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"idx must hold integers, got dtype {arr.dtype}")
        bad = (arr < 0) | (arr >= self.n)
        if np.any(bad):
            raise ValueError(f"idx must be in [0, {self.n}) (n={self.n}), got {int(arr[bad][0])}")
        return self._out(self._grad_batches(theta, arr), theta)

    def _grad_batches(self, theta, idx):
        return np.stack([self._grad(t, i) for t, i in zip(theta, idx)])

    def _grad_full(self, theta):
        return self._grad(theta, None)

    def _hvp(self, theta, v):
        return _fd_hvp(self._grad_full, theta, v)

    def __repr__(self):
        return f"{type(self).__name__}(n={self.n}, dim={self.dim})"


# ------------------------------------------------------------------- Newton


def newton(value, grad, solve, x0, tol=1e-12, max_iter=100):
    r"""Damped Newton's method with Armijo backtracking.

    .. math::

        d_k = -\nabla^2 f(x_k)^{-1} \nabla f(x_k), \qquad
        x_{k+1} = x_k + t_k d_k,

    with :math:`t_k` halved from 1 until
    :math:`f(x_k + t d_k) \le f(x_k) + 10^{-4}\, t\, \nabla f(x_k)^\top d_k`.
    Stops when :math:`\|\nabla f(x_k)\|_2 \le` ``tol``, or when the gradient
    norm has stopped falling at the rounding floor (below ``1e3 * tol``).

    ``solve(x, g)`` returns :math:`\nabla^2 f(x)^{-1} g`.
    Returns ``(x, grad_norm, iterations, converged)``.

    Reference: S. Boyd and L. Vandenberghe, *Convex Optimization*, Cambridge
    University Press, 2004, Algorithm 9.5.
    """
    x = np.array(x0, dtype=np.float64)
    g = grad(x)
    gnorm = float(np.linalg.norm(g))
    best = gnorm
    stalled = 0
    for it in range(1, max_iter + 1):
        if gnorm <= tol:
            return x, gnorm, it - 1, True
        d = -solve(x, g)
        slope = float(g @ d)
        if not np.isfinite(slope) or slope >= 0:
            # The Hessian solve lost descent (rounding at the floor): fall back to -g.
            d = -g
            slope = -gnorm**2
        f0 = value(x)
        t = 1.0
        # Near the solution f changes by less than its rounding error: take the full step.
        if -slope > 1e-13 * max(1.0, abs(f0)):
            while value(x + t * d) > f0 + 1e-4 * t * slope and t > 1e-12:
                t *= 0.5
        x = x + t * d
        g = grad(x)
        gnorm = float(np.linalg.norm(g))
        if gnorm < 0.9 * best:
            best, stalled = gnorm, 0
        else:
            stalled += 1
            if stalled >= 3 and best <= 1e3 * tol:
                return x, gnorm, it, True
    return x, gnorm, max_iter, gnorm <= 1e3 * tol


def cg(matvec, b, tol, max_iter, precond=None):
    r"""Preconditioned conjugate gradients for :math:`A x = b`, :math:`A` symmetric positive (semi)definite.

    .. math::

        r_0 = b,\; z_0 = M^{-1} r_0,\; p_0 = z_0, \qquad
        \alpha_k = \frac{r_k^\top z_k}{p_k^\top A p_k}, \quad
        x_{k+1} = x_k + \alpha_k p_k, \quad r_{k+1} = r_k - \alpha_k A p_k,

    .. math::

        z_{k+1} = M^{-1} r_{k+1}, \quad
        p_{k+1} = z_{k+1} + \frac{r_{k+1}^\top z_{k+1}}{r_k^\top z_k}\, p_k,

    from :math:`x_0 = 0`, until :math:`\|r_k\|_2 \le` ``tol`` :math:`\|b\|_2`.

    Arguments:
        matvec: :math:`v \mapsto A v`.
        b: the right-hand side.
        tol: relative residual at which to stop.
        max_iter: at most this many products with :math:`A`.
        precond: :math:`r \mapsto M^{-1} r` for a symmetric positive definite
            :math:`M \approx A`; ``None`` means :math:`M = I` (plain CG).

    Reference: J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed.,
    Springer, 2006, Algorithm 5.3.
    """
    apply_m = (lambda r: r) if precond is None else precond
    x = np.zeros_like(b)
    r = b.copy()
    z = apply_m(r)
    p = z.copy()
    rz = float(r @ z)
    bnorm = np.sqrt(float(b @ b))
    for _ in range(max_iter):
        if np.sqrt(float(r @ r)) <= tol * bnorm:
            break
        Ap = matvec(p)
        pAp = float(p @ Ap)
        if pAp <= 0:  # a direction of zero curvature (singular A at rounding level): stop
            break
        alpha = rz / pAp
        x += alpha * p
        r -= alpha * Ap
        z = apply_m(r)
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x
