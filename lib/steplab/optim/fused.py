r"""An in-place AdamW step, for when memory traffic matters more than purity.

The pure chain ``adamw(...)`` allocates new moments, a new update and new parameters at every
step, and each primitive makes its own pass over memory. :func:`adamw_step_inplace` computes
the same step (``torch.optim.AdamW``) in place, block by block, so each block of
``params, grads, m, v`` is read from memory once and ``params, m, v`` written once while the
temporaries stay in cache. With many small arrays (a transformer's dict of weights) the cost
is the per-array overhead, so :func:`flat_params` lays the parameters out as views into one
flat buffer; the step then keeps its moments flat too and runs the block loop once over all of
them. See ``benchmarks/optim_step.py`` for the measured difference.
"""
from __future__ import annotations

import math

import numpy as np

from .._checks import check_int, check_lr, check_nonnegative, check_unit_interval
from .._tree import check_tree_match, tree_leaves
from .transforms import ScaleByAdamState, ScaleByLearningRateState, lr_at

__all__ = ["FlatParams", "flat_params", "adamw_step_inplace"]


class FlatParams(dict):
    """A dict of arrays that are views into one contiguous buffer ``flat``, in sorted key order.

    It is an ordinary parameter dict everywhere else (the pure optimizers, the problems);
    :func:`adamw_step_inplace` steps ``flat`` in one pass instead of array by array.
    """

    flat: np.ndarray
    layout: tuple  # (key, shape) of every array, in the order of ``flat``


def flat_params(tree: dict, dtype=None) -> FlatParams:
    """Copy the arrays of ``tree`` into one new flat buffer and return views of it under the same keys.

    Args:
        tree: a dict of floating arrays.
        dtype: the buffer's dtype (default: the result type of the arrays).
    """
    if not isinstance(tree, dict) or not tree:
        raise ValueError(f"tree must be a non-empty dict of arrays, got {type(tree).__name__}")
    keys = sorted(tree)
    arrays = [np.asarray(tree[k]) for k in keys]
    flat = np.concatenate([a.ravel() for a in arrays]).astype(dtype or np.result_type(*arrays), copy=False)
    out, start = FlatParams(), 0
    for k, a in zip(keys, arrays):
        out[k] = flat[start : start + a.size].reshape(a.shape)
        start += a.size
    out.flat = flat
    out.layout = tuple((k, a.shape) for k, a in zip(keys, arrays))
    return out


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
        params: C-contiguous floating arrays (an ndarray or a dict of them), updated in place;
            a dict from :func:`flat_params` is stepped as one flat array (the moments are then
            made flat views too, at the first step).
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
    if not (isinstance(grads, FlatParams) and isinstance(params, FlatParams) and grads.layout == params.layout):
        check_tree_match(grads, params, name="grads")  # two flat dicts of one layout match by construction
    if getattr(state, "_fields", None) != ("adam", "decay", "lr"):
        raise ValueError("state must come from adamw(...).init or adamw_step_inplace")
    adam_state, lr_state = state.adam, state.lr
    if adam_state.v_max is not None:
        raise ValueError("adamw_step_inplace does not support amsgrad=True")

    count = adam_state.count + 1
    eta = lr_at(lr, lr_state.count)
    coefficients = (beta1, beta2, eps, eta / (1.0 - beta1**count), 1.0 / math.sqrt(1.0 - beta2**count),
                    1.0 - eta * weight_decay)
    m, v = adam_state.m, adam_state.v
    if isinstance(params, FlatParams):
        if any(a.base is not params.flat for a in params.values()):
            raise ValueError("params is a FlatParams whose arrays are no longer views of params.flat; "
                             "update it in place or call flat_params again")
        if not isinstance(m, FlatParams):  # the first fast step lays the moments out flat as well
            m, v = flat_params(m, params.flat.dtype), flat_params(v, params.flat.dtype)
        g = grads.flat if isinstance(grads, FlatParams) else np.concatenate(
            [np.ravel(grads[k]) for k in sorted(grads)])
        _adamw_blocks(params.flat, g, m.flat, v.flat, coefficients, block_size)
    else:
        for p, g, mk, vk in zip(*(tree_leaves(t) for t in (params, grads, m, v))):
            for name, x in (("params", p), ("m", mk), ("v", vk)):
                if not x.flags.c_contiguous or not x.flags.writeable:
                    raise ValueError(f"{name} arrays must be C-contiguous and writeable for an in-place step")
            _adamw_blocks(p.reshape(-1), g, mk.reshape(-1), vk.reshape(-1), coefficients, block_size)
    return state._replace(
        adam=ScaleByAdamState(count=count, m=m, v=v, v_max=None),
        lr=ScaleByLearningRateState(lr_state.count + 1, eta),
    )


def _adamw_blocks(p, g, m, v, coefficients, block_size):
    r"""The AdamW update of flat arrays in place, ``block_size`` entries at a time.

    Thirteen passes over a block, the fewest numpy ufuncs that write the step: the bias
    correction of the root is folded into ``eps`` and the step size,
    $\eta_t \hat m / (\sqrt{v}\,c + \epsilon) = (\eta_t / c)\, \hat m / (\sqrt v + \epsilon / c)$.
    """
    beta1, beta2, eps, step_size, root_correction, keep = coefficients
    g = np.ascontiguousarray(g, dtype=p.dtype).reshape(-1)
    tmp = np.empty(min(block_size, p.size), dtype=p.dtype)
    eps_scaled, scale = eps / root_correction, step_size / root_correction
    for start in range(0, p.size, block_size):
        s = slice(start, start + block_size)
        pb, gb, mb, vb, t = p[s], g[s], m[s], v[s], tmp[: min(block_size, p.size - start)]
        mb *= beta1  # m = beta1 m + (1 - beta1) g
        np.multiply(gb, 1.0 - beta1, out=t)
        mb += t
        vb *= beta2  # v = beta2 v + (1 - beta2) g^2
        np.square(gb, out=t)
        t *= 1.0 - beta2
        vb += t
        np.sqrt(vb, out=t)  # the step (eta_t / c) m_hat / (sqrt(v) + eps / c)
        t += eps_scaled
        np.divide(mb, t, out=t)
        t *= scale
        if keep != 1.0:  # decoupled weight decay
            pb *= keep
        pb -= t
