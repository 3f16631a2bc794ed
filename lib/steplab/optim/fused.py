r"""An in-place AdamW step, for when memory traffic matters more than purity.

The pure chain ``adamw(...)`` allocates new moments, a new update and new parameters at every
step, and each primitive makes its own pass over memory. :func:`adamw_step_inplace` computes
the same step (``torch.optim.AdamW``) in place, block by block, so each block of
``params, grads, m, v`` is read from memory once and ``params, m, v`` written once while the
temporaries stay in cache. See ``benchmarks/optim_step.py`` for the measured difference.
"""
from __future__ import annotations

import math

import numpy as np

from .base import check_int, check_lr, check_nonnegative, check_tree_match, check_unit_interval, tree_leaves
from .transforms import ScaleByAdamState, ScaleByLearningRateState


def adamw_step_inplace(
    params,
    grads,
    state,
    lr,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    block_size: int = 1 << 17,
):
    r"""One AdamW step that overwrites ``params`` and the moments inside ``state``:

    .. math::

        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
        \theta \leftarrow (1 - \eta_t\lambda)\,\theta - \eta_t \frac{m/(1-\beta_1^t)}{\sqrt{v/(1-\beta_2^t)} + \epsilon}.

    Not pure: the arrays of ``params`` and of ``state`` are modified, so an older state
    that shares them changes too. Give the same hyperparameters as the ``adamw(...)`` whose
    ``init`` made ``state``; the result equals ``adamw(...).update`` followed by
    ``apply_updates`` to rounding.

    Args:
        params: C-contiguous floating arrays (an ndarray or a dict of them), updated in place.
        grads: gradients with the same keys and shapes.
        state: a state from ``adamw(...).init`` or from this function.
        lr: learning rate :math:`\eta \ge 0`, a number or a schedule.
        beta1, beta2, eps, weight_decay: as :func:`~steplab.optim.adamw` (AMSGrad not supported).
        block_size: entries per block; a block's temporaries should fit in cache.

    Returns:
        The new state (the same moment arrays, the step count advanced).

    Reference: ``torch.optim.AdamW``; Loshchilov and Hutter, ICLR 2019.
    """
    lr = check_lr(lr)
    beta1 = check_unit_interval("beta1", beta1)
    beta2 = check_unit_interval("beta2", beta2)
    eps = check_nonnegative("eps", eps)
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    block_size = check_int("block_size", block_size, low=1)
    check_tree_match(grads, params, name="grads")
    if getattr(state, "_fields", None) != ("adam", "decay", "lr"):
        raise ValueError("state must come from adamw(...).init or adamw_step_inplace")
    adam_state, lr_state = state.adam, state.lr
    if adam_state.v_max is not None:
        raise ValueError("adamw_step_inplace does not support amsgrad=True")

    count = adam_state.count + 1
    eta = float(lr(lr_state.count)) if callable(lr) else lr
    step_size = eta / (1.0 - beta1**count)
    root_correction = 1.0 / math.sqrt(1.0 - beta2**count)
    keep = 1.0 - eta * weight_decay

    for p, g, m, v in zip(*(tree_leaves(t) for t in (params, grads, adam_state.m, adam_state.v))):
        for name, x in (("params", p), ("m", m), ("v", v)):
            if not x.flags.c_contiguous or not x.flags.writeable:
                raise ValueError(f"{name} arrays must be C-contiguous and writeable for an in-place step")
        p, m, v = p.reshape(-1), m.reshape(-1), v.reshape(-1)
        g = np.ascontiguousarray(g, dtype=p.dtype).reshape(-1)
        tmp = np.empty(min(block_size, p.size), dtype=p.dtype)
        for start in range(0, p.size, block_size):
            s = slice(start, start + block_size)
            pb, gb, mb, vb, t = p[s], g[s], m[s], v[s], tmp[: min(block_size, p.size - start)]
            np.subtract(gb, mb, out=t)  # m += (1 - beta1)(g - m)
            t *= 1.0 - beta1
            mb += t
            np.multiply(gb, gb, out=t)  # v += (1 - beta2)(g^2 - v)
            t -= vb
            t *= 1.0 - beta2
            vb += t
            np.sqrt(vb, out=t)  # denominator sqrt(v_hat) + eps
            t *= root_correction
            t += eps
            np.divide(mb, t, out=t)
            t *= step_size
            pb *= keep
            pb -= t
    return state._replace(
        adam=ScaleByAdamState(count=count, m=adam_state.m, v=adam_state.v, v_max=None),
        lr=ScaleByLearningRateState(lr_state.count + 1, eta),
    )
