"""Drop the embedded ipywidgets state from notebook pages.

The site loads no widget renderer (``nb_ipywidgets_js: {}``): a live widget
needs a kernel, so widget cells are tagged ``remove-cell`` and each explorer
has a web view (book_ext/web_views.py). The widget state myst-nb embeds in the page would be inert
JSON that can run to megabytes (figures inside Output widgets), so it is
removed when the page is read.
"""

from __future__ import annotations


def on_doctree_read(app, doctree) -> None:
    if app.config.nb_ipywidgets_js:
        return  # a renderer is configured, so the state is used
    nb_metadata = getattr(app.env, "nb_metadata", None)
    if not nb_metadata:
        return
    js_files = nb_metadata.get(app.env.docname, {}).get("js_files", {})
    js_files.pop("ipywidgets_state", None)


def setup(app):
    app.setup_extension("myst_nb")
    app.connect("doctree-read", on_doctree_read)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
