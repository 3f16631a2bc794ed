r"""Schedule-free SGD and AdamW: averaging in place of a decaying schedule.

Three sequences share one run. :math:`z_t` takes plain (or Adam-normalized) gradient steps,
:math:`x_t` is a weighted average of the :math:`z`'s, and the gradient is taken at their
interpolation :math:`y_t`. For :math:`t = 1, 2, \dots` with :math:`z_1 = x_1 = \theta_0`:

.. math::

    y_t = (1-\beta)\, z_t + \beta\, x_t, \qquad g_t = \nabla f(y_t, \zeta_t),

    \gamma_t = \eta\, \rho_t \min(1, t/W), \qquad
    z_{t+1} = z_t - \gamma_t\,\big(d_t + \lambda\, y_t\big),

    c_{t+1} = \frac{\gamma_t^2}{\sum_{i=1}^t \gamma_i^2}, \qquad
    x_{t+1} = (1 - c_{t+1})\, x_t + c_{t+1}\, z_{t+1},

with the direction :math:`d_t = g_t` and :math:`\rho_t = 1` for SGD, and for AdamW
:math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2` (:math:`v_0 = 0`),
:math:`d_t = g_t / (\sqrt{v_t} + \epsilon)` and :math:`\rho_t = \sqrt{1 - \beta_2^t}` (Adam's
bias correction of :math:`v`, moved into the step). :math:`W` is the number of warmup steps
(no warmup when :math:`W = 0`) and :math:`\lambda` the weight decay, taken at :math:`y_t`.

The weights :math:`c_{t+1}` make :math:`x_{t+1}` the average of :math:`z_2, \dots, z_{t+1}`
weighted by :math:`\gamma_t^2`: uniform (:math:`c_{t+1} = 1/t`) once the warmup is over, and
small weights on the early, short steps of the warmup. Since :math:`\gamma_t` never decreases,
:math:`\gamma_t^2` is also the reference implementation's weight
:math:`(\max_{s \le t} \gamma_s)^2`. :math:`\beta` interpolates between two classical methods:
:math:`\beta = 0` evaluates the gradient at :math:`z_t` (SGD with Polyak-Ruppert averaging of
its iterates, which are never used), :math:`\beta = 1` at :math:`x_t` (primal averaging, a form
of momentum).

As transformations the parameters are :math:`y_t`: the gradient handed to ``update`` is the
gradient at :math:`y_t` and the update moves the parameters to :math:`y_{t+1}`. The state
holds :math:`z_t` and :math:`x_t`. **Evaluate (and report the loss of) x, not the
parameters**: :func:`schedule_free_eval_params` returns it.

Reference: A. Defazio, X. A. Yang, H. Mehta, K. Mishchenko, A. Khaled and A. Cutkosky,
"The Road Less Scheduled", NeurIPS 2024, Algorithm 1 and equations (1)-(3); the reference
implementation ``schedulefree`` (``SGDScheduleFreeReference``, ``AdamWScheduleFreeReference``).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from .base import GradientTransformation, identity
from .._checks import check_int, check_nonnegative, check_positive, check_unit_interval
from .._tree import Params, check_tree_match, tree_map
from .transforms import scale_by_rms

__all__ = ["ScheduleFreeState", "schedule_free_sgd", "schedule_free_adamw", "schedule_free_eval_params"]


class ScheduleFreeState(NamedTuple):
    r"""``count``: :math:`t - 1`, the updates applied; ``z``, ``x``: the two sequences;
    ``weight_sum``: :math:`\sum_{i \le t-1} \gamma_i^2`; ``lr``: :math:`\gamma` of the latest
    update (the first update's before any); ``direction``: the state of the direction
    (empty for SGD, the second moment :math:`v` for AdamW)."""

    count: int
    z: Params
    x: Params
    weight_sum: float
    lr: float
    direction: object


def _copy(tree: Params) -> Params:
    return tree_map(lambda p: np.array(p, copy=True), tree)


def _schedule_free(name: str, direction: GradientTransformation, lr_at: Callable[[int], float],
                   beta: float, weight_decay: float) -> GradientTransformation:
    """The y/z/x recursion around a direction transformation; ``lr_at(t)`` is gamma_t, t >= 1."""

    def init(params):
        return ScheduleFreeState(count=0, z=_copy(params), x=_copy(params), weight_sum=0.0, lr=lr_at(1),
                                 direction=direction.init(params))

    def update(grads, state, params=None):
        if params is None:
            raise ValueError(f"{name} needs the parameters y_t: call update(grads, state, params)")
        check_tree_match(grads, params, name="grads")
        t = state.count + 1
        gamma = lr_at(t)
        d, direction_state = direction.update(grads, state.direction, params)
        weight_sum = state.weight_sum + gamma * gamma
        c = gamma * gamma / weight_sum if weight_sum > 0.0 else 0.0
        z = tree_map(lambda z, d, y: z - gamma * (d + weight_decay * y), state.z, d, params)
        x = tree_map(lambda x, z: (1.0 - c) * x + c * z, state.x, z)
        updates = tree_map(lambda z, x, y: (1.0 - beta) * z + beta * x - y, z, x, params)
        return updates, ScheduleFreeState(count=t, z=z, x=x, weight_sum=weight_sum, lr=gamma,
                                          direction=direction_state)

    return GradientTransformation(init, update)


def _warmup(warmup_steps: int, t: int) -> float:
    return min(1.0, t / warmup_steps) if warmup_steps > 0 else 1.0


def schedule_free_sgd(lr: float, beta: float = 0.9, warmup_steps: int = 0,
                      weight_decay: float = 0.0) -> GradientTransformation:
    r"""Schedule-free SGD:

    .. math::

        y_t = (1-\beta) z_t + \beta x_t, \qquad
        z_{t+1} = z_t - \gamma_t \big(\nabla f(y_t) + \lambda y_t\big), \qquad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1},

    with :math:`\gamma_t = \eta \min(1, t/W)` and :math:`c_{t+1} = \gamma_t^2 / \sum_{i \le t}
    \gamma_i^2` (see the module docstring). The parameters are :math:`y_t`; evaluate at
    :math:`x_t` = ``schedule_free_eval_params(state)``. No schedule is needed: :math:`\eta`
    stays constant after the warmup.

    Args:
        lr: :math:`\eta > 0`.
        beta: interpolation :math:`\beta \in [0, 1)`; 0.9 as the reference.
        warmup_steps: :math:`W \ge 0`, linear warmup of :math:`\gamma_t`.
        weight_decay: :math:`\lambda \ge 0`, at :math:`y_t`.

    Reference: Defazio et al., "The Road Less Scheduled", NeurIPS 2024, equations (1)-(3)
    (``schedulefree.SGDScheduleFreeReference``, ``momentum`` = beta).
    """
    lr = check_positive("lr", lr)
    beta = check_unit_interval("beta", beta)
    warmup_steps = check_int("warmup_steps", warmup_steps, low=0)
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    return _schedule_free("schedule_free_sgd", identity(), lambda t: lr * _warmup(warmup_steps, t), beta,
                          weight_decay)


def schedule_free_adamw(lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                        warmup_steps: int = 0, weight_decay: float = 0.0) -> GradientTransformation:
    r"""Schedule-free AdamW (Algorithm 1 of Defazio et al.):

    .. math::

        y_t = (1-\beta_1) z_t + \beta_1 x_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad
        \gamma_t = \eta \sqrt{1-\beta_2^t}\, \min(1, t/W),

        z_{t+1} = z_t - \gamma_t \frac{g_t}{\sqrt{v_t} + \epsilon} - \gamma_t \lambda y_t, \qquad
        c_{t+1} = \frac{\gamma_t^2}{\sum_{i \le t} \gamma_i^2}, \qquad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1},

    with :math:`g_t` the gradient at :math:`y_t` (the parameters) and :math:`v_0 = 0`. There is no
    first moment: :math:`\beta_1` plays the role of momentum through the interpolation. The
    direction is :func:`~steplab.optim.scale_by_rms` with ``alpha = beta2``. Evaluate at
    :math:`x_t` = ``schedule_free_eval_params(state)``.

    Args:
        lr: :math:`\eta > 0`.
        beta1: interpolation :math:`\beta_1 \in [0, 1)`.
        beta2: :math:`\beta_2 \in [0, 1)`, decay of the second moment.
        eps: :math:`\epsilon \ge 0`, outside the root.
        warmup_steps: :math:`W \ge 0`.
        weight_decay: decoupled weight decay :math:`\lambda \ge 0`, at :math:`y_t`.

    Reference: Defazio et al., "The Road Less Scheduled", NeurIPS 2024, Algorithm 1
    (``schedulefree.AdamWScheduleFreeReference``).
    """
    lr = check_positive("lr", lr)
    beta1 = check_unit_interval("beta1", beta1)
    beta2 = check_unit_interval("beta2", beta2)
    eps = check_nonnegative("eps", eps)
    warmup_steps = check_int("warmup_steps", warmup_steps, low=0)
    weight_decay = check_nonnegative("weight_decay", weight_decay)

    def lr_at(t):
        return lr * math.sqrt(1.0 - beta2**t) * _warmup(warmup_steps, t)

    return _schedule_free("schedule_free_adamw", scale_by_rms(alpha=beta2, eps=eps), lr_at, beta1, weight_decay)


def schedule_free_eval_params(state) -> Params:
    r"""The evaluation point :math:`x_t` of a schedule-free run, read from its state.

    The parameters a schedule-free optimizer updates are :math:`y_t`, where gradients are
    taken; the iterate whose loss the theory bounds, and the one to validate, checkpoint and
    ship, is the average :math:`x_t`. Searches a chain's tuple of states, as
    :func:`~steplab.optim.current_lr` does.

    Args:
        state: a state of :func:`schedule_free_sgd` or :func:`schedule_free_adamw`, or of a
            chain containing one.
    """
    if isinstance(state, ScheduleFreeState):
        return state.x
    if isinstance(state, tuple):
        for sub in state:
            try:
                return schedule_free_eval_params(sub)
            except ValueError:
                continue
    raise ValueError(f"state holds no ScheduleFreeState, got {type(state).__name__}")
