r"""Learning-rate schedules and the loss they produce: SGD on noisy least squares."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..optim import schedules
from ..problems import LeastSquares, make_least_squares
from ..records import ExplorerRun
from ._widget import (
    check_choice,
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

__all__ = ["SCHEDULE_KINDS", "make_schedule", "schedule_run", "schedule_explorer", "schedule_static", "schedule_web"]

SCHEDULE_KINDS = ("constant", "step", "cosine", "warmup_cosine", "warmup_linear", "wsd", "one_cycle", "inverse_sqrt")
_USES_WARMUP = ("warmup_cosine", "warmup_linear", "wsd", "one_cycle")


@lru_cache(maxsize=1)
def _problem() -> LeastSquares:
    A, b = make_least_squares(500, 10, noise=1.0, seed=0)
    return LeastSquares(A, b)


def make_schedule(kind: str, peak_lr: float, warmup_steps: int, total_steps: int, decay_fraction: float = 0.2):
    r"""The ``steplab.optim.schedules`` object for ``kind`` over ``total_steps`` steps $T$.

    ``constant``: $\eta$. ``step``: $\times 0.1$ every $T/3$ steps. ``cosine``: cosine from
    $\eta$ to 0. ``warmup_cosine``: linear warmup over $W$ steps, then cosine to 0.
    ``warmup_linear``: linear warmup over $W$ steps, then linear decay to 0 at $T$. ``wsd``:
    warmup $W$, stable, linear decay to 0 over the last $D = \lfloor \delta T \rfloor$ steps
    ($\delta$ = ``decay_fraction``, default $1/5$). ``one_cycle``: rises for $\max(W, 1)$ steps
    from $\eta/25$ to $\eta$, then anneals to $\eta/(25\cdot 10^4)$. ``inverse_sqrt``:
    $\eta/\sqrt{t+1}$. ``warmup_steps`` is used only by the four kinds with a warmup,
    ``decay_fraction`` only by ``wsd``.
    """
    kind = check_choice("kind", kind, SCHEDULE_KINDS)
    peak_lr = check_float("peak_lr", peak_lr, low=0.0, low_open=True)
    total_steps = check_int("total_steps", total_steps, low=10)
    warmup_steps = check_int("warmup_steps", warmup_steps, low=0)
    decay_fraction = check_float("decay_fraction", decay_fraction, low=0.0, high=1.0, low_open=True)
    decay = max(1, int(round(decay_fraction * total_steps, 9))) if kind == "wsd" else total_steps // 5
    if kind in _USES_WARMUP and warmup_steps > total_steps - decay - 1:
        raise ValueError(f"warmup_steps must be <= {total_steps - decay - 1} for total_steps={total_steps}, got {warmup_steps}")
    if kind == "constant":
        return schedules.constant(peak_lr)
    if kind == "step":
        return schedules.step_decay(peak_lr, step_size=total_steps // 3, gamma=0.1)
    if kind == "cosine":
        return schedules.cosine(peak_lr, total_steps)
    if kind == "warmup_cosine":
        return schedules.warmup_cosine(peak_lr, warmup_steps, total_steps)
    if kind == "warmup_linear":
        return schedules.warmup_stable_decay(peak_lr, warmup_steps, 0, total_steps - warmup_steps)
    if kind == "wsd":
        return schedules.warmup_stable_decay(peak_lr, warmup_steps, total_steps - warmup_steps - decay, decay)
    if kind == "one_cycle":
        return schedules.one_cycle(peak_lr, total_steps, pct_start=(max(warmup_steps, 1) + 1) / total_steps)
    return schedules.inverse_sqrt(peak_lr)


def schedule_run(
    kind: str = "warmup_cosine", peak_lr: float = 0.3, warmup_steps: int = 30,
    steps: int = 300, batch_size: int = 8, seeds: int = 5, seed: int = 0, decay_fraction: float = 0.2,
) -> ExplorerRun:
    r"""Minibatch SGD $\theta_{t+1} = \theta_t - \eta_t g_t$ with $\eta_t$ from
    :func:`make_schedule`, on least squares ($n = 500$, $d = 10$, label noise 1), ``seeds``
    runs at once from $\theta_0 = 0$, minibatches drawn with replacement from
    ``default_rng(seed)``; and the same runs (same minibatches) with the constant rate
    $\eta_t = \eta$ for comparison. A constant rate stalls at a noise floor of order
    $\eta\sigma^2/B$; decaying it lowers the floor.

    Args:
        kind, peak_lr, warmup_steps, decay_fraction: the schedule (:func:`make_schedule`).
        steps: the horizon $T \ge 10$, the schedule's ``total_steps``.
        batch_size, seeds, seed: $B$, the number of runs, the seed.

    Returns:
        an :class:`~steplab.records.ExplorerRun` with ``loss`` $f(\theta_t)$ ``(T'+1, S)`` (one
        column per run; ``run["loss"]`` is the mean over runs) and the values ``f_star``, ``lr``
        $(\eta_t)_{t<T}$, ``suboptimality`` $f(\theta_t) - f^\star$
        ``(S, T'+1)``, ``constant_suboptimality`` ``(S, T''+1)``, ``final`` and
        ``constant_final`` (mean over runs of the last 10% of the steps; NaN if diverged),
        ``diverged_at``, ``constant_diverged_at``, ``fp_warnings``.
    """
    sched = make_schedule(kind, peak_lr, warmup_steps, steps, decay_fraction)
    batch_size = check_int("batch_size", batch_size, low=1)
    seeds = check_int("seeds", seeds, low=1)
    problem = _problem()
    lr = np.array([sched(t) for t in range(steps)])
    with floating_point_log() as fp:
        sub, div = _sgd(problem, lr, batch_size, seeds, seed)
        const_sub, const_div = _sgd(problem, np.full(steps, float(peak_lr)), batch_size, seeds, seed)
    tail = max(1, steps // 10)
    settings = {"kind": kind, "peak_lr": float(peak_lr), "warmup_steps": int(warmup_steps), "steps": steps,
                "batch_size": batch_size, "seeds": seeds, "seed": seed, "decay_fraction": float(decay_fraction)}
    values = {
        "lr": lr, "f_star": float(problem.f_star), "suboptimality": sub, "constant_suboptimality": const_sub,
        "final": float(sub[:, -tail:].mean()) if div is None else float("nan"),
        "constant_final": float(const_sub[:, -tail:].mean()) if const_div is None else float("nan"),
        "constant_diverged_at": const_div,
    }
    return ExplorerRun("schedule", settings, problem.f_star + sub.T, values, diverged_at=div, fp_warnings=fp)


def _sgd(problem, lr, batch_size, seeds, seed):
    A, b, n = problem.A, problem.b, problem.n
    star, H = problem.minimizer, problem.hessian()
    eps = b - A @ star
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(lr.size, seeds, batch_size))
    rows, targets = A[idx], eps[idx]
    e = np.tile(-star, (seeds, 1))
    errors = np.empty((lr.size + 1, seeds, A.shape[1]))
    errors[0] = e
    for t in range(lr.size):
        residual = (rows[t] @ e[:, :, None])[..., 0] - targets[t]
        e = e - lr[t] * (residual[:, None, :] @ rows[t])[:, 0, :] / batch_size
        errors[t + 1] = e
    # Least squares is exactly quadratic around its minimizer: f - f* = e^T H e / 2.
    sub = 0.5 * np.einsum("tsi,ij,tsj->st", errors, H, errors)
    diverged_at = first_divergence(sub.max(axis=0), sub[0, 0])
    if diverged_at is not None:
        sub = sub[:, : diverged_at + 1]
    return sub, diverged_at


def schedule_metrics(r: dict) -> list[tuple[str, str]]:
    """The rows of the metrics table, formatted from a :func:`schedule_run` result."""
    return [
        ("schedule, peak lr, warmup", f"{r['kind']}, {fmt(r['peak_lr'])}, {r['warmup_steps'] if r['kind'] in _USES_WARMUP else 'unused'}"),
        ("final f - f* (mean of last 10%), schedule", fmt(r["final"])),
        ("final f - f* (mean of last 10%), constant peak lr", fmt(r["constant_final"])),
        ("lr at the last step", fmt(r["lr"][-1])),
    ]


def _nice_ceiling(x: float) -> float:
    """The next of 1, 2, 5 times a power of ten at or above ``x``, so the axis seldom moves."""
    power = 10.0 ** np.floor(np.log10(x))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * power >= x * (1 - 1e-12):
            return m * power
    return 10.0 * power


class _ScheduleView:
    def __init__(self, ax_lr, ax_loss, live=False, show_legend=True):
        self.ax_lr, self.ax_loss = ax_lr, ax_loss
        self.figure = ax_lr.figure
        self.live = live
        (self.lr,) = ax_lr.plot([], [], color="C0", lw=2)
        ax_lr.set_xlabel("step $t$")
        ax_lr.set_ylabel(r"$\eta_t$")
        self.runs = [ax_loss.plot([], [], color="C0", lw=0.6, alpha=0.35)[0] for _ in range(5)]
        (self.mean,) = ax_loss.plot([], [], color="C0", lw=2, label="schedule (mean of runs)")
        (self.const,) = ax_loss.plot([], [], color="gray", lw=1.5, ls="--", label="constant peak lr")
        log_axis(ax_loss)
        ax_loss.set_xlabel("step $t$")
        ax_loss.set_ylabel(r"$f(\theta_t) - f^\star$")
        if show_legend:
            ax_loss.legend(loc="upper right", fontsize="x-small")
        self.banner = ax_loss.text(0.5, 0.04, "", transform=ax_loss.transAxes, ha="center", color="#b00", fontsize="small")
        if live:
            ax_lr.set_title("learning rate", fontsize="medium")
            ax_loss.set_title("loss", fontsize="medium")
        self.dynamic = [self.lr, *self.runs, self.mean, self.const, self.banner]

    def update(self, r) -> bool:
        t = np.arange(r.settings["steps"])
        self.lr.set_data(t, r["lr"])
        sub = r["suboptimality"]
        for i, line in enumerate(self.runs):
            if i < sub.shape[0]:
                line.set_data(np.arange(sub.shape[1]), sub[i])
            else:
                line.set_data([], [])
        self.mean.set_data(np.arange(sub.shape[1]), sub.mean(axis=0))
        c = r["constant_suboptimality"]
        self.const.set_data(np.arange(c.shape[1]), c.mean(axis=0))
        changed = set_limits(self.ax_lr, "x", (0, r.settings["steps"]))
        changed |= set_limits(self.ax_loss, "x", (0, r.settings["steps"]))
        changed |= set_limits(self.ax_lr, "y", (0.0, _nice_ceiling(max(r["peak_lr"], float(r["lr"].max())))))
        changed |= set_limits(self.ax_loss, "y", decade_limits([1e-4, 10.0 * sub[0, 0]]))
        self.banner.set_text(_divergence_notes(r))
        if not self.live:
            self.ax_lr.set_title(f"{r['kind']}, peak {r['peak_lr']:g}", fontsize="medium")
            self.ax_loss.set_title(f"final f \u2212 f*: {fmt(r['final'], 3)} (constant {fmt(r['constant_final'], 3)})", fontsize="medium")
        return changed

    def metrics_html(self, r):
        return metrics_table(schedule_metrics(r), status_note(r))


def schedule_explorer(
    kind: str = "warmup_cosine", peak_lr: float = 0.3, warmup_steps: int = 30, steps: int = 300, decay_fraction: float = 0.2
):
    r"""A dropdown for the schedule, sliders for the peak rate, the warmup, the horizon $T$ and
    the WSD decay fraction; see :func:`schedule_run`.

    Defaults: warmup then cosine at $\eta = 0.3$ over 300 steps: the loss ends about ten times
    below the constant rate's noise floor (the gray curve).
    """
    import ipywidgets as widgets

    make_schedule(kind, peak_lr, warmup_steps, steps, decay_fraction)
    style = {"description_width": "initial"}
    controls = {
        "kind": widgets.Dropdown(options=list(SCHEDULE_KINDS), value=kind, description="schedule", style=style),
        "peak_lr": widgets.FloatLogSlider(value=peak_lr, base=10, min=-2, max=0.2, step=0.02, description="peak lr", style=style),
        "warmup_steps": widgets.IntSlider(value=warmup_steps, min=0, max=150, step=5, description="warmup steps", style=style),
        "steps": widgets.IntSlider(value=steps, min=100, max=1000, step=50, description="horizon T", style=style),
        "decay_fraction": widgets.FloatSlider(value=decay_fraction, min=0.05, max=0.5, step=0.05, description="WSD decay fraction", style=style),
    }
    fig, axes = new_figure((10.0, 3.6), 1, 2)
    view = _ScheduleView(*axes[0], live=True)

    def on_change(name, value, box):
        if name == "kind":
            box.sliders["warmup_steps"].disabled = value not in _USES_WARMUP
            box.sliders["decay_fraction"].disabled = value != "wsd"

    controls["warmup_steps"].disabled = kind not in _USES_WARMUP
    controls["decay_fraction"].disabled = kind != "wsd"

    def compute(kind, peak_lr, warmup_steps, steps, decay_fraction):
        return schedule_run(
            kind=kind, peak_lr=round(peak_lr, 12), warmup_steps=warmup_steps, steps=steps,
            decay_fraction=round(decay_fraction, 9),
        )

    return make_explorer(controls, compute, view, on_change=on_change)


def schedule_static(kinds=("constant", "step", "warmup_cosine", "wsd"), peak_lr: float = 0.3, warmup_steps: int = 30):
    """The website's view: one row per schedule kind."""
    kinds = list(kinds)
    if not kinds:
        raise ValueError("kinds must hold at least one schedule kind, got ()")
    fig, axes = new_figure((10.0, 3.0 * len(kinds)), len(kinds), 2)
    for i, kind in enumerate(kinds):
        view = _ScheduleView(*axes[i], show_legend=(i == 0))
        view.update(schedule_run(kind=kind, peak_lr=peak_lr, warmup_steps=warmup_steps))
    return fig


SCHEDULE_WEB_GRID = {
    "kind": SCHEDULE_KINDS,
    "peak_lr": (0.03, 0.1, 0.3, 1.0),
    "warmup_steps": (0, 20, 40, 60),
    "steps": (100, 300, 1000),
}
_WEB_POINTS = 61


def _divergence_notes(r: ExplorerRun) -> str:
    """Which of the two runs (the schedule's, the constant-lr baseline's) diverged, and when."""
    notes = (diverged_note(r.diverged_at), diverged_note(r["constant_diverged_at"], "constant lr"))
    return "; ".join(n for n in notes if n)


def _schedule_columns(r: ExplorerRun) -> dict:
    from .web import thin

    t = thin(r.settings["steps"], _WEB_POINTS)
    sub, const = r["suboptimality"].mean(axis=0), r["constant_suboptimality"].mean(axis=0)
    ts, tc = thin(sub.size, _WEB_POINTS), thin(const.size, _WEB_POINTS)
    return {
        "t": t, "lr": r["lr"][t], "ts": ts, "sub": sub[ts], "tc": tc, "const": const[tc],
        "title": f"{r['kind']}, peak {r['peak_lr']:g}, T = {r.settings['steps']}",
        "final_title": f"final f − f*: {fmt(r['final'], 3)} (constant {fmt(r['constant_final'], 3)})",
        "note": _divergence_notes(r),
    }


def _schedule_layout(base):
    import altair as alt

    from .web import COLORS, curves, text_layer

    lr = base.transform_flatten(["t", "lr"]).mark_line(color=COLORS["C0"], strokeWidth=2).encode(
        x=alt.X("t:Q", title="step t"), y=alt.Y("lr:Q", title="η_t", scale=alt.Scale(zero=True)),
    )
    rate = alt.layer(lr, text_layer(base, "title")).properties(width=260, height=240)
    mean = base.transform_flatten(["ts", "sub"]).transform_calculate(t="datum.ts")
    const = base.transform_flatten(["tc", "const"]).transform_calculate(t="datum.tc")
    loss = alt.layer(
        curves(mean, {"sub": ("schedule (mean of runs)", COLORS["C0"], False)}, domain=(1e-4, 1e2), title="f(θ_t) − f*", flatten=False),
        curves(const, {"const": ("constant peak lr", COLORS["gray"], True)}, domain=(1e-4, 1e2), title="f(θ_t) − f*", flatten=False),
        text_layer(base, "final_title"), text_layer(base, "note", y=240, color=COLORS["warn"]),
    ).resolve_scale(color="independent", strokeDash="independent").properties(width=260, height=240)
    return alt.hconcat(rate, loss).resolve_scale(color="independent")


def schedule_web(**grid):
    """The website's live view: the explorer's controls over :data:`SCHEDULE_WEB_GRID` (the 8
    schedule shapes, 4 peak rates, 4 warmup lengths, 3 horizons; WSD decays over the last
    fifth); curves at 61 points, the mean of the 5 runs.

    ``grid`` may replace any control's values (``kind=...``, ``peak_lr=...``,
    ``warmup_steps=...``, ``steps=...``).
    """
    from .web import Slider, web_view

    values = {**SCHEDULE_WEB_GRID, **grid}
    sliders = [
        Slider("kind", values["kind"], label="schedule", initial="warmup_cosine" if "warmup_cosine" in values["kind"] else None),
        Slider("peak_lr", values["peak_lr"], label="peak lr", kind="radio", initial=0.3 if 0.3 in values["peak_lr"] else None),
        Slider("warmup_steps", values["warmup_steps"], label="warmup steps", initial=20 if 20 in values["warmup_steps"] else None),
        Slider("steps", values["steps"], label="horizon T", kind="radio", initial=300 if 300 in values["steps"] else None),
    ]
    def same_as(setting):
        if setting["kind"] not in _USES_WARMUP:
            setting["warmup_steps"] = 0
        return setting

    return web_view(schedule_run, sliders, _schedule_layout, _schedule_columns, name="schedule", digits=4, same_as=same_as)
