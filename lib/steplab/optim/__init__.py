r"""Optimizers as composable gradient transformations, in numpy.

    opt = steplab.optim.adamw(lr=1e-3, weight_decay=0.01)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = steplab.optim.apply_updates(params, updates)

``current_lr(state)`` reads the learning rate of the latest update, for logging.
"""
from .base import EmptyState, GradientTransformation, Updates, apply_updates, chain, identity
from .._checks import (
    check_bool,
    check_int,
    check_lr,
    check_nonnegative,
    check_number,
    check_positive,
    check_unit_interval,
)
from .._tree import (
    Params,
    check_tree_match,
    tree_all_finite,
    tree_leaves,
    tree_map,
    tree_norm,
    tree_zeros_like,
)
from .transforms import (
    EmaState,
    FactoredState,
    ScaleByAdagradState,
    ScaleByAdamState,
    ScaleByLearningRateState,
    ScaleByRmsState,
    TraceState,
    add_decayed_weights,
    add_l2,
    clip_by_block_rms,
    clip_by_global_norm,
    current_lr,
    ema,
    scale,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_diagonal,
    scale_by_factored_rms,
    scale_by_learning_rate,
    scale_by_param_block_rms,
    scale_by_rms,
    scale_by_trust_ratio,
    trace,
)
from .fused import FlatParams, adamw_step_inplace, flat_params
from .alias import (
    adafactor,
    adagrad,
    adam,
    adamw,
    fista_momentum,
    lamb,
    lars,
    nesterov_accelerated,
    nesterov_momentum,
    rmsprop,
    sgd,
)
from .partition import partition
from .sign import (
    NEWTON_SCHULZ_COEFFS,
    ScaleByLionState,
    lion,
    newton_schulz,
    scale_by_lion,
    scale_by_orthogonalized,
    scale_by_sign,
    signsgd,
)
from .schedules import (
    Schedule,
    constant,
    cosine,
    cosine_restarts,
    exponential,
    inverse_power,
    inverse_sqrt,
    inverse_time,
    linear_decay,
    linear_warmup,
    one_cycle,
    sgdr,
    step_decay,
    warmup_cosine,
    warmup_stable_decay,
)
from .schedule_free import (
    ScheduleFreeState,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from . import schedules

__all__ = [name for name in dir() if not name.startswith("_")]
