"""The order of the suite on a 2-core machine.

1. unit tests (fast, fail early);
2. the notebooks under nbval, while the grading round trip runs in the
   background: a notebook's kernel keeps one core busy, the sandboxed grader
   the other (test modules opt in with a module-level ``start_early()``,
   called once collection is done, when their tests are selected);
3. the grading tests, which wait for that run and check it;
4. the site tests, last, because they build the book from the notebooks'
   executions (tests/nbcache.py), and the lab tests (a JupyterLab server
   and a browser).
"""

from __future__ import annotations

import pytest


def _rank(item) -> int:
    if item.get_closest_marker("site") or item.get_closest_marker("lab"):
        return 3
    if item.get_closest_marker("grading"):
        return 2
    if type(item).__name__ == "IPyNbCell":
        return 1
    return 0


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_rank)  # stable: the order within each group is kept


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    started = set()
    for item in session.items:
        module = getattr(item, "module", None)
        start = getattr(module, "start_early", None)
        if callable(start) and item.get_closest_marker("grading") and module not in started:
            started.add(module)
            start()
