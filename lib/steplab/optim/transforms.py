r"""The primitives: one idea each, composed with :func:`~steplab.optim.chain`.

Each function returns a :class:`~steplab.optim.GradientTransformation`. In the formulas
:math:`g` is the incoming update (the gradient at the head of a chain), :math:`u` the
outgoing one, :math:`\theta` the parameters and :math:`t = 1, 2, \dots` the step.
Per-array quantities (norms, RMS, factored moments) are computed for each array of a dict
separately, as the references do per tensor.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .base import EmptyState, GradientTransformation
from .._checks import (
    check_bool,
    check_int,
    check_lr,
    check_nonnegative,
    check_number,
    check_positive,
    check_unit_interval,
    lr_at,
)
from .._tree import Params, check_tree_match, tree_map, tree_norm, tree_zeros_like

_NEEDS_PARAMS = "{name} needs the parameters: call update(grads, state, params)"


def _need_params(name: str, params) -> None:
    if params is None:
        raise ValueError(_NEEDS_PARAMS.format(name=name))


def _rms(x: np.ndarray) -> float:
    x = np.asarray(x)
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


# --------------------------------------------------------------------------- scaling


def scale(step_size: float) -> GradientTransformation:
    r"""Multiply by a constant: :math:`u = \alpha\, g`.

    Args:
        step_size: the factor :math:`\alpha` (any finite number, negative allowed).
    """
    step_size = check_number("step_size", step_size)

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        return tree_map(lambda g: g * step_size, updates), state

    return GradientTransformation(init, update)


def scale_by_diagonal(d) -> GradientTransformation:
    r"""Multiply entry by entry by a fixed diagonal: :math:`u = d \odot g`, i.e. :math:`u = D g`
    with :math:`D = \mathrm{diag}(d)`.

    Followed by :func:`scale_by_learning_rate`, this is preconditioned gradient descent
    :math:`\theta_{t+1} = \theta_t - \eta D \nabla f(\theta_t)` with a fixed diagonal
    :math:`D = P^{-1}`, which is gradient descent in the variables :math:`z = D^{-1/2}\theta`
    (for :math:`d > 0`); the Jacobi choice is :math:`d = 1/\mathrm{diag}(\nabla^2 f)`.

    Args:
        d: the diagonal, an array with the shape of the parameters or a dict of arrays with
            their keys and shapes; every entry finite and :math:`\ge 0` (a zero freezes its
            coordinate).

    Reference: Nocedal and Wright, *Numerical Optimization*, 2nd ed., 2006, section 5.1
    (preconditioning); Jacobi preconditioning.
    """
    def as_diagonal(name, value):
        try:
            value = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an array of numbers, got {value!r}") from None
        ok = np.isfinite(value) & (value >= 0)
        if not np.all(ok):
            raise ValueError(f"{name} must have finite entries >= 0, got an entry {float(value[~ok][0])!r}")
        return value

    if isinstance(d, dict):
        d = {key: as_diagonal(f"d[{key!r}]", value) for key, value in d.items()}
    else:
        d = as_diagonal("d", d)

    def init(params):
        check_tree_match(d, params, name="d")
        return EmptyState()

    def update(updates, state, params=None):
        check_tree_match(d, updates, name="d")
        return tree_map(lambda g, w: (w * g).astype(np.result_type(g), copy=False), updates, d), state

    return GradientTransformation(init, update)


class ScaleByLearningRateState(NamedTuple):
    """``count``: updates applied so far; ``lr``: the learning rate of the latest update
    (before the first update, the one the first update will use)."""

    count: int
    lr: float


def scale_by_learning_rate(lr, flip_sign: bool = True) -> GradientTransformation:
    r"""Step against the update: :math:`u = -\eta_t\, g`, with :math:`\eta_t` = ``lr(t)`` for a
    schedule (``t`` = updates already applied, so the first update uses ``lr(0)``).

    The state records the rate it used, for logging: see :func:`current_lr`.

    Args:
        lr: a number >= 0 or a schedule (a callable of the step count).
        flip_sign: if False, :math:`u = +\eta_t g` (Adafactor flips the sign at its end).

    Reference: Robbins and Monro, *A Stochastic Approximation Method*, 1951.
    """
    lr = check_lr(lr)
    flip_sign = check_bool("flip_sign", flip_sign)
    sign = -1.0 if flip_sign else 1.0

    def init(params):
        return ScaleByLearningRateState(count=0, lr=lr_at(lr, 0))

    def update(updates, state, params=None):
        eta = lr_at(lr, state.count)
        factor = sign * eta
        return tree_map(lambda g: g * factor, updates), ScaleByLearningRateState(state.count + 1, eta)

    return GradientTransformation(init, update)


def current_lr(state) -> float | None:
    r"""The learning rate :math:`\eta_t` of the latest update, read from an optimizer state by name.

    The state of :func:`scale_by_learning_rate`, or a chain state with a link named ``lr`` (every
    named optimizer of :mod:`steplab.optim`; build your own with ``chain(..., names=(..., "lr"))``),
    gives its ``lr``: the rate the latest ``update`` applied, or before any update the rate the
    first one will apply. ``None`` when the state has no link named ``lr``.

    Args:
        state: a state returned by ``init`` or ``update``.
    """
    if isinstance(state, ScaleByLearningRateState):
        return state.lr
    link = getattr(state, "lr", None) if hasattr(state, "_fields") else None
    return None if link is None else current_lr(link)


# --------------------------------------------------------------------------- weight decay


def _add_weights(weight_decay: float, name: str) -> GradientTransformation:
    r""":math:`u = g + \lambda \theta`: the body of :func:`add_l2` and :func:`add_decayed_weights`,
    which differ only in where a chain puts them."""
    weight_decay = check_nonnegative("weight_decay", weight_decay)

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        if weight_decay == 0.0:
            return updates, state
        _need_params(name, params)
        return tree_map(lambda g, p: g + weight_decay * p, updates, params), state

    return GradientTransformation(init, update)


def add_l2(weight_decay: float) -> GradientTransformation:
    r"""Coupled weight decay (L2 regularization): :math:`u = g + \lambda \theta`.

    Put it first in a chain, so the decay passes through the preconditioner (as
    ``weight_decay`` of ``torch.optim.SGD/Adam/Adagrad/RMSprop``).

    Args:
        weight_decay: :math:`\lambda \ge 0`.

    Reference: Krogh and Hertz, *A Simple Weight Decay Can Improve Generalization*, 1991.
    """
    return _add_weights(weight_decay, "add_l2")


def add_decayed_weights(weight_decay: float) -> GradientTransformation:
    r"""Decoupled weight decay: :math:`u = g + \lambda \theta`, placed *after* the preconditioner.

    Followed by :func:`scale_by_learning_rate` this is AdamW's
    :math:`\theta \leftarrow \theta - \eta(\hat m/(\sqrt{\hat v}+\epsilon) + \lambda\theta)`.

    Args:
        weight_decay: :math:`\lambda \ge 0`.

    Reference: Loshchilov and Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019.
    """
    return _add_weights(weight_decay, "add_decayed_weights")


# --------------------------------------------------------------------------- momentum


class TraceState(NamedTuple):
    """``trace``: the momentum buffer :math:`b`; ``count``: updates applied so far (read by a
    momentum schedule)."""

    trace: Params
    count: int = 0


def _momentum_at(momentum, step: int) -> float:
    """The momentum used at ``step``: the number itself, or the schedule's value checked in [0, 1)."""
    if not callable(momentum):
        return momentum
    return check_unit_interval(f"momentum({step})", momentum(step))


def trace(momentum, nesterov: bool = False) -> GradientTransformation:
    r"""Heavy-ball momentum with torch's buffer:

    .. math::

        b_{t+1} = \mu_t\, b_t + g_t, \qquad
        u_t = b_{t+1} \ \text{(heavy ball)} \quad\text{or}\quad
        u_t = g_t + \mu_{t+1}\, b_{t+1} \ \text{(Nesterov)},

    with :math:`b_0 = 0` (so :math:`b_1 = g_0`, as torch's first step) and :math:`t = 0, 1, \dots`
    the number of updates already applied. For a constant momentum :math:`\mu_t = \mu` this is
    ``torch.optim.SGD``'s buffer. For a schedule, the buffer decays with the momentum of the
    current step and Nesterov's look-ahead uses the next step's: placed after
    :func:`scale_by_learning_rate`, the buffer is then the displacement
    :math:`x_{t+1} - x_t` of Nesterov's gradient-step sequence and the parameters are its
    extrapolated points (see :func:`~steplab.optim.nesterov_accelerated`).

    Args:
        momentum: :math:`\mu \in [0, 1)`, or a schedule :math:`t \mapsto \mu_t` (a callable of
            the step count; each value is checked to lie in :math:`[0, 1)` when used).
        nesterov: use Nesterov's look-ahead form.

    Reference: Polyak, *Some methods of speeding up the convergence of iteration methods*,
    1964; Nesterov, *A method for solving the convex programming problem with convergence
    rate O(1/k^2)*, 1983; Sutskever et al., *On the importance of initialization and
    momentum in deep learning*, ICML 2013.
    """
    if not callable(momentum):
        momentum = check_unit_interval("momentum", momentum)
    nesterov = check_bool("nesterov", nesterov)

    def init(params):
        return TraceState(trace=tree_zeros_like(params), count=0)

    def update(updates, state, params=None):
        mu = _momentum_at(momentum, state.count)
        buffer = tree_map(lambda g, b: mu * b + g, updates, state.trace)
        if nesterov:
            mu_next = _momentum_at(momentum, state.count + 1)
            updates = tree_map(lambda g, b: g + mu_next * b, updates, buffer)
        else:
            updates = buffer
        return updates, TraceState(trace=buffer, count=state.count + 1)

    return GradientTransformation(init, update)


class EmaState(NamedTuple):
    """``count``: steps so far; ``ema``: the moving average."""

    count: int
    ema: Params


def ema(decay: float, debias: bool = False) -> GradientTransformation:
    r"""Exponential moving average: :math:`a_t = \beta a_{t-1} + (1-\beta) g_t`, :math:`a_0 = 0`;
    :math:`u_t = a_t` or, debiased, :math:`u_t = a_t / (1-\beta^t)`.

    Args:
        decay: :math:`\beta \in [0, 1)`.
        debias: divide by :math:`1-\beta^t`.

    Reference: optax ``ema`` (Adafactor's momentum uses ``debias=False``).
    """
    decay = check_unit_interval("decay", decay)
    debias = check_bool("debias", debias)

    def init(params):
        return EmaState(count=0, ema=tree_zeros_like(params))

    def update(updates, state, params=None):
        count = state.count + 1
        average = tree_map(lambda g, a: decay * a + (1.0 - decay) * g, updates, state.ema)
        if debias:
            correction = 1.0 - decay**count
            updates = tree_map(lambda a: a / correction, average)
        else:
            updates = average
        return updates, EmaState(count=count, ema=average)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------- adaptive scaling


class ScaleByAdagradState(NamedTuple):
    """``sum_of_squares``: :math:`G_t = G_0 + \\sum_{s \\le t} g_s^2`."""

    sum_of_squares: Params


def scale_by_adagrad(eps: float = 1e-10, initial_accumulator_value: float = 0.0) -> GradientTransformation:
    r"""Adagrad's per-coordinate scaling (torch convention, :math:`\epsilon` outside the root):

    .. math::

        G_t = G_{t-1} + g_t^2, \qquad u_t = \frac{g_t}{\sqrt{G_t} + \epsilon},
        \qquad G_0 = \text{initial\_accumulator\_value}.

    Args:
        eps: :math:`\epsilon \ge 0`.
        initial_accumulator_value: :math:`G_0 \ge 0`.

    Reference: Duchi, Hazan and Singer, *Adaptive Subgradient Methods for Online Learning
    and Stochastic Optimization*, JMLR 2011.
    """
    eps = check_nonnegative("eps", eps)
    initial_accumulator_value = check_nonnegative("initial_accumulator_value", initial_accumulator_value)

    def init(params):
        return ScaleByAdagradState(tree_map(lambda p: np.full_like(p, initial_accumulator_value), params))

    def update(updates, state, params=None):
        total = tree_map(lambda g, G: G + g * g, updates, state.sum_of_squares)
        updates = tree_map(lambda g, G: g / (np.sqrt(G) + eps), updates, total)
        return updates, ScaleByAdagradState(total)

    return GradientTransformation(init, update)


class ScaleByRmsState(NamedTuple):
    """``square_avg``: :math:`v_t`; ``grad_avg``: :math:`\\bar g_t` (``None`` unless centered)."""

    square_avg: Params
    grad_avg: Params | None


def scale_by_rms(alpha: float = 0.99, eps: float = 1e-8, centered: bool = False) -> GradientTransformation:
    r"""RMSprop's scaling (torch convention, :math:`\epsilon` outside the root):

    .. math::

        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2, \qquad
        u_t = \frac{g_t}{\sqrt{v_t} + \epsilon};

    centered: :math:`\bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t` and
    :math:`u_t = g_t / (\sqrt{v_t - \bar g_t^2} + \epsilon)`, with :math:`v_0 = \bar g_0 = 0`.
    torch's RMSprop momentum buffer is :func:`trace` applied after this.

    Args:
        alpha: smoothing constant :math:`\alpha \in [0, 1)`.
        eps: :math:`\epsilon \ge 0`.
        centered: divide by an estimate of the variance instead of the second moment.

    Reference: Tieleman and Hinton, *Lecture 6.5, RMSprop*, COURSERA 2012; Graves,
    *Generating Sequences With Recurrent Neural Networks*, 2013 (centered).
    """
    alpha = check_unit_interval("alpha", alpha)
    eps = check_nonnegative("eps", eps)
    centered = check_bool("centered", centered)

    def init(params):
        return ScaleByRmsState(tree_zeros_like(params), tree_zeros_like(params) if centered else None)

    def update(updates, state, params=None):
        square_avg = tree_map(lambda g, v: alpha * v + (1.0 - alpha) * g * g, updates, state.square_avg)
        if centered:
            grad_avg = tree_map(lambda g, m: alpha * m + (1.0 - alpha) * g, updates, state.grad_avg)
            updates = tree_map(
                lambda g, v, m: g / (np.sqrt(v - m * m) + eps), updates, square_avg, grad_avg
            )
        else:
            grad_avg = None
            updates = tree_map(lambda g, v: g / (np.sqrt(v) + eps), updates, square_avg)
        return updates, ScaleByRmsState(square_avg, grad_avg)

    return GradientTransformation(init, update)


class ScaleByAdamState(NamedTuple):
    """``count``: :math:`t`; ``m``, ``v``: the moments; ``v_max``: AMSGrad's running maximum of
    :math:`v` (``None`` unless ``amsgrad``)."""

    count: int
    m: Params
    v: Params
    v_max: Params | None


def scale_by_adam(
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    amsgrad: bool = False,
    bias_correction: bool = True,
) -> GradientTransformation:
    r"""Adam's scaling (torch convention, :math:`\epsilon` outside the root):

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad
        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon},

    with :math:`m_0 = v_0 = 0`. AMSGrad replaces :math:`v_t` in :math:`u_t` by
    :math:`\hat v^{\max}_t = \max(\hat v^{\max}_{t-1}, v_t)` (the maximum of the raw second
    moments, divided by the current :math:`1-\beta_2^t`, as torch). Without bias correction
    the factors :math:`1-\beta^t` are 1.

    Args:
        beta1: :math:`\beta_1 \in [0, 1)`, decay of the first moment.
        beta2: :math:`\beta_2 \in [0, 1)`, decay of the second moment.
        eps: :math:`\epsilon \ge 0`.
        amsgrad: use the running maximum of :math:`v_t`.
        bias_correction: divide the moments by :math:`1-\beta^t`.

    Reference: Kingma and Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015;
    Reddi, Kale and Kumar, *On the Convergence of Adam and Beyond*, ICLR 2018 (AMSGrad).
    """
    beta1 = check_unit_interval("beta1", beta1)
    beta2 = check_unit_interval("beta2", beta2)
    eps = check_nonnegative("eps", eps)
    amsgrad = check_bool("amsgrad", amsgrad)
    bias_correction = check_bool("bias_correction", bias_correction)

    def init(params):
        return ScaleByAdamState(
            count=0,
            m=tree_zeros_like(params),
            v=tree_zeros_like(params),
            v_max=tree_zeros_like(params) if amsgrad else None,
        )

    def update(updates, state, params=None):
        count = state.count + 1
        m = tree_map(lambda g, m: beta1 * m + (1.0 - beta1) * g, updates, state.m)
        v = tree_map(lambda g, v: beta2 * v + (1.0 - beta2) * (g * g), updates, state.v)
        v_max = tree_map(np.maximum, state.v_max, v) if amsgrad else None
        if bias_correction:
            correction1, correction2 = 1.0 - beta1**count, 1.0 - beta2**count
        else:
            correction1 = correction2 = 1.0
        step_size, root_correction = 1.0 / correction1, 1.0 / math.sqrt(correction2)
        updates = tree_map(
            lambda m, v: (m * step_size) / (np.sqrt(v) * root_correction + eps),
            m,
            v_max if amsgrad else v,
        )
        return updates, ScaleByAdamState(count=count, m=m, v=v, v_max=v_max)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------- Adafactor


def _factored_dims(shape: tuple, factored: bool, min_dim_size_to_factor: int):
    """The (second largest, largest) axes to factor over, or None if the array is not factored."""
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


def _factored_update(g, v_row, v_col, v, d, beta2: float, eps: float):
    """One array's Adafactor step: the new (row, column) or full second moment and the scaled update."""
    dtype = np.result_type(g)
    grad_sqr = g * g + eps
    if d is None:
        v = (beta2 * v + (1.0 - beta2) * grad_sqr).astype(dtype, copy=False)
        return g / np.sqrt(v), None, None, v
    row_axis, col_axis = d
    v_row = (beta2 * v_row + (1.0 - beta2) * grad_sqr.mean(axis=col_axis)).astype(dtype, copy=False)
    v_col = (beta2 * v_col + (1.0 - beta2) * grad_sqr.mean(axis=row_axis)).astype(dtype, copy=False)
    reduced_row_axis = row_axis - 1 if row_axis > col_axis else row_axis
    row_factor = 1.0 / np.sqrt(v_row / v_row.mean(axis=reduced_row_axis, keepdims=True))
    col_factor = 1.0 / np.sqrt(v_col)
    u = g * np.expand_dims(row_factor, col_axis) * np.expand_dims(col_factor, row_axis)
    return u, v_row, v_col, None


class FactoredState(NamedTuple):
    """``count``; per array either ``v_row``/``v_col`` (factored; ``v`` is None) or ``v``."""

    count: int
    v_row: Params
    v_col: Params
    v: Params


def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    min_dim_size_to_factor: int = 128,
    eps: float = 1e-30,
) -> GradientTransformation:
    r"""Adafactor's second moment, factored for matrices (optax ``scale_by_factored_rms``):

    .. math::

        \hat\beta_{2,t} = 1 - t^{-c}, \qquad
        R_t = \hat\beta_{2,t} R_{t-1} + (1-\hat\beta_{2,t})\,\mathrm{mean}_j (g_t^2 + \epsilon_1),
        \qquad
        C_t = \hat\beta_{2,t} C_{t-1} + (1-\hat\beta_{2,t})\,\mathrm{mean}_i (g_t^2 + \epsilon_1),

    .. math::

        \hat V_{ij} = \frac{R_i C_j}{\mathrm{mean}_i R_i}, \qquad u_t = g_t / \sqrt{\hat V}.

    Rows and columns are the second largest and the largest axis; an array is factored
    when that second largest axis has at least ``min_dim_size_to_factor`` entries. Other
    arrays keep the full :math:`V_t = \hat\beta_{2,t} V_{t-1} + (1-\hat\beta_{2,t})(g_t^2 +
    \epsilon_1)`. Here :math:`t` counts from ``1 + (steps so far) - decay_offset``, so the
    first step has :math:`\hat\beta_2 = 0`.

    Args:
        factored: factor the second moment of matrices.
        decay_rate: the exponent :math:`c \ge 0` of the decay schedule.
        decay_offset: the step at which the decay schedule restarts (fine-tuning).
        min_dim_size_to_factor: the size both factored axes must reach.
        eps: :math:`\epsilon_1 \ge 0`, added to :math:`g^2`.

    Reference: Shazeer and Stern, *Adafactor: Adaptive Learning Rates with Sublinear Memory
    Cost*, ICML 2018.
    """
    factored = check_bool("factored", factored)
    decay_rate = check_nonnegative("decay_rate", decay_rate)
    decay_offset = check_int("decay_offset", decay_offset, low=0)
    min_dim_size_to_factor = check_int("min_dim_size_to_factor", min_dim_size_to_factor, low=1)
    eps = check_nonnegative("eps", eps)

    def dims(shape):
        return _factored_dims(shape, factored, min_dim_size_to_factor)

    def init(params):
        def v_row(p):
            d = dims(np.shape(p))
            return None if d is None else np.zeros(np.delete(np.shape(p), d[1]), dtype=np.asarray(p).dtype)

        def v_col(p):
            d = dims(np.shape(p))
            return None if d is None else np.zeros(np.delete(np.shape(p), d[0]), dtype=np.asarray(p).dtype)

        def v(p):
            return np.zeros_like(p) if dims(np.shape(p)) is None else None

        return FactoredState(0, tree_map(v_row, params), tree_map(v_col, params), tree_map(v, params))

    def update(updates, state, params=None):
        t = state.count - decay_offset + 1
        beta2 = 1.0 - float(t) ** (-decay_rate) if t > 0 else 0.0

        def one(g, v_row, v_col, v):
            return _factored_update(g, v_row, v_col, v, dims(np.shape(g)), beta2, eps)

        out = tree_map(one, updates, state.v_row, state.v_col, state.v)
        pick = lambda i: tree_map(lambda o: o[i], out)  # noqa: E731
        return pick(0), FactoredState(state.count + 1, pick(1), pick(2), pick(3))

    return GradientTransformation(init, update)


def clip_by_block_rms(threshold: float) -> GradientTransformation:
    r"""Adafactor's update clipping, per array: :math:`u = g / \max\!\big(1, \mathrm{RMS}(g)/d\big)`,
    :math:`\mathrm{RMS}(g) = \sqrt{\mathrm{mean}(g^2)}`.

    Args:
        threshold: :math:`d > 0`, the largest RMS an array's update may have.

    Reference: Shazeer and Stern, *Adafactor*, ICML 2018, section 6.
    """
    threshold = check_positive("threshold", threshold)

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        return tree_map(lambda g: g / max(1.0, _rms(g) / threshold), updates), state

    return GradientTransformation(init, update)


def scale_by_param_block_rms(min_scale: float = 1e-3) -> GradientTransformation:
    r"""Adafactor's relative step, per array: :math:`u = g \cdot \max\!\big(\epsilon_2, \mathrm{RMS}(\theta)\big)`.

    Args:
        min_scale: :math:`\epsilon_2 \ge 0`, the smallest scale (for zero-initialized arrays).

    Reference: Shazeer and Stern, *Adafactor*, ICML 2018, section 8.
    """
    min_scale = check_nonnegative("min_scale", min_scale)

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        _need_params("scale_by_param_block_rms", params)
        return tree_map(lambda g, p: g * max(min_scale, _rms(p)), updates, params), state

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------- norms


def scale_by_trust_ratio(trust_coefficient: float = 1.0, eps: float = 0.0) -> GradientTransformation:
    r"""The layerwise trust ratio, per array:

    .. math::

        u = g \cdot \frac{\kappa\, \|\theta\|_2}{\|g\|_2 + \epsilon},
        \quad\text{and } u = g \text{ when } \|\theta\|_2 = 0 \text{ or } \|g\|_2 = 0.

    Args:
        trust_coefficient: :math:`\kappa \ge 0`.
        eps: :math:`\epsilon \ge 0`.

    Reference: You, Gitman and Ginsburg, *Large Batch Training of Convolutional Networks*
    (LARS), 2017; You et al., *Large Batch Optimization for Deep Learning* (LAMB), ICLR 2020.
    """
    trust_coefficient = check_nonnegative("trust_coefficient", trust_coefficient)
    eps = check_nonnegative("eps", eps)

    def init(params):
        return EmptyState()

    def one(g, p):
        param_norm = float(np.linalg.norm(np.ravel(p)))
        update_norm = float(np.linalg.norm(np.ravel(g)))
        if param_norm == 0.0 or update_norm == 0.0:
            return g
        return g * (trust_coefficient * param_norm / (update_norm + eps))

    def update(updates, state, params=None):
        _need_params("scale_by_trust_ratio", params)
        return tree_map(one, updates, params), state

    return GradientTransformation(init, update)


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    r"""Rescale the whole update when its global norm exceeds a bound:

    .. math::

        u = g \cdot \min\!\Big(1, \frac{c}{\|g\|_2}\Big), \qquad \|g\|_2^2 = \sum_k \|g_k\|_2^2.

    Args:
        max_norm: :math:`c > 0`.

    Reference: Pascanu, Mikolov and Bengio, *On the difficulty of training recurrent neural
    networks*, ICML 2013.
    """
    max_norm = check_positive("max_norm", max_norm)

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        grad_norm = tree_norm(updates)
        if grad_norm < max_norm:
            return updates, state
        factor = max_norm / grad_norm
        return tree_map(lambda g: g * factor, updates), state

    return GradientTransformation(init, update)
