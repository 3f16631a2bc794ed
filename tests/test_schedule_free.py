"""Schedule-free SGD and AdamW: steps computed by hand from the recursion of Defazio et al. (2024)."""

import math

import numpy as np
import pytest

from steplab import optim, problems, run


def _steps(opt, theta, grad, n):
    """n updates; returns the parameters y_t and the evaluation points x_t after each."""
    state = opt.init(theta)
    ys, xs = [], []
    for _ in range(n):
        updates, state = opt.update(grad(theta), state, theta)
        theta = optim.apply_updates(theta, updates)
        ys.append(theta.copy())
        xs.append(np.array(optim.schedule_free_eval_params(state), copy=True))
    return np.array(ys), np.array(xs), state


def test_sgd_three_steps_by_hand():
    # f = theta^2 / 2, theta0 = 1, lr 0.5, beta 0.9: z2 = .5, z3 = .25, z4 = .25 - .5 * .3625
    ys, xs, _ = _steps(optim.schedule_free_sgd(lr=0.5, beta=0.9), np.array([1.0]), lambda y: y, 3)
    np.testing.assert_allclose(xs[:, 0], [0.5, 0.375, 0.75 / 3 + 0.06875 / 3], rtol=1e-14)
    np.testing.assert_allclose(ys[:, 0], [0.5, 0.3625, 0.2525], rtol=1e-14)


def test_sgd_warmup_weights_the_average_by_lr_squared():
    # W = 2: gamma = .25, .5; c3 = .25 / (.0625 + .25) = .8
    ys, xs, state = _steps(optim.schedule_free_sgd(lr=0.5, beta=0.9, warmup_steps=2), np.array([1.0]),
                           lambda y: y, 2)
    np.testing.assert_allclose(xs[:, 0], [0.75, 0.2 * 0.75 + 0.8 * 0.375], rtol=1e-14)
    np.testing.assert_allclose(ys[:, 0], [0.75, 0.4425], rtol=1e-14)
    assert state.weight_sum == pytest.approx(0.3125, rel=1e-14)
    assert state.lr == 0.5


def test_sgd_weight_decay_is_taken_at_y():
    ys, xs, _ = _steps(optim.schedule_free_sgd(lr=0.5, weight_decay=0.1), np.array([2.0]),
                       lambda y: np.zeros_like(y), 1)
    assert xs[0, 0] == pytest.approx(1.9, rel=1e-14) and ys[0, 0] == pytest.approx(1.9, rel=1e-14)


def test_adamw_two_steps_by_hand():
    # constant gradient 2, beta2 = .5, eps = 0: each z-step is exactly lr; c3 = .0075 / .0125 = .6
    opt = optim.schedule_free_adamw(lr=0.1, beta1=0.9, beta2=0.5, eps=0.0)
    ys, xs, state = _steps(opt, np.array([1.0]), lambda y: np.full_like(y, 2.0), 2)
    np.testing.assert_allclose(state.z, [0.8], rtol=1e-14)
    np.testing.assert_allclose(xs[:, 0], [0.9, 0.4 * 0.9 + 0.6 * 0.8], rtol=1e-14)
    np.testing.assert_allclose(ys[:, 0], [0.9, 0.836], rtol=1e-14)
    assert state.lr == pytest.approx(0.1 * math.sqrt(0.75), rel=1e-14)


def test_adamw_weight_decay_and_eps():
    lr, wd, eps, g = 0.01, 0.5, 0.1, 3.0
    opt = optim.schedule_free_adamw(lr=lr, beta2=0.99, eps=eps, weight_decay=wd)
    _, xs, state = _steps(opt, np.array([4.0]), lambda y: np.full_like(y, g), 1)
    gamma = lr * math.sqrt(1 - 0.99)
    v = 0.01 * g * g
    assert state.z[0] == pytest.approx(4.0 - gamma * (g / (math.sqrt(v) + eps) + wd * 4.0), rel=1e-14)
    assert xs[0, 0] == state.z[0]


def test_beta_zero_is_sgd_on_z_with_uniform_averaging():
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    grad = lambda y: A @ y  # noqa: E731
    ys, xs, _ = _steps(optim.schedule_free_sgd(lr=0.2, beta=0.0), np.array([1.0, -1.0]), grad, 6)
    z, zs = np.array([1.0, -1.0]), []
    for _ in range(6):
        z = z - 0.2 * grad(z)
        zs.append(z)
    np.testing.assert_allclose(ys, zs, rtol=1e-13)
    np.testing.assert_allclose(xs, np.cumsum(zs, axis=0) / np.arange(1, 7)[:, None], rtol=1e-13)


def test_dict_params_float32_and_no_mutation():
    params = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    before = {k: v.copy() for k, v in params.items()}
    grads = {"w": np.full((2, 3), 0.5, np.float32), "b": np.ones(3, np.float32)}
    for opt in (optim.schedule_free_sgd(lr=0.1), optim.schedule_free_adamw(lr=0.1, weight_decay=0.1)):
        state = opt.init(params)
        updates, state = opt.update(grads, state, params)
        new = optim.apply_updates(params, updates)
        assert all(new[k].dtype == np.float32 for k in new)
        for k in params:
            np.testing.assert_array_equal(params[k], before[k])
        assert optim.schedule_free_eval_params(state).keys() == params.keys()


def test_eval_params_found_inside_a_chain():
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.schedule_free_sgd(lr=0.1))
    theta = np.array([3.0, 4.0])
    state = opt.init(theta)
    updates, state = opt.update(np.array([3.0, 4.0]), state, theta)
    np.testing.assert_allclose(optim.schedule_free_eval_params(state), theta - 0.1 * np.array([0.6, 0.8]))
    with pytest.raises(ValueError, match="ScheduleFreeState"):
        optim.schedule_free_eval_params(optim.sgd(lr=0.1).init(theta))


def test_average_beats_last_iterate_of_constant_sgd_on_noisy_least_squares():
    A, b = problems.make_least_squares(400, 5, noise=1.0, seed=0)
    ls = problems.LeastSquares(A, b)
    opt = optim.schedule_free_sgd(lr=0.5 / ls.L_max, beta=0.9)
    hist = run.minimize(ls, opt, 3000, batch_size=1, seed=0,
                        metrics={"x": lambda th, g, u, s: ls.value(optim.schedule_free_eval_params(s))})
    plain = run.minimize(ls, optim.sgd(lr=0.5 / ls.L_max), 3000, batch_size=1, seed=0)
    gap_x = hist.metrics["x"][-1] - ls.f_star
    assert gap_x < 0.2 * (np.mean(plain.loss[-500:]) - ls.f_star)


@pytest.mark.parametrize("make, kwargs, match", [
    (optim.schedule_free_sgd, {"lr": 0.0}, "lr must be > 0"),
    (optim.schedule_free_sgd, {"lr": 0.1, "beta": 1.0}, "beta must be in"),
    (optim.schedule_free_sgd, {"lr": 0.1, "warmup_steps": -1}, "warmup_steps"),
    (optim.schedule_free_sgd, {"lr": 0.1, "weight_decay": -0.1}, "weight_decay"),
    (optim.schedule_free_adamw, {"lr": -1.0}, "lr must be > 0"),
    (optim.schedule_free_adamw, {"lr": 0.1, "beta2": 1.0}, "beta2 must be in"),
    (optim.schedule_free_adamw, {"lr": 0.1, "eps": -1e-8}, "eps"),
    (optim.schedule_free_adamw, {"lr": 0.1, "warmup_steps": 2.5}, "warmup_steps"),
])
def test_bad_arguments_raise(make, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_update_needs_params_and_matching_grads():
    opt = optim.schedule_free_sgd(lr=0.1)
    theta = {"w": np.ones(2)}
    state = opt.init(theta)
    with pytest.raises(ValueError, match="needs the parameters"):
        opt.update({"w": np.ones(2)}, state)
    with pytest.raises(ValueError, match="missing key 'w'"):
        opt.update({"v": np.ones(2)}, state, theta)
