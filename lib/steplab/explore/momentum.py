r"""Heavy-ball momentum on a 2-D quadratic and its exact convergence-rate map."""

from __future__ import annotations

import numpy as np

from .. import optim
from ..problems import Quadratic
from ..records import ExplorerRun
from ._widget import (
    DIVERGE_FACTOR,
    check_bool,
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

__all__ = ["heavy_ball_rate", "heavy_ball_optimal", "momentum_run", "momentum_explorer", "momentum_static", "momentum_web"]

_THETA0 = (-2.0, 1.0)
_BOX = (-2.5, 2.5)
_ETA_MAX = 4.2


def heavy_ball_rate(eta, beta, eigenvalues):
    r"""Exact asymptotic rate of heavy ball on a quadratic: the spectral radius of its iteration.

    Along an eigenvector with eigenvalue $\lambda$, $\theta_{t+1} = \theta_t - \eta\lambda\theta_t
    + \beta(\theta_t - \theta_{t-1})$ is the linear map

    .. math::

        \begin{pmatrix}\theta_{t+1}\\ \theta_t\end{pmatrix} =
        \begin{pmatrix} 1 + \beta - \eta\lambda & -\beta \\ 1 & 0 \end{pmatrix}
        \begin{pmatrix}\theta_t\\ \theta_{t-1}\end{pmatrix},

    whose eigenvalues are the roots of $z^2 - (1 + \beta - \eta\lambda) z + \beta = 0$. The rate
    is $\rho = \max_\lambda \max |z|$; it is below 1 exactly when $0 \le \beta < 1$ and
    $0 < \eta\lambda < 2 + 2\beta$ for every $\lambda$.

    Args:
        eta, beta: step size and momentum, numbers or arrays (broadcast together).
        eigenvalues: the Hessian's eigenvalues.

    Returns:
        $\rho$ with the broadcast shape of ``eta`` and ``beta``.

    Reference: B. T. Polyak, "Some methods of speeding up the convergence of iteration
    methods", USSR Comput. Math. Math. Phys. 4(5), 1964.
    """
    eta = np.asarray(eta, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    shape = np.broadcast(eta, beta).shape
    a = (1.0 + beta)[..., None] - eta[..., None] * lam
    root = np.sqrt(a * a - 4.0 * beta[..., None] + 0j)
    radius = np.maximum(np.abs(0.5 * (a + root)), np.abs(0.5 * (a - root)))
    return radius.max(axis=-1).reshape(shape)


def heavy_ball_optimal(L: float, mu: float) -> dict:
    r"""Polyak's optimal tuning on a quadratic with spectrum in $[\mu, L]$:

    .. math::

        \eta^\star = \frac{4}{(\sqrt L + \sqrt\mu)^2}, \qquad
        \beta^\star = \Big(\frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}\Big)^2, \qquad
        \rho^\star = \sqrt{\beta^\star} = \frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}.

    Returns ``{"eta", "beta", "rate"}``.

    Reference: Polyak, 1964; the form above as in Goh, "Why momentum really works", Distill 2017.
    """
    L = check_float("L", L, low=0.0, low_open=True)
    mu = check_float("mu", mu, low=0.0, low_open=True)
    if mu > L:
        raise ValueError(f"mu must be <= L={L!r}, got {mu!r}")
    sk = np.sqrt(L / mu)
    return {
        "eta": 4.0 / (np.sqrt(L) + np.sqrt(mu)) ** 2,
        "beta": ((sk - 1.0) / (sk + 1.0)) ** 2,
        "rate": (sk - 1.0) / (sk + 1.0),
    }


def _problem(kappa):
    return Quadratic.with_condition(kappa, dim=2, L=1.0, rotate=False)


def _run(problem, eta, beta, steps, start):
    opt = optim.sgd(lr=eta, momentum=beta)
    thetas = np.empty((steps + 1, 2))
    loss = np.empty(steps + 1)
    thetas[0], loss[0] = start, problem.value(start)
    theta, state = start, opt.init(start)
    diverged_at = None
    for t in range(1, steps + 1):
        updates, state = opt.update(problem.grad(theta), state, theta)
        theta = optim.apply_updates(theta, updates)
        thetas[t], loss[t] = theta, problem.value(theta)
        if first_divergence(loss[t : t + 1], loss[0]) is not None:
            diverged_at = t
            break
    end = steps if diverged_at is None else diverged_at
    return thetas[: end + 1], loss[: end + 1], diverged_at


def momentum_run(
    eta: float = 1.0, beta: float = 0.8, kappa: float = 25.0, steps: int = 100, theta0=_THETA0, with_gd: bool = True
) -> ExplorerRun:
    r"""Heavy ball $\theta_{t+1} = \theta_t - \eta\nabla f(\theta_t) + \beta(\theta_t - \theta_{t-1})$
    on $f(\theta) = \tfrac12\theta^\top H\theta$, $H = \mathrm{diag}(1/\kappa, 1)$ ($L = 1$, so
    $\eta$ is in units of $1/L$), run with ``steplab.optim.sgd(lr=eta, momentum=beta)`` (the
    same iterates, with $\theta_{-1} = \theta_0$).

    Args:
        eta: step size in units of $1/L$, > 0.
        beta: momentum in $[0, 1)$.
        kappa: condition number $\ge 1$.
        steps: number of steps $T \ge 1$.
        theta0: starting point.
        with_gd: also run plain GD for ``gd_loss`` (None when False).

    Returns:
        an :class:`~steplab.records.ExplorerRun` with ``loss`` at the steps ``0, ..., T'``
        and the values ``trajectory``, ``distance``, ``gd_loss`` (plain GD, the same
        $\eta$, for comparison), ``rate_theory`` (:func:`heavy_ball_rate`), ``rate_gd``
        ($\max_i|1 - \eta\lambda_i|$), ``rate_measured`` (contraction of the distance over the
        second half of the run; a double root at the optimum adds a polynomial factor, so it approaches
        the theory slowly there), ``optimal`` (:func:`heavy_ball_optimal`), ``stable``
        ($\rho < 1$), ``diverged_at``, ``fp_warnings``.

    Reference: Polyak, 1964.
    """
    eta = check_float("eta", eta, low=0.0, low_open=True)
    beta = check_float("beta", beta, low=0.0, high=1.0, high_open=True)
    kappa = check_float("kappa", kappa, low=1.0)
    steps = check_int("steps", steps, low=1)
    start = np.asarray(theta0, dtype=np.float64)
    if start.shape != (2,) or not np.all(np.isfinite(start)):
        raise ValueError(f"theta0 must be two finite numbers, got {theta0!r}")
    problem = _problem(kappa)
    with floating_point_log() as fp:
        thetas, loss, diverged_at = _run(problem, eta, beta, steps, start)
        gd_loss = _run(problem, eta, 0.0, steps, start)[1] if check_bool("with_gd", with_gd) else None
        distance = np.linalg.norm(thetas - problem.minimizer, axis=1)
        rate_measured = tail_rate(distance)
    rate = float(heavy_ball_rate(eta, beta, problem.eigenvalues))
    values = {
        "L": problem.L,
        "mu": problem.mu,
        "eigenvalues": problem.eigenvalues.copy(),
        "trajectory": thetas,
        "gd_loss": gd_loss,
        "distance": distance,
        "rate_theory": rate,
        "rate_gd": float(np.max(np.abs(1.0 - eta * problem.eigenvalues))),
        "rate_measured": rate_measured,
        "optimal": heavy_ball_optimal(problem.L, problem.mu),
        "stable": rate < 1.0,
    }
    settings = {"eta": eta, "beta": beta, "kappa": kappa, "steps": steps, "theta0": start, "with_gd": gd_loss is not None}
    return ExplorerRun("momentum", settings, loss, values, diverged_at=diverged_at, fp_warnings=fp)


def momentum_metrics(r: dict) -> list[tuple[str, str]]:
    """The rows of the metrics table, formatted from a :func:`momentum_run` result."""
    opt = r["optimal"]
    return [
        ("eta * L, beta", f"{fmt(r['eta'] * r['L'])}, {fmt(r['beta'])}"),
        ("rate, theory  (spectral radius)", fmt(r["rate_theory"])),
        ("rate, measured  (d_T / d_{T/2})^(2/T)", fmt(r["rate_measured"])),
        ("rate of GD at the same eta", fmt(r["rate_gd"])),
        ("optimal eta * L, beta, rate", f"{fmt(opt['eta'] * r['L'])}, {fmt(opt['beta'])}, {fmt(opt['rate'])}"),
        ("final loss", fmt(r["loss"][-1])),
    ]


class _MomentumView:
    """Contours with the path; loss against GD; the rate map over (eta, beta)."""

    def __init__(self, ax_path, ax_loss, ax_map, live=False, show_legend=True, colorbar=True):
        self.ax_path, self.ax_loss, self.ax_map = ax_path, ax_loss, ax_map
        self.figure = ax_path.figure
        self.live = live
        self._kappa = None
        self._contours = self._image = self._optimum = None
        ax_path.plot(0.0, 0.0, marker="*", markersize=12, color="black", linestyle="none", zorder=5)
        (self.path,) = ax_path.plot([], [], marker="o", markersize=2.5, color="C2", lw=1.1, zorder=4)
        ax_path.set_xlim(_BOX)
        ax_path.set_ylim(_BOX)
        ax_path.set_aspect("equal")
        ax_path.set_xlabel(r"$\theta_1$ (curvature $\mu$)")
        ax_path.set_ylabel(r"$\theta_2$ (curvature $L$)")
        (self.loss,) = ax_loss.plot([], [], color="C2", label="heavy ball")
        (self.gd,) = ax_loss.plot([], [], color="gray", lw=1.2, ls="--", label=r"GD, same $\eta$")
        log_axis(ax_loss)
        ax_loss.set_xlabel("step $t$")
        ax_loss.set_ylabel("loss")
        if show_legend:
            ax_loss.legend(loc="lower left", fontsize="small")
        self._colorbar = colorbar
        beta = np.linspace(0.0, 0.999, 50)
        ax_map.plot(2.0 * (1.0 + beta), beta, color="white", lw=1.5, ls="--")
        ax_map.text(3.0, 0.15, r"$\eta L = 2 + 2\beta$", color="white", fontsize="small", rotation=0)
        (self.point,) = ax_map.plot([], [], marker="o", markersize=9, markerfacecolor="C1", markeredgecolor="white", linestyle="none", zorder=6)
        ax_map.set_xlim(0.0, _ETA_MAX)
        ax_map.set_ylim(0.0, 1.0)
        ax_map.set_xlabel(r"$\eta L$")
        ax_map.set_ylabel(r"$\beta$")
        self.banner = ax_path.text(0.5, 0.04, "", transform=ax_path.transAxes, ha="center", color="#b00", fontsize="small", zorder=7)
        if live:
            ax_path.set_title("trajectory", fontsize="medium")
            ax_loss.set_title("loss", fontsize="medium")
        self.dynamic = [self.path, self.loss, self.gd, self.point, self.banner]

    def _draw_kappa(self, r):
        problem = _problem(r["kappa"])
        if self._contours is not None:
            self._contours.remove()
            self._image.remove()
            self._optimum.remove()
        xs = np.linspace(*_BOX, 120)
        xx, yy = np.meshgrid(xs, xs)
        zz = 0.5 * (xx**2 / r["kappa"] + yy**2)
        levels = np.geomspace(zz[zz > 0].min() * 4, zz.max(), 14)
        self._contours = self.ax_path.contour(xx, yy, zz, levels=levels, cmap="viridis", linewidths=0.8)
        etas = np.linspace(0.0, _ETA_MAX, 211)
        betas = np.linspace(0.0, 0.995, 200)
        rho = heavy_ball_rate(etas[None, :] / problem.L, betas[:, None], problem.eigenvalues)
        cmap = _rate_cmap()
        self._image = self.ax_map.imshow(
            np.minimum(rho, 1.0 + 1e-9), origin="lower", extent=(0.0, _ETA_MAX, 0.0, 0.995),
            aspect="auto", cmap=cmap, vmin=r["optimal"]["rate"], vmax=1.0, interpolation="nearest",
        )
        if self._colorbar:
            self.figure.colorbar(self._image, ax=self.ax_map, label=r"rate $\rho$ (gray: $\rho \geq 1$)", extend="max")
            self._colorbar = False
        opt = r["optimal"]
        (self._optimum,) = self.ax_map.plot(
            opt["eta"] * r["L"], opt["beta"], marker="*", markersize=14, color="black", markeredgecolor="white", linestyle="none", zorder=5
        )
        self._kappa = r["kappa"]

    def update(self, r) -> bool:
        changed = r["kappa"] != self._kappa
        if changed:
            self._draw_kappa(r)
        path = r["trajectory"]
        self.path.set_data(path[:, 0], path[:, 1])
        t = np.arange(r["loss"].size)
        self.loss.set_data(t, r["loss"])
        self.gd.set_data(np.arange(r["gd_loss"].size), r["gd_loss"])
        self.point.set_data([r["eta"] * r["L"]], [r["beta"]])
        f0 = r["loss"][0]
        changed |= set_limits(self.ax_loss, "x", (0, r.settings["steps"]))
        changed |= set_limits(self.ax_loss, "y", decade_limits([f0 * 1e-14, f0 * DIVERGE_FACTOR * 10]))
        self.banner.set_text(diverged_note(r.diverged_at))
        if not self.live:
            self.ax_path.set_title(f"\u03b7 = {r['eta'] * r['L']:.2f}/L, \u03b2 = {r['beta']:.2f}", fontsize="medium")
            self.ax_loss.set_title(f"rate \u03c1 = {fmt(r['rate_theory'])} (GD {fmt(r['rate_gd'])})", fontsize="medium")
            self.ax_map.set_title(f"rate map, \u03ba = {r['kappa']:.3g}; \u2605 optimum {fmt(r['optimal']['rate'])}", fontsize="medium")
        return changed

    def metrics_html(self, r):
        return metrics_table(momentum_metrics(r), status_note(r))


def _rate_cmap():
    import matplotlib

    return matplotlib.colormaps["viridis"].with_extremes(over="0.8")


def momentum_explorer(eta: float = 1.0, beta: float = 0.8):
    r"""Sliders for the step size (units of $1/L$) and the momentum on a $\kappa = 25$ quadratic.

    Defaults: $\eta = 1/L$, $\beta = 0.8$: the path spirals (too much momentum for this step),
    and the rate map shows where the optimum (the star) sits. See :func:`momentum_run`.
    """
    import ipywidgets as widgets

    check_float("eta", eta, low=0.0, low_open=True)
    check_float("beta", beta, low=0.0, high=1.0, high_open=True)
    style = {"description_width": "initial"}
    controls = {
        "eta": widgets.FloatSlider(value=eta, min=0.05, max=4.0, step=0.05, description="η · L", style=style, readout_format=".2f"),
        "beta": widgets.FloatSlider(value=beta, min=0.0, max=0.98, step=0.01, description="β", style=style, readout_format=".2f"),
    }
    fig, axes = new_figure((12.0, 3.6), 1, 3)
    view = _MomentumView(*axes[0], live=True)
    view.ax_map.set_title("rate map over (η, β)", fontsize="medium")

    def compute(eta, beta):
        return momentum_run(eta=round(eta, 9), beta=round(beta, 9))

    return make_explorer(controls, compute, view)


def momentum_static(settings=((1.0, 0.0), (1.0, 0.8), "optimal"), kappa: float = 25.0):
    """The website's view: one row per ``(eta * L, beta)`` setting (``"optimal"``: Polyak's tuning)."""
    kappa = check_float("kappa", kappa, low=1.0)
    rows = []
    for s in settings:
        if isinstance(s, str) and s == "optimal":
            opt = heavy_ball_optimal(1.0, 1.0 / kappa)
            rows.append((opt["eta"], opt["beta"]))
        elif isinstance(s, tuple) and len(s) == 2:
            rows.append(s)
        else:
            raise ValueError(f"settings entries must be (eta, beta) pairs or 'optimal', got {s!r}")
    if not rows:
        raise ValueError("settings must hold at least one setting, got ()")
    fig, axes = new_figure((12.0, 3.4 * len(rows)), len(rows), 3)
    for i, (eta, beta) in enumerate(rows):
        view = _MomentumView(*axes[i], show_legend=(i == 0))
        view.update(momentum_run(eta=eta, beta=beta, kappa=kappa))
    return fig


MOMENTUM_WEB_GRID = {"eta": tuple(np.round(np.arange(1, 17) * 0.25, 2).tolist()), "beta": tuple(np.round(np.arange(20) * 0.05, 2).tolist())}


def _momentum_columns(r: ExplorerRun) -> dict:
    return {
        "t": np.arange(r["loss"].size),
        "x": r["trajectory"][:, 0],
        "y": r["trajectory"][:, 1],
        "loss": r["loss"],
        "title": f"η = {r['eta'] * r['L']:.2f}/L, β = {r['beta']:.2f}",
        "rate_title": f"rate ρ = {fmt(r['rate_theory'])} (GD {fmt(r['rate_gd'])})",
        "note": diverged_note(r.diverged_at),
    }


def _momentum_layout(base, etas, kappa: float = 25.0):
    import altair as alt

    from .web import COLORS, STAR, contour_layer, curves, ellipse_contours, point_layer, text_layer

    problem = _problem(kappa)
    box = (_BOX, _BOX)
    zmax = 0.5 * (_BOX[1] ** 2 / kappa + _BOX[1] ** 2)
    rings = ellipse_contours(np.diag(problem.eigenvalues), levels=np.geomspace(zmax / 400, zmax, 12))
    flat = base.transform_flatten(["t", "x", "y"])
    path = flat.mark_line(color=COLORS["C2"], point=alt.OverlayMarkDef(size=10, color=COLORS["C2"]), strokeWidth=1.1, clip=True).encode(
        x=alt.X("x:Q", scale=alt.Scale(domain=list(_BOX))), y=alt.Y("y:Q", scale=alt.Scale(domain=list(_BOX))), order="t:Q"
    )
    trajectory = alt.layer(
        contour_layer(rings, None, "θ₁ (curvature μ)", "θ₂ (curvature L)", box), path, point_layer(0.0, 0.0),
        text_layer(base, "title"), text_layer(base, "note", y=250, color=COLORS["warn"]),
    ).properties(width=250, height=250)
    # Plain GD depends on eta only: one row per step size, not one per grid point.
    gd_rows = []
    for eta in etas:
        gd_loss = momentum_run(eta=eta, beta=0.0, kappa=kappa)["loss"]
        gd_rows.append({"eta": eta, "t": list(range(gd_loss.size)), "gd": [float(f"{v:.4g}") for v in gd_loss]})
    step = (etas[-1] - etas[0]) / max(len(etas) - 1, 1)
    gd = alt.Chart(alt.InlineData(values=gd_rows)).transform_filter(f"abs(datum.eta - eta) < {0.5 * step!r}")
    loss_curves = alt.layer(
        curves(base, {"loss": ("heavy ball", COLORS["C2"], False)}, domain=(1e-14, 1e4), x_domain=(0, 100), title="loss"),
        curves(gd, {"gd": ("GD, same η", COLORS["gray"], True)}, domain=(1e-14, 1e4), x_domain=(0, 100), title="loss"),
        text_layer(base, "rate_title"),
    ).resolve_scale(color="independent", strokeDash="independent").properties(width=250, height=250)
    # The exact rate over (eta, beta), cells centred on a 42 x 40 grid, gray where rho >= 1.
    de, db = _ETA_MAX / 42, 1.0 / 40
    etas, betas = (np.arange(42) + 0.5) * de, (np.arange(40) + 0.5) * db
    rho = heavy_ball_rate(etas[None, :] / problem.L, betas[:, None], problem.eigenvalues)
    cells = [
        {"e": round(float(e - de / 2), 4), "e2": round(float(e + de / 2), 4), "b": round(float(b - db / 2), 4),
         "b2": round(float(b + db / 2), 4), "rho": round(float(rho[j, i]), 4)}
        for j, b in enumerate(betas) for i, e in enumerate(etas)
    ]
    opt = heavy_ball_optimal(problem.L, problem.mu)
    rate_scale = alt.Scale(scheme="viridis", domain=[round(float(opt["rate"]), 4), 1.0], clamp=True)
    heat = alt.Chart(alt.InlineData(values=cells)).mark_rect().encode(
        x=alt.X("e:Q", title="η L", scale=alt.Scale(domain=[0, _ETA_MAX], nice=False)), x2="e2:Q",
        y=alt.Y("b:Q", title="β", scale=alt.Scale(domain=[0, 1], nice=False)), y2="b2:Q",
        color=alt.condition("datum.rho >= 1", alt.value("#cccccc"), alt.Color("rho:Q", scale=rate_scale, title="rate ρ (gray: ρ ≥ 1)")),
    )
    edge = alt.Chart(alt.InlineData(values=[{"e": 2.0, "b": 0.0}, {"e": 2.0 * 1.999, "b": 0.999}])).mark_line(
        color="white", strokeDash=[5, 3], strokeWidth=1.5).encode(x="e:Q", y="b:Q")
    current = base.mark_point(size=110, filled=True, fill=COLORS["C1"], stroke="white", strokeWidth=1.2, opacity=1).encode(
        x="eta:Q", y="beta:Q")
    rate_map = alt.layer(
        heat, edge, point_layer(round(float(opt["eta"] * problem.L), 4), round(float(opt["beta"]), 4), shape=STAR, size=240),
        current,
    ).properties(width=250, height=250, title=f"rate map, κ = {kappa:g}; ★ optimum ρ = {fmt(opt['rate'])}")
    # Two panels a row: three do not fit the width of a page.
    return alt.concat(trajectory, loss_curves, rate_map, columns=2).resolve_scale(color="independent")


def momentum_web(**grid):
    """The website's live view: the explorer's sliders over :data:`MOMENTUM_WEB_GRID`
    (16 step sizes 0.25-4.0 in units of 1/L, 20 momenta 0-0.95) on the kappa = 25 quadratic.

    ``grid`` may replace either slider's values (``eta=...``, ``beta=...``).
    """
    from .web import Slider, web_view

    values = {**MOMENTUM_WEB_GRID, **grid}
    sliders = [
        Slider("eta", values["eta"], label="η · L", initial=1.0 if 1.0 in values["eta"] else None),
        Slider("beta", values["beta"], label="β", initial=0.8 if 0.8 in values["beta"] else None),
    ]
    def compute(eta, beta):
        # Plain GD is drawn from one run per step size (the layout), not one per grid point.
        return momentum_run(eta=eta, beta=beta, with_gd=False)

    return web_view(
        compute, sliders, lambda base: _momentum_layout(base, sliders[0].values), _momentum_columns, name="momentum", digits=4
    )
