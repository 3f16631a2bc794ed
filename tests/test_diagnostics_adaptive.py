"""steplab.diagnostics for adaptive optimizers: update RMS, trust ratios, second-moment summaries,
the spike alarm, and optimizer-state memory (counted against the formula)."""

import numpy as np
import pytest

from steplab import diagnostics, optim
from steplab.problems import TinyTransformer


def tiny():
    tokens = np.arange(200) % 11
    return TinyTransformer(tokens, vocab_size=11, context=8, d_model=16, n_heads=2, n_blocks=2, d_mlp=24)


def test_update_rms_per_array_and_for_one_array():
    u = {"a": np.array([3.0, 4.0]), "b": np.zeros(3)}
    out = diagnostics.update_rms(u)
    assert out["a"] == pytest.approx(np.sqrt(12.5))
    assert out["b"] == 0.0
    assert diagnostics.update_rms(np.full(5, -2.0)) == pytest.approx(2.0)


def test_trust_ratio_matches_what_scale_by_trust_ratio_applies():
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((3, 4)), "b": np.zeros(4)}
    d = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    r = diagnostics.trust_ratio(d, params, trust_coefficient=0.5, eps=1e-3)
    assert r["w"] == pytest.approx(0.5 * np.linalg.norm(params["w"]) / (np.linalg.norm(d["w"]) + 1e-3))
    assert r["b"] == 1.0  # zero parameter norm
    scaled, _ = optim.scale_by_trust_ratio(0.5, 1e-3).update(d, optim.EmptyState(), params)
    for k in params:
        np.testing.assert_allclose(scaled[k], r[k] * d[k], rtol=1e-14)
    with pytest.raises(ValueError, match="direction is missing key 'b'"):
        diagnostics.trust_ratio({"w": d["w"]}, params)


def test_second_moment_summary_counts_coordinates_below_eps():
    v = np.array([0.0, 1e-20, 1e-16, 1e-14, 4.0])  # sqrt: 0, 1e-10, 1e-8, 1e-7, 2
    s = diagnostics.second_moment_summary(v, eps=1e-8)
    assert s.min == 0.0 and s.max == pytest.approx(2.0) and s.median == pytest.approx(1e-8)
    assert s.eps_fraction == pytest.approx(2 / 5)  # 1e-8 is not below eps
    with pytest.raises(ValueError, match="v_hat must be >= 0"):
        diagnostics.second_moment_summary(np.array([-1.0]))


def test_find_adam_state_in_a_chain():
    params = {"w": np.ones(3)}
    opt = optim.adamw(lr=0.1, weight_decay=0.1)
    state = opt.init(params)
    _, state = opt.update({"w": np.array([1.0, 2.0, 3.0])}, state, params)
    found = diagnostics.find_adam_state(state)
    assert found.count == 1
    np.testing.assert_allclose(found.v["w"], 0.001 * np.array([1.0, 4.0, 9.0]))
    assert diagnostics.find_adam_state(optim.sgd(0.1).init(params)) is None


def test_spike_alarm_flags_adam_after_a_quiet_stretch():
    lr, beta1, beta2, quiet = 1e-3, 0.9, 0.999, 2000
    opt = optim.adam(lr, beta1=beta1, beta2=beta2, eps=1e-12)
    theta = np.zeros(50)
    state = opt.init(theta)
    rng = np.random.default_rng(0)
    rms = []
    for t in range(quiet + 50):
        g = (1e-4 if t < quiet else 1.0) * rng.standard_normal(50)  # a quiet stretch, then loud
        u, state = opt.update(g, state, theta)
        rms.append(diagnostics.update_rms(u))
    alarm = diagnostics.spike_alarm(np.array(rms), lr)
    assert alarm.first == quiet
    assert np.all(alarm.steps >= quiet)
    # first loud step: m_hat / sqrt(v_hat) = (1 - beta1) / sqrt((1 - beta2) / (1 - beta2^t)) per coordinate
    t = quiet + 1
    assert alarm.ratio[quiet] == pytest.approx((1 - beta1) / np.sqrt((1 - beta2) / (1 - beta2**t)), rel=0.02)
    assert np.all(alarm.ratio[quiet:quiet + 10] > 1)  # v needs many steps to catch up


def test_spike_alarm_flags_nan_and_validates():
    alarm = diagnostics.spike_alarm(np.array([0.1, np.nan, 0.2]), 1.0)
    assert list(alarm.steps) == [1]
    with pytest.raises(ValueError, match="lr must be > 0"):
        diagnostics.spike_alarm(np.ones(3), 0.0)
    with pytest.raises(ValueError, match="threshold"):
        diagnostics.spike_alarm(np.ones(3), 1.0, threshold=-1.0)


@pytest.mark.parametrize("name,make", [
    ("sgd", lambda: optim.sgd(0.1)),
    ("sgd_momentum", lambda: optim.sgd(0.1, momentum=0.9)),
    ("adagrad", lambda: optim.adagrad(0.1)),
    ("rmsprop", lambda: optim.rmsprop(0.1)),
    ("adam", lambda: optim.adam(0.1)),
    ("adamw", lambda: optim.adamw(0.1)),
    ("lamb", lambda: optim.lamb(0.1)),
    ("lars", lambda: optim.lars(0.1)),
    ("adafactor", lambda: optim.adafactor(0.1, min_dim_size_to_factor=16)),
    ("adafactor_momentum", lambda: optim.adafactor(0.1, min_dim_size_to_factor=16, momentum=0.9)),
])
def test_counted_state_agrees_with_the_formula_on_the_tiny_transformer(name, make):
    model = tiny()
    params = model.init_params()
    counted = diagnostics.optimizer_state_bytes(make(), params)
    formula = diagnostics.optimizer_state_formula(name, model.shapes, bytes_per_number=8, min_dim_size_to_factor=16)
    assert counted == formula
    f32 = {k: v.astype(np.float32) for k, v in params.items()}
    assert diagnostics.optimizer_state_bytes(make(), f32) == counted // 2


def test_adafactor_formula_counts_rows_plus_columns():
    shapes = {"w": (300, 200), "b": (200,), "small": (100, 200)}
    numbers = diagnostics.optimizer_state_formula("adafactor", shapes, bytes_per_number=1)
    assert numbers == (300 + 200) + 200 + 100 * 200


def test_seven_billion_parameters_in_gigabytes():
    P = 7e9
    shapes = [(int(P),)]
    assert diagnostics.optimizer_state_formula("adam", shapes) == 2 * 4 * P
    assert diagnostics.optimizer_state_formula("sgd_momentum", shapes) == 4 * P
    assert diagnostics.optimizer_state_formula("adam_8bit", shapes) == pytest.approx(2 * P * (1 + 4 / 2048))
    with pytest.raises(ValueError, match="optimizer must be one of"):
        diagnostics.optimizer_state_formula("adamax", shapes)
