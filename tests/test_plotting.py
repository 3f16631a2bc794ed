"""steplab.plotting draws what it is given (data of the returned artists) without error."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from steplab import optim, plotting  # noqa: E402
from steplab.problems import Quadratic, Rosenbrock, Wavy  # noqa: E402
from steplab.run import minimize  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_set_style_uses_colorblind_palette():
    import seaborn as sns

    plotting.set_style()
    from matplotlib.colors import to_hex

    cycle = [to_hex(c) for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]]
    assert cycle[:6] == sns.color_palette("colorblind").as_hex()[:6]


def test_contour_levels_are_log_spaced_above_f_star():
    q = Quadratic.with_condition(10.0, seed=0)
    cs = plotting.contour(q, xlim=(-3, 3), ylim=(-2, 2), levels=12)
    gaps = np.asarray(cs.levels) - q.f_star
    assert gaps.size == 12 and np.all(gaps > 0)
    np.testing.assert_allclose(np.diff(np.log(gaps)), np.log(gaps[1] / gaps[0]), rtol=1e-9)
    assert cs.axes.get_xlim() == (-3, 3)
    # the largest level is the largest value on the grid: a corner of the box
    corners = np.array([[-3, -2], [-3, 2], [3, -2], [3, 2]], dtype=float)
    assert gaps[-1] == pytest.approx(max(q.value(c) for c in corners), rel=1e-9)


def test_contour_non_batched_problem_and_explicit_levels():
    class Bowl:  # a 2-D problem whose value takes one point at a time
        dim = 2

        def value(self, theta):
            assert np.shape(theta) == (2,)
            return float(theta @ theta)

    cs = plotting.contour(Bowl(), levels=[0.5, 1.0, 2.0], resolution=30)
    np.testing.assert_allclose(cs.levels, [0.5, 1.0, 2.0])
    cs = plotting.contour(Rosenbrock(), xlim=(-2, 2), ylim=(-1, 3), filled=True, resolution=50)
    assert len(cs.levels) == 20
    with pytest.raises(ValueError, match="contour needs a 2-D problem, got dim = 1"):
        plotting.contour(Wavy())
    with pytest.raises(ValueError, match="xlim must be"):
        plotting.contour(Rosenbrock(), xlim=(1, -1))


def test_trajectory_draws_the_iterates():
    q = Quadratic.with_condition(10.0, seed=0)
    h = minimize(q, optim.sgd(0.5), 15, keep_trajectory=True)
    cs = plotting.contour(q)
    line = plotting.trajectory(cs.axes, h.trajectory, label="GD")
    np.testing.assert_array_equal(np.column_stack(line.get_data()), h.trajectory)
    assert cs.axes.get_legend() is not None
    with pytest.raises(ValueError, match=r"thetas must have shape \(T, 2\)"):
        plotting.trajectory(None, np.zeros((4, 3)))


def test_loss_curves_suboptimality_on_log_axis():
    q = Quadratic([1.0, 0.1], rotate=False)
    x0 = np.ones(2)
    runs = {"eta=1": minimize(q, optim.sgd(1.0), 30, theta0=x0), "eta=2.5": minimize(q, optim.sgd(2.5), 60, theta0=x0)}
    assert runs["eta=2.5"].diverged
    lines = plotting.loss_curves(runs, f_star=0.0)
    assert len(lines) == 2
    ax = lines[0].axes
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(lines[0].get_ydata(), runs["eta=1"].loss)
    assert len(lines[1].get_ydata()) == runs["eta=2.5"].loss.size
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["eta=1", "eta=2.5"]
    # other series and list input
    lines = plotting.loss_curves([runs["eta=1"]], key="grad_norm", log=False)
    np.testing.assert_allclose(lines[0].get_ydata(), runs["eta=1"].grad_norm)
    assert lines[0].axes.get_yscale() == "linear"


def test_history_plot():
    q = Quadratic([1.0, 0.1], rotate=False)
    h = minimize(q, optim.sgd(0.5), 20)
    ax = h.plot(key="update_norm")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), h.update_norm)


def test_loss_curves_use_the_steps_the_loss_was_evaluated_at():
    quad = Quadratic([1.0, 0.1])
    hist = minimize(quad, optim.sgd(lr=0.5), steps=20, eval_every=5)
    (line,) = plotting.loss_curves([hist])
    assert list(line.get_xdata()) == [0, 5, 10, 15, 20]
    np.testing.assert_allclose(line.get_ydata(), hist.loss)


def test_every_record_plots_against_what_it_counts():
    from steplab import distributed, finite_sum
    from steplab.problems import LeastSquares, make_least_squares

    A, b = make_least_squares(40, 3, noise=0.1, seed=0)
    p = LeastSquares(A, b, l2=0.1)
    # EvalHistory: suboptimality against gradient evaluations / n
    h = finite_sum.svrg(p, lr=0.05, budget=400, seed=0, log_every=20)
    ax = h.plot(marker="o")
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_xdata(), h.grad_evals / p.n)
    gap = h.loss - p.f_star
    np.testing.assert_allclose(line.get_ydata(), np.where(gap > 0, gap, np.nan))
    assert line.get_marker() == "o" and ax.get_xlabel() == "gradient evaluations / n"
    # SimulationHistory: against the step (round)
    s = distributed.simulate_local_sgd(p, 5, n_workers=2, local_steps=3, batch_size=4, lr=0.05)
    ax = s.plot(key="loss", log=False)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), s.steps)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), s.loss)
    # History with a sparse loss: at the evaluated steps
    hist = minimize(p, optim.sgd(lr=0.05), steps=20, eval_every=5)
    (line,) = hist.plot(f_star=p.f_star).lines
    assert list(line.get_xdata()) == [0, 5, 10, 15, 20]


def test_suboptimality_needs_an_f_star():
    q = Quadratic([1.0, 0.1], rotate=False)
    h = minimize(q, optim.sgd(0.5), 5)
    with pytest.raises(ValueError, match="f_star is unknown"):
        h.suboptimality()
    np.testing.assert_array_equal(h.suboptimality(q.f_star), h.loss - q.f_star)


def test_sci_writes_powers_of_ten_in_plain_text():
    assert plotting.sci(1.3e6) == "1.3 × 10⁶"
    assert plotting.sci(2.2e-17, digits=2) == "2.20 × 10⁻¹⁷"
    assert plotting.sci(-4.56e12, digits=0) == "-5 × 10¹²"
    assert plotting.superscript(-10) == "⁻¹⁰"
    with pytest.raises(ValueError, match="finite"):
        plotting.sci(float("nan"))
