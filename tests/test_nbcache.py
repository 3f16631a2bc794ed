"""The nbval-to-execution-cache plugin (tests/nbcache.py).

The end-to-end test runs nbval on two small notebooks in a child pytest with
its own cache folder: the one that passes must be found by jupyter-cache's
matcher exactly as the book build looks it up, the one that fails must not be
cached, and an edit to the passing one must make it miss.
"""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest

from conftest import ROOT
from nbcache import NBVAL_TAG, cell_outputs, ends_with_semicolon, executed_notebook

jupyter_cache = pytest.importorskip("jupyter_cache")


@pytest.mark.parametrize(
    "source, quiet",
    [
        ("x = 1\nx", False),
        ("check.close('a', 1, 1);", True),
        ("f(1,\n  2);  # a comment", True),
        ("s = 'a;'\ns", False),
        ("for i in range(2):\n    print(i);\n", True),
        ("", False),
        ("f(", False),  # unfinished code: not quiet, and no exception
    ],
)
def test_ends_with_semicolon(source, quiet):
    assert ends_with_semicolon(source) is quiet


def _result(count=None):
    return {"output_type": "execute_result", "execution_count": count, "data": {"text/plain": "1"}, "metadata": {}}


def test_cell_outputs_drop_the_value_of_a_quiet_cell_and_renumber():
    stream = {"output_type": "stream", "name": "stdout", "text": "PASS ...\n"}
    assert [o["output_type"] for o in cell_outputs("f();", [stream, _result(7)], 3)] == ["stream"]
    kept = cell_outputs("f()", [stream, _result(7)], 3)
    assert [o["output_type"] for o in kept] == ["stream", "execute_result"]
    assert kept[1]["execution_count"] == 3


def _notebook(path, sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# title")] + [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, str(path))
    return nb


def test_executed_notebook_needs_every_code_cell(tmp_path):
    nb0 = _notebook(tmp_path / "nb.ipynb", ["1", "2"])
    assert executed_notebook(nb0, {0: []}) is None
    nb = executed_notebook(nb0, {0: [_result()], 1: []})
    assert all(c.get("outputs", []) == [] for c in nb0.cells), "the notebook read by nbval is left as it was"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2]
    assert code[0].outputs[0]["execution_count"] == 1
    assert nb.metadata["language_info"]["pygments_lexer"] == "ipython3"


def test_nbval_runs_fill_the_cache_the_book_reads(tmp_path):
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    good_nb = _notebook(good, ["x = 6 * 7", "print(x)", "x"])
    _notebook(bad, ["y = 1", "raise ValueError('planted')"])
    cache_dir = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "STEPLAB_SUITE_REPORT"}  # the parent's report
    env["STEPLAB_EXECUTION_CACHE"] = str(cache_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
         "-c", str(ROOT / "pyproject.toml"), "--confcutdir", str(tmp_path), "-p", "tests.nbcache",
         str(good), str(bad)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert "1 failed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]

    cache = jupyter_cache.get_cache(str(cache_dir))
    records = cache.list_cache_records()
    assert [r.uri for r in records] == [str(good)], "only the notebook whose cells all passed is cached"
    assert records[0].data["executed_by"] == NBVAL_TAG

    # The book's lookup: match the committed (output-free) notebook, merge the outputs in.
    match = cache.match_cache_notebook(nbformat.read(str(good), as_version=4))
    _, merged = cache.merge_match_into_notebook(nbformat.read(str(good), as_version=4))
    assert match.pk == records[0].pk
    code = [c for c in merged.cells if c.cell_type == "code"]
    assert code[1].outputs[0]["text"] == "42\n"
    assert code[2].outputs[0]["data"]["text/plain"] == "42"

    good_nb.cells[1].source = "print(x + 1)"  # an edit after the run: the cache must miss
    with pytest.raises(KeyError):
        cache.match_cache_notebook(good_nb)
