"""steplab.explore: the pure functions against the theory, the widgets driven through their sliders."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from steplab import explore  # noqa: E402
from steplab.explore import adam, batch_size, momentum, schedule, step_size  # noqa: E402
from steplab.problems import ReddiCounterexample  # noqa: E402

# ----------------------------------------------------------------- step size


@pytest.mark.parametrize("eta", [0.5, 1.0, 1.9, 2.2])
def test_step_size_rate_matches_max_abs_one_minus_eta_lambda(eta):
    r = explore.step_size_run(eta=eta, kappa=10.0)
    # Spectrum {1/10, 1}: rho = max(|1 - eta/10|, |1 - eta|), written out by hand.
    expected = max(abs(1 - eta / 10), abs(1 - eta))
    assert r["rate_theory"] == pytest.approx(expected, rel=1e-12)
    assert r["rate_measured"] == pytest.approx(expected, rel=1e-3)


def test_step_size_regimes_at_and_around_two_over_L():
    below, at, above = (explore.step_size_run(eta=e, kappa=10.0) for e in (1.9, 2.0, 2.1))
    assert below["regime"] == "converges" and below.diverged_at is None
    assert below["loss"][-1] < 1e-8 * below["loss"][0]
    assert at["regime"] == "oscillates" and at.diverged_at is None
    # At 2/L the steep component flips sign forever: its share of the loss never decays.
    steep0 = 0.5 * at["trajectory"][0, 1] ** 2
    assert at["loss"][-1] == pytest.approx(steep0, rel=1e-6)
    assert above["regime"] == "diverges"
    # |1 - 2.1| = 1.1 per step on the distance, 1.21 on the loss: the divergence limit
    # DIVERGE_FACTOR * max(f0, 1) with f0 = 0.7 is crossed after log(1e6 / 0.7) / log(1.21) = 74.4
    # steps of the steep component alone, a few more since it starts with part of the loss.
    assert above.diverged_at is not None and 74 <= above.diverged_at <= 82
    assert len(above["loss"]) == above.diverged_at + 1


def test_step_size_loss_obeys_rho_2t_bound():
    r = explore.step_size_run(eta=1.5, kappa=30.0)
    t = np.arange(r["loss"].size)
    assert np.all(r["loss"] <= r["loss"][0] * r["rate_theory"] ** (2 * t) * (1 + 1e-12) + 1e-300)


def test_step_size_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="eta"):
        explore.step_size_run(eta=-0.1)
    with pytest.raises(ValueError, match="kappa"):
        explore.step_size_run(kappa=0.5)
    with pytest.raises(ValueError, match="theta0"):
        explore.step_size_run(theta0=(1.0, np.nan))


def test_step_size_widget_redraws_and_shows_the_pure_numbers():
    w = explore.step_size_explorer()
    assert w.draw_count == 1
    png0, count0 = w.image.value, w.draw_count
    w.sliders["eta"].value = 1.0
    assert w.draw_count == count0 + 1
    assert w.image.value != png0
    expected = explore.step_size_run(eta=1.0, kappa=10.0)
    for name, value in step_size.step_size_metrics(expected):
        assert value in w.metrics.value, name
    assert w.result["rate_measured"] == expected["rate_measured"]


def test_step_size_widget_reaches_exactly_two_over_L_and_reports_divergence():
    w = explore.step_size_explorer()
    w.sliders["eta"].value = 2.0
    assert w.result["regime"] == "oscillates"
    w.sliders["eta"].value = 2.2
    assert w.result.diverged_at is not None
    assert f"diverged at step {w.result.diverged_at}" in w.metrics.value


def test_widgets_do_not_leak_figures_over_50_moves():
    before = len(plt.get_fignums())
    w = explore.step_size_explorer()
    for i in range(50):
        w.sliders["eta"].value = [0.5, 1.9, 2.0, 2.2, 1.1][i % 5]
    assert w.draw_count == 51
    assert len(plt.get_fignums()) == before
    # Artists are updated, not added: the axes hold the same number of children.
    children = [len(ax.get_children()) for ax in w.figure.axes]
    for i in range(10):
        w.sliders["kappa"].value = [3.0, 10.0][i % 2]
    assert [len(ax.get_children()) for ax in w.figure.axes] == children


# ----------------------------------------------------------------- momentum


@pytest.mark.parametrize("kappa", [10.0, 25.0, 100.0])
def test_rate_map_at_polyak_tuning_is_sqrt_kappa_formula(kappa):
    opt = explore.heavy_ball_optimal(1.0, 1.0 / kappa)
    rate = explore.heavy_ball_rate(opt["eta"], opt["beta"], [1.0 / kappa, 1.0])
    sk = np.sqrt(kappa)
    assert rate == pytest.approx((sk - 1) / (sk + 1), rel=1e-7)


def test_rate_map_equals_eigenvalues_of_the_2x2_iteration_matrix():
    rng = np.random.default_rng(0)
    lams = np.array([0.04, 1.0])
    for eta, beta in zip(rng.uniform(0.05, 4.0, 20), rng.uniform(0.0, 0.99, 20)):
        radius = max(
            np.max(np.abs(np.linalg.eigvals(np.array([[1 + beta - eta * lam, -beta], [1.0, 0.0]])))) for lam in lams
        )
        assert explore.heavy_ball_rate(eta, beta, lams) == pytest.approx(radius, rel=1e-6)


def test_rate_map_stable_region_is_eta_lambda_below_two_plus_two_beta():
    beta = 0.5
    lams = [0.1, 1.0]
    assert explore.heavy_ball_rate(2.9, beta, lams) < 1.0
    assert explore.heavy_ball_rate(3.1, beta, lams) > 1.0
    assert explore.heavy_ball_rate(3.0, beta, lams) == pytest.approx(1.0, abs=1e-12)


def test_momentum_run_converges_at_the_map_rate_and_diverges_outside():
    opt = explore.heavy_ball_optimal(1.0, 1.0 / 25.0)
    r = explore.momentum_run(eta=2.0, beta=0.5, kappa=25.0)
    assert r["rate_measured"] == pytest.approx(r["rate_theory"], rel=1e-3)
    assert r["optimal"]["rate"] == pytest.approx(opt["rate"])
    bad = explore.momentum_run(eta=3.5, beta=0.5, kappa=25.0)
    assert not bad["stable"] and bad.diverged_at is not None


def test_momentum_widget_moves_the_marker_and_matches_the_pure_function():
    w = explore.momentum_explorer()
    w.sliders["beta"].value = 0.5
    w.sliders["eta"].value = 2.0
    assert tuple(w.view.point.get_data()[0]) == (2.0,)
    expected = explore.momentum_run(eta=2.0, beta=0.5)
    for name, value in momentum.momentum_metrics(expected):
        assert value in w.metrics.value, name


# ----------------------------------------------------------------- batch size


def test_minibatch_variance_scales_as_one_over_B():
    ratios = {B: explore.batch_size_run(eta=0.1, batch_size=B, seeds=1000, steps=100)["variance_ratio"] for B in (1, 4, 16)}
    for B, ratio in ratios.items():
        assert ratio * B == pytest.approx(1.0, rel=0.05), (B, ratio)


@pytest.mark.parametrize("eta,B", [(0.3, 1), (0.2, 8)])
def test_noise_ball_matches_the_stationary_second_moment(eta, B):
    r = explore.batch_size_run(eta=eta, batch_size=B, seeds=300, steps=200)
    assert r.diverged_at is None
    assert r["ball_measured"] == pytest.approx(r["ball_predicted"], rel=0.1)


def test_noise_ball_small_step_limit():
    # For small eta, C ~ (eta / 2B) Sigma* H^{-1} symmetrized: solves H C + C H = (eta/B) Sigma*.
    p = explore.batch_size_problem()
    eta, B = 1e-3, 4
    C, radius = explore.noise_ball(p, eta, B)
    eps = p.b - p.A @ p.minimizer
    sigma = (p.A * (eps**2)[:, None]).T @ p.A / p.n
    H = p.A.T @ p.A / p.n
    lhs = H @ C + C @ H
    assert np.allclose(lhs, eta / B * sigma, rtol=5e-3, atol=0)
    assert radius < 1


def test_batch_size_mean_square_instability_is_reported():
    r = explore.batch_size_run(eta=1.2, batch_size=1)
    assert r["ms_radius"] > 1 and r["ball"] is None
    assert r.diverged_at is not None
    assert np.isnan(r["ball_measured"])
    stable = explore.batch_size_run(eta=1.2, batch_size=16)
    assert stable["ms_radius"] < 1 and stable.diverged_at is None


def test_batch_size_widget_matches_pure_function():
    w = explore.batch_size_explorer()
    png = w.image.value
    w.sliders["batch_size"].value = 16
    assert w.image.value != png
    expected = explore.batch_size_run(eta=0.3, batch_size=16)
    for name, value in batch_size.batch_size_metrics(expected):
        assert value in w.metrics.value, name
    with pytest.raises(ValueError, match="batch_size"):
        explore.batch_size_run(batch_size=0)


# ----------------------------------------------------------------- Adam


def test_adam_reddi_drifts_to_plus_one_and_amsgrad_to_minus_one():
    kw = dict(explore.ADAM_DEFAULTS["reddi"])
    assert kw["beta1"] == 0.0 and kw["beta2"] == pytest.approx(1 / (1 + 3.0**2))
    a = explore.adam_run(problem="reddi", **kw)
    kw["amsgrad"] = True
    b = explore.adam_run(problem="reddi", **kw)
    assert a["final_x"] > 0.95
    assert b["final_x"] < -0.95
    # Adam's average regret stays positive; AMSGrad's shrinks.
    assert a["average_regret"][-1] > 0.3
    assert b["average_regret"][-1] < 0.1
    # The Reddi gradients used are the problem's own.
    p = ReddiCounterexample(C=3.0)
    assert a["loss"][0] == p.value_at(np.array([0.0]), 1)


def test_adam_effective_step_definition_and_eps_limit():
    r = explore.adam_run(problem="badly_scaled", steps=5)
    # Step 1 with bias correction: v_hat = g^2, so the effective step is eta / (|g| + eps).
    g = np.array([0.01 * -2.0, 1.0 * 1.5])
    assert np.allclose(r["effective_step"][0], 0.1 / (np.abs(g) + 1e-8))
    # eps dominating sqrt(v_hat): the effective step is eta / eps on every coordinate (SGD).
    big = explore.adam_run(problem="badly_scaled", eps=1e3, eta=0.5, steps=20)
    assert np.allclose(big["effective_step"], 0.5 / 1e3, rtol=2e-3)


def test_adam_without_bias_correction_first_steps_differ_by_one_minus_beta1():
    on = explore.adam_run(problem="badly_scaled", steps=1, eps=0.0)
    off = explore.adam_run(problem="badly_scaled", steps=1, eps=0.0, bias_correction=False)
    step_on = on["trajectory"][1] - on["trajectory"][0]
    step_off = off["trajectory"][1] - off["trajectory"][0]
    # First step: m_hat/sqrt(v_hat) = sign(g); without correction (1-b1) g / sqrt((1-b2) g^2).
    assert np.allclose(step_off / step_on, (1 - 0.9) / np.sqrt(1 - 0.999))


def test_adam_widget_problem_switch_loads_defaults_and_amsgrad_toggle():
    w = explore.adam_explorer()
    w.sliders["problem"].value = "reddi"
    assert w.sliders["beta2"].value == pytest.approx(0.1)
    assert w.result["problem"] == "reddi" and w.result["final_x"] > 0.95
    count = w.draw_count
    w.sliders["amsgrad"].value = True
    assert w.draw_count == count + 1
    assert w.result["final_x"] < -0.95
    expected = explore.adam_run(**dict(explore.ADAM_DEFAULTS["reddi"], amsgrad=True), problem="reddi")
    for name, value in adam.adam_metrics(expected):
        assert value in w.metrics.value, name


# ----------------------------------------------------------------- schedules


def test_schedules_match_steplab_schedules_and_decay_beats_constant():
    r = explore.schedule_run(kind="warmup_cosine", peak_lr=0.3, warmup_steps=30)
    assert r["lr"][0] == 0.0 and r["lr"][30] == pytest.approx(0.3)
    assert r["lr"][-1] < 1e-4
    assert r["final"] < 0.2 * r["constant_final"]
    const = explore.schedule_run(kind="constant", peak_lr=0.3)
    assert const["final"] == pytest.approx(const["constant_final"])
    # Halving a constant rate roughly halves the noise floor.
    half = explore.schedule_run(kind="constant", peak_lr=0.15)
    assert 0.35 < half["final"] / const["final"] < 0.7


def test_schedule_divergence_and_bad_kind():
    r = explore.schedule_run(kind="constant", peak_lr=1.5)
    assert r.diverged_at is not None and np.isnan(r["final"])
    # the banner names both runs: the schedule's and the constant-lr baseline at the same peak
    w = explore.schedule_explorer(kind="constant", peak_lr=1.5)
    assert w.view.banner.get_text() == (f"diverged at step {w.result.diverged_at}; "
                                        f"constant lr diverged at step {w.result['constant_diverged_at']}")
    with pytest.raises(ValueError, match="kind"):
        explore.schedule_run(kind="linear")
    with pytest.raises(ValueError, match="warmup_steps"):
        explore.schedule_run(kind="wsd", warmup_steps=290)


def test_schedule_widget_disables_warmup_for_kinds_without_it():
    w = explore.schedule_explorer()
    w.sliders["kind"].value = "cosine"
    assert w.sliders["warmup_steps"].disabled
    w.sliders["kind"].value = "wsd"
    assert not w.sliders["warmup_steps"].disabled
    expected = explore.schedule_run(kind="wsd", peak_lr=0.3, warmup_steps=30)
    for name, value in schedule.schedule_metrics(expected):
        assert value in w.metrics.value, name


# ----------------------------------------------------------------- shared


def test_overflow_is_caught_and_reported_not_warned(recwarn):
    r = explore.step_size_run(eta=1e200, kappa=10.0, steps=5)
    assert r.diverged_at == 1
    r = explore.batch_size_run(eta=1e154, batch_size=1, steps=5)
    assert "overflow" in r.fp_warnings or "invalid value" in r.fp_warnings
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize(
    "fn", [explore.step_size_static, explore.momentum_static, explore.batch_size_static, explore.adam_static, explore.schedule_static]
)
def test_static_views_are_plain_figures(fn):
    before = len(plt.get_fignums())
    fig = fn()
    assert isinstance(fig, Figure)
    assert len(fig.axes) >= 2
    assert len(plt.get_fignums()) == before
    assert any(line.get_xydata().size for ax in fig.axes for line in ax.get_lines())


def test_warmup_linear_and_wsd_decay_fraction_shapes():
    # Warmup 20 to the peak 0.3, then a straight line to 0 at T = 100.
    lin = [explore.make_schedule("warmup_linear", 0.3, 20, 100)(t) for t in range(101)]
    assert lin[10] == pytest.approx(0.15) and lin[20] == pytest.approx(0.3)
    assert lin[60] == pytest.approx(0.15) and lin[100] == pytest.approx(0.0, abs=1e-15)
    # WSD with decay_fraction 0.5: flat at the peak until T/2, then linear to 0.
    wsd = explore.make_schedule("wsd", 0.3, 10, 100, decay_fraction=0.5)
    assert wsd(49) == pytest.approx(0.3) and wsd(75) == pytest.approx(0.15) and wsd(100) == pytest.approx(0.0)
    assert explore.make_schedule("wsd", 0.3, 10, 100)(79) == pytest.approx(0.3)  # default: the last fifth
    with pytest.raises(ValueError, match="decay_fraction"):
        explore.make_schedule("wsd", 0.3, 10, 100, decay_fraction=0.0)
    with pytest.raises(ValueError, match="warmup_steps must be <= 49"):
        explore.make_schedule("wsd", 0.3, 60, 100, decay_fraction=0.5)


def test_schedule_explorer_horizon_and_decay_sliders():
    w = explore.schedule_explorer(kind="wsd")
    assert not w.sliders["decay_fraction"].disabled
    w.sliders["steps"].value = 500
    assert w.result.settings["steps"] == 500 and w.result["lr"].size == 500
    w.sliders["decay_fraction"].value = 0.5
    assert w.result["decay_fraction"] == 0.5
    assert w.result["lr"][249] == pytest.approx(w.result["peak_lr"]) and w.result["lr"][375] < w.result["peak_lr"]
    w.sliders["kind"].value = "cosine"
    assert w.sliders["decay_fraction"].disabled and w.sliders["warmup_steps"].disabled
    # The keyword arguments of before still work.
    assert explore.schedule_explorer("constant", 0.1, 0).result["kind"] == "constant"
