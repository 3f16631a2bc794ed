r"""Interactive explorers: sliders wired to a pure computation, one figure redrawn in place.

For each explorer NAME in ``step_size``, ``batch_size``, ``momentum``, ``adam``, ``schedule``:

* ``NAME_run(**settings) -> ExplorerRun``: the computation for one setting, a run record of
  :mod:`steplab.records` (``steps``, ``loss``, ``diverged_at`` or None, ``fp_warnings``,
  ``settings``, and the trajectories and metrics by name: ``run["trajectory"]``); pure numpy.
* ``NAME_explorer(**initial) -> ipywidgets.VBox``: the controls, the figure (a PNG image
  redrawn in place, no ipympl needed) and a metrics table. The returned box carries
  ``sliders`` (name -> control: set ``.value`` to move it), ``figure``, ``image``,
  ``metrics``, ``result`` and ``draw_count``.
* ``NAME_web(...) -> WebView``: the live view of the website, which runs no kernel: the
  pure function evaluated over a grid of slider values (stated beside the chart) and drawn
  by Vega-Lite, whose sliders filter the precomputed runs in the browser
  (:mod:`steplab.explore.web`). In a notebook kernel it shows one line of text; the book
  build (``STEPLAB_WEB_VIEWS=embed``) shows the chart.
* ``NAME_static(...) -> matplotlib.figure.Figure``: a grid of pictures over a few settings.

Every callable works with no arguments; the defaults already show the point.
"""

from .adam import ADAM_DEFAULTS, adam_explorer, adam_run, adam_static, adam_web
from .batch_size import batch_size_explorer, batch_size_problem, batch_size_run, batch_size_static, batch_size_web, noise_ball
from .momentum import heavy_ball_optimal, heavy_ball_rate, momentum_explorer, momentum_run, momentum_static, momentum_web
from .schedule import SCHEDULE_KINDS, make_schedule, schedule_explorer, schedule_run, schedule_static, schedule_web
from .step_size import step_size_explorer, step_size_run, step_size_static, step_size_web
from .web import Slider, WebView, web_view

__all__ = [
    "step_size_run", "step_size_explorer", "step_size_static", "step_size_web",
    "batch_size_run", "batch_size_explorer", "batch_size_static", "batch_size_web", "batch_size_problem", "noise_ball",
    "momentum_run", "momentum_explorer", "momentum_static", "momentum_web", "heavy_ball_rate", "heavy_ball_optimal",
    "adam_run", "adam_explorer", "adam_static", "adam_web", "ADAM_DEFAULTS",
    "schedule_run", "schedule_explorer", "schedule_static", "schedule_web", "make_schedule", "SCHEDULE_KINDS",
    "web_view", "Slider", "WebView",
]
