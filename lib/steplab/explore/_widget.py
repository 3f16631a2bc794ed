r"""What every explorer shares: argument checks, floating-point bookkeeping, the widget shell.

The widget redraws one persistent :class:`matplotlib.figure.Figure` (not registered with
pyplot, so it never leaks into ``plt.get_fignums()``) by updating its artists in place, and
shows it as PNG bytes in an :class:`ipywidgets.Image`: no ipympl, any Jupyter frontend.
"""

from __future__ import annotations

import functools
import html
import io
from contextlib import contextmanager
from typing import Callable

import numpy as np

from .._checks import DIVERGE_FACTOR, divergence_limit, is_diverged  # noqa: F401
from .._checks import check_bool, check_choice, check_int  # noqa: F401  (the explorers import their checks from here)
from .._checks import check_number as check_float  # noqa: F401
from ..plotting import superscript


@contextmanager
def floating_point_log():
    """Collect numpy floating-point errors (overflow, invalid value, ...) instead of warning.

    Yields a list that receives each kind of error once, in the order first seen; underflow
    (harmless here: a converged error rounding to zero) is ignored.
    """
    seen: list[str] = []

    def record(kind, flag):
        if kind not in seen:
            seen.append(kind)

    with np.errstate(all="call", under="ignore", call=record):
        yield seen


def first_divergence(loss: np.ndarray, reference: float) -> int | None:
    """The first step whose loss diverged by the library's rule (non-finite, or above
    ``DIVERGE_FACTOR * max(|reference|, 1)``), or None."""
    bad = np.atleast_1d(is_diverged(loss, divergence_limit(reference)))
    return int(np.argmax(bad)) if bad.any() else None


def tail_rate(distances: np.ndarray) -> float:
    r"""Per-step contraction over the second half of a run, $(d_T / d_{T-k})^{1/k}$, $k = \lceil T/2 \rceil$.

    A long window averages out rotations (complex eigenvalues) and lets the slowest
    eigendirection dominate. NaN when fewer than two points exist or $d_{T-k} = 0$.
    """
    d = np.asarray(distances, dtype=np.float64)
    k = d.size // 2
    if k < 1 or not np.isfinite(d[-1 - k]) or d[-1 - k] == 0.0 or not np.isfinite(d[-1]):
        return float("nan")
    return float((d[-1] / d[-1 - k]) ** (1.0 / k))


def positive_limits(*arrays, floor_ratio: float = 1e-14, pad: float = 3.0) -> tuple[float, float]:
    """Log-axis limits covering the finite positive values of the arrays, with a floor."""
    vals = np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in arrays])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size == 0:
        return 1e-3, 1.0
    hi = float(vals.max()) * pad
    lo = max(float(vals.min()) / pad, hi * floor_ratio)
    return lo, hi


def fmt(x, digits: int = 4) -> str:
    """The number as shown in an explorer's metrics (``n/a`` for NaN/None, ``inf`` kept)."""
    if x is None:
        return "n/a"
    x = float(x)
    if np.isnan(x):
        return "n/a"
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def metrics_table(rows: list[tuple[str, str]], note: str | None = None) -> str:
    """An HTML table of ``(name, value)`` rows, with an optional warning line below."""
    cells = "".join(
        f"<tr><td style='padding-right:1.5em'>{html.escape(k)}</td><td><code>{html.escape(v)}</code></td></tr>"
        for k, v in rows
    )
    out = f"<table>{cells}</table>"
    if note:
        out += f"<div style='color:#b00'>{html.escape(note)}</div>"
    return out


def diverged_note(step: int | None, what: str = "") -> str:
    """``"diverged at step t"`` (``what`` first, e.g. ``"constant lr"``), or ``""`` when ``step`` is None."""
    return "" if step is None else f"{what} diverged at step {step}".lstrip()


def status_note(result) -> str | None:
    """The warning line of an explorer's run record: divergence and any floating-point trouble met."""
    parts = [diverged_note(result.diverged_at)]
    if result.fp_warnings:
        parts.append("numpy reported: " + ", ".join(result.fp_warnings))
    return "; ".join(p for p in parts if p) or None


def decade_limits(*arrays, floor_ratio: float = 1e-14) -> tuple[float, float]:
    """Log-axis limits snapped to powers of ten, so most slider moves keep the axis unchanged."""
    lo, hi = positive_limits(*arrays, floor_ratio=floor_ratio, pad=1.0)
    return 10.0 ** np.floor(np.log10(lo)), 10.0 ** np.ceil(np.log10(hi) + 1e-9)


def set_limits(ax, axis: str, limits) -> bool:
    """Set ``ax``'s x or y limits; True if they changed (the background must be redrawn)."""
    old = ax.get_xlim() if axis == "x" else ax.get_ylim()
    if np.allclose(old, limits, rtol=1e-12, atol=0.0):
        return False
    (ax.set_xlim if axis == "x" else ax.set_ylim)(*limits)
    return True


def new_figure(figsize, nrows=1, ncols=1, **subplot_kw):
    """A Figure outside pyplot (nothing to close, nothing leaks) with a grid of Axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def _decade_label(value, pos=None) -> str:
    if value <= 0 or not np.isfinite(value):
        return ""
    exponent = np.log10(value)
    if abs(exponent - round(exponent)) > 1e-9:
        return ""
    return "10" + superscript(round(exponent))


def log_axis(ax, axis: str = "y") -> None:
    """A log axis labelled 10⁻³ in plain text: mathtext tick labels are slow to redraw."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(_decade_label))
    target.set_minor_formatter(NullFormatter())


class BlitRenderer:
    """Render a figure to PNG bytes, redrawing only its moving artists when nothing else changed.

    The artists in ``dynamic`` are marked animated, so a full draw paints the background
    (axes, ticks, labels, contours) without them; the background is kept and each later frame
    restores it and paints only the moving artists: text and ticks, the slow part of a
    matplotlib draw, are not laid out again.
    """

    def __init__(self, fig, dynamic, dpi: int = 80):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        fig.set_dpi(dpi)
        self.figure = fig
        self.canvas = FigureCanvasAgg(fig)
        self.dynamic = list(dynamic)
        for artist in self.dynamic:
            artist.set_animated(True)
        self._background = None
        self.full_draws = 0

    def render(self, full: bool = False) -> bytes:
        from PIL import Image

        if full or self._background is None:
            self.canvas.draw()
            if self.full_draws == 0:
                # Lay out once; re-running constrained layout costs most of a redraw.
                self.figure.set_layout_engine("none")
            self._background = self.canvas.copy_from_bbox(self.figure.bbox)
            self.full_draws += 1
        else:
            self.canvas.restore_region(self._background)
        for artist in self.dynamic:
            self.figure.draw_artist(artist)
        rgba = np.asarray(self.canvas.buffer_rgba())
        buf = io.BytesIO()
        # Fast zlib level: the image is regenerated on every move, latency matters more than size.
        Image.fromarray(rgba[..., :3]).save(buf, format="png", compress_level=1)
        return buf.getvalue()


def make_explorer(controls: dict, compute: Callable, view, dpi: int = 80, on_change=None):
    """Wire ``controls`` to ``compute(**values)`` and ``view.update(result)``, redrawing in place.

    Returns an ``ipywidgets.VBox`` (controls on top, the figure as a PNG image, the metrics
    below) carrying the attributes ``sliders`` (name -> control), ``figure``, ``view``,
    ``image``, ``metrics`` (an HTML widget), ``result`` (the latest record from ``compute``),
    ``draw_count``, ``redraw()`` and ``hold()`` (a context manager: change several controls,
    redraw once).

    Args:
        controls: ``{name: ipywidgets control}``; their ``value`` are the keyword arguments
            of ``compute``.
        compute: the explorer's pure function.
        view: has ``figure``, ``dynamic`` (the artists that move), ``update(result)``
            (returns True when anything else changed: limits, contours) and
            ``metrics_html(result)``.
        dpi: resolution of the PNG shown.
        on_change: optional ``fn(name, new_value, box)`` called before the redraw (e.g. to
            load a problem's defaults into the other sliders).
    """
    import ipywidgets as widgets

    renderer = BlitRenderer(view.figure, view.dynamic, dpi=dpi)
    image = widgets.Image(format="png")
    metrics = widgets.HTML()
    rows = [widgets.HBox(list(controls.values())[i : i + 3]) for i in range(0, len(controls), 3)]
    box = widgets.VBox([*rows, image, metrics])
    box.sliders = controls
    box.figure = view.figure
    box.view = view
    box.renderer = renderer
    box.image = image
    box.metrics = metrics
    box.result = None
    box.draw_count = 0
    box._held = False

    def redraw():
        values = {name: c.value for name, c in controls.items()}
        try:
            result = compute(**values)
        except ValueError as err:
            metrics.value = metrics_table([], note=f"invalid setting: {err}")
            return
        changed_background = view.update(result)
        image.value = renderer.render(full=bool(changed_background))
        metrics.value = view.metrics_html(result)
        box.result = result
        box.draw_count += 1

    @contextmanager
    def hold():
        """Change several controls, redraw once at the end."""
        box._held = True
        try:
            yield
        finally:
            box._held = False
        redraw()

    def changed(name, change):
        if box._held:
            return
        if on_change is not None:
            box._held = True
            try:
                on_change(name, change["new"], box)
            finally:
                box._held = False
        redraw()

    for name, c in controls.items():
        c.observe(functools.partial(changed, name), names="value")
    box.redraw = redraw
    box.hold = hold
    redraw()
    return box
