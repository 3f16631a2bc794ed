r"""The named optimizers, each a chain of primitives.

SGD, Adagrad, RMSprop, Adam and AdamW follow ``torch.optim``; Adafactor, LARS and LAMB
follow ``optax``. "Follow" means the same parameters after every step, to rounding.
``nesterov_accelerated`` is Nesterov's 1983 method for smooth convex functions, with its
growing momentum.
"""
from __future__ import annotations

import math

from .base import GradientTransformation, chain, identity
from .._checks import check_bool, check_int, check_lr, check_nonnegative, check_positive, check_unit_interval
from .transforms import (
    add_decayed_weights,
    add_l2,
    clip_by_block_rms,
    ema,
    scale,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_factored_rms,
    scale_by_learning_rate,
    scale_by_param_block_rms,
    scale_by_rms,
    scale_by_trust_ratio,
    trace,
)


def sgd(lr, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> GradientTransformation:
    r"""Stochastic gradient descent with optional momentum:

    .. math::

        g_t \leftarrow g_t + \lambda\theta_{t-1}, \qquad
        b_t = \mu b_{t-1} + g_t, \qquad
        \theta_t = \theta_{t-1} - \eta_t \cdot
        \begin{cases} g_t & \mu = 0 \\ b_t & \text{heavy ball} \\ g_t + \mu b_t & \text{Nesterov} \end{cases}

    ``chain(add_l2(weight_decay), trace(momentum, nesterov), scale_by_learning_rate(lr))``.

    Args:
        lr: learning rate :math:`\eta \ge 0`, a number or a schedule.
        momentum: :math:`\mu \in [0, 1)`.
        nesterov: Nesterov momentum (needs :math:`\mu > 0`, as torch).
        weight_decay: coupled (L2) weight decay :math:`\lambda \ge 0`.

    Reference: ``torch.optim.SGD`` (dampening 0); Robbins and Monro, 1951; Polyak, 1964;
    Sutskever et al., ICML 2013.
    """
    lr = check_lr(lr)
    momentum = check_unit_interval("momentum", momentum)
    nesterov = check_bool("nesterov", nesterov)
    if nesterov and momentum == 0.0:
        raise ValueError(f"nesterov=True requires momentum > 0, got momentum={momentum!r}")
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    return chain(
        add_l2(weight_decay),
        trace(momentum, nesterov) if momentum > 0.0 else identity(),
        scale_by_learning_rate(lr),
        names=("l2", "momentum", "lr"),
    )


def adagrad(lr, eps: float = 1e-10, initial_accumulator_value: float = 0.0, weight_decay: float = 0.0) -> GradientTransformation:
    r"""Adagrad:

    .. math::

        g_t \leftarrow g_t + \lambda\theta_{t-1}, \qquad
        G_t = G_{t-1} + g_t^2, \qquad
        \theta_t = \theta_{t-1} - \eta_t \frac{g_t}{\sqrt{G_t} + \epsilon}.

    ``chain(add_l2(weight_decay), scale_by_adagrad(eps, initial_accumulator_value),
    scale_by_learning_rate(lr))``.

    Args:
        lr: learning rate :math:`\eta \ge 0`, a number or a schedule.
        eps: :math:`\epsilon \ge 0`.
        initial_accumulator_value: :math:`G_0 \ge 0`.
        weight_decay: coupled (L2) weight decay :math:`\lambda \ge 0`.

    Reference: ``torch.optim.Adagrad`` (lr_decay 0); Duchi, Hazan and Singer, JMLR 2011.
    """
    return chain(
        add_l2(weight_decay),
        scale_by_adagrad(eps, initial_accumulator_value),
        scale_by_learning_rate(lr),
        names=("l2", "adagrad", "lr"),
    )


def rmsprop(
    lr,
    alpha: float = 0.99,
    eps: float = 1e-8,
    momentum: float = 0.0,
    centered: bool = False,
    weight_decay: float = 0.0,
) -> GradientTransformation:
    r"""RMSprop:

    .. math::

        g_t \leftarrow g_t + \lambda\theta_{t-1}, \qquad
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2, \qquad
        b_t = \mu b_{t-1} + \frac{g_t}{\sqrt{v_t} + \epsilon}, \qquad
        \theta_t = \theta_{t-1} - \eta_t b_t;

    centered, :math:`\sqrt{v_t - \bar g_t^2}` replaces :math:`\sqrt{v_t}` with
    :math:`\bar g_t = \alpha\bar g_{t-1} + (1-\alpha) g_t`.

    ``chain(add_l2(weight_decay), scale_by_rms(alpha, eps, centered), trace(momentum),
    scale_by_learning_rate(lr))``.

    Args:
        lr: learning rate :math:`\eta \ge 0`, a number or a schedule.
        alpha: smoothing constant :math:`\alpha \in [0, 1)`.
        eps: :math:`\epsilon \ge 0`.
        momentum: :math:`\mu \in [0, 1)`.
        centered: normalize by the estimated variance.
        weight_decay: coupled (L2) weight decay :math:`\lambda \ge 0`.

    Reference: ``torch.optim.RMSprop``; Tieleman and Hinton, 2012; Graves, 2013.
    """
    lr = check_lr(lr)
    momentum = check_unit_interval("momentum", momentum)
    return chain(
        add_l2(weight_decay),
        scale_by_rms(alpha, eps, centered),
        trace(momentum) if momentum > 0.0 else identity(),
        scale_by_learning_rate(lr),
        names=("l2", "rms", "momentum", "lr"),
    )


def adam(
    lr,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
) -> GradientTransformation:
    r"""Adam, with coupled (L2) weight decay:

    .. math::

        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        \theta_t = \theta_{t-1} - \eta_t \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}.

    ``chain(add_l2(weight_decay), scale_by_adam(beta1, beta2, eps, amsgrad),
    scale_by_learning_rate(lr))``.

    Args:
        lr: learning rate :math:`\eta \ge 0`, a number or a schedule.
        beta1: :math:`\beta_1 \in [0, 1)`.
        beta2: :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon \ge 0`.
        weight_decay: coupled (L2) weight decay :math:`\lambda \ge 0`, added to the gradient.
        amsgrad: use the running maximum of :math:`v_t` (as torch).

    Reference: ``torch.optim.Adam``; Kingma and Ba, ICLR 2015; Reddi, Kale and Kumar,
    ICLR 2018.
    """
    return chain(
        add_l2(weight_decay),
        scale_by_adam(beta1, beta2, eps, amsgrad),
        scale_by_learning_rate(lr),
        names=("l2", "adam", "lr"),
    )


def adamw(
    lr,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    amsgrad: bool = False,
) -> GradientTransformation:
    r"""AdamW, Adam with decoupled weight decay:

    .. math::

        \theta_t = \theta_{t-1} - \eta_t \left( \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
        + \lambda \theta_{t-1} \right),

    with :math:`m_t, v_t` the moments of the raw gradient (as Adam).

    ``chain(scale_by_adam(beta1, beta2, eps, amsgrad), add_decayed_weights(weight_decay),
    scale_by_learning_rate(lr))``.

    Args:
        lr: learning rate :math:`\eta \ge 0`, a number or a schedule.
        beta1: :math:`\beta_1 \in [0, 1)`.
        beta2: :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon \ge 0`.
        weight_decay: decoupled weight decay :math:`\lambda \ge 0` (multiplied by the learning rate).
        amsgrad: use the running maximum of :math:`v_t` (as torch).

    Reference: ``torch.optim.AdamW``; Loshchilov and Hutter, *Decoupled Weight Decay
    Regularization*, ICLR 2019.
    """
    return chain(
        scale_by_adam(beta1, beta2, eps, amsgrad),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(lr),
        names=("adam", "decay", "lr"),
    )


def adafactor(
    lr,
    min_dim_size_to_factor: int = 128,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    weight_decay: float = 0.0,
    eps: float = 1e-30,
    factored: bool = True,
) -> GradientTransformation:
    r"""Adafactor:

    .. math::

        \hat\beta_{2,t} = 1 - t^{-c}, \quad
        \hat V_t \text{ (factored second moment of } g_t^2 + \epsilon_1\text{)}, \quad
        w_t = \frac{g_t/\sqrt{\hat V_t}}{\max(1, \mathrm{RMS}(g_t/\sqrt{\hat V_t})/d)},

    .. math::

        \theta_t = \theta_{t-1} - \Big( \mathrm{EMA}_{\beta_1}\big(\eta_t \max(10^{-3}, \mathrm{RMS}(\theta_{t-1}))\, w_t\big)
        + \lambda\theta_{t-1} \Big),

    per array, where the EMA (``momentum`` :math:`\beta_1`, not debiased) is skipped when
    ``momentum`` is None, the parameter scale when ``multiply_by_parameter_scale`` is False,
    and the clipping when ``clipping_threshold`` is None. As in optax, the weight decay is
    *not* multiplied by the learning rate.

    ``chain(scale_by_factored_rms(...), clip_by_block_rms(d), scale_by_learning_rate(lr,
    flip_sign=False), scale_by_param_block_rms(), ema(momentum),
    add_decayed_weights(weight_decay), scale(-1))``.

    Args:
        lr: learning rate :math:`\eta \ge 0`, a number or a schedule.
        min_dim_size_to_factor: factor an array only if its two largest axes have at least
            this many entries.
        decay_rate: the exponent :math:`c \ge 0` of :math:`\hat\beta_{2,t}`.
        decay_offset: the step at which :math:`\hat\beta_{2,t}` restarts.
        multiply_by_parameter_scale: scale the step by :math:`\max(10^{-3}, \mathrm{RMS}(\theta))`.
        clipping_threshold: :math:`d > 0`, or None for no clipping.
        momentum: :math:`\beta_1 \in [0, 1)`, or None for no first moment.
        weight_decay: :math:`\lambda \ge 0`.
        eps: :math:`\epsilon_1 \ge 0`, added to :math:`g^2`.
        factored: factor the second moment of matrices.

    Reference: ``optax.adafactor``; Shazeer and Stern, *Adafactor: Adaptive Learning Rates
    with Sublinear Memory Cost*, ICML 2018.
    """
    lr = check_lr(lr)
    multiply_by_parameter_scale = check_bool("multiply_by_parameter_scale", multiply_by_parameter_scale)
    if clipping_threshold is not None:
        clipping_threshold = check_positive("clipping_threshold", clipping_threshold)
    if momentum is not None:
        momentum = check_unit_interval("momentum", momentum)
    weight_decay = check_nonnegative("weight_decay", weight_decay)

    return chain(
        scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps),
        clip_by_block_rms(clipping_threshold) if clipping_threshold is not None else identity(),
        scale_by_learning_rate(lr, flip_sign=False),
        scale_by_param_block_rms() if multiply_by_parameter_scale else identity(),
        ema(momentum, debias=False) if momentum is not None else identity(),
        add_decayed_weights(weight_decay),
        scale(-1.0),
        names=("factored_rms", "clip", "lr", "param_scale", "momentum", "decay", "descent"),
    )


def lars(
    lr,
    weight_decay: float = 0.0,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""LARS, layerwise adaptive rate scaling, per array:

    .. math::

        d_t = g_t + \lambda\theta_{t-1}, \qquad
        r_t = \frac{\kappa\|\theta_{t-1}\|}{\|d_t\| + \epsilon} \ (1 \text{ at zero norms}), \qquad
        b_t = \mu b_{t-1} - \eta_t r_t d_t, \qquad
        \theta_t = \theta_{t-1} + b_t

    (Nesterov: :math:`\theta_t = \theta_{t-1} - \eta_t r_t d_t + \mu b_t`). The momentum acts
    on the scaled step, after the learning rate, as in optax.

    ``chain(add_decayed_weights(weight_decay), scale_by_trust_ratio(trust_coefficient, eps),
    scale_by_learning_rate(lr), trace(momentum, nesterov))``.

    Args:
        lr: learning rate :math:`\eta \ge 0`, a number or a schedule.
        weight_decay: :math:`\lambda \ge 0`, added before the trust ratio.
        trust_coefficient: :math:`\kappa \ge 0`.
        eps: :math:`\epsilon \ge 0`.
        momentum: :math:`\mu \in [0, 1)`.
        nesterov: Nesterov momentum.

    Reference: ``optax.lars``; You, Gitman and Ginsburg, *Large Batch Training of
    Convolutional Networks*, 2017.
    """
    return chain(
        add_decayed_weights(weight_decay),
        scale_by_trust_ratio(trust_coefficient, eps),
        scale_by_learning_rate(lr),
        trace(momentum, nesterov),
        names=("decay", "trust_ratio", "lr", "momentum"),
    )


def lamb(
    lr,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
) -> GradientTransformation:
    r"""LAMB, Adam with a layerwise trust ratio, per array:

    .. math::

        a_t = \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon} + \lambda\theta_{t-1}, \qquad
        \theta_t = \theta_{t-1} - \eta_t \frac{\|\theta_{t-1}\|}{\|a_t\|} a_t

    (ratio 1 when a norm is zero).

    ``chain(scale_by_adam(beta1, beta2, eps), add_decayed_weights(weight_decay),
    scale_by_trust_ratio(), scale_by_learning_rate(lr))``.

    Args:
        lr: learning rate :math:`\eta \ge 0`, a number or a schedule.
        beta1: :math:`\beta_1 \in [0, 1)`.
        beta2: :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon \ge 0`.
        weight_decay: decoupled weight decay :math:`\lambda \ge 0`.

    Reference: ``optax.lamb``; You et al., *Large Batch Optimization for Deep Learning:
    Training BERT in 76 minutes*, ICLR 2020.
    """
    return chain(
        scale_by_adam(beta1, beta2, eps),
        add_decayed_weights(weight_decay),
        scale_by_trust_ratio(),
        scale_by_learning_rate(lr),
        names=("adam", "decay", "trust_ratio", "lr"),
    )


def nesterov_momentum(step: int) -> float:
    r"""The momentum of Nesterov's accelerated method in the form of Su, Boyd and Candès:
    :math:`\beta_k = \frac{k-1}{k+2}` for :math:`k \ge 1`, and :math:`\beta_0 = 0`.

    :math:`\beta_0` only ever multiplies the zero initial buffer; :math:`\beta_1 = 0`, so the
    first two steps are plain gradient steps, and :math:`\beta_k = 1 - 3/(k+2) \to 1`.

    Args:
        step: :math:`k \ge 0`, an integer.

    Reference: Su, Boyd and Candès, *A Differential Equation for Modeling Nesterov's
    Accelerated Gradient Method*, JMLR 2016.
    """
    k = check_int("step", step)
    return 0.0 if k == 0 else (k - 1) / (k + 2)


_FISTA_T = [0.0, 1.0]  # _FISTA_T[k] = t_k for k >= 1 (index 0 unused), extended on demand


def fista_momentum(step: int) -> float:
    r"""The momentum of Nesterov's method in Beck and Teboulle's (FISTA) form:
    :math:`\beta_k = \frac{t_k - 1}{t_{k+1}}` with :math:`t_1 = 1`,
    :math:`t_{k+1} = \frac{1 + \sqrt{1 + 4t_k^2}}{2}`, for :math:`k \ge 1`, and :math:`\beta_0 = 0`.

    :math:`t_k \ge (k+1)/2`, and :math:`\beta_k` is close to :func:`nesterov_momentum`'s
    :math:`(k-1)/(k+2)`; both give the :math:`O(1/k^2)` rate.

    Args:
        step: :math:`k \ge 0`, an integer.

    Reference: Beck and Teboulle, *A Fast Iterative Shrinkage-Thresholding Algorithm for
    Linear Inverse Problems*, SIAM J. Imaging Sciences, 2009.
    """
    k = check_int("step", step)
    if k == 0:
        return 0.0
    while len(_FISTA_T) <= k + 1:
        t = _FISTA_T[-1]
        _FISTA_T.append((1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0)
    return (_FISTA_T[k] - 1.0) / _FISTA_T[k + 1]


def nesterov_accelerated(lr, momentum=nesterov_momentum) -> GradientTransformation:
    r"""Nesterov's accelerated gradient method for smooth convex functions:

    .. math::

        x_0 = y_0 = \theta_0, \qquad
        x_{k+1} = y_k - \eta_k \nabla f(y_k), \qquad
        y_{k+1} = x_{k+1} + \beta_{k+1}(x_{k+1} - x_k), \qquad
        \beta_k = \frac{k-1}{k+2}.

    **The parameters are the extrapolated points:** after :math:`k` updates the parameters are
    :math:`\theta_k = y_k`, the points where the gradient is evaluated. The guarantee is for
    the gradient-step points, one gradient step from the parameters,
    :math:`x_{k+1} = \theta_k - \eta_k\nabla f(\theta_k)`: for :math:`f` convex and
    :math:`L`-smooth and a constant :math:`\eta \le 1/L`,
    :math:`f(x_k) - f^\star \le \frac{2\|x_0 - x^\star\|^2}{\eta (k+1)^2}`.

    ``chain(scale_by_learning_rate(lr), trace(momentum, nesterov=True))``. Proof that its
    parameters are :math:`y_k`: the chain computes :math:`u_k = -\eta_k \nabla f(\theta_k)`,
    :math:`v_{k+1} = \beta_k v_k + u_k` with :math:`v_0 = 0`, and
    :math:`\theta_{k+1} = \theta_k + u_k + \beta_{k+1} v_{k+1}`. Suppose
    :math:`\theta_k = y_k` and :math:`v_k = x_k - x_{k-1}` (true at :math:`k = 0` with
    :math:`x_{-1} = x_0`). Since :math:`y_k = x_k + \beta_k(x_k - x_{k-1})` (at :math:`k = 0`
    both sides are :math:`x_0`),
    :math:`v_{k+1} = (y_k - x_k) + (x_{k+1} - y_k) = x_{k+1} - x_k`, and
    :math:`\theta_{k+1} = y_k + (x_{k+1} - y_k) + \beta_{k+1}(x_{k+1} - x_k) = y_{k+1}`.
    So the momentum buffer is the displacement :math:`x_{k+1} - x_k`, and
    :math:`x_{k+1} = \theta_{k+1} - \beta_{k+1} v_{k+1}`. The proof holds for any step
    sizes :math:`\eta_k`, so ``lr`` may be a schedule.

    With a constant ``momentum`` :math:`\beta` and a constant ``lr`` this equals
    ``sgd(lr, momentum=beta, nesterov=True)`` (torch's Nesterov form, the strongly convex
    variant).

    Args:
        lr: step size :math:`\eta \ge 0` (:math:`1/L` in the theorem), a number or a schedule.
        momentum: the sequence :math:`k \mapsto \beta_k` (a callable of the step count, each
            value in :math:`[0, 1)`; :math:`\beta_0` multiplies a zero buffer and is unused),
            or a constant in :math:`[0, 1)`. Default :func:`nesterov_momentum`,
            :math:`(k-1)/(k+2)`; :func:`fista_momentum` gives Beck and Teboulle's
            :math:`(t_k - 1)/t_{k+1}`.

    Reference: Nesterov, *A method for solving the convex programming problem with convergence
    rate O(1/k^2)*, Soviet Math. Doklady 27, 1983; Su, Boyd and Candès, JMLR 2016 (this form
    of the momentum and the bound); Beck and Teboulle, SIAM J. Imaging Sciences, 2009.
    """
    lr = check_lr(lr)
    if not callable(momentum):
        momentum = check_unit_interval("momentum", momentum)
    return chain(scale_by_learning_rate(lr), trace(momentum, nesterov=True), names=("lr", "momentum"))
