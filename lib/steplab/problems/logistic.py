r"""L2-regularized logistic regression: binary and softmax (multiclass)."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from .._checks import check_number
from .base import (
    check_n_classes,
    FiniteSumProblem,
    cg,
    check_data_matrix,
    check_labels,
    newton,
)

__all__ = ["LogisticRegression", "SoftmaxRegression", "sigmoid", "log_softmax"]

#: Newton's method stops when the gradient norm is at most this (see ``newton``).
NEWTON_TOL = 1e-12
#: Above this many parameters Newton's steps are solved by conjugate gradients.
_DENSE_NEWTON_MAX_DIM = 1500
#: Softmax regression switches to preconditioned CG much earlier: its dense Hessian costs
#: n (dK)^2 flops, its Hessian-vector product only 4 n d K.
_DENSE_SOFTMAX_MAX_DIM = 200


def sigmoid(z):
    r""":math:`\sigma(z) = 1/(1 + e^{-z}) = \tfrac12(1 + \tanh(z/2))`, without overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def log_softmax(Z):
    r""":math:`\log \mathrm{softmax}(z)_c = z_c - \log\sum_{c'} e^{z_{c'}}`, along the last axis.

    Computed with the log-sum-exp shift :math:`m = \max_c z_c`, so no
    exponential overflows. Computed in the floating dtype of ``Z`` (float64 for integers).
    """
    Z = np.asarray(Z)
    if not np.issubdtype(Z.dtype, np.floating):
        Z = Z.astype(np.float64)
    m = np.max(Z, axis=-1, keepdims=True)
    return Z - (m + np.log(np.sum(np.exp(Z - m), axis=-1, keepdims=True)))


def _binary_labels(y, n):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of labels, got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"y has length {y.shape[0]} but X has {n} rows")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValueError(f"y must hold labels in {{0, 1}} or {{-1, 1}}, got dtype {y.dtype}")
    yf = y.astype(np.float64)
    allowed = (-1.0, 1.0) if np.any(yf == -1) else (0.0, 1.0)
    bad = ~np.isin(yf, allowed)
    if np.any(bad):
        raise ValueError(
            f"y must hold labels in {{0, 1}} or {{-1, 1}}, got {y[bad][0].item()!r} "
            f"at index {int(np.flatnonzero(bad)[0])}"
        )
    return (yf == 1.0).astype(np.float64)


def _forcing(g):
    r"""Inexact Newton's relative CG tolerance :math:`\eta = \min(\tfrac12, \sqrt{\|g\|})`.

    It tightens as :math:`g \to 0`, which keeps Newton's convergence superlinear (Nocedal and
    Wright, *Numerical Optimization*, 2nd ed., 2006, Theorem 7.2 and Algorithm 7.1).
    """
    return min(0.5, float(np.sqrt(np.linalg.norm(g))))


class _Classifier(FiniteSumProblem):
    """Shared pieces: Newton minimizer, f_star, accuracy."""

    def _newton_solve(self, theta, g):
        if self.dim <= _DENSE_NEWTON_MAX_DIM:
            H = self.hessian(theta)
            try:
                return np.linalg.solve(H, g)
            except np.linalg.LinAlgError:  # singular without L2
                return np.linalg.lstsq(H, g, rcond=None)[0]
        return cg(lambda v: self._hvp(theta, v), g, tol=_forcing(g), max_iter=10 * self.dim)

    def _run_newton(self):
        x, gnorm, iters, converged = newton(
            lambda t: float(self._value(t, None)),
            lambda t: self._grad(t, None),
            self._newton_solve,
            np.zeros(self.dim),
            tol=NEWTON_TOL,
        )
        self.newton_iterations = iters
        self.minimizer_grad_norm = gnorm
        if self.l2 == 0 and np.all(self.predict(x) == self._label_targets()):
            # x classifies every example correctly, so f(t x) -> 0 = inf f as t -> infinity:
            # the data are separable and the infimum is not attained.
            return None
        if not converged:
            if self.l2 == 0:
                return None  # without L2 separable data has no minimizer
            raise RuntimeError(
                f"Newton's method stopped at gradient norm {gnorm:.3e} > {NEWTON_TOL:g}"
            )
        return x

    @cached_property
    def minimizer(self):
        return self._run_newton()

    @cached_property
    def f_star(self):
        x = self.minimizer
        return None if x is None else self.value(x)

    def _features(self, X):
        """``X`` checked to have the training data's columns (the training data when ``None``)."""
        if X is None:
            return self.X
        X = check_data_matrix("X", X)
        if X.shape[1] != self.X.shape[1]:
            raise ValueError(f"X must have {self.X.shape[1]} columns, got shape {X.shape}")
        return X

    def accuracy(self, theta, X=None, y=None):
        """Fraction of rows of ``X`` (default: the training data) whose predicted class is ``y``."""
        if X is None and y is None:
            X, y = self.X, self.y
        elif X is None or y is None:
            raise ValueError("accuracy needs both X and y, or neither")
        X = self._features(X)
        y = self._labels(y, X.shape[0])
        return float(np.mean(self.predict(theta, X) == y))


class LogisticRegression(_Classifier):
    r"""Binary logistic regression with an L2 penalty, as a finite sum.

    With labels :math:`y_i \in \{0, 1\}` and :math:`z_i = x_i^\top w`,

    .. math::

        f(w) = \frac1n \sum_{i=1}^n \Big[\log(1 + e^{z_i}) - y_i z_i\Big]
               + \frac{\lambda}{2}\|w\|_2^2,

    .. math::

        \nabla f(w) = \tfrac1n X^\top(\sigma(Xw) - y) + \lambda w, \qquad
        \nabla^2 f(w) = \tfrac1n X^\top D X + \lambda I,\;
        D = \mathrm{diag}(\sigma(z_i)(1 - \sigma(z_i))).

    Since :math:`\sigma(1-\sigma) \le 1/4`,
    :math:`L = \|X\|_2^2/(4n) + \lambda` bounds the Hessian everywhere and
    ``L_max`` :math:`= \max_i \|x_i\|^2/4 + \lambda` bounds each
    :math:`f_i`; :math:`\mu = \lambda`. The ``minimizer`` is computed on
    first access by damped Newton's method from 0, stopped at gradient norm
    ``NEWTON_TOL`` :math:`= 10^{-12}` (or at the float64 rounding floor below
    :math:`10^{-9}`); ``minimizer_grad_norm`` and ``newton_iterations``
    record the outcome. With :math:`\lambda = 0` on linearly separable data
    no minimizer exists (the loss tends to 0 along a separating direction)
    and ``minimizer`` and ``f_star`` are ``None``; this is detected when
    Newton's point classifies every example correctly. (Quasi-separable
    data, where only some examples can be separated, are not detected: use
    :math:`\lambda > 0` there.)

    There is no separate bias: append a column of ones to ``X`` for one
    (it is then regularized too).

    Arguments:
        X: features of shape ``(n, d)``.
        y: labels of shape ``(n,)`` in {0, 1} or in {-1, 1} (mapped to {0, 1}).
        l2: :math:`\lambda \ge 0`.

    ``value`` and ``grad`` accept a stack of parameters ``(k, d)``
    (``batched = True``).

    Reference: K. P. Murphy, *Machine Learning: A Probabilistic Perspective*,
    MIT Press, 2012, Section 8.3.
    """

    batched = True

    def __init__(self, X, y, l2=0.0):
        X = check_data_matrix("X", X)
        self.y = _binary_labels(y, X.shape[0])
        self.l2 = check_number("l2", l2, low=0.0)
        self.X = X.astype(np.float64)
        self.n, self.dim = X.shape
        self.n_classes = 2

    def _labels(self, y, n):
        return _binary_labels(y, n)

    def _label_targets(self):
        return self.y

    def _rows(self, idx):
        return (self.X, self.y) if idx is None else (self.X[idx], self.y[idx])

    def _value(self, theta, idx):
        X, y = self._rows(idx)
        theta = theta.astype(np.float64, copy=False)
        z = theta @ X.T
        return np.mean(np.logaddexp(0.0, z) - y * z, axis=-1) + 0.5 * self.l2 * np.sum(
            theta * theta, axis=-1
        )

    def _grad(self, theta, idx):
        X, y = self._rows(idx)
        theta = theta.astype(np.float64, copy=False)
        r = sigmoid(theta @ X.T) - y
        return r @ X / X.shape[0] + self.l2 * theta

    def _per_example_grads(self, theta, idx):
        X, y = self._rows(idx)
        r = sigmoid(X @ theta) - y
        return r[:, None] * X + self.l2 * theta

    def _per_example_values(self, theta, idx):
        X, y = self._rows(idx)
        theta = theta.astype(np.float64, copy=False)
        z = theta @ X.T
        return np.logaddexp(0.0, z) - y * z + 0.5 * self.l2 * np.sum(theta * theta, axis=-1, keepdims=True)

    def _grad_batches(self, theta, idx):
        X, y = self.X[idx], self.y[idx]  # (R, B, d), (R, B)
        theta = theta.astype(np.float64, copy=False)
        r = sigmoid(np.einsum("rbd,rd->rb", X, theta)) - y
        return np.einsum("rb,rbd->rd", r, X) / idx.shape[1] + self.l2 * theta

    def _hvp(self, theta, v):
        s = sigmoid(self.X @ theta)
        return self.X.T @ (s * (1 - s) * (self.X @ v)) / self.n + self.l2 * v

    def hessian(self, theta):
        r""":math:`\tfrac1n X^\top \mathrm{diag}(\sigma(1-\sigma)) X + \lambda I` at ``theta``."""
        theta, _ = self._check_theta(theta, allow_batch=False)
        s = sigmoid(self.X @ theta)
        return (self.X.T * (s * (1 - s))) @ self.X / self.n + self.l2 * np.eye(self.dim)

    @cached_property
    def L(self):
        return float(np.linalg.norm(self.X, 2) ** 2 / (4 * self.n) + self.l2)

    @property
    def mu(self):
        return self.l2

    @cached_property
    def L_max(self):
        return float(np.max(np.sum(self.X * self.X, axis=1)) / 4 + self.l2)

    def predict(self, theta, X=None):
        """Predicted labels in {0, 1}: :math:`\\mathbb 1[x^\\top w > 0]`."""
        theta, _ = self._check_theta(theta, allow_batch=False)
        X = self._features(X)
        return (X @ theta > 0).astype(np.float64)

    def init_params(self, seed=0):
        r""":math:`w_0 \sim \mathcal N(0, 10^{-2} I)` from ``default_rng(seed)``."""
        return 0.1 * np.random.default_rng(seed).standard_normal(self.dim)


class SoftmaxRegression(_Classifier):
    r"""Multiclass (softmax) logistic regression with an L2 penalty, as a finite sum.

    With :math:`W \in \mathbb{R}^{d\times K}`, logits :math:`z_i = W^\top x_i`
    and :math:`p_i = \mathrm{softmax}(z_i)`,

    .. math::

        f(W) = \frac1n \sum_{i=1}^n \Big[\log\sum_{c=1}^K e^{z_{ic}} - z_{i y_i}\Big]
               + \frac{\lambda}{2}\|W\|_F^2,
        \qquad
        \nabla f(W) = \tfrac1n X^\top (P - Y) + \lambda W,

    with :math:`Y` the one-hot labels, and Hessian
    :math:`\tfrac1n\sum_i (\mathrm{diag}(p_i) - p_i p_i^\top)\otimes x_i x_i^\top + \lambda I`.
    Since :math:`\mathrm{diag}(p) - pp^\top \preceq \tfrac12 I` (Böhning's
    bound), :math:`L = \|X\|_2^2/(2n) + \lambda`,
    ``L_max`` :math:`= \max_i\|x_i\|^2/2 + \lambda` and :math:`\mu = \lambda`
    (tight: adding the same vector to every column of :math:`W` leaves the
    loss unchanged). The ``minimizer`` is computed on first access by Newton's
    method, as in :class:`LogisticRegression` (tolerance ``NEWTON_TOL``; the
    same treatment of separable data when :math:`\lambda = 0`). Above 200
    parameters each Newton step is solved by conjugate gradients on
    Hessian-vector products, preconditioned by the :math:`K` diagonal blocks
    :math:`\tfrac1n X^\top \mathrm{diag}(p_c(1-p_c)) X + \lambda I` of the
    Hessian (Newton-CG; Nocedal and Wright, *Numerical Optimization*, 2006,
    Algorithm 7.1).

    **Parameter layout.** Parameters are the flat vector
    ``theta = W.ravel()`` of shape ``(d * n_classes,)``, i.e.
    ``theta[j * n_classes + c] = W[j, c]``; :meth:`unflatten` and
    :meth:`flatten` convert.

    Arguments:
        X: features of shape ``(n, d)`` (append a column of ones for biases).
        y: integer labels of shape ``(n,)`` in {0, ..., n_classes - 1}.
        n_classes: number of classes :math:`K` (default ``max(y) + 1``, at least 2).
        l2: :math:`\lambda \ge 0`.

    ``value`` and ``grad`` accept a stack of parameters ``(k, d * K)``
    (``batched = True``).

    References: K. P. Murphy, *Machine Learning: A Probabilistic
    Perspective*, MIT Press, 2012, Section 8.3.7; D. Böhning, "Multinomial
    logistic regression algorithm", Annals of the Institute of Statistical
    Mathematics 44, 1992.
    """

    batched = True

    def __init__(self, X, y, n_classes=None, l2=0.0):
        X = check_data_matrix("X", X)
        self.n_classes = check_n_classes(y, n_classes)
        self.y = check_labels("y", np.asarray(y), self.n_classes, X.shape[0])
        self.l2 = check_number("l2", l2, low=0.0)
        self.X = X.astype(np.float64)
        self.n, self.n_features = X.shape
        self.dim = self.n_features * self.n_classes
        self._Y = np.eye(self.n_classes)[self.y]

    def _labels(self, y, n):
        return check_labels("y", y, self.n_classes, n)

    def _label_targets(self):
        return self.y

    def unflatten(self, theta):
        """The weight matrix ``W`` of shape ``(d, n_classes)`` (or ``(k, d, n_classes)``)."""
        theta = np.asarray(theta)
        if theta.ndim == 0 or theta.shape[-1] != self.dim:
            raise ValueError(
                f"theta must have shape ({self.dim},) or (k, {self.dim}) "
                f"(d * n_classes = {self.n_features} * {self.n_classes}), got shape {theta.shape}"
            )
        return theta.reshape(theta.shape[:-1] + (self.n_features, self.n_classes))

    def flatten(self, W):
        """The flat parameter vector of a weight matrix ``W`` of shape ``(d, n_classes)``."""
        W = np.asarray(W)
        if W.shape[-2:] != (self.n_features, self.n_classes):
            raise ValueError(
                f"W must have shape ({self.n_features}, {self.n_classes}), got shape {W.shape}"
            )
        return W.reshape(W.shape[:-2] + (self.dim,))

    def _rows(self, idx):
        return (self.X, self.y, self._Y) if idx is None else (self.X[idx], self.y[idx], self._Y[idx])

    def _logits(self, theta, X):
        W = self.unflatten(theta.astype(np.float64, copy=False))
        return X @ W  # (n, K) or (k, n, K)

    def _value(self, theta, idx):
        X, y, Y = self._rows(idx)
        logp = log_softmax(self._logits(theta, X))
        nll = -np.mean(np.sum(logp * Y, axis=-1), axis=-1)
        return nll + 0.5 * self.l2 * np.sum(theta.astype(np.float64) ** 2, axis=-1)

    def _grad(self, theta, idx):
        X, y, Y = self._rows(idx)
        P = np.exp(log_softmax(self._logits(theta, X)))
        G = X.T @ (P - Y) / X.shape[0]  # (d, K), or (k, d, K) for a stack
        return self.flatten(G) + self.l2 * theta.astype(np.float64)

    def _per_example_grads(self, theta, idx):
        X, y, Y = self._rows(idx)
        P = np.exp(log_softmax(self._logits(theta, X)))
        G = X[:, :, None] * (P - Y)[:, None, :]  # (m, d, K)
        return G.reshape(X.shape[0], self.dim) + self.l2 * theta

    def _per_example_values(self, theta, idx):
        X, y, Y = self._rows(idx)
        theta = theta.astype(np.float64, copy=False)
        nll = -np.sum(log_softmax(self._logits(theta, X)) * Y, axis=-1)
        return nll + 0.5 * self.l2 * np.sum(theta * theta, axis=-1, keepdims=True)

    def _grad_batches(self, theta, idx):
        X, Y = self.X[idx], self._Y[idx]  # (R, B, d), (R, B, K)
        theta = theta.astype(np.float64, copy=False)
        Z = np.einsum("rbd,rdk->rbk", X, self.unflatten(theta))
        G = np.einsum("rbd,rbk->rdk", X, np.exp(log_softmax(Z)) - Y) / idx.shape[1]
        return self.flatten(G) + self.l2 * theta

    def _hvp(self, theta, v):
        P = np.exp(log_softmax(self._logits(theta, self.X)))
        Zv = self.X @ self.unflatten(v)  # directional change of the logits, (n, K)
        R = P * (Zv - np.sum(P * Zv, axis=1, keepdims=True))
        return self.flatten(self.X.T @ R / self.n) + self.l2 * v

    def hessian(self, theta):
        r"""The exact Hessian, shape ``(d K, d K)``, in the flat layout."""
        theta, _ = self._check_theta(theta, allow_batch=False)
        X, n, d, K = self.X, self.n, self.n_features, self.n_classes
        P = np.exp(log_softmax(self._logits(theta, X)))
        M = (X[:, :, None] * P[:, None, :]).reshape(n, d * K)  # entries x_ij p_ic
        H = -(M.T @ M)
        H4 = H.reshape(d, K, d, K)
        for c in range(K):
            H4[:, c, :, c] += (X.T * P[:, c]) @ X
        H = H4.reshape(d * K, d * K) / n + self.l2 * np.eye(d * K)
        return 0.5 * (H + H.T)

    def _newton_solve(self, theta, g):
        if self.dim <= _DENSE_SOFTMAX_MAX_DIM:
            return super()._newton_solve(theta, g)
        # Newton-CG preconditioned by the class-diagonal blocks of the Hessian,
        # (1/n) X^T diag(p_c (1 - p_c)) X + l2 I: K products of size d x d instead of
        # the (dK) x (dK) Hessian; the coupling between classes is left to CG.
        X, n, d, K = self.X, self.n, self.n_features, self.n_classes
        P = np.exp(log_softmax(self._logits(theta, X)))
        blocks = np.empty((K, d, d))
        for c in range(K):
            Xc = X * np.sqrt(P[:, c] * (1.0 - P[:, c]))[:, None]
            blocks[c] = Xc.T @ Xc / n  # A^T A: numpy uses the symmetric product (syrk)
        if self.l2 > 0:
            inv_blocks = np.linalg.inv(blocks + self.l2 * np.eye(d))  # each block >= l2 I
        else:
            # A feature that is zero on every row leaves a block singular without L2.
            inv_blocks = np.linalg.pinv(blocks, rcond=1e-12, hermitian=True)

        def hvp(v):
            Zv = X @ v.reshape(d, K)
            return (X.T @ (P * (Zv - np.sum(P * Zv, axis=1, keepdims=True)))).ravel() / n + self.l2 * v

        def precond(r):
            return np.einsum("cij,jc->ic", inv_blocks, r.reshape(d, K)).ravel()

        return cg(hvp, g, tol=_forcing(g), max_iter=10 * self.dim, precond=precond)

    @cached_property
    def L(self):
        return float(np.linalg.norm(self.X, 2) ** 2 / (2 * self.n) + self.l2)

    @property
    def mu(self):
        return self.l2

    @cached_property
    def L_max(self):
        return float(np.max(np.sum(self.X * self.X, axis=1)) / 2 + self.l2)

    def predict(self, theta, X=None):
        """Predicted classes :math:`\\arg\\max_c z_c`."""
        theta, _ = self._check_theta(theta, allow_batch=False)
        X = self._features(X)
        return np.argmax(self._logits(theta, X), axis=-1)

    def init_params(self, seed=0):
        r""":math:`\theta_0 \sim \mathcal N(0, 10^{-2} I)` from ``default_rng(seed)``."""
        return 0.1 * np.random.default_rng(seed).standard_normal(self.dim)
