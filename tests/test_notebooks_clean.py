"""Every notebook in the repository is committed clean.

Clean means: no outputs, no execution counts, and the kernelspec `python3`
(which resolves to the environment's own kernel, for nbval and for the book
build alike). Outputs are made when the book is built and when tests run;
committed outputs go stale and bloat diffs.

The notebooks checked are the ones git knows or would add: tracked files plus
untracked files that are not ignored. Notebooks under tests/ are fixtures
(corrupt or hostile submissions for the grading tests) and are exempt.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, skip_or_fail

EXPECTED_KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _git_notebooks() -> list[str] | None:
    if shutil.which("git") is None:
        return None
    proc = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.ipynb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None
    return sorted(
        line
        for line in set(proc.stdout.splitlines())
        if line and not line.startswith("tests/") and (ROOT / line).exists()
    )


NOTEBOOKS = _git_notebooks()


def test_repository_lists_notebooks():
    if NOTEBOOKS is None:
        skip_or_fail("not a git work tree (or git is missing): cannot list the committed notebooks")
    assert NOTEBOOKS, "git lists no notebook at all; the course has lesson notebooks"


def problems(nb: dict) -> list[str]:
    """Everything that makes a notebook unclean, one message each."""
    found = []
    ks = nb.get("metadata", {}).get("kernelspec")
    if ks != EXPECTED_KERNELSPEC:
        found.append(f"kernelspec is {ks!r}, expected {EXPECTED_KERNELSPEC!r}")
    # JupyterLab stores 4.5 with cell ids: an older file shows as modified the moment it opens.
    if (nb.get("nbformat", 0), nb.get("nbformat_minor", 0)) < (4, 5):
        found.append(f"nbformat is {nb.get('nbformat')}.{nb.get('nbformat_minor')}, expected 4.5 with cell ids")
    for i, cell in enumerate(nb.get("cells", [])):
        if "id" not in cell and nb.get("nbformat_minor", 0) >= 5:
            found.append(f"cell {i} has no id")
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {i} has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"cell {i} has execution_count {cell['execution_count']}")
    return found


def test_problems_detects_dirty_notebook():
    dirty = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "myenv", "display_name": "x", "language": "python"}},
        "cells": [
            {"cell_type": "markdown", "source": "x", "id": "a"},
            {"cell_type": "code", "source": "1", "execution_count": 3, "outputs": [{"output_type": "stream"}], "id": "b"},
        ],
    }
    msgs = problems(dirty)
    assert len(msgs) == 3
    assert "kernelspec" in msgs[0] and "output" in msgs[1] and "execution_count 3" in msgs[2]
    clean = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": dict(EXPECTED_KERNELSPEC)},
             "cells": [{"cell_type": "code", "source": "1", "execution_count": None, "outputs": [], "id": "c"}]}
    assert problems(clean) == []
    old = dict(clean, nbformat_minor=4)
    assert problems(old) == ["nbformat is 4.4, expected 4.5 with cell ids"]


@pytest.mark.parametrize("path", NOTEBOOKS or [])
def test_notebook_is_clean(path):
    with open(ROOT / path, encoding="utf-8") as fh:
        nb = json.load(fh)
    found = problems(nb)
    assert not found, f"{path}: " + "; ".join(found)


def inline_math_breaks(source: str) -> list[str]:
    """Inline ``$...$`` formulas that run over a line break.

    MyST reads a continuation line that starts with ``-``, ``+`` or ``1.`` as a list item,
    which cuts the formula in two and leaves raw TeX on the page; a formula kept on one
    line cannot be cut. Display math (``$$``), code spans and fence lines are skipped.
    """
    found, i, n = [], 0, len(source)
    while i < n:
        if source.startswith("$$", i):
            j = source.find("$$", i + 2)
            i = n if j < 0 else j + 2
        elif source.startswith("```", i):
            j = source.find("\n", i)
            i = n if j < 0 else j
        elif source[i] == "`":
            j = source.find("`", i + 1)
            i = n if j < 0 else j + 1
        elif source[i] == "$" and (i == 0 or source[i - 1] != "\\"):
            j = i + 1
            while j < n and not (source[j] == "$" and source[j - 1] != "\\"):
                j += 1
            if "\n" in source[i:j]:
                found.append(source[i : j + 1][:80])
            i = j + 1
        else:
            i += 1
    return found


def test_inline_math_breaks_detects_a_split_formula():
    assert inline_math_breaks("a $x\n- y$ b") == ["$x\n- y$"]
    assert inline_math_breaks("a $x - y$ b\n$$\nx\n= y\n$$\n`$a\nb`") == []


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS or [] if p.startswith("chapters/")])
def test_inline_math_stays_on_one_line(path):
    with open(ROOT / path, encoding="utf-8") as fh:
        nb = json.load(fh)
    found = [
        f"cell {k}: {frag!r}"
        for k, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "markdown"
        for frag in inline_math_breaks("".join(cell["source"]))
    ]
    assert not found, f"{path}: inline math over a line break: " + "; ".join(found)


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS or [] if p.startswith("chapters/")])
def test_explorer_static_views_are_displayed(path):
    """The site shows an explorer only through its static view: the figure must be the cell's value.

    The static views are figures outside pyplot, so a trailing semicolon (or an assignment)
    would build the figure and show nothing.
    """
    with open(ROOT / path, encoding="utf-8") as fh:
        nb = json.load(fh)
    hidden = []
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code" or "_static(" not in "".join(cell["source"]):
            continue
        last = "".join(cell["source"]).rstrip().splitlines()[-1].strip()
        if "_static(" not in last or last.endswith(";") or "=" in last.split("_static(")[0]:
            hidden.append(f"cell {k}: {last!r}")
    assert not hidden, f"{path}: static view not the cell's value: " + "; ".join(hidden)


QUIZZES = sorted(ROOT.glob("chapters/*/*.quiz.json"))


@pytest.mark.parametrize("path", QUIZZES, ids=lambda p: p.name)
def test_quiz_math_has_no_html_tag_start(path):
    """jupyterquiz puts question text into HTML: `<T` in a formula opens a tag and cuts the
    formula (raw TeX on the page). Write `\\lt` instead."""
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"<[A-Za-z/!]", text), f"{path.name}: write \\lt for < before a letter"
