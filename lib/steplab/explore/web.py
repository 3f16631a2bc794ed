r"""Web views: an explorer's pure function evaluated over a grid of slider values, drawn by Vega-Lite.

The website runs no Python, so each explorer also has a view that works in a static page:
:func:`web_view` calls the compute function once per point of the slider grid, keeps the
columns the chart draws (one row per setting, curves as arrays) and returns a
:class:`WebView`, an Altair chart whose sliders are bound to chart parameters. Moving a slider
in the browser filters the precomputed rows and redraws; nothing is computed there.

The chart is embedded as its Vega-Lite spec and one ``vegaEmbed`` call; the Vega, Vega-Lite
and Vega-Embed scripts come from the site's own assets (``assets/vega/``, added by
``book_ext/web_views.py`` to the pages that hold a view). In a notebook kernel the view shows
one line of text (the ipywidgets explorer above it is the live one there) unless
``STEPLAB_WEB_VIEWS=embed`` is set, which the book build does; the grid is evaluated only then.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from itertools import product
from typing import Callable, Sequence

import numpy as np

__all__ = ["Slider", "WebView", "web_view", "group", "COLORS", "ellipse_contours", "EMBED_ENV"]

EMBED_ENV = "STEPLAB_WEB_VIEWS"
"""Environment variable: ``embed`` makes a :class:`WebView` display as the chart (set by the book build)."""

# seaborn's "colorblind" palette, the C0-C3 of steplab.plotting.set_style, and its warning red.
COLORS = {"C0": "#0173b2", "C1": "#de8f05", "C2": "#029e73", "C3": "#d55e00", "gray": "#808080", "warn": "#bb0000"}

MAX_BYTES = 1_000_000


def import_altair():
    """Altair, imported without the optional ``rfc3987_syntax`` package.

    Altair validates with jsonschema, whose first import compiles some 40 lark grammars when
    rfc3987-syntax is installed (it is, through Jupyter's dependencies): 10-14 s on the course's
    machine, in every kernel that draws a view, against under 2 s without it. Vega-Lite specs
    have no IRI-formatted strings for that package to check, so it is hidden from that first
    import only and importable again afterwards.
    """
    if "altair" not in sys.modules and "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules:
        sys.modules["rfc3987_syntax"] = None  # makes `import rfc3987_syntax` raise ImportError
        try:
            import altair  # noqa: F401
        finally:
            del sys.modules["rfc3987_syntax"]
    import altair as alt

    return alt


@dataclass(frozen=True)
class Slider:
    """One control of a web view.

    Args:
        name: the compute function's keyword (also the chart parameter's name).
        values: the grid, at least two values; numbers, strings or bools.
        label: shown beside the control (default ``name``).
        labels: text for each value of a ``radio``/``select`` control (default ``str(value)``).
        kind: ``"range"`` (a slider; evenly spaced numbers only), ``"radio"``, ``"select"``
            or ``"checkbox"`` (the values ``(False, True)``); default: ``range`` for evenly
            spaced numbers, ``checkbox`` for bools, ``select`` for strings, else ``radio``.
        initial: the value shown first (default: the first value).
    """

    name: str
    values: tuple
    label: str | None = None
    labels: tuple | None = None
    kind: str | None = None
    initial: object = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"Slider name must be an identifier, got {self.name!r}")
        values = tuple(self.values.tolist() if isinstance(self.values, np.ndarray) else self.values)
        if len(values) < 2:
            raise ValueError(f"grid for {self.name!r} must hold at least two values, got {values!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"grid for {self.name!r} repeats a value: {values!r}")
        kinds = {type(v) for v in values}
        numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values)
        if numeric:
            values = tuple(float(v) if isinstance(v, (float, np.floating)) else int(v) for v in values)
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"grid for {self.name!r} must hold finite numbers, got {values!r}")
        elif not (kinds <= {str} or kinds <= {bool}):
            raise ValueError(f"grid for {self.name!r} must hold numbers, strings or bools of one kind, got {values!r}")
        kind = self.kind or _default_kind(values, numeric)
        if kind not in ("range", "radio", "select", "checkbox"):
            raise ValueError(f"kind for {self.name!r} must be range, radio, select or checkbox, got {kind!r}")
        if kind == "range" and not (numeric and _evenly_spaced(values)):
            raise ValueError(f"a range slider for {self.name!r} needs evenly spaced increasing numbers, got {values!r}")
        if kind == "checkbox" and set(values) != {False, True}:
            raise ValueError(f"a checkbox for {self.name!r} needs the values (False, True), got {values!r}")
        if self.labels is not None and len(self.labels) != len(values):
            raise ValueError(f"labels for {self.name!r} must have one entry per value ({len(values)}), got {len(self.labels)}")
        initial = values[0] if self.initial is None else self.initial
        if initial not in values:
            raise ValueError(f"initial value of {self.name!r} must be one of its grid values {list(values)}, got {initial!r}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "initial", initial)

    @property
    def step(self) -> float:
        return (self.values[-1] - self.values[0]) / (len(self.values) - 1)

    def param(self):
        """The Altair parameter bound to this control."""
        alt = import_altair()

        label = self.label or self.name
        if self.kind == "range":
            digits = max(0, -math.floor(math.log10(self.step) + 1e-9))
            bind = alt.binding_range(min=self.values[0], max=self.values[-1], step=round(self.step, digits + 3), name=label + " ")
        elif self.kind == "checkbox":
            bind = alt.binding_checkbox(name=label + " ")
        else:
            factory = alt.binding_radio if self.kind == "radio" else alt.binding_select
            labels = list(self.labels) if self.labels is not None else [_label(v) for v in self.values]
            bind = factory(options=list(self.values), labels=labels, name=label + " ")
        return alt.param(name=self.name, value=self.initial, bind=bind)

    def test(self) -> str:
        """The Vega expression that is true for the rows of the current setting."""
        col = f"datum[{json.dumps(self.name)}]"
        if self.kind == "range":
            # Range inputs report values like 0.30000000000000004: match the nearest grid point.
            return f"abs({col} - {self.name}) < {0.5 * self.step!r}"
        return f"{col} == {self.name}"


def _default_kind(values, numeric) -> str:
    if all(isinstance(v, bool) for v in values):
        return "checkbox" if set(values) == {False, True} else "radio"
    if numeric and len(values) >= 3 and _evenly_spaced(values):
        return "range"
    return "radio" if numeric else "select"


def _evenly_spaced(values) -> bool:
    d = np.diff(np.asarray(values, dtype=np.float64))
    return bool(np.all(d > 0) and np.allclose(d, d[0], rtol=1e-9, atol=0.0))


def _label(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _round(x, digits: int):
    """``x`` (a number, array, string or None) as JSON: ``digits`` significant digits, None for non-finite."""
    if x is None or isinstance(x, (str, bool, np.bool_)):
        return bool(x) if isinstance(x, np.bool_) else x
    arr = np.asarray(x)
    if arr.dtype.kind in "iu":
        return arr.tolist()
    if arr.dtype.kind not in "f":
        raise ValueError(f"web view columns must be numbers, arrays of numbers, strings, bools or None, got {x!r:.80}")
    if arr.ndim > 1:
        raise ValueError(f"web view columns must be 1-D, got shape {arr.shape}")
    flat = np.atleast_1d(arr.astype(np.float64))
    out = [float(f"{v:.{digits}g}") if math.isfinite(v) else None for v in flat.tolist()]
    return out if arr.ndim == 1 else out[0]


def ellipse_contours(H, center=(0.0, 0.0), levels=(), points: int = 48) -> list[dict]:
    r"""Level sets $\tfrac12 (\theta - c)^\top H (\theta - c) = \ell$ of a quadratic: one row
    ``{"level", "i", "x", "y"}`` per level, ``i``, ``x``, ``y`` arrays tracing a closed polygon."""
    H = np.asarray(H, dtype=np.float64)
    if H.shape != (2, 2) or not np.allclose(H, H.T) or np.any(np.linalg.eigvalsh(H) <= 0):
        raise ValueError(f"H must be a symmetric positive definite 2x2 matrix, got {H.tolist()}")
    w, V = np.linalg.eigh(H)
    angle = np.linspace(0.0, 2.0 * np.pi, points + 1)
    circle = np.stack([np.cos(angle), np.sin(angle)])
    rows = []
    for level in levels:
        pts = np.asarray(center, dtype=np.float64)[:, None] + V @ (np.sqrt(2.0 * level / w)[:, None] * circle)
        rows.append({"level": float(f"{level:.4g}"), "i": list(range(points + 1)),
                     "x": np.round(pts[0], 3).tolist(), "y": np.round(pts[1], 3).tolist()})
    return rows


class WebView:
    """A web view: the grid, the rows computed from it (lazily), and the chart.

    Attributes:
        name: the explorer's name (``data-explorer`` on the page).
        sliders: the :class:`Slider` list.
        rows: one dict per grid point (the slider values, then the columns), as embedded.
        chart: the Altair chart; ``spec`` is its Vega-Lite dict.
    """

    def __init__(self, name, compute, sliders, layout, columns, digits=5, max_bytes=MAX_BYTES, same_as=None):
        self.name = name
        self.same_as = same_as
        self.compute = compute
        self.sliders = sliders
        self.layout = layout
        self.columns = columns
        self.digits = digits
        self.max_bytes = max_bytes

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(s.values) for s in self.sliders)

    def settings(self):
        """Every point of the grid, as keyword dicts, in row order."""
        names = [s.name for s in self.sliders]
        for values in product(*(s.values for s in self.sliders)):
            yield dict(zip(names, values))

    def _columns(self, setting) -> dict:
        cols = self.columns(self.compute(**setting))
        clash = set(cols) & set(setting)
        if clash:
            raise ValueError(f"columns must not reuse slider names, got {sorted(clash)}")
        return {k: _round(v, self.digits) for k, v in cols.items()}

    def row(self, **setting) -> dict:
        """The row for one setting, computed afresh (the same as the embedded one)."""
        return {**setting, **self._columns(setting)}

    @cached_property
    def rows(self) -> list[dict]:
        # Settings that same_as maps to one setting (a control the others make irrelevant) share one run.
        done: dict[str, dict] = {}
        rows = []
        for setting in self.settings():
            key = json.dumps(self.same_as(dict(setting)) if self.same_as else setting, sort_keys=True)
            if key not in done:
                done[key] = self._columns(self.same_as(dict(setting)) if self.same_as else setting)
            rows.append({**setting, **done[key]})
        return rows

    def data_for(self, **setting) -> dict:
        """The embedded row of one setting (every slider named, values from the grid)."""
        names = {s.name for s in self.sliders}
        if set(setting) != names:
            raise ValueError(f"setting must name exactly the sliders {sorted(names)}, got {sorted(setting)}")
        for s in self.sliders:
            if setting[s.name] not in s.values:
                raise ValueError(f"{s.name} must be one of its grid values {list(s.values)}, got {setting[s.name]!r}")
        index = np.ravel_multi_index([s.values.index(setting[s.name]) for s in self.sliders], self.shape)
        return self.rows[int(index)]

    @cached_property
    def chart(self):
        alt = import_altair()

        # One named top-level dataset, shared by every layer that draws the current row.
        selected = " && ".join(s.test() for s in self.sliders)
        base = alt.Chart(alt.NamedData(name=self.dataset)).transform_filter(selected)
        chart = self.layout(base)
        # The rows join the spec after validation (see ``spec``): validating them is slow.
        return chart.add_params(*(s.param() for s in self.sliders)).properties(
            usermeta={"steplab": {"explorer": self.name, "dataset": self.dataset, "sliders": [s.name for s in self.sliders]}},
        )

    @property
    def dataset(self) -> str:
        return f"{self.name}_runs"

    @cached_property
    def spec(self) -> dict:
        """The Vega-Lite spec: the chart, validated by Altair, with the rows as a named dataset."""
        spec = self.chart.to_dict()
        spec.setdefault("datasets", {})[self.dataset] = self.rows
        size = len(json.dumps(spec, separators=(",", ":")))
        if size > self.max_bytes:
            raise ValueError(
                f"the {self.name} web view's spec is {size} bytes, over max_bytes={self.max_bytes}: use a coarser grid"
            )
        return spec

    def summary(self) -> str:
        grid = " × ".join(f"{len(s.values)} {s.label or s.name}" for s in self.sliders)
        return f"grid of {grid} values ({math.prod(self.shape)} precomputed runs)"

    def html(self) -> str:
        """The page fragment: a container, the spec as JSON, one ``vegaEmbed`` call."""
        text = json.dumps(self.spec, separators=(",", ":"), allow_nan=False)
        ident = "steplab-web-view-" + hashlib.sha1(text.encode()).hexdigest()[:12]
        # "</" inside a <script> block would end it early.
        text = text.replace("</", "<\\/")
        note = html.escape(f"Sliders move on a precomputed {self.summary()}.")
        return (
            f'<div class="steplab-web-view" id="{ident}" data-explorer="{self.name}"></div>\n'
            f'<p class="steplab-web-view-grid">{note}</p>\n'
            f'<script type="application/json" id="{ident}-spec">{text}</script>\n'
            "<script>(function () {\n"
            f'  var id = "{ident}", el = document.getElementById(id);\n'
            '  var spec = JSON.parse(document.getElementById(id + "-spec").textContent);\n'
            '  vegaEmbed(el, spec, {actions: false, renderer: "canvas"})\n'
            "    .then(function (r) { el.vegaView = r.view; el.dataset.rendered = 'true'; })\n"
            "    .catch(function (e) { el.textContent = 'The chart could not be drawn: ' + e; });\n"
            "})();</script>"
        )

    def __repr__(self) -> str:
        return f"<{self.name} web view: {self.summary()}>"

    def _repr_mimebundle_(self, include=None, exclude=None):
        plain = f"The live web view of this explorer appears on the website ({self.summary()})."
        if os.environ.get(EMBED_ENV) != "embed":
            return {"text/plain": plain}
        return {"text/html": self.html(), "text/plain": plain}


class WebViewGroup:
    """Several web views shown as one output (one after the other)."""

    def __init__(self, views):
        self.views = list(views)

    def html(self) -> str:
        return "\n".join(v.html() for v in self.views)

    def __repr__(self) -> str:
        return "\n".join(repr(v) for v in self.views)

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundles = [v._repr_mimebundle_() for v in self.views]
        out = {"text/plain": "\n".join(b["text/plain"] for b in bundles)}
        if all("text/html" in b for b in bundles):
            out["text/html"] = "\n".join(b["text/html"] for b in bundles)
        return out


def group(*views: WebView) -> WebViewGroup:
    """Web views displayed together, as one cell's output."""
    if not views or not all(isinstance(v, WebView) for v in views):
        raise ValueError(f"group needs one or more WebView, got {views!r}")
    return WebViewGroup(views)


def web_view(
    compute: Callable[..., dict],
    grid: Sequence[Slider],
    layout: Callable,
    columns: Callable[[dict], dict],
    *,
    name: str,
    digits: int = 5,
    max_bytes: int = MAX_BYTES,
    same_as: Callable[[dict], dict] | None = None,
) -> WebView:
    """An explorer's web view: ``compute`` over the grid, drawn by ``layout``.

    Args:
        compute: the explorer's pure function; called as ``compute(**setting)``.
        grid: the sliders (:class:`Slider`); the grid is their product, rows in
            ``itertools.product`` order.
        layout: ``layout(base) -> altair chart``, where ``base`` is an ``alt.Chart`` of the
            row of the current setting (one row; curves are arrays, expand them with
            ``transform_flatten``); layers with their own data may be added.
        columns: ``columns(result) -> {name: value}``, the values the chart draws (numbers,
            1-D arrays, strings, bools, None); numbers keep ``digits`` significant digits,
            non-finite ones become null.
        name: the explorer's name.
        max_bytes: the spec may not be larger (a ValueError says so when it is drawn).
        same_as: optional ``same_as(setting) -> setting``: settings mapped to the same one
            are computed once (e.g. a warmup length for a schedule without warmup).

    Returns:
        a :class:`WebView`; nothing is computed until its rows or chart are asked for.
    """
    sliders = list(grid)
    if not sliders or not all(isinstance(s, Slider) for s in sliders):
        raise ValueError(f"grid must be a non-empty list of Slider, got {grid!r}")
    names = [s.name for s in sliders]
    if len(set(names)) != len(names):
        raise ValueError(f"grid names each slider once, got {names}")
    if not callable(compute) or not callable(layout) or not callable(columns):
        raise ValueError("compute, layout and columns must be callables")
    if not isinstance(digits, int) or not 2 <= digits <= 17:
        raise ValueError(f"digits must be an integer in [2, 17], got {digits!r}")
    return WebView(name, compute, sliders, layout, columns, digits=digits, max_bytes=max_bytes, same_as=same_as)


# ----------------------------------------------------------------- chart pieces the explorers share

STAR = "M0,-1L0.2245,-0.309L0.9511,-0.309L0.3633,0.118L0.5878,0.809L0,0.382L-0.5878,0.809L-0.3633,0.118L-0.9511,-0.309L-0.2245,-0.309Z"
"""A five-pointed star as an SVG path (Vega's point shapes have none): the minimizer."""


def thin(n: int, max_points: int) -> np.ndarray:
    """Indices ``0, k, 2k, ..., n - 1`` of at most ``max_points`` points, first and last kept."""
    if n <= max_points:
        return np.arange(n)
    k = math.ceil((n - 1) / (max_points - 1))
    idx = np.arange(0, n, k)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def contour_layer(rows, where: str | None = None, x_title="θ₁", y_title="θ₂", box=None):
    """Closed level sets (rows of :func:`ellipse_contours`, maybe with extra keys to filter on),
    coloured by level with viridis on a log scale, as matplotlib's contours of the widgets."""
    import altair as alt

    chart = alt.Chart(alt.InlineData(values=rows))
    if where:
        chart = chart.transform_filter(where)
    chart = chart.transform_flatten(["i", "x", "y"])
    xs = alt.Scale(domain=list(box[0])) if box else alt.Undefined
    ys = alt.Scale(domain=list(box[1])) if box else alt.Undefined
    return chart.mark_line(strokeWidth=0.8, clip=True).encode(
        x=alt.X("x:Q", title=x_title, scale=xs),
        y=alt.Y("y:Q", title=y_title, scale=ys),
        detail="level:N",
        order="i:Q",
        color=alt.Color("level:Q", scale=alt.Scale(scheme="viridis", type="log"), legend=None),
    )


def point_layer(x: float, y: float, shape: str = STAR, size: int = 180, color: str = "black"):
    """One fixed marker (the minimizer's star by default)."""
    import altair as alt

    return alt.Chart(alt.InlineData(values=[{"x": x, "y": y}])).mark_point(
        shape=shape, size=size, filled=True, color=color, stroke="white", strokeWidth=0.8
    ).encode(x="x:Q", y="y:Q")


def text_layer(base, field: str, y: int = -8, color: str = "black"):
    """The current row's ``field`` as a line of text at the top of a panel."""
    import altair as alt

    return base.mark_text(align="left", baseline="bottom", fontSize=11, color=color).encode(
        x=alt.value(2), y=alt.value(y), text=f"{field}:N"
    )


def curves(base, fields: dict, t: str = "t", log: bool = True, domain=None, x_domain=None, title="", x_title="step t", flatten=True):
    """Curves of the current row against ``t``: ``fields`` maps each array column to
    ``(legend label, colour, dashed)``; a log y axis by default. ``flatten=False`` for data
    that already has one row per step."""
    import altair as alt

    names = list(fields)
    labels = [fields[k][0] for k in names]
    mapping = " : ".join(f"datum.key == {json.dumps(k)} ? {json.dumps(fields[k][0])}" for k in names) + " : ''"
    y_scale = alt.Scale(type="log" if log else "linear", domain=list(domain) if domain else alt.Undefined)
    y_axis = alt.Undefined
    if log:
        # Ticks and grid lines at the powers of ten only, labelled 1e-4.
        decades = alt.Undefined
        if domain:
            lo, hi = math.floor(math.log10(domain[0])), math.ceil(math.log10(domain[1]))
            every = 1 if hi - lo <= 10 else 2  # at most about ten labels
            decades = [10.0**k for k in range(lo, hi + 1) if (k - lo) % every == 0]
        y_axis = alt.Axis(format="~e", values=decades)
    long = base.transform_flatten([t, *names]) if flatten else base
    return (
        long.transform_fold(names)
        .transform_calculate(curve=mapping)
        .mark_line(clip=True, strokeWidth=1.6)
        .encode(
            x=alt.X(f"{t}:Q", title=x_title, scale=alt.Scale(domain=list(x_domain)) if x_domain else alt.Undefined),
            y=alt.Y("value:Q", title=title, scale=y_scale, axis=y_axis),
            color=alt.Color("curve:N", scale=alt.Scale(domain=labels, range=[fields[k][1] for k in names]),
                            legend=alt.Legend(title=None, orient="bottom-left", direction="vertical")),
            strokeDash=alt.StrokeDash("curve:N", scale=alt.Scale(domain=labels, range=[[4, 3] if fields[k][2] else [1, 0] for k in names]), legend=None),
        )
    )
