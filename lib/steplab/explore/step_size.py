r"""Step size against curvature: gradient descent on a 2-D quadratic."""

from __future__ import annotations

import numpy as np

from ..problems import Quadratic
from ..records import ExplorerRun
from ._widget import (
    DIVERGE_FACTOR,
    check_float,
    check_int,
    decade_limits,
    diverged_note,
    first_divergence,
    floating_point_log,
    fmt,
    log_axis,
    make_explorer,
    metrics_table,
    new_figure,
    set_limits,
    status_note,
    tail_rate,
)

__all__ = ["step_size_run", "step_size_explorer", "step_size_static", "step_size_web"]

_THETA0 = (-2.0, 1.0)
_BOX = (-2.5, 2.5)


def _problem(kappa: float) -> Quadratic:
    # Axis-aligned, L = 1: the flat direction is theta_1 (curvature 1/kappa), the steep one theta_2.
    return Quadratic.with_condition(kappa, dim=2, L=1.0, rotate=False)


def step_size_run(eta: float = 1.9, kappa: float = 10.0, steps: int = 100, theta0=_THETA0) -> ExplorerRun:
    r"""Gradient descent $\theta_{t+1} = \theta_t - \eta \nabla f(\theta_t)$ on
    $f(\theta) = \tfrac12 \theta^\top H \theta$, $H = \mathrm{diag}(1/\kappa, 1)$ (so $L = 1$ and
    $\eta$ is in units of $1/L$).

    The error along eigenvector $i$ is multiplied by $1 - \eta\lambda_i$ at every step, so
    the distance to the minimizer contracts at the rate
    $\rho(\eta) = \max_i |1 - \eta\lambda_i|$ and $f(\theta_t) \le \rho^{2t} f(\theta_0)$:
    GD converges for $\eta < 2/L$, oscillates without converging at $\eta = 2/L$, diverges
    beyond.

    Args:
        eta: step size in units of $1/L$, > 0 (2.0 is exactly $2/L$).
        kappa: condition number $L/\mu \ge 1$.
        steps: number of GD steps $T \ge 1$.
        theta0: starting point, two finite numbers.

    Returns:
        an :class:`~steplab.records.ExplorerRun` with ``loss`` at the steps ``0, ..., T'``
        (``T' = T`` unless the run diverged) and the values ``trajectory`` ``(T'+1, 2)``, ``distance`` $\|\theta_t - \theta^\star\|$, ``eigenvalues``, ``L``,
        ``rate_theory`` $\rho$, ``rate_measured`` (the contraction of the distance over the
        second half of the run), ``regime`` (``"converges"``, ``"oscillates"``, ``"diverges"``),
        ``minimizer``; ``diverged_at`` (the first step whose loss diverged by the library's rule,
        where the run stops, or None) and ``fp_warnings`` (numpy floating-point errors met).

    Reference: Nesterov, *Lectures on Convex Optimization*, 2nd ed., 2018, Section 1.2.3.
    """
    eta = check_float("eta", eta, low=0.0, low_open=True)
    kappa = check_float("kappa", kappa, low=1.0)
    steps = check_int("steps", steps, low=1)
    start = np.asarray(theta0, dtype=np.float64)
    if start.shape != (2,) or not np.all(np.isfinite(start)):
        raise ValueError(f"theta0 must be two finite numbers, got {theta0!r}")
    problem = _problem(kappa)
    lam = problem.eigenvalues
    thetas = np.empty((steps + 1, 2))
    loss = np.empty(steps + 1)
    thetas[0], loss[0] = start, problem.value(start)
    diverged_at = None
    with floating_point_log() as fp:
        theta = start
        for t in range(1, steps + 1):
            theta = theta - eta * problem.grad(theta)
            thetas[t], loss[t] = theta, problem.value(theta)
            if first_divergence(loss[t : t + 1], loss[0]) is not None:
                diverged_at = t
                break
        end = steps if diverged_at is None else diverged_at
        thetas, loss = thetas[: end + 1], loss[: end + 1]
        distance = np.linalg.norm(thetas - problem.minimizer, axis=1)
        rate_measured = tail_rate(distance)
    factors = np.abs(1.0 - eta * lam)
    rate_theory = float(factors.max())
    if np.isclose(rate_theory, 1.0, rtol=0.0, atol=1e-12):
        regime = "oscillates"
    else:
        regime = "converges" if rate_theory < 1.0 else "diverges"
    values = {
        "L": problem.L,
        "eigenvalues": lam.copy(),
        "minimizer": problem.minimizer.copy(),
        "trajectory": thetas,
        "distance": distance,
        "rate_theory": rate_theory,
        "rate_measured": rate_measured,
        "regime": regime,
    }
    settings = {"eta": eta, "kappa": kappa, "steps": steps, "theta0": start}
    return ExplorerRun("step_size", settings, loss, values, diverged_at=diverged_at, fp_warnings=fp)


def step_size_metrics(result: dict) -> list[tuple[str, str]]:
    """The rows of the metrics table, formatted from a :func:`step_size_run` result."""
    return [
        ("eta * L", fmt(result["eta"] * result["L"])),
        ("kappa", fmt(result["kappa"])),
        ("regime", result["regime"]),
        ("rate, theory  max|1 - eta lambda_i|", fmt(result["rate_theory"])),
        ("rate, measured  (d_T / d_{T/2})^(2/T)", fmt(result["rate_measured"])),
        ("final loss", fmt(result["loss"][-1])),
    ]


class _StepSizeView:
    """Contours with the path; the loss on a log axis with the bound rho^(2t) f(theta_0)."""

    def __init__(self, ax_path, ax_loss, show_legend=True, live=False):
        self.ax_path, self.ax_loss = ax_path, ax_loss
        self.live = live
        self.figure = ax_path.figure
        self._kappa = None
        self._contours = None
        ax_path.plot(0.0, 0.0, marker="*", markersize=12, color="black", linestyle="none", zorder=5)
        (self.path,) = ax_path.plot([], [], marker="o", markersize=3, color="C1", lw=1.2, zorder=4)
        (self.start,) = ax_path.plot([], [], marker="o", markersize=7, markerfacecolor="white", color="C1", linestyle="none", zorder=6)
        ax_path.set_xlim(_BOX)
        ax_path.set_ylim(_BOX)
        ax_path.set_aspect("equal")
        ax_path.set_xlabel(r"$\theta_1$ (curvature $\mu$)")
        ax_path.set_ylabel(r"$\theta_2$ (curvature $L$)")
        (self.loss,) = ax_loss.plot([], [], color="C1", label=r"$f(\theta_t)$")
        (self.bound,) = ax_loss.plot([], [], color="gray", ls="--", lw=1.2, label=r"$\rho^{2t} f(\theta_0)$")
        log_axis(ax_loss)
        ax_loss.set_xlabel("step $t$")
        ax_loss.set_ylabel("loss")
        if show_legend:
            ax_loss.legend(loc="lower left", fontsize="small")
        self.banner_path = ax_path.text(0.5, 0.04, "", transform=ax_path.transAxes, ha="center", color="#b00", fontsize="small", zorder=7)
        self.banner_loss = ax_loss.text(0.5, 0.92, "", transform=ax_loss.transAxes, ha="center", color="#b00", fontsize="small")
        if live:
            # The numbers live in the metrics table below the image; fixed titles keep redraws cheap.
            ax_path.set_title("trajectory", fontsize="medium")
            ax_loss.set_title("loss", fontsize="medium")
        self.dynamic = [self.path, self.start, self.loss, self.bound, self.banner_path, self.banner_loss]

    def _draw_contours(self, kappa):
        if self._contours is not None:
            self._contours.remove()
        xs = np.linspace(*_BOX, 120)
        xx, yy = np.meshgrid(xs, xs)
        zz = 0.5 * (xx**2 / kappa + yy**2)
        levels = np.geomspace(zz[zz > 0].min() * 4, zz.max(), 14)
        self._contours = self.ax_path.contour(xx, yy, zz, levels=levels, cmap="viridis", linewidths=0.8)
        self._kappa = kappa

    def update(self, r) -> bool:
        """Show a :func:`step_size_run` result; True when more than the moving artists changed."""
        changed = r["kappa"] != self._kappa
        if changed:
            self._draw_contours(r["kappa"])
        path = r["trajectory"]
        self.path.set_data(path[:, 0], path[:, 1])
        self.start.set_data(path[:1, 0], path[:1, 1])
        t = np.arange(r["loss"].size)
        self.loss.set_data(t, r["loss"])
        bound = r["loss"][0] * r["rate_theory"] ** (2.0 * t)
        self.bound.set_data(t, bound)
        # Fixed axes for a given kappa: moves compare at a glance, and only the curves redraw.
        changed |= set_limits(self.ax_loss, "x", (0, r.settings["steps"]))
        f0 = r["loss"][0]
        changed |= set_limits(self.ax_loss, "y", decade_limits([f0 * 1e-14, f0 * DIVERGE_FACTOR * 10]))
        note = diverged_note(r.diverged_at)
        self.banner_path.set_text(note)
        self.banner_loss.set_text(note)
        if self.live:
            return changed
        self.ax_path.set_title(
            f"η = {r['eta'] * r['L']:.2f}/L, κ = {r['kappa']:.3g}: {r['regime']}", fontsize="medium"
        )
        self.ax_loss.set_title(
            f"rate ρ: theory {fmt(r['rate_theory'])}, measured {fmt(r['rate_measured'])}", fontsize="medium"
        )
        return changed

    def metrics_html(self, r):
        return metrics_table(step_size_metrics(r), status_note(r))


def step_size_explorer(eta: float = 1.9, kappa: float = 10.0):
    """Sliders for the step size (in units of 1/L) and the condition number; see :func:`step_size_run`.

    Defaults: just below $2/L$ on a $\\kappa = 10$ valley, the zig-zag across the steep
    direction while the flat one crawls. Slide to exactly 2.0 (oscillation) and beyond
    (divergence).
    """
    import ipywidgets as widgets

    check_float("eta", eta, low=0.0, low_open=True)
    check_float("kappa", kappa, low=1.0)
    style = {"description_width": "initial"}
    controls = {
        "eta": widgets.FloatSlider(value=eta, min=0.05, max=2.5, step=0.05, description="η · L", style=style, readout_format=".2f"),
        "kappa": widgets.FloatLogSlider(value=kappa, base=10, min=0, max=2, step=0.05, description="κ", style=style),
    }
    fig, axes = new_figure((9.0, 3.6), 1, 2)
    view = _StepSizeView(*axes[0], live=True)

    def compute(eta, kappa):
        # Slider arithmetic leaves 2.0000000000000004; the regime at exactly 2/L must be reachable.
        return step_size_run(eta=round(eta, 9), kappa=round(kappa, 9))

    return make_explorer(controls, compute, view)


def step_size_static(etas=(0.5, 1.9, 2.0, 2.1), kappa: float = 10.0):
    """The website's view: one column per step size (in units of 1/L), contours over loss."""
    etas = [check_float("etas", e, low=0.0, low_open=True) for e in etas]
    if not etas:
        raise ValueError("etas must hold at least one step size, got ()")
    fig, axes = new_figure((3.2 * len(etas), 6.4), 2, len(etas))
    for j, eta in enumerate(etas):
        view = _StepSizeView(axes[0, j], axes[1, j], show_legend=(j == 0))
        view.update(step_size_run(eta=eta, kappa=kappa))
    return fig


STEP_SIZE_WEB_GRID = {"eta": tuple(np.round(np.arange(1, 26) * 0.1, 2).tolist()), "kappa": (1.0, 3.0, 10.0, 30.0, 100.0)}


def _step_size_columns(r: ExplorerRun) -> dict:
    note = diverged_note(r.diverged_at)
    return {
        "t": np.arange(r["loss"].size),
        "x": r["trajectory"][:, 0],
        "y": r["trajectory"][:, 1],
        "loss": r["loss"],
        "f0": r["loss"][0],
        "rate": r["rate_theory"],
        "title": f"η = {r['eta'] * r['L']:.2f}/L, κ = {r['kappa']:g}: {r['regime']}",
        "rate_title": f"rate ρ: theory {fmt(r['rate_theory'])}, measured {fmt(r['rate_measured'])}",
        "note": note,
    }


def _step_size_layout(base):
    import altair as alt

    from .web import COLORS, contour_layer, curves, ellipse_contours, point_layer, text_layer

    box = (_BOX, _BOX)
    rings = []
    for kappa in STEP_SIZE_WEB_GRID["kappa"]:
        H = np.diag([1.0 / kappa, 1.0])
        zmax = 0.5 * (_BOX[1] ** 2 / kappa + _BOX[1] ** 2)
        rings += [dict(row, kappa=kappa) for row in ellipse_contours(H, levels=np.geomspace(zmax / 400, zmax, 12))]
    flat = base.transform_flatten(["t", "x", "y"])
    path = flat.mark_line(color=COLORS["C1"], point=alt.OverlayMarkDef(size=12, color=COLORS["C1"]), strokeWidth=1.2, clip=True).encode(
        x=alt.X("x:Q", scale=alt.Scale(domain=list(_BOX))), y=alt.Y("y:Q", scale=alt.Scale(domain=list(_BOX))), order="t:Q"
    )
    start = flat.transform_filter("datum.t == 0").mark_point(size=60, filled=True, fill="white", stroke=COLORS["C1"], strokeWidth=1.5).encode(x="x:Q", y="y:Q")
    trajectory = alt.layer(
        contour_layer(rings, "datum.kappa == kappa", "θ₁ (curvature μ)", "θ₂ (curvature L)", box),
        path, start, point_layer(0.0, 0.0), text_layer(base, "title"), text_layer(base, "note", y=250, color=COLORS["warn"]),
    ).properties(width=250, height=250)
    bounded = base.transform_flatten(["t", "loss"]).transform_calculate(bound="datum.f0 * pow(datum.rate, 2 * datum.t)")
    loss = alt.layer(
        curves(bounded, {"loss": ("f(θ_t)", COLORS["C1"], False), "bound": ("ρ^(2t) f(θ_0)", COLORS["gray"], True)},
               domain=(1e-14, 1e4), x_domain=(0, 100), title="loss", flatten=False),
        text_layer(base, "rate_title"),
    ).properties(width=270, height=250)
    return alt.hconcat(trajectory, loss)


def step_size_web(**grid):
    """The website's live view: the explorer's sliders over :data:`STEP_SIZE_WEB_GRID`
    (25 step sizes 0.1-2.5 in units of 1/L, 5 condition numbers), drawn by Vega-Lite.

    ``grid`` may replace either slider's values (``eta=...``, ``kappa=...``; the contours are
    drawn for the default condition numbers only).
    """
    from .web import Slider, web_view

    values = {**STEP_SIZE_WEB_GRID, **grid}
    sliders = [
        Slider("eta", values["eta"], label="η · L", initial=1.9 if 1.9 in values["eta"] else None),
        Slider("kappa", values["kappa"], label="κ", kind="radio", initial=10.0 if 10.0 in values["kappa"] else None),
    ]
    return web_view(step_size_run, sliders, _step_size_layout, _step_size_columns, name="step_size")
