"""Tests of steplab.batching: steps to target, the critical-batch-size fit, the cost model."""

import numpy as np
import pytest

from steplab import batching as bt
from steplab.problems import LeastSquares, make_least_squares


def least_squares(n=128, d=5, noise=0.5, seed=0):
    A, b = make_least_squares(n, d, noise=noise, seed=seed)
    return LeastSquares(A, b)


# ------------------------------------------------------------- steps to target


def test_full_batch_steps_to_target_is_gradient_descent_counted_by_hand():
    p = least_squares()
    lr, target = 1 / p.L, p.f_star + 1e-6
    r = bt.steps_to_target(p, [p.n], lr, target, 500, seeds=(0,))
    x, t = p.init_params(0), 0
    while p.value(x) > target:
        x = x - lr * p.grad(x)
        t += 1
    assert t > 1
    assert r.steps[0] == t and r.per_seed[0, 0] == t
    # checking the loss every 4 steps rounds up to the next multiple of 4
    r4 = bt.steps_to_target(p, [p.n], lr, target, 500, check_every=4)
    assert r4.steps[0] == 4 * int(np.ceil(t / 4))


def test_unreached_and_already_reached_targets():
    p = least_squares()
    r = bt.steps_to_target(p, [4, 8], 1e-3, p.f_star - 1.0, 20, seeds=(0, 1))
    assert np.all(np.isinf(r.per_seed)) and np.all(np.isinf(r.steps))
    r = bt.steps_to_target(p, [4], 0.1, p.value(p.init_params(0)) + 1.0, 20)
    assert r.steps[0] == 0


def test_learning_rate_forms_and_the_trend_with_batch_size():
    p = least_squares()
    sizes = [1, 4, 16, 64]
    lr0 = 0.05 / p.L_max
    r = bt.steps_to_target(p, sizes, lambda B: lr0 * B, p.f_star + 0.05, 4000, seeds=(0, 1, 2))
    np.testing.assert_allclose(r.lrs, lr0 * np.array(sizes))
    np.testing.assert_allclose(r.examples, r.steps * np.array(sizes))
    assert np.all(np.isfinite(r.steps))
    # linear scaling in the small-batch regime: 64x the batch (and the step) needs far fewer steps
    assert r.steps[-1] < r.steps[0] / 8
    r_list = bt.steps_to_target(p, sizes, list(r.lrs), p.f_star + 0.05, 4000, seeds=(0, 1, 2))
    np.testing.assert_array_equal(r_list.per_seed, r.per_seed)


class _Unbatched(LeastSquares):
    """The same problem without the stacked path, so steps_to_target runs one seed at a time."""

    batched = False


def test_vectorized_steps_equal_the_one_run_at_a_time_loop():
    A, b = make_least_squares(128, 5, noise=0.5, seed=0)
    fast, slow = LeastSquares(A, b), _Unbatched(A, b)
    assert not hasattr(slow, "batched") or not slow.batched
    args = ([1, 8, 32], [0.1 / fast.L_max, 0.3 / fast.L, 0.8 / fast.L], fast.f_star + 0.05, 400)
    r_fast = bt.steps_to_target(fast, *args, seeds=(0, 1, 2), check_every=3)
    r_slow = bt.steps_to_target(slow, *args, seeds=(0, 1, 2), check_every=3)
    np.testing.assert_array_equal(r_fast.per_seed, r_slow.per_seed)
    assert np.all(np.isfinite(r_fast.per_seed))


def test_lr_grid_counts_gradient_descent_by_hand_and_picks_the_fastest():
    # full batch: SGD is gradient descent; count its steps to the target for every candidate by
    # hand. 2.5/L > 2/L diverges (never reaches the target); the best is the fastest finite count.
    p = least_squares()
    target = p.f_star + 1e-4
    grid = np.array([0.25, 0.5, 1.0, 2.5]) / p.L
    r = bt.steps_to_target(p, [p.n, 16], None, target, 300, seeds=(0, 1), lr_grid=grid)
    by_hand = []
    for eta in grid:
        x, t = p.init_params(0), 0
        while p.value(x) > target and t < 300 and np.isfinite(p.value(x)):
            x, t = x - eta * p.grad(x), t + 1
        by_hand.append(t if p.value(x) <= target else np.inf)
    # both seeds start from their own init_params; seed 0's count is one of the two whose median is taken
    counts_seed0 = [bt.steps_to_target(p, [p.n], float(eta), target, 300, seeds=(0,)).steps[0] for eta in grid]
    np.testing.assert_array_equal(counts_seed0, by_hand)
    assert np.isinf(r.grid_steps[-1, 0])
    assert r.grid.shape == (4, 2) and r.grid_steps.shape == (4, 2)
    # the reported lr is the argmin of the median steps in each column, and its counts are its own
    for col in range(2):
        j = int(np.argmin(r.grid_steps[:, col]))
        assert r.lrs[col] == grid[j] and r.steps[col] == r.grid_steps[j, col]
        single = bt.steps_to_target(p, [[p.n, 16][col]], float(grid[j]), target, 300, seeds=(0, 1))
        np.testing.assert_array_equal(r.per_seed[col], single.per_seed[0])
    # GD's contraction factor max(|1 - eta L|, |1 - eta mu|) is smallest at eta = 1/L among these
    assert r.lrs[0] == grid[2]
    with pytest.raises(ValueError, match="pass either lr or lr_grid"):
        bt.steps_to_target(p, [4], 0.1, target, 10, lr_grid=grid)
    with pytest.raises(ValueError, match=r"lr_grid must have shape \(k,\) or \(k, 1\)"):
        bt.steps_to_target(p, [4], None, target, 10, lr_grid=np.ones((2, 3)))
    with pytest.raises(ValueError, match="lr must be given"):
        bt.steps_to_target(p, [4], None, target, 10)


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        (dict(batch_sizes=[0, 4]), "batch_sizes"),
        (dict(batch_sizes=[4, 1000]), "batch_sizes"),
        (dict(batch_sizes=[]), "batch_sizes"),
        (dict(lr=-0.1), "lr"),
        (dict(lr=[0.1]), "lr"),
        (dict(max_steps=0), "max_steps"),
        (dict(target=float("nan")), "target"),
        (dict(seeds=()), "seeds"),
        (dict(check_every=0), "check_every"),
    ],
)
def test_steps_to_target_validation(kwargs, arg):
    p = least_squares()
    args = dict(batch_sizes=[4, 8], lr=0.01, target=1.0, max_steps=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=arg):
        bt.steps_to_target(p, **args)


# ----------------------------------------------------------- critical batch size


@pytest.mark.parametrize("B_crit, S_min", [(64.0, 1000.0), (3.0, 20.0), (5000.0, 7.5)])
def test_critical_batch_size_recovers_the_generating_parameters(B_crit, S_min):
    B = 2.0 ** np.arange(0, 15)
    S = S_min * (1 + B_crit / B)
    fit = bt.critical_batch_size(B, S)
    assert fit.B_crit == pytest.approx(B_crit, rel=1e-10)
    assert fit.S_min == pytest.approx(S_min, rel=1e-10)
    assert fit.E_min == pytest.approx(S_min * B_crit, rel=1e-10)
    # McCandlish et al.'s hyperbola (S/S_min - 1)(E/E_min - 1) = 1 holds at every B
    E = B * S
    np.testing.assert_allclose((S / fit.S_min - 1) * (E / fit.E_min - 1), 1.0, rtol=1e-8)
    np.testing.assert_allclose(fit.steps(B), S, rtol=1e-10)
    np.testing.assert_allclose(fit.examples(B), E, rtol=1e-10)


def test_critical_batch_size_with_noisy_steps_and_unreached_points():
    rng = np.random.default_rng(0)
    B = 2.0 ** np.arange(0, 13)
    S = 500.0 * (1 + 128.0 / B) * np.exp(0.05 * rng.standard_normal(B.size))
    S[0] = np.inf  # one batch size never reached the target: dropped
    fit = bt.critical_batch_size(B, S)
    assert fit.B_crit == pytest.approx(128.0, rel=0.15)
    assert fit.S_min == pytest.approx(500.0, rel=0.1)


@pytest.mark.parametrize(
    "B, S, match",
    [
        ([1, 2, 4], [10, 5], "batch_sizes and steps"),
        ([0, 2, 4], [10, 5, 3], "batch_sizes"),
        ([1, 2, 4], [10, -5, 3], "steps"),
        ([4, 4], [10, 10], "two or more"),
        ([1, 2, 4], [np.inf, np.inf, 3], "two or more"),
        ([1, 2, 4, 8], [1, 2, 4, 8], "S_min"),  # steps grow with B: not the model
    ],
)
def test_critical_batch_size_validation(B, S, match):
    with pytest.raises(ValueError, match=match):
        bt.critical_batch_size(B, S)


# -------------------------------------------------------------------- cost model


def test_allreduce_time_by_hand():
    # 2 (K-1)/K * P * bytes / bandwidth: 4 workers, 1e6 float32 params, 1 GB/s -> 6 ms
    assert bt.allreduce_time(1e6, 4, 1e9) == pytest.approx(2 * 3 / 4 * 4e6 / 1e9)
    assert bt.allreduce_time(1e6, 4, 1e9, bytes_per_param=2, latency=1e-5) == pytest.approx(
        2 * 3 / 4 * 2e6 / 1e9 + 6e-5)
    assert bt.allreduce_time(1e6, 1, 1e9, latency=1.0) == 0.0
    # bandwidth-bound ring: the time barely grows with K
    assert bt.allreduce_time(1e6, 1024, 1e9) < 2 * 4e6 / 1e9


def test_step_time_and_linear_scaling():
    t = bt.data_parallel_step_time(256, 8, 1e8, 1e-3, 1e10)
    assert t.compute == pytest.approx(32e-3)
    assert t.communication == pytest.approx(2 * 7 / 8 * 4e8 / 1e10)
    assert t.total == pytest.approx(t.compute + t.communication)
    assert bt.linear_scaling_lr(0.1, 256, 1024) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="n_workers"):
        bt.data_parallel_step_time(100, 8, 1e8, 1e-3, 1e10)
    with pytest.raises(ValueError, match="bandwidth"):
        bt.allreduce_time(1e6, 4, 0.0)
    with pytest.raises(ValueError, match="base_lr"):
        bt.linear_scaling_lr(-1.0, 256, 512)


def test_scale_batch_without_communication_cost_is_linear_speedup():
    # one worker per 32 examples, and a link so fast communication is negligible: 8x
    out = bt.scale_batch(base_batch=256, base_lr=1e-3, base_steps=8000, base_workers=8,
                         base_bandwidth=1e18, batch_size=2048, n_workers=64, bandwidth=1e18,
                         n_params=1e6, time_per_example=1e-3)
    assert out["steps"] == 1000 and out["step_ratio"] == 8
    assert out["speedup"] == pytest.approx(8.0, rel=1e-6)


def test_bert_worked_example():
    out = bt.bert_base_example()
    assert out["lr"] == pytest.approx(1.6e-3)
    assert out["step_ratio"] == pytest.approx(8.0)
    assert out["steps"] == pytest.approx(125_000)
    assert out["warmup_steps"] == pytest.approx(1_250)
    # by hand: 32 examples * 1.7 ms per step on every GPU; ring all-reduce of 440 MB
    compute = 32 * 1.7e-3
    base = compute + 2 * 7 / 8 * 440e6 / 100e9
    new = compute + 2 * 63 / 64 * 440e6 / 12.5e9
    assert out["speedup"] == pytest.approx(8 * base / new)
    assert 3.5 < out["speedup"] < 4.5  # "8x fewer steps but only about 4x faster"
    assert out["step_time"].communication > out["step_time"].compute


def test_non_finite_theta0_is_rejected():
    A, b = make_least_squares(20, 3, seed=0)
    p = LeastSquares(A, b, l2=0.1)
    with pytest.raises(ValueError, match="theta0 must be finite"):
        bt.steps_to_target(p, [2], 0.1, 1.0, 10, theta0=np.array([np.nan, 0.0, 0.0]))


def test_steps_to_target_stops_a_diverging_step_size_early():
    """Rows of A are unit vectors (7, 7 and 6 copies of e_1, e_2, e_3), so the full-batch
    Hessian A^T A / n is diag(0.35, 0.35, 0.3). With eta = 10 the first two error components
    grow by |1 - 3.5| = 2.5 per step, the loss by 6.25: it passes 1e6 x its start after
    about 8 steps, so the run must stop there, long before max_steps, and count as never
    reaching the target."""
    n, d = 20, 3
    A = np.tile(np.eye(d), (n // d + 1, 1))[:n]
    b = np.zeros(n)
    prob = LeastSquares(A, b)
    calls = {"n": 0}
    value = prob.value

    def counting_value(theta):
        calls["n"] += 1
        return value(theta)

    prob.value = counting_value
    out = bt.steps_to_target(prob, [n], lr=10.0, target=1e-12, max_steps=10_000,
                          theta0=np.ones(d), seeds=[0])
    assert np.isinf(out.steps[0])
    assert calls["n"] <= 12  # one evaluation at the start and one per step until the limit
    with pytest.raises(ValueError, match="diverge_factor"):
        bt.steps_to_target(prob, [n], lr=0.1, target=1e-3, max_steps=10, diverge_factor=0.5)
