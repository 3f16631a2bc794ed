"""steplab.optim: every optimizer's steps in closed form, and the properties the text relies on.

Expected values are written from the update rules (torch.optim / optax conventions), never
from the code's output.
"""

import copy
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steplab import optim

rng = np.random.default_rng(0)


def run(opt, params, grads_seq):
    """Apply opt to params along a sequence of gradients; return the list of iterates."""
    state = opt.init(params)
    out = []
    for g in grads_seq:
        updates, state = opt.update(g, state, params)
        params = optim.apply_updates(params, updates)
        out.append(params)
    return out


def nonzero(shape, seed):
    """Gaussian entries pushed away from 0 (so signs and |g| are well defined)."""
    x = np.random.default_rng(seed).normal(size=shape)
    return x + np.where(x >= 0, 0.1, -0.1)


ALL = {
    "sgd": lambda: optim.sgd(0.1, momentum=0.9),
    "adagrad": lambda: optim.adagrad(0.1),
    "rmsprop": lambda: optim.rmsprop(0.01, momentum=0.5, centered=True, weight_decay=0.1),
    "adam": lambda: optim.adam(0.01, weight_decay=0.1, amsgrad=True),
    "adamw": lambda: optim.adamw(0.01),
    "adafactor": lambda: optim.adafactor(0.01, min_dim_size_to_factor=2, momentum=0.9, weight_decay=0.01),
    "lars": lambda: optim.lars(0.1, weight_decay=0.01),
    "lamb": lambda: optim.lamb(0.01, weight_decay=0.1),
}


# --------------------------------------------------------------------------- SGD


def test_sgd_first_step_is_a_gradient_step():
    theta, g = nonzero(5, 1), nonzero(5, 2)
    (theta1,) = run(optim.sgd(0.3), theta, [g])
    np.testing.assert_allclose(theta1, theta - 0.3 * g, rtol=1e-14)


def test_sgd_momentum_second_step_uses_the_buffer():
    theta, g1, g2 = nonzero(4, 1), nonzero(4, 2), nonzero(4, 3)
    lr, mu = 0.1, 0.9
    theta1, theta2 = run(optim.sgd(lr, momentum=mu), theta, [g1, g2])
    # torch: b1 = g1, b2 = mu b1 + g2
    np.testing.assert_allclose(theta1, theta - lr * g1, rtol=1e-14)
    np.testing.assert_allclose(theta2, theta - lr * g1 - lr * (mu * g1 + g2), rtol=1e-14)


def test_sgd_nesterov_and_weight_decay():
    theta, g1, g2 = nonzero(4, 1), nonzero(4, 2), nonzero(4, 3)
    lr, mu, wd = 0.1, 0.8, 0.05
    theta1, theta2 = run(optim.sgd(lr, momentum=mu, nesterov=True, weight_decay=wd), theta, [g1, g2])
    d1 = g1 + wd * theta
    np.testing.assert_allclose(theta1, theta - lr * (d1 + mu * d1), rtol=1e-14)
    d2 = g2 + wd * theta1
    b2 = mu * d1 + d2
    np.testing.assert_allclose(theta2, theta1 - lr * (d2 + mu * b2), rtol=1e-14)


# --------------------------------------------------------------------------- Adagrad, RMSprop


def test_adagrad_first_two_steps():
    theta, g1, g2 = nonzero(6, 1), nonzero(6, 2), nonzero(6, 3)
    lr, eps = 0.5, 1e-3
    theta1, theta2 = run(optim.adagrad(lr, eps=eps), theta, [g1, g2])
    np.testing.assert_allclose(theta1, theta - lr * g1 / (np.abs(g1) + eps), rtol=1e-14)
    np.testing.assert_allclose(theta2, theta1 - lr * g2 / (np.sqrt(g1**2 + g2**2) + eps), rtol=1e-14)


def test_adagrad_initial_accumulator():
    theta, g = nonzero(6, 1), nonzero(6, 2)
    (theta1,) = run(optim.adagrad(0.5, eps=0.0, initial_accumulator_value=2.0), theta, [g])
    np.testing.assert_allclose(theta1, theta - 0.5 * g / np.sqrt(2.0 + g**2), rtol=1e-14)


def test_rmsprop_first_step_plain_and_centered():
    theta, g = nonzero(5, 1), nonzero(5, 2)
    lr, alpha, eps = 0.01, 0.9, 1e-8
    (plain,) = run(optim.rmsprop(lr, alpha=alpha, eps=eps), theta, [g])
    np.testing.assert_allclose(plain, theta - lr * g / (math.sqrt(1 - alpha) * np.abs(g) + eps), rtol=1e-13)
    # centered: v - gbar^2 = (1-a) g^2 - (1-a)^2 g^2 = a (1-a) g^2
    (centered,) = run(optim.rmsprop(lr, alpha=alpha, eps=eps, centered=True), theta, [g])
    expected = theta - lr * g / (math.sqrt(alpha * (1 - alpha)) * np.abs(g) + eps)
    np.testing.assert_allclose(centered, expected, rtol=1e-12)


def test_rmsprop_momentum_buffer_holds_scaled_gradients():
    theta, g1, g2 = nonzero(5, 1), nonzero(5, 2), nonzero(5, 3)
    lr, alpha, mu = 0.01, 0.99, 0.9
    theta1, theta2 = run(optim.rmsprop(lr, alpha=alpha, eps=0.0, momentum=mu), theta, [g1, g2])
    v1 = (1 - alpha) * g1**2
    v2 = alpha * v1 + (1 - alpha) * g2**2
    b1 = g1 / np.sqrt(v1)
    b2 = mu * b1 + g2 / np.sqrt(v2)
    np.testing.assert_allclose(theta1, theta - lr * b1, rtol=1e-13)
    np.testing.assert_allclose(theta2, theta1 - lr * b2, rtol=1e-13)


# --------------------------------------------------------------------------- Adam, AdamW


def test_adam_first_step_is_lr_times_sign():
    theta, g = nonzero(7, 1), nonzero(7, 2) * 1e-4
    (theta1,) = run(optim.adam(0.01, eps=0.0), theta, [g])
    np.testing.assert_allclose(theta1, theta - 0.01 * np.sign(g), rtol=1e-14)


def test_adam_second_step():
    theta, g1, g2 = nonzero(4, 1), nonzero(4, 2), nonzero(4, 3)
    lr, b1, b2, eps = 0.1, 0.8, 0.95, 1e-3
    theta1, theta2 = run(optim.adam(lr, beta1=b1, beta2=b2, eps=eps), theta, [g1, g2])
    m = b1 * (1 - b1) * g1 + (1 - b1) * g2
    v = b2 * (1 - b2) * g1**2 + (1 - b2) * g2**2
    u = (m / (1 - b1**2)) / (np.sqrt(v / (1 - b2**2)) + eps)
    np.testing.assert_allclose(theta2, theta1 - lr * u, rtol=1e-13)


def test_amsgrad_uses_the_largest_raw_second_moment():
    theta = np.zeros(1)
    lr, b1, b2 = 1.0, 0.5, 0.5
    g1, g2 = np.array([4.0]), np.array([1.0])
    theta1, theta2 = run(optim.adam(lr, beta1=b1, beta2=b2, eps=0.0, amsgrad=True), theta, [g1, g2])
    v1 = 0.5 * 16.0  # v2 = 0.5 * 8 + 0.5 * 1 = 4.5 < v1, so the maximum keeps v1
    m2 = 0.5 * 0.5 * 4.0 + 0.5 * 1.0
    expected_step = (m2 / (1 - b1**2)) / math.sqrt(v1 / (1 - b2**2))
    np.testing.assert_allclose(theta2 - theta1, [-lr * expected_step], rtol=1e-14)
    # without AMSGrad the smaller v2 gives a larger step
    _, plain2 = run(optim.adam(lr, beta1=b1, beta2=b2, eps=0.0), theta, [g1, g2])
    assert abs(plain2[0] - theta1[0]) > abs(theta2[0] - theta1[0])


def test_bias_correction_off_scales_the_first_step():
    g = nonzero(5, 2)
    b1, b2 = 0.9, 0.9
    on = optim.scale_by_adam(b1, b2, eps=0.0)
    off = optim.scale_by_adam(b1, b2, eps=0.0, bias_correction=False)
    u_on, _ = on.update(g, on.init(g))
    u_off, _ = off.update(g, off.init(g))
    np.testing.assert_allclose(u_on, np.sign(g), rtol=1e-14)
    np.testing.assert_allclose(u_off, (1 - b1) / math.sqrt(1 - b2) * u_on, rtol=1e-14)
    assert np.all(np.abs(u_off) < np.abs(u_on))


def test_adamw_equals_adam_without_weight_decay():
    theta = {"W": nonzero((3, 4), 1), "b": nonzero(4, 2)}
    grads = [{"W": nonzero((3, 4), 10 + t), "b": nonzero(4, 20 + t)} for t in range(4)]
    for a, w in zip(run(optim.adam(0.01), theta, grads), run(optim.adamw(0.01, weight_decay=0.0), theta, grads)):
        for k in theta:
            np.testing.assert_allclose(a[k], w[k], rtol=1e-15)


def test_adamw_decays_large_v_coordinates_that_adam_l2_barely_decays():
    # coordinate 0: huge gradient (large v), coordinate 1: zero gradient
    theta = np.array([1.0, 1.0])
    g = np.array([1000.0, 0.0])
    lr, wd = 0.01, 0.1
    (l2,) = run(optim.adam(lr, eps=1e-12, weight_decay=wd), theta, [g])
    (w,) = run(optim.adamw(lr, eps=1e-12, weight_decay=wd), theta, [g])
    # Adam+L2 normalizes g + wd*theta: the decay vanishes in sign(1000.1) -> step lr.
    assert l2[0] == pytest.approx(1.0 - lr, rel=1e-12)
    # AdamW: Adam step lr, plus lr * wd * theta outside the normalization.
    assert w[0] == pytest.approx(1.0 - lr - lr * wd * 1.0, rel=1e-12)
    assert l2[0] - w[0] == pytest.approx(lr * wd, rel=1e-8)
    # on the zero-gradient coordinate L2's decay is normalized to a full step lr
    assert l2[1] == pytest.approx(1.0 - lr, rel=1e-12)
    assert w[1] == pytest.approx(1.0 - lr * wd, rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    c=st.floats(min_value=1e-3, max_value=1e3),
    seed=st.integers(0, 2**16),
    amsgrad=st.booleans(),
)
def test_adam_is_invariant_to_rescaling_the_gradient(c, seed, amsgrad):
    theta = nonzero(6, seed)
    grads = [nonzero(6, seed + 1 + t) for t in range(3)]
    opt = optim.adam(0.01, eps=0.0, amsgrad=amsgrad)
    for a, b in zip(run(opt, theta, grads), run(opt, theta, [c * g for g in grads])):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- Adafactor


def test_factored_second_moment_equals_full_on_rank_one_gradients():
    a, b = nonzero(130, 1), nonzero(140, 2)
    scales = [1.0, 3.0, 0.5]
    grads = [s * np.outer(a, b) for s in scales]
    factored = optim.scale_by_factored_rms(decay_rate=0.8, min_dim_size_to_factor=128, eps=0.0)
    full = optim.scale_by_factored_rms(factored=False, decay_rate=0.8, eps=0.0)
    sf, sa = factored.init(grads[0]), full.init(grads[0])
    assert sf.v is None and sf.v_row.shape == (130,) and sf.v_col.shape == (140,)
    w = 0.0
    for t, (s, g) in enumerate(zip(scales, grads), start=1):
        uf, sf = factored.update(g, sf)
        ua, sa = full.update(g, sa)
        beta2 = 1.0 - t**-0.8  # 0 at t = 1
        w = beta2 * w + (1 - beta2) * s**2
        # V_ij = R_i C_j / sum_i R_i = w a_i^2 b_j^2 for a rank-one g
        np.testing.assert_allclose(sa.v, w * np.outer(a**2, b**2), rtol=1e-12)
        np.testing.assert_allclose(sf.v_row, w * a**2 * np.mean(b**2), rtol=1e-12)
        np.testing.assert_allclose(sf.v_col, w * b**2 * np.mean(a**2), rtol=1e-12)
        np.testing.assert_allclose(uf, g / np.sqrt(w * np.outer(a**2, b**2)), rtol=1e-12)
        np.testing.assert_allclose(uf, ua, rtol=1e-12)


def test_factoring_needs_two_large_axes():
    opt = optim.scale_by_factored_rms(min_dim_size_to_factor=128)
    state = opt.init({"big": np.zeros((200, 300)), "thin": np.zeros((3, 300)), "vec": np.zeros(500)})
    assert state.v_row["big"].shape == (200,) and state.v_col["big"].shape == (300,)
    assert state.v["big"] is None
    assert state.v_row["thin"] is None and state.v["thin"].shape == (3, 300)
    assert state.v["vec"].shape == (500,)


def test_clip_by_block_rms():
    clip = optim.clip_by_block_rms(1.0)
    big = {"a": np.full(4, 3.0), "b": np.array([0.5, -0.5])}
    out, _ = clip.update(big, clip.init(big))
    np.testing.assert_allclose(out["a"], np.ones(4), rtol=1e-15)  # rms 3 -> 1
    np.testing.assert_array_equal(out["b"], big["b"])  # rms 0.5 <= 1: untouched


def test_adafactor_first_step_closed_form():
    theta = {"w": nonzero(50, 1), "zero": np.zeros(3)}
    g = {"w": nonzero(50, 2), "zero": np.array([1.0, -2.0, 0.5])}
    lr = 0.1
    (theta1,) = run(optim.adafactor(lr, eps=0.0), theta, [g])
    # step 1: beta2 = 0, V = g^2, so g / sqrt(V) = sign(g) with RMS 1 (no clipping at 1);
    # relative step: times max(1e-3, RMS(theta)).
    rms = np.sqrt(np.mean(theta["w"] ** 2))
    np.testing.assert_allclose(theta1["w"], theta["w"] - lr * rms * np.sign(g["w"]), rtol=1e-13)
    np.testing.assert_allclose(theta1["zero"], -lr * 1e-3 * np.sign(g["zero"]), rtol=1e-13)


def test_adafactor_weight_decay_is_not_scaled_by_lr():
    theta, g = np.full(4, 2.0), np.ones(4)
    lr, wd = 0.1, 0.01
    (theta1,) = run(optim.adafactor(lr, weight_decay=wd, eps=0.0, multiply_by_parameter_scale=False), theta, [g])
    np.testing.assert_allclose(theta1, theta - lr * 1.0 - wd * theta, rtol=1e-14)


# --------------------------------------------------------------------------- trust ratio, clipping


def test_trust_ratio_is_one_at_zero_norms():
    tr = optim.scale_by_trust_ratio(trust_coefficient=0.5)
    g = {"zero_param": np.array([1.0, 2.0]), "zero_grad": np.zeros(2), "both": np.array([3.0, 4.0])}
    p = {"zero_param": np.zeros(2), "zero_grad": np.array([1.0, 1.0]), "both": np.array([0.0, 10.0])}
    out, _ = tr.update(g, tr.init(p), p)
    np.testing.assert_array_equal(out["zero_param"], g["zero_param"])
    np.testing.assert_array_equal(out["zero_grad"], g["zero_grad"])
    # otherwise ||u|| = kappa ||theta||, per array: 0.5 * 10 / 5 = 1
    np.testing.assert_allclose(out["both"], g["both"] * 1.0, rtol=1e-15)
    assert np.linalg.norm(out["both"]) == pytest.approx(0.5 * 10.0)


def test_lars_first_step_closed_form():
    theta, g = nonzero((3, 4), 1), nonzero((3, 4), 2)
    lr, wd, kappa = 0.5, 0.01, 0.02
    (theta1,) = run(optim.lars(lr, weight_decay=wd, trust_coefficient=kappa), theta, [g])
    d = g + wd * theta
    ratio = kappa * np.linalg.norm(theta) / np.linalg.norm(d)
    np.testing.assert_allclose(theta1, theta - lr * ratio * d, rtol=1e-13)


def test_lamb_first_step_closed_form():
    theta, g = nonzero(8, 1), nonzero(8, 2)
    lr, wd = 0.1, 0.1
    (theta1,) = run(optim.lamb(lr, eps=0.0, weight_decay=wd), theta, [g])
    a = np.sign(g) + wd * theta
    np.testing.assert_allclose(theta1, theta - lr * np.linalg.norm(theta) / np.linalg.norm(a) * a, rtol=1e-13)


def test_lamb_trust_ratio_is_per_array():
    theta = {"W": nonzero((3, 4), 1), "b": 100 * nonzero(4, 2)}
    grads = [{"W": nonzero((3, 4), 10 + t), "b": nonzero(4, 20 + t)} for t in range(3)]
    together = run(optim.lamb(0.01, weight_decay=0.1), theta, grads)
    for k in theta:
        alone = run(optim.lamb(0.01, weight_decay=0.1), theta[k], [g[k] for g in grads])
        for x, y in zip(together, alone):
            np.testing.assert_allclose(x[k], y, rtol=1e-14)


def test_clip_by_global_norm():
    clip = optim.clip_by_global_norm(1.0)
    big = {"a": np.array([3.0, 0.0]), "b": np.array([0.0, 4.0])}  # global norm 5
    out, _ = clip.update(big, clip.init(big))
    assert optim.tree_norm(out) == pytest.approx(1.0, rel=1e-15)
    np.testing.assert_allclose(out["a"], big["a"] / 5.0, rtol=1e-15)
    small = {"a": np.array([0.3, 0.0]), "b": np.array([0.0, 0.4])}
    out, _ = clip.update(small, clip.init(small))
    np.testing.assert_array_equal(out["a"], small["a"])
    np.testing.assert_array_equal(out["b"], small["b"])


# --------------------------------------------------------------------------- trees, dtypes, purity


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw"])
def test_dict_params_match_arraywise_runs_for_elementwise_optimizers(name):
    theta = {"W": nonzero((3, 4), 1), "b": nonzero(4, 2)}
    grads = [{"W": nonzero((3, 4), 10 + t), "b": nonzero(4, 20 + t)} for t in range(3)]
    together = run(ALL[name](), theta, grads)
    for k in theta:
        alone = run(ALL[name](), theta[k], [g[k] for g in grads])
        for x, y in zip(together, alone):
            np.testing.assert_allclose(x[k], y, rtol=1e-14)


@pytest.mark.parametrize("name", sorted(ALL))
def test_update_does_not_mutate_its_inputs(name):
    opt = ALL[name]()
    params = {"W": nonzero((3, 4), 1), "b": nonzero(4, 2)}
    state = opt.init(params)
    for t in range(2):
        grads = {"W": nonzero((3, 4), 10 + t), "b": nonzero(4, 20 + t)}
        saved = copy.deepcopy((grads, state, params))
        updates, new_state = opt.update(grads, state, params)
        for before, after in zip(saved, (grads, state, params)):
            np.testing.assert_equal(after, before)
        new_params = optim.apply_updates(params, updates)
        assert not np.shares_memory(new_params["W"], params["W"])
        params, state = new_params, new_state


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(sorted(ALL)), rows=st.integers(1, 5), cols=st.integers(1, 5), seed=st.integers(0, 1000))
def test_float32_stays_float32(name, rows, cols, seed):
    params = {"W": nonzero((rows, cols), seed).astype(np.float32), "b": nonzero(cols, seed + 1).astype(np.float32)}
    opt = ALL[name]()
    state = opt.init(params)
    for t in range(2):
        grads = {k: nonzero(v.shape, seed + 10 + t).astype(np.float32) for k, v in params.items()}
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        for k in params:
            assert updates[k].dtype == np.float32, (k, updates[k].dtype)
            assert params[k].dtype == np.float32, (k, params[k].dtype)
    for leaf in _array_leaves(state):
        assert leaf.dtype == np.float32


def _array_leaves(state):
    if isinstance(state, np.ndarray):
        yield state
    elif isinstance(state, dict):
        for v in state.values():
            yield from _array_leaves(v)
    elif isinstance(state, tuple):
        for v in state:
            yield from _array_leaves(v)


def test_apply_updates_inplace_writes_into_params():
    params = {"w": np.ones(3, dtype=np.float32)}
    out = optim.apply_updates(params, {"w": np.full(3, -0.5)}, inplace=True)
    assert out["w"] is params["w"]
    np.testing.assert_array_equal(params["w"], np.full(3, 0.5, dtype=np.float32))


def test_schedule_as_lr_and_current_lr():
    sched = optim.exponential(1.0, 0.5)
    opt = optim.sgd(sched)
    theta = np.zeros(2)
    state = opt.init(theta)
    assert optim.current_lr(state) == 1.0  # the rate the first update will use
    for t in range(4):
        updates, state = opt.update(np.ones(2), state, theta)
        theta = optim.apply_updates(theta, updates)
        assert optim.current_lr(state) == 0.5**t  # the rate the latest update used
    np.testing.assert_allclose(theta, -(1 + 0.5 + 0.25 + 0.125) * np.ones(2), rtol=1e-15)


def test_current_lr_is_none_without_a_learning_rate():
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.scale(-0.1))
    assert optim.current_lr(opt.init(np.zeros(2))) is None


def test_non_finite_gradients_pass_through_without_raising():
    opt = optim.adam(0.1)
    theta = np.zeros(3)
    state = opt.init(theta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        updates, state = opt.update(np.array([1.0, np.inf, np.nan]), state, theta)
    assert np.isfinite(updates[0]) and not np.isfinite(updates[1]) and not np.isfinite(updates[2])
    assert not optim.tree_all_finite(updates)
    assert optim.tree_all_finite({"a": np.ones(2)})


def test_adamw_step_inplace_matches_the_pure_chain():
    hyper = dict(beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1)
    lr = optim.cosine(0.05, 4)
    params = {"W": nonzero((30, 7), 1), "b": nonzero(11, 2)}
    grads = [{"W": nonzero((30, 7), 10 + t), "b": nonzero(11, 20 + t)} for t in range(4)]
    expected = run(optim.adamw(lr, **hyper), params, grads)
    mine = {k: v.copy() for k, v in params.items()}
    state = optim.adamw(lr, **hyper).init(mine)
    for g, e in zip(grads, expected):
        state = optim.adamw_step_inplace(mine, g, state, lr, block_size=16, **hyper)
        for k in mine:
            np.testing.assert_allclose(mine[k], e[k], rtol=1e-13)
    assert optim.current_lr(state) == lr(3)
