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
    "nesterov_accelerated": lambda: optim.nesterov_accelerated(0.1),
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


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw", "nesterov_accelerated"])
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


@pytest.mark.parametrize("weight_decay", [0.1, 0.0])
def test_adamw_step_inplace_matches_the_pure_chain(weight_decay):
    hyper = dict(beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=weight_decay)
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


# --------------------------------------------------------------------------- momentum schedules, Nesterov's method


def _convex_quadratic(d=30, seed=0):
    """f = 1/2 x^T H x with eigenvalues 1/i^2 and five zeros: convex, L = 1, not strongly convex."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.concatenate([1.0 / np.arange(1, d - 4) ** 2, np.zeros(5)])
    H = (Q * lam) @ Q.T
    return H, Q, lam, rng.standard_normal(d)


def _nesterov_recursion(grad, x0, lr, beta, steps):
    """x_{k+1} = y_k - lr_k grad(y_k), y_{k+1} = x_{k+1} + beta_{k+1} (x_{k+1} - x_k), x_0 = y_0."""
    x_prev, y = x0.copy(), x0.copy()
    xs, ys = [x0.copy()], [x0.copy()]
    for k in range(steps):
        eta = lr(k) if callable(lr) else lr
        x = y - eta * grad(y)
        y = x + beta(k + 1) * (x - x_prev)
        x_prev = x
        xs.append(x)
        ys.append(y)
    return np.array(xs), np.array(ys)


def _run_with_states(opt, params, grad, steps):
    state = opt.init(params)
    thetas, states = [params], [state]
    for _ in range(steps):
        updates, state = opt.update(grad(params), state, params)
        params = optim.apply_updates(params, updates)
        thetas.append(params)
        states.append(state)
    return np.array(thetas), states


def test_nesterov_momentum_values():
    # beta_k = (k-1)/(k+2): 0 at k = 1, 1/4 at k = 2, 1/2 at k = 4, 0.97 at k = 98
    assert optim.nesterov_momentum(0) == 0.0
    assert optim.nesterov_momentum(1) == 0.0
    assert optim.nesterov_momentum(2) == 0.25
    assert optim.nesterov_momentum(4) == 0.5
    assert optim.nesterov_momentum(98) == pytest.approx(0.97, rel=1e-15)


def test_fista_momentum_values():
    t2 = (1 + math.sqrt(5)) / 2  # t_2 from t_1 = 1
    t3 = (1 + math.sqrt(1 + 4 * t2**2)) / 2
    assert optim.fista_momentum(0) == 0.0
    assert optim.fista_momentum(1) == 0.0  # (t_1 - 1)/t_2
    assert optim.fista_momentum(2) == pytest.approx((t2 - 1) / t3, rel=1e-15)
    # t_{k+1}^2 - t_{k+1} = t_k^2 and t_k >= (k+1)/2 (the facts the O(1/k^2) proof uses)
    ks = np.arange(1, 2000)
    beta = np.array([optim.fista_momentum(int(k)) for k in ks])
    assert np.all(np.diff(beta) > 0) and np.all(beta < 1)
    # t_k = k/2 + O(log k), so beta_k = 1 - 3/k + O(log(k)/k^2), as (k-1)/(k+2): below 5e-6 apart at k = 1999
    np.testing.assert_allclose(beta[-1], 1 - 3 / (ks[-1] + 2), atol=5e-6)


@pytest.mark.parametrize("fn", [optim.nesterov_momentum, optim.fista_momentum])
@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_momentum_sequences_validate_the_step(fn, bad):
    with pytest.raises(ValueError, match="step"):
        fn(bad)


@pytest.mark.parametrize("lr", [0.7, optim.exponential(1.0, 0.99)])
def test_nesterov_accelerated_parameters_are_the_extrapolated_points(lr):
    H, _, _, x0 = _convex_quadratic()
    grad = lambda x: H @ x  # noqa: E731
    steps = 60
    xs, ys = _nesterov_recursion(grad, x0, lr, optim.nesterov_momentum, steps)
    thetas, states = _run_with_states(optim.nesterov_accelerated(lr), x0, grad, steps)
    scale = np.linalg.norm(x0)
    np.testing.assert_allclose(thetas, ys, rtol=0, atol=1e-12 * scale)
    # the buffer is x_k - x_{k-1}, so x_k = theta_k - beta_k * buffer
    for k in range(1, steps + 1):
        buffer = states[k][1].trace
        np.testing.assert_allclose(buffer, xs[k] - xs[k - 1], rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(thetas[k] - optim.nesterov_momentum(k) * buffer, xs[k], rtol=0, atol=1e-12 * scale)
    # and x_{k+1} is one gradient step from the parameters theta_k (constant lr case)
    if not callable(lr):
        np.testing.assert_allclose(thetas[:-1] - lr * (thetas[:-1] @ H), xs[1:], rtol=0, atol=1e-12 * scale)


def test_nesterov_accelerated_with_fista_momentum_is_fista():
    H, _, _, x0 = _convex_quadratic(seed=1)
    L = 1.0
    # FISTA as Beck and Teboulle write it: y_1 = x_0, t_1 = 1, x_k = y_k - grad(y_k)/L,
    # t_{k+1} = (1 + sqrt(1 + 4 t_k^2))/2, y_{k+1} = x_k + (t_k - 1)/t_{k+1} (x_k - x_{k-1})
    x_prev, y, t, ys = x0.copy(), x0.copy(), 1.0, [x0.copy()]
    for _ in range(80):
        x = y - H @ y / L
        t_next = (1 + np.sqrt(1 + 4 * t**2)) / 2
        y = x + (t - 1) / t_next * (x - x_prev)
        x_prev, t = x, t_next
        ys.append(y)
    thetas, _ = _run_with_states(optim.nesterov_accelerated(1 / L, momentum=optim.fista_momentum), x0,
                                 lambda x: H @ x, 80)
    np.testing.assert_allclose(thetas, np.array(ys), rtol=0, atol=1e-12 * np.linalg.norm(x0))


def test_nesterov_accelerated_meets_the_convex_rate():
    # f(x_k) - f* <= 2 L ||x_0 - x*||^2 / (k+1)^2 with lr = 1/L (Su, Boyd and Candes 2016, Theorem 6)
    H, Q, lam, x0 = _convex_quadratic(d=60, seed=2)
    L = lam.max()
    null = Q[:, lam == 0]
    x_star = null @ (null.T @ x0)  # the minimizer closest to x0; f* = 0
    R2 = np.sum((x0 - x_star) ** 2)
    steps = 400
    thetas, _ = _run_with_states(optim.nesterov_accelerated(1 / L), x0, lambda x: H @ x, steps)
    xs = thetas[:-1] - (thetas[:-1] @ H) / L  # x_k, k = 1..steps
    gaps = 0.5 * np.einsum("ki,ij,kj->k", xs, H, xs)
    k = np.arange(1, steps + 1)
    assert np.all(gaps <= 2 * L * R2 / (k + 1) ** 2)
    # the bound is not vacuous: gradient descent with 1/L is above it by step 400
    x = x0.copy()
    for _ in range(steps):
        x = x - H @ x / L
    assert 0.5 * x @ H @ x > 2 * L * R2 / (steps + 1) ** 2


def test_nesterov_accelerated_with_constant_momentum_is_torch_nesterov():
    theta = nonzero(6, 1)
    grads = [nonzero(6, 10 + t) for t in range(8)]
    ours = run(optim.nesterov_accelerated(0.05, momentum=0.9), theta, grads)
    torch_form = run(optim.sgd(0.05, momentum=0.9, nesterov=True), theta, grads)
    np.testing.assert_allclose(ours, torch_form, rtol=1e-13)


def test_trace_with_a_momentum_schedule_is_the_varying_heavy_ball():
    # theta_{t+1} = theta_t - lr g_t + beta_t (theta_t - theta_{t-1}) with beta_t = 0.5 + 0.04 t
    beta = lambda t: 0.5 + 0.04 * t  # noqa: E731
    lr = 0.1
    theta = nonzero(5, 1)
    grads = [nonzero(5, 10 + t) for t in range(10)]
    ours = run(optim.chain(optim.trace(beta), optim.scale_by_learning_rate(lr)), theta, grads)
    prev, cur, expected = theta, theta, []
    for t, g in enumerate(grads):
        prev, cur = cur, cur - lr * g + beta(t) * (cur - prev)
        expected.append(cur)
    np.testing.assert_allclose(ours, expected, rtol=1e-13)


def test_trace_momentum_schedule_values_are_checked():
    opt = optim.trace(lambda t: 0.5 * t)  # reaches 1 at t = 2
    theta = np.zeros(2)
    state = opt.init(theta)
    for _ in range(2):
        _, state = opt.update(np.ones(2), state, theta)
    with pytest.raises(ValueError, match=r"momentum\(2\) must be in \[0, 1\), got 1.0"):
        opt.update(np.ones(2), state, theta)
    nest = optim.trace(lambda t: 0.5 * t, nesterov=True)  # the look-ahead reads momentum(t + 1)
    _, state = nest.update(np.ones(2), nest.init(theta), theta)
    with pytest.raises(ValueError, match=r"momentum\(2\)"):
        nest.update(np.ones(2), state, theta)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-0.1), "lr must be >= 0, got -0.1"),
        (dict(lr=0.1, momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
        (dict(lr=0.1, momentum=-0.2), r"momentum must be in \[0, 1\), got -0.2"),
        (dict(lr=float("nan")), "lr must be a finite number"),
    ],
)
def test_nesterov_accelerated_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.nesterov_accelerated(**kwargs)


def test_nesterov_accelerated_reports_its_lr():
    opt = optim.nesterov_accelerated(optim.exponential(1.0, 0.5))
    theta = np.zeros(2)
    state = opt.init(theta)
    for t in range(3):
        _, state = opt.update(np.ones(2), state, theta)
        assert optim.current_lr(state) == 0.5**t


# --------------------------------------------------------------------------- diagonal scaling


def test_scale_by_diagonal_multiplies_entrywise():
    d = np.array([1.0, 0.5, 0.0, 4.0])
    g = nonzero(4, 1)
    opt = optim.scale_by_diagonal(d)
    u, _ = opt.update(g, opt.init(g), g)
    np.testing.assert_array_equal(u, np.array([g[0], 0.5 * g[1], 0.0, 4.0 * g[3]]))


def test_scale_by_diagonal_dict_and_float32():
    d = {"W": np.full((2, 3), 2.0), "b": np.array([0.25, 1.0, 3.0])}
    g = {"W": nonzero((2, 3), 1).astype(np.float32), "b": nonzero(3, 2).astype(np.float32)}
    opt = optim.scale_by_diagonal(d)
    u, _ = opt.update(g, opt.init(g), g)
    assert u["W"].dtype == np.float32 and u["b"].dtype == np.float32
    np.testing.assert_array_equal(u["W"], 2 * g["W"])
    np.testing.assert_allclose(u["b"], np.array([0.25, 1.0, 3.0], dtype=np.float32) * g["b"], rtol=1e-7)


def test_jacobi_preconditioning_solves_a_diagonal_quadratic_in_one_step():
    # f = 1/2 sum h_i (x_i - c_i)^2: with d = 1/h and lr 1, one step lands on c (Newton's step)
    h, c = np.array([100.0, 1.0, 0.01]), np.array([1.0, -2.0, 3.0])
    opt = optim.chain(optim.scale_by_diagonal(1 / h), optim.scale_by_learning_rate(1.0))
    (x1,) = run(opt, np.zeros(3), [h * (np.zeros(3) - c)])
    np.testing.assert_allclose(x1, c, rtol=1e-15)


@pytest.mark.parametrize(
    "d, match",
    [
        (np.array([1.0, -0.5]), r"d must have finite entries >= 0, got an entry -0.5"),
        (np.array([1.0, np.nan]), r"d must have finite entries >= 0, got an entry nan"),
        ({"W": np.array([np.inf])}, r"d\['W'\] must have finite entries >= 0, got an entry inf"),
    ],
)
def test_scale_by_diagonal_validates_values(d, match):
    with pytest.raises(ValueError, match=match):
        optim.scale_by_diagonal(d)


def test_scale_by_diagonal_checks_the_structure():
    opt = optim.scale_by_diagonal({"W": np.ones((2, 3)), "b": np.ones(3)})
    with pytest.raises(ValueError, match="d is missing key 'c'"):
        opt.init({"W": np.ones((2, 3)), "b": np.ones(3), "c": np.ones(1)})
    with pytest.raises(ValueError, match=r"d\['b'\] has shape \(3,\) but params\['b'\] has shape \(4,\)"):
        opt.init({"W": np.ones((2, 3)), "b": np.ones(4)})
    flat = optim.scale_by_diagonal(np.ones(3))
    with pytest.raises(ValueError, match=r"d has shape \(3,\) but params has shape \(2,\)"):
        flat.update(np.ones(2), flat.init(np.ones(3)), np.ones(2))


def test_flat_adamw_step_equals_the_readable_chain_on_many_arrays():
    rng = np.random.default_rng(3)
    shapes = {f"layer{i}.{kind}": (8, 5) if kind == "w" else (5,) for i in range(13) for kind in ("w", "b")}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    opt = optim.adamw(lr=optim.schedules.cosine(0.01, 20), weight_decay=0.05)
    pure, pure_state = params, opt.init(params)
    flat = optim.flat_params(params)
    assert set(flat) == set(params) and flat.flat.size == sum(a.size for a in params.values())
    state = opt.init(flat)
    for t in range(6):
        grads = {k: rng.standard_normal(s) for k, s in shapes.items()}
        if t == 3:
            grads = {k: np.zeros(s) for k, s in shapes.items()}
        updates, pure_state = opt.update(grads, pure_state, pure)
        pure = optim.apply_updates(pure, updates)
        given = optim.flat_params(grads) if t % 2 else grads  # flat or plain gradients
        state = optim.adamw_step_inplace(flat, given, state, lr=optim.schedules.cosine(0.01, 20), weight_decay=0.05)
        for k in params:
            np.testing.assert_allclose(flat[k], pure[k], rtol=1e-13, atol=1e-15)
    assert optim.current_lr(state) == optim.current_lr(pure_state)
    flat["layer0.w"] = np.zeros((8, 5))  # no longer a view of the buffer
    with pytest.raises(ValueError, match="no longer views"):
        optim.adamw_step_inplace(flat, grads, state, lr=0.01)
