"""steplab.optim: bad hyperparameters and mismatched gradients raise ValueError naming them."""

import re

import numpy as np
import pytest

from steplab import optim

# (constructor, kwargs, argument name, value as printed)
BAD_OPTIMIZERS = [
    (optim.sgd, dict(lr=-0.1), "lr", "-0.1"),
    (optim.sgd, dict(lr=float("nan")), "lr", "nan"),
    (optim.sgd, dict(lr="0.1"), "lr", "'0.1'"),
    (optim.sgd, dict(lr=0.1, momentum=1.0), "momentum", "1.0"),
    (optim.sgd, dict(lr=0.1, momentum=-0.5), "momentum", "-0.5"),
    (optim.sgd, dict(lr=0.1, nesterov=True), "momentum", "0.0"),
    (optim.sgd, dict(lr=0.1, weight_decay=-1e-4), "weight_decay", "-0.0001"),
    (optim.adagrad, dict(lr=0.1, eps=-1e-10), "eps", "-1e-10"),
    (optim.adagrad, dict(lr=0.1, initial_accumulator_value=-1.0), "initial_accumulator_value", "-1.0"),
    (optim.rmsprop, dict(lr=0.1, alpha=1.0), "alpha", "1.0"),
    (optim.rmsprop, dict(lr=0.1, momentum=2.0), "momentum", "2.0"),
    (optim.rmsprop, dict(lr=0.1, centered="yes"), "centered", "'yes'"),
    (optim.adam, dict(lr=0.1, beta1=1.0), "beta1", "1.0"),
    (optim.adam, dict(lr=0.1, beta1=-0.1), "beta1", "-0.1"),
    (optim.adam, dict(lr=0.1, beta2=1.5), "beta2", "1.5"),
    (optim.adam, dict(lr=0.1, eps=-1e-8), "eps", "-1e-08"),
    (optim.adam, dict(lr=0.1, weight_decay=-0.01), "weight_decay", "-0.01"),
    (optim.adamw, dict(lr=-1.0), "lr", "-1.0"),
    (optim.adamw, dict(lr=0.1, weight_decay=-0.01), "weight_decay", "-0.01"),
    (optim.adamw, dict(lr=0.1, amsgrad=1), "amsgrad", "1"),
    (optim.adafactor, dict(lr=0.1, min_dim_size_to_factor=0), "min_dim_size_to_factor", "0"),
    (optim.adafactor, dict(lr=0.1, min_dim_size_to_factor=12.5), "min_dim_size_to_factor", "12.5"),
    (optim.adafactor, dict(lr=0.1, decay_rate=-0.8), "decay_rate", "-0.8"),
    (optim.adafactor, dict(lr=0.1, decay_offset=-1), "decay_offset", "-1"),
    (optim.adafactor, dict(lr=0.1, clipping_threshold=0.0), "clipping_threshold", "0.0"),
    (optim.adafactor, dict(lr=0.1, momentum=1.0), "momentum", "1.0"),
    (optim.adafactor, dict(lr=0.1, eps=-1.0), "eps", "-1.0"),
    (optim.lars, dict(lr=0.1, trust_coefficient=-0.001), "trust_coefficient", "-0.001"),
    (optim.lars, dict(lr=0.1, momentum=1.0), "momentum", "1.0"),
    (optim.lamb, dict(lr=0.1, beta2=1.0), "beta2", "1.0"),
    (optim.lamb, dict(lr=0.1, weight_decay=-0.1), "weight_decay", "-0.1"),
    (optim.clip_by_global_norm, dict(max_norm=0.0), "max_norm", "0.0"),
    (optim.clip_by_block_rms, dict(threshold=-1.0), "threshold", "-1.0"),
    (optim.scale_by_trust_ratio, dict(eps=-1.0), "eps", "-1.0"),
    (optim.scale, dict(step_size=float("inf")), "step_size", "inf"),
]

BAD_SCHEDULES = [
    (optim.constant, dict(lr=-1.0), "lr", "-1.0"),
    (optim.step_decay, dict(lr=1.0, step_size=0, gamma=0.5), "step_size", "0"),
    (optim.step_decay, dict(lr=1.0, step_size=2.5, gamma=0.5), "step_size", "2.5"),
    (optim.step_decay, dict(lr=1.0, step_size=10, gamma=1.5), "gamma", "1.5"),
    (optim.exponential, dict(lr=1.0, gamma=-0.1), "gamma", "-0.1"),
    (optim.inverse_sqrt, dict(lr=-0.5), "lr", "-0.5"),
    (optim.inverse_time, dict(beta=1.0, gamma=0.0), "gamma", "0.0"),
    (optim.inverse_time, dict(beta=-1.0, gamma=1.0), "beta", "-1.0"),
    (optim.cosine, dict(lr=1.0, total_steps=-5), "total_steps", "-5"),
    (optim.cosine, dict(lr=1.0, total_steps=100.0), "total_steps", "100.0"),
    (optim.cosine, dict(lr=1.0, total_steps=100, final_lr=-0.1), "final_lr", "-0.1"),
    (optim.linear_warmup, dict(lr=1.0, warmup_steps=-1), "warmup_steps", "-1"),
    (optim.linear_warmup, dict(lr=1.0, warmup_steps=True), "warmup_steps", "True"),
    (optim.warmup_cosine, dict(lr=1.0, warmup_steps=10, total_steps=10), "total_steps", "10"),
    (optim.warmup_stable_decay, dict(lr=1.0, warmup_steps=1, stable_steps=-2, decay_steps=3), "stable_steps", "-2"),
    (optim.warmup_stable_decay, dict(lr=1.0, warmup_steps=1, stable_steps=2, decay_steps=0), "decay_steps", "0"),
    (optim.one_cycle, dict(max_lr=-1.0, total_steps=100), "max_lr", "-1.0"),
    (optim.one_cycle, dict(max_lr=1.0, total_steps=100, pct_start=1.0), "pct_start", "1.0"),
    (optim.one_cycle, dict(max_lr=1.0, total_steps=100, div_factor=0.0), "div_factor", "0.0"),
    (optim.one_cycle, dict(max_lr=1.0, total_steps=100, final_div_factor=-1.0), "final_div_factor", "-1.0"),
    (optim.one_cycle, dict(max_lr=1.0, total_steps=3, pct_start=0.1), "pct_start", "0.1"),
]


@pytest.mark.parametrize(
    "make, kwargs, name, value",
    BAD_OPTIMIZERS + BAD_SCHEDULES,
    ids=[f"{m.__name__}-{n}={v}" for m, _, n, v in BAD_OPTIMIZERS + BAD_SCHEDULES],
)
def test_invalid_hyperparameter_names_argument_and_value(make, kwargs, name, value):
    with pytest.raises(ValueError) as err:
        make(**kwargs)
    message = str(err.value)
    assert re.search(rf"\b{name}\b", message), message
    assert value in message, message


def test_valid_boundary_values_are_accepted():
    optim.sgd(0.0)
    optim.adam(0.1, beta1=0.0, beta2=0.0, eps=0.0)
    optim.rmsprop(0.1, alpha=0.0)
    optim.adafactor(0.1, clipping_threshold=None, momentum=None, decay_rate=0.0)
    optim.lars(0.1, momentum=0.0, nesterov=True)  # optax allows Nesterov without momentum
    optim.step_decay(1.0, step_size=np.int64(5), gamma=1.0)
    optim.sgd(optim.cosine(0.1, 10))


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adafactor", "lamb"])
def test_gradient_with_wrong_shape_names_the_key(name):
    opt = getattr(optim, name)(0.1)
    params = {"W1": np.zeros((3, 4)), "b1": np.zeros(4)}
    state = opt.init(params)
    with pytest.raises(ValueError, match=re.escape("grads['W1'] has shape (3,) but params['W1'] has shape (3, 4)")):
        opt.update({"W1": np.zeros(3), "b1": np.zeros(4)}, state, params)


def test_missing_and_unexpected_keys_are_named():
    opt = optim.adamw(0.1)
    params = {"W1": np.zeros((3, 4)), "b2": np.zeros(4)}
    state = opt.init(params)
    with pytest.raises(ValueError, match="grads is missing key 'b2'"):
        opt.update({"W1": np.zeros((3, 4))}, state, params)
    with pytest.raises(ValueError, match="grads has unexpected key 'x'"):
        opt.update({"W1": np.zeros((3, 4)), "b2": np.zeros(4), "x": np.zeros(1)}, state, params)
    with pytest.raises(ValueError, match="grads must be a dict"):
        opt.update(np.zeros(3), state, params)


def test_array_params_shape_mismatch():
    opt = optim.sgd(0.1)
    theta = np.zeros(3)
    with pytest.raises(ValueError, match=re.escape("grads has shape (2,) but params has shape (3,)")):
        opt.update(np.zeros(2), opt.init(theta), theta)


def test_check_tree_match_directly():
    params = {"a": np.zeros(2)}
    optim.check_tree_match({"a": np.ones(2)}, params)  # matching trees pass
    with pytest.raises(ValueError, match=re.escape("updates['a'] has shape (3,)")):
        optim.check_tree_match({"a": np.ones(3)}, params, name="updates")


def test_apply_updates_checks_the_tree_and_the_dtype():
    with pytest.raises(ValueError, match="updates is missing key 'b'"):
        optim.apply_updates({"a": np.zeros(2), "b": np.zeros(2)}, {"a": np.zeros(2)})
    with pytest.raises(ValueError, match="floating dtype, got int64"):
        optim.apply_updates(np.array([1, 2], dtype=np.int64), np.array([0.5, 0.5]))


def test_transformations_that_need_params_say_so():
    g = np.ones(2)
    for t in (optim.add_l2(0.1), optim.scale_by_trust_ratio(), optim.scale_by_param_block_rms()):
        with pytest.raises(ValueError, match="needs the parameters"):
            t.update(g, t.init(g))
