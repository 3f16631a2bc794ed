"""Chapter 4's schedules: linear decay, warm restarts (SGDR), inverse powers.

Expected values are worked out by hand from the formulas in the docstrings.
"""

import math

import numpy as np
import pytest

from steplab import optim


def test_linear_decay_values():
    s = optim.linear_decay(2.0, total_steps=10)
    # eta_t = 2 (1 - t/10)
    assert s(0) == 2.0
    assert s(1) == pytest.approx(1.8, rel=1e-15)
    assert s(5) == pytest.approx(1.0, rel=1e-15)
    assert s(9) == pytest.approx(0.2, rel=1e-14)
    assert s(10) == 0.0 and s(1000) == 0.0


def test_linear_decay_to_a_floor():
    s = optim.linear_decay(1.0, total_steps=4, final_lr=0.2)
    # eta_t = 1 - 0.8 t / 4
    assert [s(t) for t in range(6)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.2], rel=1e-14)


def test_linear_decay_steps_are_equal():
    s = optim.linear_decay(1.0, total_steps=50, final_lr=0.1)
    values = np.array([s(t) for t in range(51)])
    assert np.allclose(np.diff(values), -0.9 / 50, rtol=1e-12)


def test_linear_decay_matches_wsd_without_warmup_or_plateau():
    a = optim.linear_decay(0.7, total_steps=30, final_lr=0.05)
    b = optim.warmup_stable_decay(0.7, warmup_steps=0, stable_steps=0, decay_steps=30, final_lr=0.05)
    assert [a(t) for t in range(40)] == pytest.approx([b(t) for t in range(40)], rel=1e-14)


def test_sgdr_constant_periods():
    s = optim.sgdr(1.0, first_period=4, final_lr=0.0)
    # inside a period: (1 + cos(pi t_cur / 4)) / 2
    expected = [1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2]
    assert [s(t) for t in range(4)] == pytest.approx(expected, rel=1e-14)
    assert [s(t) for t in range(4, 8)] == pytest.approx(expected, rel=1e-14)  # restart at t = 4
    assert s(401) == pytest.approx(expected[1], rel=1e-14)


def test_sgdr_growing_periods_restart_at_the_partial_sums():
    s = optim.sgdr(0.9, first_period=2, period_mult=3, final_lr=0.1)
    # periods 2, 6, 18: restarts at t = 2, 8, 26
    for restart in (0, 2, 8, 26):
        assert s(restart) == pytest.approx(0.9, rel=1e-15)
    # the middle of the second period (t_cur = 3 of 6) and of the third (9 of 18)
    assert s(2 + 3) == pytest.approx(0.5, rel=1e-14)
    assert s(8 + 9) == pytest.approx(0.5, rel=1e-14)
    # one step before a restart: 0.1 + 0.4 (1 + cos(pi 5/6))
    assert s(7) == pytest.approx(0.1 + 0.4 * (1 + math.cos(math.pi * 5 / 6)), rel=1e-14)


def test_sgdr_is_continuous_inside_a_period_and_jumps_at_restarts():
    s = optim.sgdr(1.0, first_period=20, period_mult=2)
    values = np.array([s(t) for t in range(140)])
    jumps = np.flatnonzero(np.diff(values) > 0) + 1
    assert jumps.tolist() == [20, 60]  # periods 20, 40, 80
    # inside a period consecutive values differ by at most pi/(2 T_i) * (lr - final_lr)
    inside = np.delete(np.abs(np.diff(values)), jumps - 1)
    assert inside.max() <= math.pi / (2 * 20) + 1e-12


def test_sgdr_first_period_equals_cosine():
    a = optim.sgdr(0.5, first_period=25, period_mult=2, final_lr=0.01)
    b = optim.cosine(0.5, total_steps=25, final_lr=0.01)
    assert [a(t) for t in range(25)] == pytest.approx([b(t) for t in range(25)], rel=1e-14)
    assert optim.cosine_restarts is optim.sgdr


def test_inverse_power_values_and_special_cases():
    s = optim.inverse_power(3.0, power=0.75)
    assert s(0) == 3.0
    assert s(15) == pytest.approx(3.0 / 8.0, rel=1e-15)  # 16^0.75 = 8
    sqrt, inv = optim.inverse_sqrt(3.0), optim.inverse_time(3.0, 1)
    half, one = optim.inverse_power(3.0, 0.5), optim.inverse_power(3.0, 1.0)
    for t in (0, 1, 9, 99):
        assert half(t) == pytest.approx(sqrt(t), rel=1e-15)
        assert one(t) == pytest.approx(inv(t), rel=1e-15)
    assert optim.inverse_power(2.0, 0.0)(50) == 2.0


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: optim.linear_decay(-0.1, 10), "lr must be >= 0, got -0.1"),
        (lambda: optim.linear_decay(0.1, 0), "total_steps must be an integer >= 1, got 0"),
        (lambda: optim.linear_decay(0.1, 10.0), "total_steps must be an integer >= 1, got 10.0"),
        (lambda: optim.linear_decay(0.1, 10, final_lr=-1), "final_lr must be >= 0, got -1.0"),
        (lambda: optim.sgdr(float("nan"), 10), "lr must be a finite number, got nan"),
        (lambda: optim.sgdr(0.1, 0), "first_period must be an integer >= 1, got 0"),
        (lambda: optim.sgdr(0.1, 10, period_mult=0), "period_mult must be an integer >= 1, got 0"),
        (lambda: optim.sgdr(0.1, 10, period_mult=1.5), "period_mult must be an integer >= 1, got 1.5"),
        (lambda: optim.sgdr(0.1, 10, final_lr=-0.5), "final_lr must be >= 0, got -0.5"),
        (lambda: optim.inverse_power(0.1, -0.5), "power must be >= 0, got -0.5"),
        (lambda: optim.inverse_power(-1, 0.5), "lr must be >= 0, got -1.0"),
    ],
)
def test_bad_arguments_are_named(build, message):
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value) == message


def test_reprs():
    assert repr(optim.linear_decay(0.1, 10)) == "linear_decay(lr=0.1, total_steps=10, final_lr=0.0)"
    assert repr(optim.sgdr(0.1, 10, 2)) == "sgdr(lr=0.1, first_period=10, period_mult=2, final_lr=0.0)"
    assert repr(optim.inverse_power(1.0, 0.75)) == "inverse_power(lr=1.0, power=0.75)"


def test_new_schedules_drive_an_optimizer():
    # one SGD step per schedule value: theta_{t+1} = theta_t - eta_t * 1 for a constant gradient
    s = optim.linear_decay(0.5, total_steps=4)
    opt = optim.sgd(lr=s)
    theta = np.zeros(2)
    state = opt.init(theta)
    for _ in range(6):
        updates, state = opt.update(np.ones(2), state, theta)
        theta = optim.apply_updates(theta, updates)
    # 0.5 + 0.375 + 0.25 + 0.125 + 0 + 0
    assert theta == pytest.approx(-1.25 * np.ones(2), rel=1e-14)
