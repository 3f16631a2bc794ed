"""Live web views of the explorers: Vega, Vega-Lite and Vega-Embed on the pages that hold one.

``steplab.explore.NAME_web()`` shows its chart (a Vega-Lite spec and one ``vegaEmbed`` call,
see ``steplab.explore.web``) only when ``STEPLAB_WEB_VIEWS=embed`` is set in the kernel's
environment; this extension sets it for the build, whose kernels inherit it, and adds the
three scripts, vendored in ``assets/vega/`` (served as ``_static/vega/``), to each page whose
body holds a view, before the page's own scripts run, and ``assets/web-views.js``, which names
each chart and its controls once drawn. No other page loads them.
"""

from __future__ import annotations

import os

from steplab.explore.web import EMBED_ENV
MARKER = 'class="steplab-web-view"'
SCRIPTS = ("vega/vega.min.js", "vega/vega-lite.min.js", "vega/vega-embed.min.js")
# Names the drawn charts and their radio groups for assistive technology (assets/web-views.js).
A11Y_SCRIPT = "web-views.js"


def on_html_page_context(app, pagename, templatename, context, doctree) -> None:
    if MARKER not in context.get("body", ""):
        return
    for priority, script in enumerate(SCRIPTS):
        # Called during html-page-context, add_js_file adds the script to this page only.
        app.add_js_file(script, priority=400 + priority)
    app.add_js_file(A11Y_SCRIPT, priority=400 + len(SCRIPTS))


def setup(app):
    os.environ[EMBED_ENV] = "embed"
    app.connect("html-page-context", on_html_page_context)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
