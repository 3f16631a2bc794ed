r"""One visual style for the course: contours with trajectories, curves on log axes.

Every function draws on ``ax`` (a new figure when ``ax`` is None) and returns the artists it
made, so a notebook can restyle them or check them.
"""

from __future__ import annotations

from typing import Iterable

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["set_style", "contour", "trajectory", "loss_curves", "superscript", "sci"]

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def set_style(context: str = "notebook") -> None:
    """Seaborn's ``whitegrid`` style with the colorblind palette, used by every figure.

    Args:
        context: seaborn context (``"notebook"``, ``"talk"``, ``"paper"``).
    """
    import seaborn as sns

    sns.set_theme(context=context, style="whitegrid", palette="colorblind")
    plt.rcParams.update(
        {
            "figure.figsize": (6.0, 4.0),
            "figure.dpi": 100,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "lines.linewidth": 1.8,
            "legend.frameon": False,
        }
    )


def superscript(n: int) -> str:
    """The integer in superscript digits (``-3`` -> ``⁻³``), for plain-text powers of ten."""
    return str(int(n)).translate(_SUPERSCRIPT)


def sci(x: float, digits: int = 1) -> str:
    """A number as the prose and the labels write it: ``1.3 × 10⁶`` (``digits`` after the point).

    Plain text, no mathtext, so it can be glued into a sentence or an alt text.
    """
    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f"sci needs a finite number, got {x}")
    mantissa, exponent = f"{x:.{int(digits)}e}".split("e")
    return f"{mantissa} × 10{superscript(int(exponent))}"


def _ax(ax):
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _values_on_grid(problem, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    if getattr(problem, "batched", False):
        z = np.asarray(problem.value(pts), dtype=np.float64)
    else:
        z = np.array([problem.value(p) for p in pts], dtype=np.float64)
    return z.reshape(xx.shape)


def contour(
    problem,
    ax=None,
    xlim: tuple[float, float] = (-2.0, 2.0),
    ylim: tuple[float, float] = (-2.0, 2.0),
    levels: int | Iterable[float] = 20,
    resolution: int = 200,
    filled: bool = False,
    mark_minimizer: bool = True,
    **kwargs,
):
    r"""Level sets of a 2-D objective, spaced logarithmically above its minimum.

    With $f_{\min}$ the problem's ``f_star`` (or the smallest value on the grid), the
    levels are $f_{\min} + \delta_i$ with $\delta_i$ geometrically spaced from the smallest to
    the largest gap on the grid, so the narrow valleys of ill-conditioned problems stay
    visible.

    Args:
        problem: ``value`` accepts a point of shape ``(2,)`` (or a stack when ``batched``).
        ax: matplotlib Axes (default: a new figure).
        xlim, ylim: the box drawn.
        levels: number of log-spaced levels, or explicit level values.
        resolution: grid points per axis.
        filled: draw filled contours.
        mark_minimizer: mark ``problem.minimizer`` with a star when it is known.
        **kwargs: passed to ``ax.contour`` / ``ax.contourf``.

    Returns:
        The ``QuadContourSet``.
    """
    if getattr(problem, "dim", 2) != 2:
        raise ValueError(f"contour needs a 2-D problem, got dim = {problem.dim}")
    for name, lim in (("xlim", xlim), ("ylim", ylim)):
        if len(lim) != 2 or not lim[0] < lim[1]:
            raise ValueError(f"{name} must be (low, high) with low < high, got {lim!r}")
    ax = _ax(ax)
    xs = np.linspace(xlim[0], xlim[1], resolution)
    ys = np.linspace(ylim[0], ylim[1], resolution)
    xx, yy = np.meshgrid(xs, ys)
    zz = _values_on_grid(problem, xx, yy)
    if np.isscalar(levels) or isinstance(levels, (int, np.integer)):
        n_levels = int(levels)
        if n_levels < 2:
            raise ValueError(f"levels must be >= 2 or a list of values, got {levels!r}")
        f_star = getattr(problem, "f_star", None)
        f_min = float(np.nanmin(zz)) if f_star is None else min(float(f_star), float(np.nanmin(zz)))
        gaps = zz - f_min
        positive = gaps[gaps > 0]
        lo = float(positive.min()) if positive.size else 1e-12
        hi = float(np.nanmax(gaps))
        lo = max(lo, hi * 1e-8)
        level_values = f_min + np.geomspace(lo, hi, n_levels)
    else:
        level_values = np.sort(np.asarray(list(levels), dtype=np.float64))
    kwargs.setdefault("cmap", "viridis")
    draw = ax.contourf if filled else ax.contour
    if not filled:
        kwargs.setdefault("linewidths", 0.8)
    cs = draw(xx, yy, zz, levels=level_values, **kwargs)
    minimizer = getattr(problem, "minimizer", None)
    if mark_minimizer and minimizer is not None:
        m = np.asarray(minimizer, dtype=np.float64).ravel()
        ax.plot(m[0], m[1], marker="*", markersize=12, color="black", linestyle="none", zorder=5)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    return cs


def trajectory(ax, thetas, label: str | None = None, markers: bool = True, **kwargs):
    r"""Draw the path $\theta_0, \theta_1, \dots$ of a 2-D run, with its start and end marked.

    Args:
        ax: matplotlib Axes (None: a new figure).
        thetas: array ``(T + 1, 2)`` (e.g. ``History.trajectory``).
        label: legend label.
        markers: draw a small dot at every iterate.
        **kwargs: passed to ``ax.plot``.

    Returns:
        The ``Line2D`` of the path.
    """
    ax = _ax(ax)
    pts = np.asarray(thetas, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise ValueError(f"thetas must have shape (T, 2), got {pts.shape}")
    if markers:
        kwargs.setdefault("marker", "o")
        kwargs.setdefault("markersize", 3)
    (line,) = ax.plot(pts[:, 0], pts[:, 1], label=label, **kwargs)
    color = line.get_color()
    ax.plot(pts[0, 0], pts[0, 1], marker="o", markersize=7, markerfacecolor="white", color=color, linestyle="none")
    ax.plot(pts[-1, 0], pts[-1, 1], marker="X", markersize=8, color=color, linestyle="none")
    if label is not None:
        ax.legend()
    return line


def _x_of(history, key, size):
    """The x values of a series and the axis label: the record says (steps, or evaluations / n)."""
    if hasattr(history, "_plot_x"):
        return history._plot_x(key, size)
    return np.arange(size), "step $t$"


def loss_curves(histories, ax=None, key: str = "loss", log: bool = True, f_star: float | None = None,
                **kwargs):
    r"""Plot one series of several runs, on a log axis by default.

    $$y_t = s_t - f^\star \quad (\text{or } s_t \text{ without } f^\star)$$

    for the series $s_t$ named by ``key``. With ``f_star`` the suboptimality
    $f(\theta_t) - f^\star$ is drawn (values $\le 0$, reached at rounding level, are left out of
    a log axis). Each run is drawn against what its record counts: the step $t$ for a
    :class:`steplab.run.History` (at the steps the loss or metric was evaluated), gradient
    evaluations / $n$ for a :class:`steplab.finite_sum.EvalHistory`, the step or round for a
    :class:`steplab.distributed.SimulationHistory`. A run that diverged ends in a cross at its
    last recorded value.

    Args:
        histories: ``{label: History}`` or a list of Histories (labelled by position).
        ax: matplotlib Axes (default: a new figure).
        key: the series: ``"loss"``, ``"grad_norm"``, ``"update_norm"``, ``"lr"``, a metric, or
            ``"suboptimality"`` (the loss minus ``f_star``, or minus the run's own ``f_star``).
        log: logarithmic y axis.
        f_star: subtract this from the series.
        **kwargs: passed to ``ax.plot`` (``marker``, ``color``, ...).

    Returns:
        The list of ``Line2D``, one per run.

    Reference: Bottou, Curtis and Nocedal, "Optimization Methods for Large-Scale Machine
    Learning", SIAM Review 60(2), 2018, Figure 3.1 (suboptimality on a log axis against cost).
    """
    if isinstance(histories, dict):
        items = list(histories.items())
    else:
        items = [(f"run {i}", h) for i, h in enumerate(histories)]
    if not items:
        raise ValueError("histories must hold at least one History")
    ax = _ax(ax)
    lines = []
    xlabel = "step $t$"
    for label, h in items:
        if key == "suboptimality":
            y = np.asarray(h.suboptimality(f_star), dtype=np.float64)
        else:
            y = np.asarray(h[key], dtype=np.float64)
            if f_star is not None:
                y = y - f_star
        if log:
            y = np.where(y > 0, y, np.nan)
        x, xlabel = _x_of(h, key, y.size)
        (line,) = ax.plot(x, y, label=str(label), **kwargs)
        if getattr(h, "diverged", False) and y.size:
            ax.plot(x[-1], y[-1], marker="x", markersize=9, color=line.get_color(), linestyle="none")
        lines.append(line)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    if key == "suboptimality" or (f_star is not None and key == "loss"):
        ax.set_ylabel(r"$f(\theta_t) - f^\star$")
    else:
        ax.set_ylabel(key.replace("_", " "))
    if len(items) > 1 or not isinstance(histories, list):
        ax.legend()
    return lines
