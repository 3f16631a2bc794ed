"""Accessible markup where the HTML writer's is not: the bibliography's list roles.

docutils writes a run of citations (sphinxcontrib-bibtex's bibliography is one) as
``<div role="list">`` holding ``<div role="doc-biblioentry">`` entries. DPUB-ARIA 1.1
deprecates ``doc-biblioentry``, and a role="list" whose children are not list items is
an invalid list for assistive technology (axe-core: aria-required-children). Each entry
becomes a plain ``listitem``, which is what the deprecated role was a kind of. The
rewrite is made on the page body Sphinx is about to write.

The theme's components with inaccessible names are overridden in ``_templates/``
instead (search button, colour-mode button, logo link).
"""

from __future__ import annotations

import re

_CITATION = re.compile(r'(<div\b[^>]*\bclass="citation"[^>]*\brole=")doc-biblioentry(")')


def accessible_body(body: str) -> str:
    """The page body with each citation entry of a citation list marked as a list item."""
    return _CITATION.sub(r"\1listitem\2", body)


def on_html_page_context(app, pagename, templatename, context, doctree) -> None:
    body = context.get("body")
    if body and "doc-biblioentry" in body:
        context["body"] = accessible_body(body)


def setup(app):
    app.connect("html-page-context", on_html_page_context)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
