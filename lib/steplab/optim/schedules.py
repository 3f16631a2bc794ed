r"""Learning-rate schedules: functions :math:`t \mapsto \eta_t` of the step count.

:math:`t = 0, 1, 2, \dots` is the number of updates already applied, so the first update
uses :math:`\eta_0`. Every constructor validates its arguments and returns a
:class:`Schedule`, a callable with a readable ``repr``; any optimizer's ``lr`` accepts one.
"""
from __future__ import annotations

import math
from typing import Callable

from .._checks import check_int, check_nonnegative, check_number, check_positive


class Schedule:
    """A learning-rate schedule: ``schedule(t) -> float`` for ``t = 0, 1, 2, ...``."""

    def __init__(self, fn: Callable[[int], float], description: str):
        self._fn = fn
        self._description = description

    def __call__(self, step) -> float:
        return float(self._fn(step))

    def __repr__(self) -> str:
        return self._description


def _describe(name: str, **kwargs) -> str:
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def constant(lr: float) -> Schedule:
    r""":math:`\eta_t = \eta`.

    Args:
        lr: :math:`\eta \ge 0`.
    """
    lr = check_nonnegative("lr", lr)
    return Schedule(lambda t: lr, _describe("constant", lr=lr))


def step_decay(lr: float, step_size: int, gamma: float) -> Schedule:
    r""":math:`\eta_t = \eta\, \gamma^{\lfloor t / s \rfloor}`: multiply by :math:`\gamma` every :math:`s` steps.

    Args:
        lr: :math:`\eta \ge 0`.
        step_size: :math:`s \ge 1`.
        gamma: :math:`\gamma \in [0, 1]`.

    Reference: ``torch.optim.lr_scheduler.StepLR``.
    """
    lr = check_nonnegative("lr", lr)
    step_size = check_int("step_size", step_size, low=1)
    gamma = check_number("gamma", gamma, low=0.0, high=1.0)
    return Schedule(lambda t: lr * gamma ** (t // step_size), _describe("step_decay", lr=lr, step_size=step_size, gamma=gamma))


def exponential(lr: float, gamma: float) -> Schedule:
    r""":math:`\eta_t = \eta\, \gamma^t`.

    Args:
        lr: :math:`\eta \ge 0`.
        gamma: :math:`\gamma \in [0, 1]`.

    Reference: ``torch.optim.lr_scheduler.ExponentialLR``.
    """
    lr = check_nonnegative("lr", lr)
    gamma = check_number("gamma", gamma, low=0.0, high=1.0)
    return Schedule(lambda t: lr * gamma**t, _describe("exponential", lr=lr, gamma=gamma))


def inverse_sqrt(lr: float) -> Schedule:
    r""":math:`\eta_t = \eta / \sqrt{t + 1}`.

    Args:
        lr: :math:`\eta \ge 0`.

    Reference: Zinkevich, *Online Convex Programming and Generalized Infinitesimal Gradient
    Ascent*, ICML 2003.
    """
    lr = check_nonnegative("lr", lr)
    return Schedule(lambda t: lr / math.sqrt(t + 1), _describe("inverse_sqrt", lr=lr))


def inverse_time(beta: float, gamma: float) -> Schedule:
    r""":math:`\eta_t = \beta / (\gamma + t)`; SGD on a :math:`\mu`-strongly convex function
    uses ``inverse_time(2 / mu, 1)``, i.e. :math:`2/(\mu (t+1))`.

    Args:
        beta: :math:`\beta \ge 0`.
        gamma: :math:`\gamma > 0`.

    Reference: Bottou, Curtis and Nocedal, *Optimization Methods for Large-Scale Machine
    Learning*, SIAM Review 2018, Theorem 4.7.
    """
    beta = check_nonnegative("beta", beta)
    gamma = check_positive("gamma", gamma)
    return Schedule(lambda t: beta / (gamma + t), _describe("inverse_time", beta=beta, gamma=gamma))


def _cosine(lr: float, final_lr: float, fraction: float) -> float:
    return final_lr + 0.5 * (lr - final_lr) * (1.0 + math.cos(math.pi * fraction))


def cosine(lr: float, total_steps: int, final_lr: float = 0.0) -> Schedule:
    r""":math:`\eta_t = \eta_{\min} + \tfrac12(\eta - \eta_{\min})\big(1 + \cos(\pi \min(t, T)/T)\big)`.

    Args:
        lr: :math:`\eta \ge 0`, the value at :math:`t = 0`.
        total_steps: :math:`T \ge 1`; the value stays :math:`\eta_{\min}` after it.
        final_lr: :math:`\eta_{\min} \ge 0`.

    Reference: Loshchilov and Hutter, *SGDR: Stochastic Gradient Descent with Warm
    Restarts*, ICLR 2017.
    """
    lr = check_nonnegative("lr", lr)
    total_steps = check_int("total_steps", total_steps, low=1)
    final_lr = check_nonnegative("final_lr", final_lr)
    return Schedule(
        lambda t: _cosine(lr, final_lr, min(t, total_steps) / total_steps),
        _describe("cosine", lr=lr, total_steps=total_steps, final_lr=final_lr),
    )


def linear_warmup(lr: float, warmup_steps: int, init_lr: float = 0.0) -> Schedule:
    r""":math:`\eta_t = \eta_0 + (\eta - \eta_0) \min(t, W)/W`, then :math:`\eta` (constant when :math:`W = 0`).

    Args:
        lr: :math:`\eta \ge 0`, reached at :math:`t = W`.
        warmup_steps: :math:`W \ge 0`.
        init_lr: :math:`\eta_0 \ge 0`.

    Reference: Goyal et al., *Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour*, 2017.
    """
    lr = check_nonnegative("lr", lr)
    warmup_steps = check_int("warmup_steps", warmup_steps, low=0)
    init_lr = check_nonnegative("init_lr", init_lr)

    def fn(t):
        if t >= warmup_steps:
            return lr
        return init_lr + (lr - init_lr) * t / warmup_steps

    return Schedule(fn, _describe("linear_warmup", lr=lr, warmup_steps=warmup_steps, init_lr=init_lr))


def warmup_cosine(lr: float, warmup_steps: int, total_steps: int, final_lr: float = 0.0) -> Schedule:
    r"""Linear warmup from 0 to :math:`\eta` over :math:`W` steps, then cosine decay to
    :math:`\eta_{\min}` at :math:`T` (total, warmup included):

    .. math::

        \eta_t = \begin{cases} \eta\, t / W & t < W \\
        \eta_{\min} + \tfrac12(\eta - \eta_{\min})\big(1 + \cos(\pi \tfrac{\min(t, T) - W}{T - W})\big) & t \ge W. \end{cases}

    Args:
        lr: :math:`\eta \ge 0`, the peak, at :math:`t = W`.
        warmup_steps: :math:`W \ge 0`.
        total_steps: :math:`T > W`.
        final_lr: :math:`\eta_{\min} \ge 0`.

    Reference: Goyal et al., 2017 (warmup); Loshchilov and Hutter, ICLR 2017 (cosine).
    """
    lr = check_nonnegative("lr", lr)
    warmup_steps = check_int("warmup_steps", warmup_steps, low=0)
    total_steps = check_int("total_steps", total_steps, low=1)
    final_lr = check_nonnegative("final_lr", final_lr)
    if total_steps <= warmup_steps:
        raise ValueError(f"total_steps must be > warmup_steps={warmup_steps}, got {total_steps}")
    decay_steps = total_steps - warmup_steps

    def fn(t):
        if t < warmup_steps:
            return lr * t / warmup_steps
        return _cosine(lr, final_lr, (min(t, total_steps) - warmup_steps) / decay_steps)

    return Schedule(fn, _describe("warmup_cosine", lr=lr, warmup_steps=warmup_steps, total_steps=total_steps, final_lr=final_lr))


def warmup_stable_decay(
    lr: float, warmup_steps: int, stable_steps: int, decay_steps: int, final_lr: float = 0.0
) -> Schedule:
    r"""Warmup, stable, decay (WSD), with linear warmup and linear decay:

    .. math::

        \eta_t = \begin{cases} \eta\, t / W & t < W \\ \eta & W \le t < W + S \\
        \eta + (\eta_{\min} - \eta) \min\!\big(1, \tfrac{t - W - S}{D}\big) & t \ge W + S. \end{cases}

    Args:
        lr: :math:`\eta \ge 0`, the plateau.
        warmup_steps: :math:`W \ge 0`.
        stable_steps: :math:`S \ge 0`.
        decay_steps: :math:`D \ge 1`.
        final_lr: :math:`\eta_{\min} \ge 0`, reached at :math:`t = W + S + D` and kept after.

    Reference: Hu et al., *MiniCPM: Unveiling the Potential of Small Language Models with
    Scalable Training Strategies*, 2024.
    """
    lr = check_nonnegative("lr", lr)
    warmup_steps = check_int("warmup_steps", warmup_steps, low=0)
    stable_steps = check_int("stable_steps", stable_steps, low=0)
    decay_steps = check_int("decay_steps", decay_steps, low=1)
    final_lr = check_nonnegative("final_lr", final_lr)
    decay_start = warmup_steps + stable_steps

    def fn(t):
        if t < warmup_steps:
            return lr * t / warmup_steps
        if t < decay_start:
            return lr
        return lr + (final_lr - lr) * min(1.0, (t - decay_start) / decay_steps)

    return Schedule(
        fn,
        _describe(
            "warmup_stable_decay",
            lr=lr,
            warmup_steps=warmup_steps,
            stable_steps=stable_steps,
            decay_steps=decay_steps,
            final_lr=final_lr,
        ),
    )


def one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""The one-cycle policy with cosine annealing (``torch.optim.lr_scheduler.OneCycleLR``):
    with :math:`\eta_0 = \eta_{\max}/\delta`, :math:`\eta_{\min} = \eta_0/\delta_f`,
    :math:`P = p\,T - 1` and :math:`\mathrm{cos}(a, b, x) = b + \tfrac12(a - b)(1 + \cos \pi x)`,

    .. math::

        \eta_t = \begin{cases} \mathrm{cos}(\eta_0, \eta_{\max}, t/P) & t \le P \\
        \mathrm{cos}(\eta_{\max}, \eta_{\min}, \tfrac{t - P}{T - 1 - P}) & P < t \le T - 1, \end{cases}

    so the peak :math:`\eta_{\max}` is at step :math:`pT - 1` and :math:`\eta_{\min}` at step
    :math:`T - 1`; after :math:`T - 1` the value stays :math:`\eta_{\min}` (torch raises there).

    Args:
        max_lr: :math:`\eta_{\max} \ge 0`.
        total_steps: :math:`T \ge 2`, the number of updates in the cycle.
        pct_start: :math:`p \in (0, 1)`, the fraction of the cycle spent increasing.
        div_factor: :math:`\delta > 0`.
        final_div_factor: :math:`\delta_f > 0`.

    Reference: Smith and Topin, *Super-Convergence: Very Fast Training of Neural Networks
    Using Large Learning Rates*, 2017.
    """
    max_lr = check_nonnegative("max_lr", max_lr)
    total_steps = check_int("total_steps", total_steps, low=2)
    pct_start = check_number("pct_start", pct_start, low=0.0, high=1.0, low_open=True, high_open=True)
    div_factor = check_positive("div_factor", div_factor)
    final_div_factor = check_positive("final_div_factor", final_div_factor)
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    peak = pct_start * total_steps - 1.0
    end = total_steps - 1.0
    if not 0.0 < peak < end:
        raise ValueError(
            f"pct_start * total_steps - 1 must lie in (0, total_steps - 1) so both phases have "
            f"steps, got pct_start={pct_start!r} with total_steps={total_steps}"
        )

    def fn(t):
        if t <= peak:
            return _cosine(initial_lr, max_lr, t / peak)
        return _cosine(max_lr, min_lr, (min(t, end) - peak) / (end - peak))

    return Schedule(
        fn,
        _describe(
            "one_cycle",
            max_lr=max_lr,
            total_steps=total_steps,
            pct_start=pct_start,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
        ),
    )


def inverse_power(lr: float, power: float) -> Schedule:
    r""":math:`\eta_t = \eta / (t + 1)^p`; ``power=0.5`` is :func:`inverse_sqrt`, ``power=1`` is
    ``inverse_time(lr, 1)``. The Robbins-Monro conditions :math:`\sum_t \eta_t = \infty`,
    :math:`\sum_t \eta_t^2 < \infty` hold exactly when :math:`1/2 < p \le 1`.

    Args:
        lr: :math:`\eta \ge 0`.
        power: :math:`p \ge 0`.

    Reference: Robbins and Monro, *A Stochastic Approximation Method*, Ann. Math. Statist.
    1951; Polyak and Juditsky, *Acceleration of Stochastic Approximation by Averaging*,
    SIAM J. Control Optim. 1992 (exponents in :math:`(1/2, 1)`).
    """
    lr = check_nonnegative("lr", lr)
    power = check_nonnegative("power", power)
    return Schedule(lambda t: lr / (t + 1) ** power, _describe("inverse_power", lr=lr, power=power))


def linear_decay(lr: float, total_steps: int, final_lr: float = 0.0) -> Schedule:
    r""":math:`\eta_t = \eta + (\eta_{\min} - \eta) \min(t, T)/T`: a straight line from
    :math:`\eta` at :math:`t = 0` to :math:`\eta_{\min}` at :math:`t = T`, constant after.

    With :math:`\eta_{\min} = 0` the :math:`T` updates :math:`t = 0, \dots, T-1` use
    :math:`\eta (1 - t/T)`, the schedule whose last iterate attains the rate
    :math:`O(DG/\sqrt{T})` of the averaged iterate on convex :math:`G`-Lipschitz problems
    (with :math:`\eta = D/(G\sqrt{T})`), without the :math:`\log T` factor of a constant step.

    Args:
        lr: :math:`\eta \ge 0`, the value at :math:`t = 0`.
        total_steps: :math:`T \ge 1`.
        final_lr: :math:`\eta_{\min} \ge 0`.

    Reference: Defazio, Cutkosky, Mehta and Mishchenko, *Optimal Linear Decay Learning Rate
    Schedules and Further Refinements*, 2023 (arXiv:2310.07831), Section 2;
    ``torch.optim.lr_scheduler.LinearLR`` with ``end_factor = final_lr / lr``.
    """
    lr = check_nonnegative("lr", lr)
    total_steps = check_int("total_steps", total_steps, low=1)
    final_lr = check_nonnegative("final_lr", final_lr)
    return Schedule(
        lambda t: lr + (final_lr - lr) * min(t, total_steps) / total_steps,
        _describe("linear_decay", lr=lr, total_steps=total_steps, final_lr=final_lr),
    )


def _restart_position(t: int, first_period: int, period_mult: int) -> tuple[int, int]:
    """The step within the current period and that period's length."""
    if period_mult == 1:
        return t % first_period, first_period
    period = first_period
    while t >= period:
        t -= period
        period *= period_mult
    return t, period


def sgdr(lr: float, first_period: int, period_mult: int = 1, final_lr: float = 0.0) -> Schedule:
    r"""Cosine annealing with warm restarts (SGDR): period :math:`i = 0, 1, \dots` lasts
    :math:`T_i = T_0 m^i` steps; with :math:`t_{\mathrm{cur}}` the steps since the last restart,

    .. math::

        \eta_t = \eta_{\min} + \tfrac12(\eta - \eta_{\min})\big(1 + \cos(\pi\, t_{\mathrm{cur}} / T_i)\big),

    so :math:`\eta_t` jumps back to :math:`\eta` at :math:`t = T_0, T_0 + T_1, \dots`.

    Args:
        lr: :math:`\eta \ge 0`, the value at each restart.
        first_period: :math:`T_0 \ge 1`.
        period_mult: :math:`m \ge 1`, an integer: each period is :math:`m` times the previous.
        final_lr: :math:`\eta_{\min} \ge 0`, approached at the end of each period.

    Reference: Loshchilov and Hutter, *SGDR: Stochastic Gradient Descent with Warm
    Restarts*, ICLR 2017, eq. (5); ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``.
    """
    lr = check_nonnegative("lr", lr)
    first_period = check_int("first_period", first_period, low=1)
    period_mult = check_int("period_mult", period_mult, low=1)
    final_lr = check_nonnegative("final_lr", final_lr)

    def fn(t):
        t_cur, period = _restart_position(int(t), first_period, period_mult)
        return _cosine(lr, final_lr, t_cur / period)

    return Schedule(
        fn, _describe("sgdr", lr=lr, first_period=first_period, period_mult=period_mult, final_lr=final_lr)
    )


cosine_restarts = sgdr
