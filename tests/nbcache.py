"""nbval's executions become the book's: each notebook runs once per test run.

nbval runs every code cell of a notebook in one kernel and keeps each cell's
outputs (``IPyNbCell.test_outputs``). When every cell of a notebook passed, this
plugin writes the notebook with those outputs into the execution cache that
Jupyter Book reads (``_build/.jupyter_cache``, through jupyter-cache's own API),
so the site build in the same run finds it executed and executes nothing.

- A notebook with a failed, skipped or errored cell is not cached: the build
  executes it again and reports the failure too.
- The cache matches notebooks by their code and kernelspec (jupyter-cache's
  hash), so a notebook edited after the nbval run is executed again by the build.
- Site tests run after the notebooks (tests/suite_plan.py), so the book is
  built from this run's executions.
- The kernels get the environment the book build gives its own (the explorers'
  web views embedded), so a cached notebook renders as a built one.

With ``STEPLAB_SUITE_REPORT=path.json`` the plugin writes what the suite spent:
the time per phase (notebooks, grading, site, unit tests) and which notebooks it
executed and cached (``benchmarks/suite_time.py`` reads it).
"""

from __future__ import annotations

import io
import json
import os
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE_ENV = "STEPLAB_EXECUTION_CACHE"  # another cache folder, for the plugin's own tests
REPORT_ENV = "STEPLAB_SUITE_REPORT"
NBVAL_TAG = "nbval"  # the value of data["executed_by"] in cache records this plugin writes


@dataclass
class NotebookRun:
    path: Path
    nb: object = None  # the notebook as nbval read it: a later edit of the file must not get these outputs
    outputs: dict = field(default_factory=dict)  # code-cell index -> list of outputs
    ok: bool = True
    seconds: float = 0.0
    cached: bool = False


_runs: dict[Path, NotebookRun] = {}
_phase_seconds: dict[str, float] = {}


def _is_nbval_cell(item) -> bool:
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:  # nbval missing: nothing to cache
        return False
    return isinstance(item, IPyNbCell)


def phase(item) -> str:
    """Which part of the suite an item belongs to, for the timing report."""
    if _is_nbval_cell(item):
        return "notebooks"
    if item.get_closest_marker("site"):
        return "site"
    if item.get_closest_marker("grading"):
        return "grading"
    return "unit"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    _phase_seconds[phase(item)] = _phase_seconds.get(phase(item), 0.0) + report.duration
    if not _is_nbval_cell(item):
        return
    run = _runs.setdefault(Path(str(item.parent.fspath)), NotebookRun(Path(str(item.parent.fspath))))
    run.nb = item.parent.nb
    run.seconds += report.duration
    if not report.passed:
        run.ok = False
    elif call.when == "call":
        run.outputs[item.cell_num] = list(getattr(item, "test_outputs", None) or [])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if not _is_nbval_cell(item):
        return
    if nextitem is not None and getattr(nextitem, "parent", None) is item.parent:
        return
    run = _runs.get(Path(str(item.parent.fspath)))
    if run is not None and run.ok:
        run.cached = cache_executed(run)


def ends_with_semicolon(source: str) -> bool:
    """IPython's rule for a quiet cell: its last token (comments aside) is `;`."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    ignored = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER,
               tokenize.INDENT, tokenize.DEDENT}
    significant = [tok for tok in tokens if tok.type not in ignored]
    return bool(significant) and significant[-1].string == ";"


def cell_outputs(source: str, outputs: list, count: int) -> list:
    """nbval's outputs of one cell, as the book's own execution would record them.

    nbval executes with ``store_history=False``, so IPython cannot see the cell's
    trailing `;` and displays the value anyway: drop that result, as a notebook
    run does.
    """
    import nbformat

    quiet = ends_with_semicolon(source)
    kept = []
    for out in outputs:
        out = nbformat.from_dict(out)
        if out.get("output_type") == "execute_result":
            if quiet:
                continue
            out["execution_count"] = count
        kept.append(out)
    return kept


def executed_notebook(notebook, outputs: dict):
    """A copy of `notebook` with nbval's outputs and consecutive execution counts, or None."""
    import copy

    from ipykernel.ipkernel import IPythonKernel

    nb = copy.deepcopy(notebook)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    if sorted(outputs) != list(range(len(code_cells))):
        return None  # some cell was not run (deselected with -k, say): not a whole execution
    for count, cell in enumerate(code_cells, start=1):
        cell.execution_count = count
        cell.outputs = cell_outputs(cell.source, outputs[count - 1], count)
    # What a kernel reports about itself; the book picks the code highlighter from it.
    nb.metadata["language_info"] = dict(IPythonKernel.language_info)
    return nb


def cache_executed(run: NotebookRun) -> bool:
    """Store a fully passed nbval run in the book's execution cache; True when stored."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    nb = executed_notebook(run.nb, run.outputs)
    if nb is None:
        return False
    cache_dir = Path(os.environ.get(CACHE_ENV) or ROOT / "_build" / ".jupyter_cache")
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    cache = get_cache(str(cache_dir))
    bundle = CacheBundleIn(
        nb, str(run.path), data={"execution_seconds": run.seconds, "executed_by": NBVAL_TAG}
    )
    cache.cache_notebook_bundle(bundle, check_validity=True, overwrite=True)
    return True


def _shown(path: Path) -> str:
    """A notebook's path relative to the repository, or as it is when it lives elsewhere."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def pytest_sessionstart(session):
    session.config._steplab_start = time.perf_counter()
    # Kernels execute the notebooks as the book build does (book_ext/web_views.py sets the same
    # variable for its kernels), so the cached outputs are the site's: web views embedded.
    from steplab.explore.web import EMBED_ENV

    os.environ[EMBED_ENV] = "embed"


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    report = {
        "wall_seconds": time.perf_counter() - session.config._steplab_start,
        "phase_seconds": _phase_seconds,
        "exitstatus": int(exitstatus),
        "notebooks": {
            _shown(run.path): {"seconds": run.seconds, "passed": run.ok, "cached": run.cached}
            for run in _runs.values()
        },
    }
    Path(path).write_text(json.dumps(report, indent=2))
