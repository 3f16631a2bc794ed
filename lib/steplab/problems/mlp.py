r"""A two-layer perceptron with backpropagation and an exact Hessian-vector product, by hand."""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_number
from .logistic import log_softmax
from .base import (
    check_n_classes,
    FiniteSumProblem,
    as_float_array,
    check_data_matrix,
    check_labels,
)

__all__ = ["MLP"]

_KEYS = ("W1", "b1", "W2", "b2")


class MLP(FiniteSumProblem):
    r"""A two-layer neural network as a finite sum.

    For an example :math:`x \in \mathbb{R}^d`,

    .. math::

        z_1 = W_1^\top x + b_1,\quad a_1 = \sigma(z_1),\quad
        z_2 = W_2^\top a_1 + b_2,

    with :math:`\sigma = \tanh` or ReLU, and the loss

    .. math::

        f_i(\theta) = \begin{cases}
            \log\sum_c e^{z_{2,c}} - z_{2,y_i} & \text{classification (softmax cross-entropy)},\\
            \tfrac12 \|z_2 - y_i\|_2^2 & \text{regression (squared loss)},
        \end{cases}
        \; + \frac{\lambda}{2}\big(\|W_1\|_F^2 + \|W_2\|_F^2\big),

    :math:`f = \frac1n\sum_i f_i`. Gradients are computed by backpropagation,
    with :math:`\delta_2 = \partial f/\partial z_2` (:math:`P - Y` or
    :math:`z_2 - Y`, divided by the batch size):

    .. math::

        \nabla_{W_2} = A_1^\top \delta_2 + \lambda W_2,\;
        \nabla_{b_2} = \textstyle\sum_i \delta_{2,i},\;
        \delta_1 = (\delta_2 W_2^\top)\odot\sigma'(Z_1),\;
        \nabla_{W_1} = X^\top \delta_1 + \lambda W_1,\;
        \nabla_{b_1} = \textstyle\sum_i \delta_{1,i}.

    ``hvp`` is exact: Pearlmutter's R-operator
    :math:`\mathcal R_v\{g\} = \frac{d}{dt} \nabla f(\theta + t v)\big|_{t=0}`
    applied to every line of the forward and backward pass (for ReLU,
    :math:`\sigma'' = 0` away from the kink). ``L``, ``mu``, ``minimizer``
    and ``f_star`` are ``None`` (nonconvex); sharpness is measured with
    ``hvp``.

    Parameters are a dict ``{"W1": (d, h), "b1": (h,), "W2": (h, o), "b2": (o,)}``
    with ``o`` the number of classes (classification) or of targets
    (regression). Computation runs in the parameters' floating dtype (float32
    parameters give a genuinely float32 forward and backward pass).

    Arguments:
        X: inputs of shape ``(n, d)``.
        y: integer labels ``(n,)`` (classification) or targets ``(n,)`` or ``(n, o)`` (regression).
        hidden: width :math:`h` of the hidden layer.
        seed: default seed of :meth:`init_params`.
        task: ``"classification"`` or ``"regression"``.
        activation: ``"tanh"`` or ``"relu"``.
        n_classes: number of classes (classification; default ``max(y) + 1``, at least 2).
        l2: :math:`\lambda \ge 0` on the weight matrices (not the biases).

    References: D. E. Rumelhart, G. E. Hinton and R. J. Williams, "Learning
    representations by back-propagating errors", Nature 323, 1986;
    B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural
    Computation 6(1), 1994.
    """

    batched = False

    def __init__(self, X, y, hidden=16, seed=0, task="classification", activation="tanh",
                 n_classes=None, l2=0.0):
        X = check_data_matrix("X", X)
        n, d = X.shape
        self.hidden = check_int("hidden", hidden, low=1)
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
        self.task, self.activation = task, activation
        self.l2 = check_number("l2", l2, low=0.0)
        self.seed = seed
        if task == "classification":
            self.n_classes = check_n_classes(y, n_classes)
            self.y = check_labels("y", np.asarray(y), self.n_classes, n)
            self.n_outputs = self.n_classes
            self._Y = np.eye(self.n_classes)[self.y]
        else:
            if n_classes is not None:
                raise ValueError(f"n_classes applies to classification only, got n_classes={n_classes!r}")
            Y = as_float_array("y", y)
            if Y.ndim not in (1, 2):
                raise ValueError(f"y must have shape (n,) or (n, o) for regression, got shape {Y.shape}")
            if Y.shape[0] != n:
                raise ValueError(f"y has length {Y.shape[0]} but X has {n} rows")
            if not np.all(np.isfinite(Y)):
                raise ValueError("y has non-finite entries")
            self.y = Y.astype(np.float64)
            self._Y = self.y.reshape(n, -1)
            self.n_classes = None
            self.n_outputs = self._Y.shape[1]
        self.X = X.astype(np.float64)
        self.n, self.n_features = n, d
        h, o = self.hidden, self.n_outputs
        self.shapes = {"W1": (d, h), "b1": (h,), "W2": (h, o), "b2": (o,)}
        self.dim = d * h + h + h * o + o

    # -- parameters --------------------------------------------------------
    def _check_params(self, theta, name="theta"):
        if not isinstance(theta, dict):
            raise ValueError(f"{name} must be a dict with keys {list(_KEYS)}, got {type(theta).__name__}")
        for k in _KEYS:
            if k not in theta:
                raise ValueError(f"{name} is missing key {k!r}")
        for k in theta:
            if k not in self.shapes:
                raise ValueError(f"{name} has unexpected key {k!r}")
        out = {}
        for k in _KEYS:
            arr = as_float_array(f"{name}[{k!r}]", theta[k])
            if arr.shape != self.shapes[k]:
                raise ValueError(
                    f"{name}[{k!r}] has shape {arr.shape} but the model expects {self.shapes[k]}"
                )
            out[k] = arr
        dtype = np.result_type(*(out[k].dtype for k in _KEYS))
        return {k: out[k].astype(dtype, copy=False) for k in _KEYS}, dtype

    def init_params(self, seed=None):
        r"""Random weights, zero biases, from ``default_rng(seed)`` (``seed=None``: the constructor's).

        .. math::

            (W_1)_{jk} \sim \mathcal N(0, s/d),\; (W_2)_{kc} \sim \mathcal N(0, 1/h),\;
            b_1 = 0,\; b_2 = 0,

        with :math:`s = 1` for tanh (LeCun) and :math:`s = 2` for ReLU (He).
        """
        rng = np.random.default_rng(self.seed if seed is None else seed)
        d, h, o = self.n_features, self.hidden, self.n_outputs
        s = 2.0 if self.activation == "relu" else 1.0
        return {
            "W1": rng.standard_normal((d, h)) * np.sqrt(s / d),
            "b1": np.zeros(h),
            "W2": rng.standard_normal((h, o)) / np.sqrt(h),
            "b2": np.zeros(o),
        }

    def flatten(self, theta):
        """Concatenate ``W1, b1, W2, b2`` (each raveled) into one vector of length ``dim``."""
        theta, _ = self._check_params(theta)
        return np.concatenate([theta[k].ravel() for k in _KEYS])

    def unflatten(self, vector):
        """The inverse of :meth:`flatten`."""
        v = as_float_array("vector", vector)
        if v.shape != (self.dim,):
            raise ValueError(f"vector must have shape ({self.dim},), got shape {v.shape}")
        out, start = {}, 0
        for k in _KEYS:
            size = int(np.prod(self.shapes[k]))
            out[k] = v[start:start + size].reshape(self.shapes[k]).copy()
            start += size
        return out

    # -- forward and backward ------------------------------------------------
    def _data(self, idx, dtype):
        X, Y = (self.X, self._Y) if idx is None else (self.X[idx], self._Y[idx])
        return X.astype(dtype, copy=False), Y.astype(dtype, copy=False)

    def _forward(self, p, X):
        Z1 = X @ p["W1"] + p["b1"]
        A1 = np.tanh(Z1) if self.activation == "tanh" else np.maximum(Z1, 0)
        Z2 = A1 @ p["W2"] + p["b2"]
        return Z1, A1, Z2

    def _dsigma(self, Z1, A1):
        if self.activation == "tanh":
            return 1 - A1 * A1
        return (Z1 > 0).astype(Z1.dtype)

    def _d2sigma(self, Z1, A1):
        if self.activation == "tanh":
            return -2 * A1 * (1 - A1 * A1)
        return np.zeros_like(Z1)

    def _output_error(self, Z2, Y):
        """Per-example dl_i/dz2 (not divided by the batch size)."""
        if self.task == "classification":
            return np.exp(log_softmax(Z2)) - Y
        return Z2 - Y

    def _penalty(self, p):
        return 0.5 * self.l2 * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))

    def _example_losses(self, p, idx):
        """The data terms of the examples ``idx`` (cross-entropy or half squared error), no penalty."""
        X, Y = self._data(idx, p["W1"].dtype)
        Z2 = self._forward(p, X)[2]
        if self.task == "classification":
            return -np.sum(log_softmax(Z2) * Y, axis=1)
        return 0.5 * np.sum((Z2 - Y) ** 2, axis=1)

    def _loss(self, p, idx):
        return float(np.mean(self._example_losses(p, idx)) + self._penalty(p))

    def _backprop(self, p, idx):
        X, Y = self._data(idx, p["W1"].dtype)
        m = X.shape[0]
        Z1, A1, Z2 = self._forward(p, X)
        D2 = self._output_error(Z2, Y) / m
        D1 = (D2 @ p["W2"].T) * self._dsigma(Z1, A1)
        return {
            "W1": X.T @ D1 + self.l2 * p["W1"],
            "b1": D1.sum(axis=0),
            "W2": A1.T @ D2 + self.l2 * p["W2"],
            "b2": D2.sum(axis=0),
        }

    def _rop(self, p, v, idx=None):
        """Exact Hessian-vector product by forward-mode differentiation of backprop."""
        X, Y = self._data(idx, p["W1"].dtype)
        m = X.shape[0]
        Z1, A1, Z2 = self._forward(p, X)
        s1, s2 = self._dsigma(Z1, A1), self._d2sigma(Z1, A1)
        D2 = self._output_error(Z2, Y) / m
        DA1 = D2 @ p["W2"].T
        # R-op of the forward pass
        RZ1 = X @ v["W1"] + v["b1"]
        RA1 = s1 * RZ1
        RZ2 = RA1 @ p["W2"] + A1 @ v["W2"] + v["b2"]
        # R-op of the output error: the loss Hessian in z2 applied to RZ2
        if self.task == "classification":
            P = np.exp(log_softmax(Z2))
            RD2 = P * (RZ2 - np.sum(P * RZ2, axis=1, keepdims=True)) / m
        else:
            RD2 = RZ2 / m
        # R-op of the backward pass
        RDA1 = RD2 @ p["W2"].T + D2 @ v["W2"].T
        RD1 = RDA1 * s1 + DA1 * s2 * RZ1
        return {
            "W1": X.T @ RD1 + self.l2 * v["W1"],
            "b1": RD1.sum(axis=0),
            "W2": RA1.T @ D2 + A1.T @ RD2 + self.l2 * v["W2"],
            "b2": RD2.sum(axis=0),
        }

    # -- public interface ------------------------------------------------------
    def value(self, theta):
        """:math:`f(\\theta)`, the mean loss over all examples plus the penalty."""
        p, _ = self._check_params(theta)
        return self._loss(p, None)

    def grad(self, theta):
        """:math:`\\nabla f(\\theta)` as a dict with the shapes and dtype of ``theta``."""
        p, _ = self._check_params(theta)
        return self._backprop(p, None)

    def value_batch(self, theta, idx):
        p, _ = self._check_params(theta)
        return self._loss(p, self._check_idx(idx))

    def grad_batch(self, theta, idx):
        p, _ = self._check_params(theta)
        return self._backprop(p, self._check_idx(idx))

    def hvp(self, theta, v):
        r"""Exact :math:`\nabla^2 f(\theta) v` (R-operator); ``v`` is a dict like ``theta``."""
        p, dtype = self._check_params(theta)
        v, _ = self._check_params(v, name="v")
        return self._rop(p, {k: v[k].astype(dtype, copy=False) for k in _KEYS})

    def per_example_grads(self, theta, idx=None):
        r"""Dict of per-example gradients :math:`\nabla f_i`, each with a leading axis of length ``len(idx)``."""
        p, _ = self._check_params(theta)
        idx = self._check_idx(idx)
        X, Y = self._data(idx, p["W1"].dtype)
        Z1, A1, Z2 = self._forward(p, X)
        E2 = self._output_error(Z2, Y)
        E1 = (E2 @ p["W2"].T) * self._dsigma(Z1, A1)
        return {
            "W1": X[:, :, None] * E1[:, None, :] + self.l2 * p["W1"],
            "b1": E1,
            "W2": A1[:, :, None] * E2[:, None, :] + self.l2 * p["W2"],
            "b2": E2,
        }

    def per_example_grads_flat(self, theta, idx=None):
        r"""Per-example gradients as a matrix ``(m, dim)``, row :math:`i` = ``flatten`` of :math:`\nabla f_i`.

        The form variance computations need: :math:`\operatorname{tr}\Sigma = \frac1m\sum_i
        \|G_i - \bar G\|^2` over the rows :math:`G_i`.
        """
        per = self.per_example_grads(theta, idx)
        m = per["b1"].shape[0]
        return np.concatenate([per[k].reshape(m, -1) for k in _KEYS], axis=1)

    def per_example_values(self, theta, idx=None):
        r"""The losses :math:`f_i(\theta)` (penalty included) for ``i`` in ``idx``, shape ``(m,)``;
        their mean is ``value_batch(theta, idx)``."""
        p, _ = self._check_params(theta)
        idx = self._check_idx(idx)
        return np.asarray(self._example_losses(p, idx) + self._penalty(p), dtype=np.float64)

    def predict(self, theta, X=None):
        """Class predictions (classification) or outputs ``(m, o)`` (regression)."""
        p, dtype = self._check_params(theta)
        X = self.X if X is None else check_data_matrix("X", X)
        if X.shape[1] != self.n_features:
            raise ValueError(f"X must have {self.n_features} columns, got shape {X.shape}")
        Z2 = self._forward(p, X.astype(dtype, copy=False))[2]
        return np.argmax(Z2, axis=1) if self.task == "classification" else Z2

    def accuracy(self, theta, X=None, y=None):
        """Fraction of correct class predictions on ``(X, y)`` (default: the training data)."""
        if self.task != "classification":
            raise ValueError(f"accuracy needs task='classification', got task={self.task!r}")
        if X is None and y is None:
            X, y = self.X, self.y
        elif X is None or y is None:
            raise ValueError("accuracy needs both X and y, or neither")
        X = check_data_matrix("X", X)
        y = check_labels("y", y, self.n_classes, X.shape[0])
        return float(np.mean(self.predict(theta, X) == y))

    def __repr__(self):
        return (f"MLP(n={self.n}, d={self.n_features}, hidden={self.hidden}, "
                f"outputs={self.n_outputs}, task={self.task!r}, activation={self.activation!r})")
