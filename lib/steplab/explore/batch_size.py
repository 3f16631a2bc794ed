r"""Minibatch SGD on 2-D least squares: the cloud of runs, the noise ball, the variance against B."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..problems import LeastSquares
from ..records import ExplorerRun
from ._widget import (
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
)

__all__ = ["batch_size_problem", "noise_ball", "batch_size_run", "batch_size_explorer", "batch_size_static", "batch_size_web"]

_OFFSET = np.array([-2.0, 2.0])
_HALF_BOX = 3.0
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


@lru_cache(maxsize=1)
def batch_size_problem() -> LeastSquares:
    r"""The explorer's data: $n = 500$ rows $a_i \sim \mathcal N(0, \mathrm{diag}(1, 0.36))$,
    $b_i = a_i^\top (1, -\tfrac12) + \varepsilon_i$, $\varepsilon_i \sim \mathcal N(0, 1)$, from
    ``default_rng(0)``: label noise keeps the per-example gradients apart at the optimum, so
    constant-step SGD stalls in a noise ball."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((500, 2)) * np.array([1.0, 0.6])
    b = A @ np.array([1.0, -0.5]) + rng.standard_normal(500)
    return LeastSquares(A, b)


def noise_ball(problem: LeastSquares, eta: float, batch_size: int):
    r"""Exact stationary covariance of constant-step SGD on least squares (sampling with replacement).

    With $e_t = \theta_t - \theta^\star$, residuals at the optimum $\varepsilon_i = b_i -
    a_i^\top\theta^\star$ (so $\sum_i a_i\varepsilon_i = 0$), $H = \tfrac1n\sum_i a_ia_i^\top$
    and $M = I - \eta H$, one step is $e_{t+1} = e_t - \tfrac{\eta}{B}\sum_{j\le B}
    (a_{i_j}a_{i_j}^\top e_t - a_{i_j}\varepsilon_{i_j})$, and $C_t = \mathbb E[e_te_t^\top]$
    (once $\mathbb E e_t = M^t e_0$ has died out) obeys

    .. math::

        C_{t+1} = M C_t M + \frac{\eta^2}{B}\Big(\frac1n\sum_i a_ia_i^\top C_t a_ia_i^\top
        - H C_t H + \Sigma^\star\Big), \qquad \Sigma^\star = \frac1n\sum_i \varepsilon_i^2 a_ia_i^\top.

    In vectorized form $c_{t+1} = K c_t + \tfrac{\eta^2}{B}\mathrm{vec}\,\Sigma^\star$; SGD is
    mean-square stable iff the spectral radius of $K$ is below 1, and then the noise ball is
    $C_\infty = (I - K)^{-1}\tfrac{\eta^2}{B}\mathrm{vec}\,\Sigma^\star$. For small $\eta$,
    $C_\infty \approx \tfrac{\eta}{2B}\Sigma^\star H^{-1}$ (commuting case): the ball shrinks
    like $\eta/B$.

    Returns:
        ``(C, radius_K)``: the 2x2 covariance (None when unstable) and the spectral radius of $K$.

    Reference: Bach and Moulines, "Non-strongly-convex smooth stochastic approximation with
    convergence rate O(1/n)", NeurIPS 2013 (the least-squares SGD recursion).
    """
    A = problem.A
    n, d = A.shape
    eps = problem.b - A @ problem.minimizer
    H = A.T @ A / n
    M = np.eye(d) - eta * H
    V = (A[:, :, None] * A[:, None, :]).reshape(n, d * d)
    K = np.kron(M, M) + eta**2 / batch_size * (V.T @ V / n - np.kron(H, H))
    if not np.all(np.isfinite(K)):
        return None, float("inf")
    radius = float(np.max(np.abs(np.linalg.eigvals(K))))
    if radius >= 1.0:
        return None, radius
    sigma = (A * (eps**2)[:, None]).T @ A / n
    c = np.linalg.solve(np.eye(d * d) - K, eta**2 / batch_size * sigma.ravel())
    C = c.reshape(d, d)
    return 0.5 * (C + C.T), radius


def batch_size_run(eta: float = 0.3, batch_size: int = 1, steps: int = 150, seeds: int = 40,
                   seed: int = 0) -> ExplorerRun:
    r"""``seeds`` independent runs of minibatch SGD $\theta_{t+1} = \theta_t - \eta g_t$,
    $g_t = \tfrac1B\sum_{j=1}^B \nabla f_{i_j}(\theta_t)$, on :func:`batch_size_problem`,
    advanced together as one stack; all start at $\theta^\star + (-2, 2)$.

    Indices are drawn uniformly *with* replacement, so the minibatch gradient is unbiased with
    $\mathbb E\|g_t - \nabla f(\theta_t)\|^2 = \sigma^2(\theta_t)/B$, where
    $\sigma^2(\theta) = \tfrac1n\sum_i\|\nabla f_i(\theta) - \nabla f(\theta)\|^2$.

    Args:
        eta: step size, > 0.
        batch_size: $B \ge 1$.
        steps: $T \ge 2$.
        seeds: number of runs $S \ge 2$.
        seed: seed of ``np.random.default_rng`` (all runs draw from it).

    Returns:
        an :class:`~steplab.records.ExplorerRun` with ``loss`` ``(T'+1, S)`` (one column per
        run; ``run["loss"]`` is the mean over runs) and the values ``trajectories``
        ``(S, T'+1, 2)``, ``distance2`` $\|\theta_t - \theta^\star\|^2$ ``(S, T'+1)``, ``noise``
        $\|g_t - \nabla f(\theta_t)\|^2$ averaged over runs ``(T',)``, ``sigma2``
        $\sigma^2(\theta_t)$ averaged ``(T',)``, ``variance_ratio``
        $= \sum_t \text{noise}_t / \sum_t \text{sigma2}_t$ (theory $1/B$), ``ball`` (the
        covariance of :func:`noise_ball`, or None), ``ms_radius``, ``ball_predicted``
        $\mathrm{tr}\,C_\infty$, ``ball_measured`` (mean of $\|\theta_t - \theta^\star\|^2$
        over the runs and the last half of the steps; NaN if diverged), ``minimizer``,
        ``f_star``; ``diverged_at`` (the first step at which some run's loss diverged by the
        library's rule; the runs stop there) and ``fp_warnings``.
    """
    eta = check_float("eta", eta, low=0.0, low_open=True)
    batch_size = check_int("batch_size", batch_size, low=1)
    steps = check_int("steps", steps, low=2)
    seeds = check_int("seeds", seeds, low=2)
    problem = batch_size_problem()
    if batch_size > problem.n:
        raise ValueError(f"batch_size must be <= n={problem.n}, got {batch_size}")
    moments = _moments(problem)
    with floating_point_log() as fp:
        errors, grads = _simulate(moments, eta, batch_size, steps, seeds, np.random.default_rng(seed))
        loss = moments["f_star"] + 0.5 * np.einsum("tsi,ij,tsj->ts", errors, moments["H"], errors)
        diverged_at = first_divergence(loss.max(axis=1), loss[0, 0])
        end = steps if diverged_at is None else diverged_at
        values = _noise_measurements(moments, errors[: end + 1], grads[:end])
        distance2 = values["distance2"]
        C, radius = noise_ball(problem, eta, batch_size)
    values.update(
        minimizer=moments["minimizer"].copy(), f_star=problem.f_star, ball=C, ms_radius=radius,
        ball_predicted=float(np.trace(C)) if C is not None else float("inf"),
        ball_measured=float(distance2[:, end // 2 :].mean()) if diverged_at is None else float("nan"),
    )
    settings = {"eta": eta, "batch_size": batch_size, "steps": steps, "seeds": seeds, "seed": seed}
    return ExplorerRun("batch_size", settings, loss[: end + 1], values, diverged_at=diverged_at, fp_warnings=fp)


def _moments(problem: LeastSquares) -> dict:
    r"""What one SGD step on least squares needs, around the minimizer.

    Least squares is exactly quadratic around $\theta^\star$: with $e = \theta - \theta^\star$ and
    the residuals $\varepsilon_i = b_i - a_i^\top\theta^\star$, $f = f^\star + e^\top H e / 2$,
    $\nabla f = H e$ and $\sigma^2(\theta) = e^\top P e - 2 q^\top e + s - \|H e\|^2$ with the moments
    $P, q, s$ below; each step then costs $O(SB)$ instead of $O(Sn)$.
    """
    A, b, n = problem.A, problem.b, problem.n
    eps = b - A @ problem.minimizer
    sq_norms = np.sum(A * A, axis=1)
    return {
        "A": A, "eps": eps, "n": n, "minimizer": problem.minimizer, "f_star": float(problem.f_star), "H": A.T @ A / n,
        "P": (A * sq_norms[:, None]).T @ A / n, "q": (eps * sq_norms) @ A / n, "s": np.mean(eps * eps * sq_norms),
    }


def _simulate(moments: dict, eta: float, batch_size: int, steps: int, seeds: int, rng):
    """The errors $e_t$ ``(T+1, S, 2)`` and the minibatch gradients ``(T, S, 2)`` of the stack."""
    idx = rng.integers(0, moments["n"], size=(steps, seeds, batch_size))
    rows, targets = moments["A"][idx], moments["eps"][idx]
    e = np.tile(_OFFSET, (seeds, 1))
    errors = np.empty((steps + 1, seeds, 2))
    grads = np.empty((steps, seeds, 2))
    errors[0] = e
    for t in range(steps):
        residual = (rows[t] @ e[:, :, None])[..., 0] - targets[t]
        grads[t] = (residual[:, None, :] @ rows[t])[:, 0, :] / batch_size
        e = e - eta * grads[t]
        errors[t + 1] = e
    return errors, grads


def _noise_measurements(moments: dict, errors, grads) -> dict:
    r"""The measured minibatch noise against $\sigma^2(\theta_t)$, and the runs' paths."""
    full = errors[:-1] @ moments["H"]
    noise = np.mean(np.sum((grads - full) ** 2, axis=2), axis=1)
    e = errors[:-1]
    P, q = moments["P"], moments["q"]
    sigma2 = np.mean(np.einsum("tsi,ij,tsj->ts", e, P, e) - 2.0 * e @ q + moments["s"] - np.sum(full * full, axis=2), axis=1)
    errors = errors.transpose(1, 0, 2)
    return {
        "trajectories": errors + moments["minimizer"],
        "distance2": np.sum(errors * errors, axis=2),
        "noise": noise,
        "sigma2": sigma2,
        "variance_ratio": float(noise.sum() / sigma2.sum()),
    }


def batch_size_metrics(r: dict) -> list[tuple[str, str]]:
    """The rows of the metrics table, formatted from a :func:`batch_size_run` result."""
    return [
        ("eta, B", f"{fmt(r['eta'])}, {r['batch_size']}"),
        ("minibatch variance / sigma^2, measured", fmt(r["variance_ratio"])),
        ("minibatch variance / sigma^2, theory 1/B", fmt(1.0 / r["batch_size"])),
        ("noise ball E||theta - theta*||^2, measured", fmt(r["ball_measured"])),
        ("noise ball E||theta - theta*||^2, theory tr C", fmt(r["ball_predicted"])),
        ("mean-square spectral radius (< 1: stable)", fmt(r["ms_radius"])),
    ]


def _ellipse(C, center, scale=2.0, points=90):
    w, V = np.linalg.eigh(C)
    angle = np.linspace(0.0, 2.0 * np.pi, points)
    circle = np.stack([np.cos(angle), np.sin(angle)])
    return center[:, None] + scale * V @ (np.sqrt(np.maximum(w, 0.0))[:, None] * circle)


class _BatchSizeView:
    """Contours with the cloud of runs and the noise ball; distance to the optimum; variance."""

    def __init__(self, ax_cloud, ax_dist, ax_var, live=False, show_legend=True):
        from matplotlib.collections import LineCollection

        self.ax_cloud, self.ax_dist, self.ax_var = ax_cloud, ax_dist, ax_var
        self.figure = ax_cloud.figure
        self.live = live
        problem = batch_size_problem()
        star = problem.minimizer
        xs = np.linspace(star[0] - _HALF_BOX, star[0] + _HALF_BOX, 100)
        ys = np.linspace(star[1] - _HALF_BOX, star[1] + _HALF_BOX, 100)
        xx, yy = np.meshgrid(xs, ys)
        zz = problem.value(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape) - problem.f_star
        ax_cloud.contour(xx, yy, zz, levels=np.geomspace(0.01, zz.max(), 12), cmap="viridis", linewidths=0.7)
        self.paths = LineCollection([], colors="C0", linewidths=0.6, alpha=0.25)
        ax_cloud.add_collection(self.paths)
        self.final = ax_cloud.scatter([], [], s=9, color="C3", zorder=5, label="final iterates")
        (self.ball,) = ax_cloud.plot([], [], color="black", lw=1.5, label=r"noise ball ($2\sigma$)")
        ax_cloud.plot(*star, marker="*", markersize=12, color="black", linestyle="none", zorder=6)
        ax_cloud.set_xlim(xs[0], xs[-1])
        ax_cloud.set_ylim(ys[0], ys[-1])
        ax_cloud.set_aspect("equal")
        ax_cloud.set_xlabel(r"$\theta_1$")
        ax_cloud.set_ylabel(r"$\theta_2$")
        if show_legend:
            ax_cloud.legend(loc="upper right", fontsize="x-small")
        (self.dist,) = ax_dist.plot([], [], color="C0", label="mean over runs")
        (self.ball_level,) = ax_dist.plot([], [], color="black", ls="--", lw=1.2, label=r"theory $\mathrm{tr}\,C_\infty$")
        log_axis(ax_dist)
        ax_dist.set_xlabel("step $t$")
        ax_dist.set_ylabel(r"$\|\theta_t - \theta^\star\|^2$")
        (self.noise,) = ax_var.plot([], [], color="C3", label=r"measured $\|g_t - \nabla f\|^2$")
        (self.theory,) = ax_var.plot([], [], color="black", ls="--", lw=1.2, label=r"$\sigma^2(\theta_t)/B$")
        log_axis(ax_var)
        ax_var.set_xlabel("step $t$")
        ax_var.set_ylabel("gradient noise")
        if show_legend:
            ax_dist.legend(loc="upper right", fontsize="x-small")
            ax_var.legend(loc="upper right", fontsize="x-small")
        self.banner = ax_cloud.text(0.5, 0.04, "", transform=ax_cloud.transAxes, ha="center", color="#b00", fontsize="small", zorder=7)
        if live:
            ax_cloud.set_title("runs and noise ball", fontsize="medium")
            ax_dist.set_title("distance to the optimum", fontsize="medium")
            ax_var.set_title("minibatch gradient variance", fontsize="medium")
        self.dynamic = [self.paths, self.final, self.ball, self.dist, self.ball_level, self.noise, self.theory, self.banner]

    def update(self, r) -> bool:
        paths = r["trajectories"]
        # Eight runs keep the picture readable; the final iterates of all runs show the spread.
        self.paths.set_segments(list(paths[:8]))
        self.final.set_offsets(paths[:, -1])
        if r["ball"] is not None:
            self.ball.set_data(*_ellipse(r["ball"], r["minimizer"]))
        else:
            self.ball.set_data([], [])
        t = np.arange(r["distance2"].shape[1])
        dist = r["distance2"].mean(axis=0)
        self.dist.set_data(t, dist)
        self.ball_level.set_data([0, r.settings["steps"]], [r["ball_predicted"]] * 2 if r["ball"] is not None else [np.nan] * 2)
        tv = np.arange(r["noise"].size)
        self.noise.set_data(tv, r["noise"])
        self.theory.set_data(tv, r["sigma2"] / r["batch_size"])
        changed = set_limits(self.ax_dist, "x", (0, r.settings["steps"]))
        changed |= set_limits(self.ax_var, "x", (0, r.settings["steps"]))
        changed |= set_limits(self.ax_dist, "y", decade_limits([1e-4, 10.0 * dist[0]]))
        changed |= set_limits(self.ax_var, "y", decade_limits([1e-3, 30.0]))
        self.banner.set_text(diverged_note(r.diverged_at))
        if not self.live:
            self.ax_cloud.set_title(f"\u03b7 = {r['eta']:g}, B = {r['batch_size']}", fontsize="medium")
            self.ax_dist.set_title(
                f"ball: measured {fmt(r['ball_measured'], 3)}, theory {fmt(r['ball_predicted'], 3)}", fontsize="medium"
            )
            self.ax_var.set_title(f"variance / \u03c3\u00b2 = {fmt(r['variance_ratio'], 3)} (1/B = {fmt(1 / r['batch_size'], 3)})", fontsize="medium")
        return changed

    def metrics_html(self, r):
        return metrics_table(batch_size_metrics(r), status_note(r))


def batch_size_explorer(eta: float = 0.3, batch_size: int = 1):
    r"""Sliders for the step size and the batch size; see :func:`batch_size_run`.

    Defaults: $\eta = 0.3$, $B = 1$: the runs reach the optimum fast, then wander in a wide
    noise ball; raising $B$ shrinks the ball like $1/B$, raising $\eta$ widens it, and at
    $B = 1$ a step above about 0.65 is mean-square unstable although $\eta < 2/L$.
    """
    import ipywidgets as widgets

    check_float("eta", eta, low=0.0, low_open=True)
    if batch_size not in BATCH_SIZES:
        raise ValueError(f"batch_size must be one of {list(BATCH_SIZES)}, got {batch_size!r}")
    style = {"description_width": "initial"}
    controls = {
        "eta": widgets.FloatSlider(value=eta, min=0.02, max=1.0, step=0.02, description="η", style=style, readout_format=".2f"),
        "batch_size": widgets.SelectionSlider(options=list(BATCH_SIZES), value=batch_size, description="batch size B", style=style),
    }
    fig, axes = new_figure((12.0, 3.7), 1, 3)
    view = _BatchSizeView(*axes[0], live=True)

    def compute(eta, batch_size):
        return batch_size_run(eta=round(eta, 9), batch_size=batch_size)

    return make_explorer(controls, compute, view)


def batch_size_static(settings=((0.3, 1), (0.3, 16), (0.8, 1))):
    """The website's view: one row per ``(eta, batch_size)`` setting."""
    settings = list(settings)
    if not settings:
        raise ValueError("settings must hold at least one (eta, batch_size) pair, got ()")
    fig, axes = new_figure((12.0, 3.5 * len(settings)), len(settings), 3)
    for i, s in enumerate(settings):
        if not (isinstance(s, tuple) and len(s) == 2):
            raise ValueError(f"settings entries must be (eta, batch_size) pairs, got {s!r}")
        view = _BatchSizeView(*axes[i], show_legend=(i == 0))
        view.update(batch_size_run(eta=s[0], batch_size=s[1]))
    return fig


BATCH_SIZE_WEB_GRID = {"eta": tuple(np.round(np.arange(1, 13) * 0.1, 2).tolist()), "batch_size": BATCH_SIZES}
_WEB_PATHS = 6
_WEB_POINTS = 51


def _batch_size_columns(r: ExplorerRun) -> dict:
    from .web import thin

    paths = r["trajectories"][:_WEB_PATHS]
    idx = thin(paths.shape[1], _WEB_POINTS)
    tv = thin(r["noise"].size, _WEB_POINTS)
    ball = _ellipse(r["ball"], r["minimizer"], points=41) if r["ball"] is not None else np.empty((2, 0))
    return {
        "pr": np.repeat(np.arange(paths.shape[0]), idx.size),
        "pt": np.tile(idx, paths.shape[0]),
        "px": paths[:, idx, 0].ravel(),
        "py": paths[:, idx, 1].ravel(),
        "fx": r["trajectories"][:, -1, 0],
        "fy": r["trajectories"][:, -1, 1],
        "bi": np.arange(ball.shape[1]),
        "bx": ball[0],
        "by": ball[1],
        "td": idx,
        "dist": r["distance2"].mean(axis=0)[idx],
        "level": np.full(idx.size, r["ball_predicted"]) if r["ball"] is not None else np.full(idx.size, np.nan),
        "tv": tv,
        "noise": r["noise"][tv],
        "theory": (r["sigma2"] / r["batch_size"])[tv],
        "title": f"η = {r['eta']:g}, B = {r['batch_size']}",
        "ball_title": f"ball: measured {fmt(r['ball_measured'], 3)}, theory {fmt(r['ball_predicted'], 3)}",
        "var_title": f"variance / σ² = {fmt(r['variance_ratio'], 3)} (1/B = {fmt(1 / r['batch_size'], 3)})",
        "note": diverged_note(r.diverged_at),
    }


def _batch_size_layout(base):
    import altair as alt

    from .web import COLORS, contour_layer, curves, ellipse_contours, point_layer, text_layer

    problem = batch_size_problem()
    star = problem.minimizer
    box = ((star[0] - _HALF_BOX, star[0] + _HALF_BOX), (star[1] - _HALF_BOX, star[1] + _HALF_BOX))
    H = problem.A.T @ problem.A / problem.n
    zmax = 0.5 * float(np.array([_HALF_BOX, _HALF_BOX]) @ H @ np.array([_HALF_BOX, _HALF_BOX]))
    rings = ellipse_contours(H, star, levels=np.geomspace(0.01, zmax, 10))
    xy = dict(x=alt.X("x:Q", scale=alt.Scale(domain=list(box[0]))), y=alt.Y("y:Q", scale=alt.Scale(domain=list(box[1]))))
    paths = base.transform_flatten(["pr", "pt", "px", "py"]).transform_calculate(x="datum.px", y="datum.py").mark_line(
        color=COLORS["C0"], strokeWidth=0.7, opacity=0.35, clip=True).encode(detail="pr:N", order="pt:Q", **xy)
    final = base.transform_flatten(["fx", "fy"]).transform_calculate(x="datum.fx", y="datum.fy").mark_circle(
        size=14, color=COLORS["C3"], opacity=0.9, clip=True).encode(**xy)
    ball = base.transform_flatten(["bi", "bx", "by"]).transform_calculate(x="datum.bx", y="datum.by").mark_line(
        color="black", strokeWidth=1.5, clip=True).encode(order="bi:Q", **xy)
    cloud = alt.layer(
        contour_layer(rings, None, "θ₁", "θ₂", box), paths, final, ball, point_layer(float(star[0]), float(star[1])),
        text_layer(base, "title"), text_layer(base, "note", y=230, color=COLORS["warn"]),
    ).properties(width=230, height=230)
    dist = alt.layer(
        curves(base, {"dist": ("mean over runs", COLORS["C0"], False), "level": ("theory tr C∞", "black", True)},
               t="td", domain=(1e-4, 1e2), x_domain=(0, 150), title="‖θ_t − θ*‖²"),
        text_layer(base, "ball_title"),
    ).properties(width=230, height=230)
    var = alt.layer(
        curves(base, {"noise": ("measured ‖g_t − ∇f‖²", COLORS["C3"], False), "theory": ("σ²(θ_t)/B", "black", True)},
               t="tv", domain=(1e-3, 1e2), x_domain=(0, 150), title="gradient noise"),
        text_layer(base, "var_title"),
    ).properties(width=230, height=230)
    # Two panels a row: three do not fit the width of a page.
    return alt.concat(cloud, dist, var, columns=2).resolve_scale(color="independent", strokeDash="independent")


def batch_size_web(**grid):
    """The website's live view: the explorer's sliders over :data:`BATCH_SIZE_WEB_GRID`
    (12 step sizes 0.1-1.2, the 7 batch sizes 1-64); six of the 40 runs drawn as paths, every
    third step, curves at 51 points.

    ``grid`` may replace either slider's values (``eta=...``, ``batch_size=...``).
    """
    from .web import Slider, web_view

    values = {**BATCH_SIZE_WEB_GRID, **grid}
    sliders = [
        Slider("eta", values["eta"], label="η", initial=0.3 if 0.3 in values["eta"] else None),
        Slider("batch_size", values["batch_size"], label="batch size B", kind="radio"),
    ]
    return web_view(batch_size_run, sliders, _batch_size_layout, _batch_size_columns, name="batch_size", digits=4)
