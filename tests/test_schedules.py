"""steplab.optim schedules: values at points where the formula gives them exactly."""

import math

import numpy as np
import pytest

from steplab import optim


def test_constant():
    s = optim.constant(0.3)
    assert [s(t) for t in (0, 1, 1000)] == [0.3, 0.3, 0.3]


def test_step_decay_multiplies_every_step_size_steps():
    s = optim.step_decay(1.0, step_size=10, gamma=0.5)
    assert s(0) == s(9) == 1.0
    assert s(10) == s(19) == 0.5
    assert s(25) == 0.25


def test_exponential_and_inverse_sqrt():
    assert optim.exponential(2.0, 0.9)(3) == pytest.approx(2.0 * 0.9**3)
    s = optim.inverse_sqrt(1.0)
    assert s(0) == 1.0 and s(3) == pytest.approx(0.5) and s(99) == pytest.approx(0.1)


def test_inverse_time_gives_two_over_mu_t_plus_one():
    mu = 0.25
    s = optim.inverse_time(2 / mu, 1)
    for t in (0, 1, 7, 100):
        assert s(t) == pytest.approx(2 / (mu * (t + 1)), rel=1e-15)


def test_cosine_endpoints_and_midpoint():
    lr, final = 0.8, 0.2
    s = optim.cosine(lr, total_steps=100, final_lr=final)
    assert s(0) == pytest.approx(lr)
    assert s(50) == pytest.approx((lr + final) / 2, rel=1e-15)
    assert s(100) == pytest.approx(final) and s(500) == pytest.approx(final)
    # a quarter of the way: final + (lr - final) (1 + cos(pi/4)) / 2
    assert s(25) == pytest.approx(final + (lr - final) * (1 + math.sqrt(0.5)) / 2, rel=1e-14)


def test_linear_warmup():
    s = optim.linear_warmup(1.0, warmup_steps=10, init_lr=0.2)
    assert s(0) == pytest.approx(0.2)
    assert s(5) == pytest.approx(0.6)
    assert s(10) == 1.0 and s(50) == 1.0
    assert optim.linear_warmup(0.5, warmup_steps=0)(0) == 0.5


def test_warmup_cosine():
    s = optim.warmup_cosine(1.0, warmup_steps=10, total_steps=110, final_lr=0.1)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(1.0)  # warmup ends at the peak
    assert s(60) == pytest.approx((1.0 + 0.1) / 2)  # cosine midpoint
    assert s(110) == pytest.approx(0.1) and s(200) == pytest.approx(0.1)


def test_warmup_stable_decay_phases():
    s = optim.warmup_stable_decay(1.0, warmup_steps=10, stable_steps=20, decay_steps=10, final_lr=0.2)
    assert s(0) == 0.0 and s(5) == pytest.approx(0.5)
    assert all(s(t) == 1.0 for t in range(10, 31))
    assert s(35) == pytest.approx(0.6)  # halfway down the linear decay
    assert s(40) == pytest.approx(0.2) and s(1000) == pytest.approx(0.2)


def test_one_cycle_follows_torch_onecyclelr():
    max_lr, total, pct, div, final_div = 1.0, 100, 0.3, 25.0, 1e4
    s = optim.one_cycle(max_lr, total, pct_start=pct, div_factor=div, final_div_factor=final_div)
    peak = int(pct * total) - 1  # torch's first phase ends at step pct * total - 1
    values = np.array([s(t) for t in range(total)])
    assert values[0] == pytest.approx(max_lr / div)
    assert values[peak] == pytest.approx(max_lr)
    assert int(np.argmax(values)) == peak
    assert values[-1] == pytest.approx(max_lr / div / final_div)
    assert np.all(np.diff(values[: peak + 1]) > 0) and np.all(np.diff(values[peak:]) < 0)
    # cosine annealing: halfway through the rise, the mean of the two ends
    half = optim.one_cycle(1.0, 202, pct_start=0.5, div_factor=4.0)  # peak at step 100
    assert half(50) == pytest.approx((0.25 + 1.0) / 2)
    assert s(total + 50) == pytest.approx(values[-1])


def test_schedules_have_a_readable_repr():
    assert repr(optim.cosine(0.1, 100)) == "cosine(lr=0.1, total_steps=100, final_lr=0.0)"
