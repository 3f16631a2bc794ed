r"""Adam's pieces, one toggle each: a badly scaled quadratic and the Reddi counterexample."""

from __future__ import annotations

import numpy as np

from .. import optim
from ..problems import Quadratic, ReddiCounterexample
from ..records import ExplorerRun
from ._widget import (
    check_bool,
    check_choice,
    check_float,
    check_int,
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

__all__ = ["ADAM_DEFAULTS", "adam_run", "adam_explorer", "adam_static", "adam_web"]

PROBLEMS = ("badly_scaled", "reddi")
ADAM_DEFAULTS = {
    # Curvatures 1 and 1/100 along the axes: GD's step is capped by the steep axis, Adam's is not.
    "badly_scaled": dict(eta=0.1, beta1=0.9, beta2=0.999, eps=1e-8, bias_correction=True, amsgrad=False),
    # The betas of Reddi et al.'s Theorem 1 for C = 3: beta1 = 0, beta2 = 1/(1 + C^2).
    "reddi": dict(eta=0.5, beta1=0.0, beta2=0.1, eps=1e-8, bias_correction=True, amsgrad=False),
}
_STEPS = {"badly_scaled": 200, "reddi": 600}
_THETA0 = np.array([-2.0, 1.5])
_BOX = ((-2.5, 2.5), (-2.0, 2.0))


def _scaled_problem() -> Quadratic:
    return Quadratic([0.01, 1.0], rotate=False)


def adam_run(
    eta: float = 0.1,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    bias_correction: bool = True,
    amsgrad: bool = False,
    problem: str = "badly_scaled",
    steps: int | None = None,
) -> ExplorerRun:
    r"""Adam, $\theta_{t+1} = \theta_t - \eta_t\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)$, built from
    ``steplab.optim.scale_by_adam(beta1, beta2, eps, amsgrad, bias_correction)``.

    ``problem="badly_scaled"``: $f(\theta) = \tfrac12(0.01\,\theta_1^2 + \theta_2^2)$ from
    $(-2, 1.5)$, $\eta_t = \eta$, 200 steps, beside GD with its best step $2/(L+\mu)$.
    ``problem="reddi"``: the online problem :class:`~steplab.problems.ReddiCounterexample`
    with $C = 3$ ($f_t(x) = 3x$ when $t \bmod 3 = 1$, else $-x$, on $[-1, 1]$; the best fixed
    point is $-1$), $\eta_t = \eta/\sqrt t$, iterates projected onto $[-1, 1]$, 600 rounds.
    With $\beta_1 = 0$, $\beta_2 = 1/(1 + C^2)$ Adam drifts to $+1$; AMSGrad goes to $-1$.

    The effective per-coordinate step is $\eta_t / (\sqrt{\hat v_t} + \epsilon)$, with
    $\hat v_t = v_t/(1 - \beta_2^t)$ under bias correction (else $v_t$), and $v_t$ replaced by
    its running maximum under AMSGrad.

    Args:
        eta: $\eta > 0$.
        beta1, beta2: in $[0, 1)$.
        eps: $\epsilon \ge 0$.
        bias_correction, amsgrad: the flags of ``scale_by_adam``.
        problem: ``"badly_scaled"`` or ``"reddi"``.
        steps: number of steps (default 200 or 600).

    Returns:
        an :class:`~steplab.records.ExplorerRun` with ``loss`` (the objective at the steps
        ``0, ..., T'``; for Reddi the online loss $f_t(x_t)$ at the rounds ``1, ..., T``) and the
        values ``trajectory`` ``(T'+1, d)``, ``effective_step`` ``(T', d)``, and for ``badly_scaled``
        ``gd_trajectory``, ``gd_loss``, ``final_distance``; for ``reddi`` ``average_regret``
        $R_t/t$ and ``final_x``; plus ``diverged_at``, ``fp_warnings``.

    Reference: Kingma and Ba, ICLR 2015; Reddi, Kale and Kumar, ICLR 2018, Theorem 1.
    """
    eta = check_float("eta", eta, low=0.0, low_open=True)
    beta1 = check_float("beta1", beta1, low=0.0, high=1.0, high_open=True)
    beta2 = check_float("beta2", beta2, low=0.0, high=1.0, high_open=True)
    eps = check_float("eps", eps, low=0.0)
    bias_correction = check_bool("bias_correction", bias_correction)
    amsgrad = check_bool("amsgrad", amsgrad)
    problem = check_choice("problem", problem, PROBLEMS)
    steps = _STEPS[problem] if steps is None else check_int("steps", steps, low=1)
    adam = optim.scale_by_adam(beta1=beta1, beta2=beta2, eps=eps, amsgrad=amsgrad, bias_correction=bias_correction)
    settings = {
        "eta": eta, "beta1": beta1, "beta2": beta2, "eps": eps,
        "bias_correction": bias_correction, "amsgrad": amsgrad, "problem": problem, "steps": steps,
    }
    hyper = dict(beta2=beta2, eps=eps, bias_correction=bias_correction, amsgrad=amsgrad)
    with floating_point_log() as fp:
        if problem == "badly_scaled":
            values = _run_scaled(adam, eta, steps, hyper)
        else:
            values = _run_reddi(adam, eta, steps, hyper)
    loss, diverged_at = values.pop("loss"), values.pop("diverged_at")
    # The Reddi loss is the online loss f_t(x_t) of the rounds t = 1, ..., T.
    return ExplorerRun("adam", settings, loss, values, diverged_at=diverged_at, fp_warnings=fp,
                       first_step=1 if problem == "reddi" else 0)


def _effective_step(state, lr, beta2, eps, bias_correction, amsgrad):
    v = state.v_max if amsgrad else state.v
    correction = 1.0 - beta2**state.count if bias_correction else 1.0
    return lr / (np.sqrt(v / correction) + eps)


def _run_scaled(adam, eta, steps, hyper):
    problem = _scaled_problem()
    theta = _THETA0.copy()
    state = adam.init(theta)
    thetas, loss, eff = [theta], [problem.value(theta)], []
    diverged_at = None
    for t in range(1, steps + 1):
        u, state = adam.update(problem.grad(theta), state, theta)
        theta = theta - eta * u
        thetas.append(theta)
        loss.append(problem.value(theta))
        eff.append(_effective_step(state, eta, **hyper))
        if first_divergence(np.array(loss[-1:]), loss[0]) is not None:
            diverged_at = t
            break
    gd_eta = 2.0 / (problem.L + problem.mu)
    gd = [_THETA0.copy()]
    for _ in range(steps):
        gd.append(gd[-1] - gd_eta * problem.grad(gd[-1]))
    gd = np.array(gd)
    thetas = np.array(thetas)
    return {
        "trajectory": thetas,
        "loss": np.array(loss),
        "effective_step": np.array(eff),
        "gd_eta": gd_eta,
        "gd_trajectory": gd,
        "gd_loss": problem.value(gd),
        "final_distance": float(np.linalg.norm(thetas[-1] - problem.minimizer)),
        "diverged_at": diverged_at,
    }


def _run_reddi(adam, eta, steps, hyper):
    problem = ReddiCounterexample(C=3.0)
    x = problem.init_params()
    state = adam.init(x)
    xs, losses, eff = [x], [], []
    for t in range(1, steps + 1):
        lr = eta / np.sqrt(t)
        losses.append(problem.value_at(x, t))
        u, state = adam.update(problem.grad_at(x, t), state, x)
        x = np.clip(x - lr * u, problem.lower, problem.upper)
        xs.append(x)
        eff.append(_effective_step(state, lr, **hyper))
    xs = np.array(xs)
    return {
        "trajectory": xs,
        "loss": np.array(losses),
        "effective_step": np.array(eff),
        "average_regret": problem.average_regret(xs[:-1]),
        "final_x": float(xs[-1, 0]),
        "optimum": -1.0,
        "diverged_at": None,
    }


def adam_metrics(r: dict) -> list[tuple[str, str]]:
    """The rows of the metrics table, formatted from an :func:`adam_run` result."""
    rows = [
        ("problem", r["problem"]),
        ("eta, beta1, beta2, eps", f"{fmt(r['eta'])}, {fmt(r['beta1'])}, {fmt(r['beta2'])}, {fmt(r['eps'])}"),
        ("bias correction, AMSGrad", f"{r['bias_correction']}, {r['amsgrad']}"),
    ]
    step = r["effective_step"][-1]
    rows.append(("effective step eta_t/(sqrt(v_hat)+eps), last", ", ".join(fmt(s) for s in step)))
    if r["problem"] == "reddi":
        rows += [("final x (optimum -1)", fmt(r["final_x"])), ("average regret R_T/T", fmt(r["average_regret"][-1]))]
    else:
        rows += [
            ("final distance to the optimum, Adam", fmt(r["final_distance"])),
            ("final loss, Adam / GD with eta = 2/(L+mu)", f"{fmt(r['loss'][-1])} / {fmt(r['gd_loss'][-1])}"),
        ]
    return rows


class _AdamView:
    """Left: the path (or x_t for Reddi); middle: effective steps; right: loss (or regret)."""

    def __init__(self, ax_path, ax_step, ax_loss, live=False, show_legend=True):
        self.ax_path, self.ax_step, self.ax_loss = ax_path, ax_step, ax_loss
        self.figure = ax_path.figure
        self.live = live
        self._problem = None
        self._static = []
        (self.path,) = ax_path.plot([], [], color="C0", marker="o", markersize=2, lw=1.1, zorder=4, label="Adam")
        (self.gd,) = ax_path.plot([], [], color="gray", ls="--", lw=1.0, zorder=3, label="GD, 2/(L+\u03bc)")
        (self.step1,) = ax_step.plot([], [], color="C0", label=r"coordinate 1")
        (self.step2,) = ax_step.plot([], [], color="C1", label=r"coordinate 2")
        log_axis(ax_step)
        ax_step.set_xlabel("step $t$")
        ax_step.set_ylabel(r"$\eta_t / (\sqrt{\hat v_t} + \epsilon)$")
        (self.loss,) = ax_loss.plot([], [], color="C0", label="Adam")
        (self.gd_loss,) = ax_loss.plot([], [], color="gray", ls="--", lw=1.0, label="GD")
        ax_loss.set_xlabel("step $t$")
        self.show_legend = show_legend
        self.banner = ax_path.text(0.5, 0.04, "", transform=ax_path.transAxes, ha="center", color="#b00", fontsize="small", zorder=7)
        self.dynamic = [self.path, self.gd, self.step1, self.step2, self.loss, self.gd_loss, self.banner]

    def _layout(self, problem, steps):
        from matplotlib.ticker import ScalarFormatter

        for artist in self._static:
            artist.remove()
        self._static = []
        axp, axs, axl = self.ax_path, self.ax_step, self.ax_loss
        if axp.get_legend():
            axp.get_legend().remove()
        if axl.get_legend():
            axl.get_legend().remove()
        if problem == "badly_scaled":
            xs = np.linspace(*_BOX[0], 120)
            ys = np.linspace(*_BOX[1], 100)
            xx, yy = np.meshgrid(xs, ys)
            zz = 0.5 * (0.01 * xx**2 + yy**2)
            self._static.append(axp.contour(xx, yy, zz, levels=np.geomspace(1e-3, zz.max(), 12), cmap="viridis", linewidths=0.7))
            self._static += axp.plot(0.0, 0.0, marker="*", markersize=12, color="black", linestyle="none", zorder=5)
            axp.set_xlim(_BOX[0])
            axp.set_ylim(_BOX[1])
            axp.set_xlabel(r"$\theta_1$ (curvature 0.01)")
            axp.set_ylabel(r"$\theta_2$ (curvature 1)")
            axp.set_aspect("equal")
            log_axis(axl)
            axl.set_ylabel("loss")
            axl.set_ylim(1e-8, 1e2)
            self.path.set_marker("o")
            self.step2.set_visible(True)
            self.gd.set_visible(True)
            self.gd_loss.set_visible(True)
            axs.set_ylim(1e-3, 1e3)
            if self.show_legend:
                axp.legend(loc="upper right", fontsize="x-small")
                axl.legend(loc="upper right", fontsize="x-small")
        else:
            axp.set_aspect("auto")
            self._static.append(axp.axhline(-1.0, color="black", ls="--", lw=1.0))
            self._static.append(axp.text(steps, -0.93, "optimum \u22121", ha="right", fontsize="small"))
            axp.set_xlim(0, steps)
            axp.set_ylim(-1.1, 1.1)
            axp.set_xlabel("round $t$")
            axp.set_ylabel("$x_t$")
            axl.set_yscale("linear")
            axl.yaxis.set_major_formatter(ScalarFormatter())
            axl.set_ylabel("average regret $R_t/t$")
            axl.set_ylim(-0.5, 1.5)
            self._static.append(axl.axhline(0.0, color="black", lw=0.8))
            self.path.set_marker("None")
            self.step2.set_visible(False)
            self.gd.set_visible(False)
            self.gd_loss.set_visible(False)
            axs.set_ylim(1e-3, 1e2)
        axs.set_xlim(0, steps)
        axl.set_xlim(0, steps)
        self._problem = problem

    def update(self, r) -> bool:
        changed = r["problem"] != self._problem
        if changed:
            self._layout(r["problem"], r.settings["steps"])
        changed |= set_limits(self.ax_step, "x", (0, r.settings["steps"]))
        traj = r["trajectory"]
        eff = r["effective_step"]
        t = np.arange(1, eff.shape[0] + 1)
        self.step1.set_data(t, eff[:, 0])
        if r["problem"] == "badly_scaled":
            self.path.set_data(traj[:, 0], traj[:, 1])
            self.gd.set_data(r["gd_trajectory"][:, 0], r["gd_trajectory"][:, 1])
            self.step2.set_data(t, eff[:, 1])
            self.loss.set_data(np.arange(r["loss"].size), r["loss"])
            self.gd_loss.set_data(np.arange(r["gd_loss"].size), r["gd_loss"])
        else:
            self.path.set_data(np.arange(traj.shape[0]), traj[:, 0])
            self.loss.set_data(np.arange(1, r["average_regret"].size + 1), r["average_regret"])
        self.banner.set_text(diverged_note(r.diverged_at))
        name = ("AMSGrad" if r["amsgrad"] else "Adam") + ("" if r["bias_correction"] else ", no bias correction")
        if not self.live:
            if r["problem"] == "reddi":
                self.ax_path.set_title(f"{name}, \u03b2\u2081={r['beta1']:g}, \u03b2\u2082={r['beta2']:g}: x_T = {r['final_x']:.2f}", fontsize="medium")
            else:
                self.ax_path.set_title(f"{name}, \u03b7={r['eta']:g}, \u03b2\u2081={r['beta1']:g}, \u03b2\u2082={r['beta2']:g}", fontsize="medium")
            self.ax_step.set_title("effective step per coordinate", fontsize="medium")
            self.ax_loss.set_title("average regret" if r["problem"] == "reddi" else "loss", fontsize="medium")
        return changed

    def metrics_html(self, r):
        return metrics_table(adam_metrics(r), status_note(r))


def adam_explorer(
    eta: float = 0.1,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    bias_correction: bool = True,
    amsgrad: bool = False,
    problem: str = "badly_scaled",
):
    r"""Sliders for $\eta$, $\beta_1$, $\beta_2$, $\epsilon$, toggles for bias correction and
    AMSGrad, a dropdown for the problem; see :func:`adam_run`. Choosing a problem loads its
    defaults (:data:`ADAM_DEFAULTS`): on ``"reddi"``, Adam ends at $+1$; tick AMSGrad to see it
    reach $-1$.
    """
    import ipywidgets as widgets

    adam_run(eta, beta1, beta2, eps, bias_correction, amsgrad, problem, steps=1)
    style = {"description_width": "initial"}
    controls = {
        "problem": widgets.Dropdown(options=list(PROBLEMS), value=problem, description="problem", style=style),
        "eta": widgets.FloatLogSlider(value=eta, base=10, min=-3, max=0, step=0.05, description="η", style=style),
        "eps": widgets.FloatLogSlider(value=eps, base=10, min=-10, max=0, step=0.5, description="ε", style=style),
        "beta1": widgets.FloatSlider(value=beta1, min=0.0, max=0.99, step=0.01, description="β₁", style=style),
        "beta2": widgets.FloatSlider(value=beta2, min=0.0, max=0.999, step=0.001, description="β₂", style=style, readout_format=".3f"),
        "bias_correction": widgets.Checkbox(value=bias_correction, description="bias correction"),
        "amsgrad": widgets.Checkbox(value=amsgrad, description="AMSGrad"),
    }
    fig, axes = new_figure((12.0, 3.7), 1, 3)
    view = _AdamView(*axes[0], live=True)
    view.ax_path.set_title("iterates", fontsize="medium")
    view.ax_step.set_title("effective step per coordinate", fontsize="medium")
    view.ax_loss.set_title("loss (badly scaled) / average regret (Reddi)", fontsize="medium")

    def on_change(name, value, box):
        if name == "problem":
            for key, default in ADAM_DEFAULTS[value].items():
                box.sliders[key].value = default

    def compute(**values):
        for key in ("eta", "beta1", "beta2", "eps"):
            values[key] = round(values[key], 12)
        return adam_run(**values)

    return make_explorer(controls, compute, view, on_change=on_change)


def adam_static():
    """The website's view: Adam and AMSGrad on both problems (four rows)."""
    rows = [
        ("badly_scaled", dict(ADAM_DEFAULTS["badly_scaled"])),
        ("badly_scaled", dict(ADAM_DEFAULTS["badly_scaled"], bias_correction=False)),
        ("reddi", dict(ADAM_DEFAULTS["reddi"])),
        ("reddi", dict(ADAM_DEFAULTS["reddi"], amsgrad=True)),
    ]
    fig, axes = new_figure((12.0, 3.3 * len(rows)), len(rows), 3)
    for i, (problem, kw) in enumerate(rows):
        view = _AdamView(*axes[i], show_legend=(i in (0, 2)))
        view.update(adam_run(problem=problem, **kw))
    return fig


ADAM_WEB_GRID = {
    "badly_scaled": {"eta": (0.01, 0.03, 0.1, 0.3), "beta1": (0.0, 0.5, 0.9), "beta2": (0.9, 0.99, 0.999)},
    "reddi": {"eta": (0.1, 0.5, 1.0), "beta1": (0.0, 0.5, 0.9), "beta2": (0.1, 0.5, 0.9, 0.99)},
}
# Points per curve: strides 3 (200 steps) and 8 (600 rounds; not a multiple of the period 3), so
# that both charts together stay under a megabyte.
_WEB_POINTS = {"badly_scaled": 67, "reddi": 86}


def _adam_columns(r: ExplorerRun) -> dict:
    from .web import thin

    name = ("AMSGrad" if r["amsgrad"] else "Adam") + ("" if r["bias_correction"] else ", no bias correction")
    traj, eff = r["trajectory"], r["effective_step"]
    points = _WEB_POINTS[r["problem"]]
    te = thin(eff.shape[0], points)
    cols = {"te": te + 1, "s1": eff[te, 0], "note": diverged_note(r.diverged_at)}
    if r["problem"] == "badly_scaled":
        t = thin(traj.shape[0], points)
        cols.update(t=t, x=traj[t, 0], y=traj[t, 1], loss=r["loss"][t], s2=eff[te, 1],
                    title=f"{name}, η={r['eta']:g}, β₁={r['beta1']:g}, β₂={r['beta2']:g}",
                    loss_title=f"final loss {fmt(r['loss'][-1])} (GD {fmt(r['gd_loss'][-1])})")
    else:
        t = thin(traj.shape[0], points)
        tr = thin(r["average_regret"].size, points)
        cols.update(t=t, x=traj[t, 0], tr=tr + 1, regret=r["average_regret"][tr],
                    title=f"{name}, β₁={r['beta1']:g}, β₂={r['beta2']:g}: x_T = {r['final_x']:.2f}",
                    loss_title=f"average regret R_T/T = {fmt(r['average_regret'][-1])}")
    return cols


def _adam_layout(problem):
    def layout(base):
        import altair as alt

        from .web import COLORS, contour_layer, curves, ellipse_contours, point_layer, text_layer

        steps = _STEPS[problem]
        if problem == "badly_scaled":
            reference = adam_run(problem=problem)
            gd_idx = np.arange(0, steps + 1, 2)
            gd = alt.Chart(alt.InlineData(values=[
                {"t": int(t), "x": round(float(reference["gd_trajectory"][t, 0]), 5), "y": round(float(reference["gd_trajectory"][t, 1]), 5),
                 "gd": float(f"{reference['gd_loss'][t]:.5g}")} for t in gd_idx]))
            box = _BOX
            xy = dict(x=alt.X("x:Q", scale=alt.Scale(domain=list(box[0]))), y=alt.Y("y:Q", scale=alt.Scale(domain=list(box[1]))))
            zmax = 0.5 * (0.01 * 2.5**2 + 2.0**2)
            rings = ellipse_contours(np.diag([0.01, 1.0]), levels=np.geomspace(1e-3, zmax, 12))
            path = base.transform_flatten(["t", "x", "y"]).mark_line(
                color=COLORS["C0"], point=alt.OverlayMarkDef(size=8, color=COLORS["C0"]), strokeWidth=1.1, clip=True).encode(order="t:Q", **xy)
            gd_path = gd.mark_line(color=COLORS["gray"], strokeDash=[4, 3], strokeWidth=1.0, clip=True).encode(order="t:Q", **xy)
            left = alt.layer(contour_layer(rings, None, "θ₁ (curvature 0.01)", "θ₂ (curvature 1)", box), gd_path, path,
                             point_layer(0.0, 0.0), text_layer(base, "title"), text_layer(base, "note", y=200, color=COLORS["warn"]))
            left = left.properties(width=250, height=200)
            right = alt.layer(
                curves(base, {"loss": ("Adam", COLORS["C0"], False)}, domain=(1e-8, 1e2), x_domain=(0, steps), title="loss"),
                curves(gd, {"gd": ("GD, 2/(L+μ)", COLORS["gray"], True)}, domain=(1e-8, 1e2), x_domain=(0, steps), title="loss", flatten=False),
                text_layer(base, "loss_title"),
            ).resolve_scale(color="independent", strokeDash="independent")
            step_fields = {"s1": ("coordinate 1", COLORS["C0"], False), "s2": ("coordinate 2", COLORS["C1"], False)}
        else:
            xt = base.transform_flatten(["t", "x"]).mark_line(color=COLORS["C0"], strokeWidth=1.2).encode(
                x=alt.X("t:Q", title="round t", scale=alt.Scale(domain=[0, steps])),
                y=alt.Y("x:Q", title="x_t", scale=alt.Scale(domain=[-1.1, 1.1])))
            optimum = alt.Chart(alt.InlineData(values=[{"y": -1.0}])).mark_rule(color="black", strokeDash=[4, 3]).encode(y="y:Q")
            left = alt.layer(optimum, xt, text_layer(base, "title")).properties(width=250, height=200)
            regret = base.transform_flatten(["tr", "regret"]).mark_line(color=COLORS["C0"], strokeWidth=1.6, clip=True).encode(
                x=alt.X("tr:Q", title="round t", scale=alt.Scale(domain=[0, steps])),
                y=alt.Y("regret:Q", title="average regret R_t/t", scale=alt.Scale(domain=[-0.5, 1.5])))
            zero = alt.Chart(alt.InlineData(values=[{"y": 0.0}])).mark_rule(color="black", strokeWidth=0.8).encode(y="y:Q")
            right = alt.layer(zero, regret, text_layer(base, "loss_title"))
            step_fields = {"s1": ("coordinate 1", COLORS["C0"], False)}
        middle = alt.layer(
            curves(base, step_fields, t="te", domain=(1e-3, 1e3), x_domain=(0, steps), title="η_t / (√v̂_t + ε)"),
        ).properties(width=250, height=200, title="effective step per coordinate")
        # Two panels a row: three do not fit the width of a page.
        return alt.concat(left, middle, right.properties(width=250, height=200), columns=2).resolve_scale(
            color="independent", strokeDash="independent")

    return layout


def adam_web(problem: str | None = None):
    """The website's live view: sliders for $\\eta$, $\\beta_1$, $\\beta_2$ and toggles for bias
    correction and AMSGrad over :data:`ADAM_WEB_GRID` (eps fixed at 1e-8), one chart per
    problem (both when ``problem`` is None); curves at every third step (badly scaled) or eighth round (Reddi)."""
    from .web import Slider, group, web_view

    if problem is None:
        return group(adam_web("badly_scaled"), adam_web("reddi"))
    problem = check_choice("problem", problem, PROBLEMS)
    values, defaults = ADAM_WEB_GRID[problem], ADAM_DEFAULTS[problem]
    sliders = [
        Slider("eta", values["eta"], label="η", kind="radio", initial=defaults["eta"]),
        Slider("beta1", values["beta1"], label="β₁", kind="radio", initial=defaults["beta1"]),
        Slider("beta2", values["beta2"], label="β₂", kind="radio", initial=defaults["beta2"]),
        Slider("bias_correction", (False, True), label="bias correction", initial=True),
        Slider("amsgrad", (False, True), label="AMSGrad", initial=False),
    ]

    def compute(**setting):
        return adam_run(problem=problem, **setting)

    return web_view(compute, sliders, _adam_layout(problem), _adam_columns, name=f"adam_{problem}", digits=4)
