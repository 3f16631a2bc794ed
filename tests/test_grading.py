"""The nbgrader round trip: release, autograde (honest, empty and hostile submissions), feedback.

One grading run, in a temporary copy of the course directory, is shared by every test in this
module: learner `solution` submits every source notebook (solutions and hidden tests), learner
`stub` every released notebook, learner `victim` the set-1 solution, and one learner per file in
tests/grading_fixtures/ a broken or hostile set-1 notebook.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COURSE = os.path.join(ROOT, "exercises")
FIXTURES = os.path.join(ROOT, "tests", "grading_fixtures")
sys.path.insert(0, os.path.join(COURSE, "bin"))

import grade  # noqa: E402
import sandbox_kernel  # noqa: E402

pytestmark = pytest.mark.grading
SETS = grade.sets(COURSE)
PS1 = "ps1_gradient_descent"
CELL_TIMEOUT = 20
SANDBOX = sandbox_kernel.available()


def _nb_path(kind, name):
    return os.path.join(COURSE, kind, name, f"{name}.ipynb")


def _inject(name, fixture):
    """Set 1 from source or release with the fixture's code cell added at the start or the end."""
    text = open(os.path.join(FIXTURES, fixture)).read()
    header = text.splitlines()[0]
    base = "source" if "base: source" in header else "release"
    nb = nbformat.read(_nb_path(base, PS1), as_version=4)
    cell = nbformat.v4.new_code_cell(text)
    if "at: start" in header:
        first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(first_code + 1, cell)  # after the set-up cell, before the first solution
    elif "at: before " in header:
        grade_id = header.split("at: before ")[1].strip()
        ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
        nb.cells.insert(ids.index(grade_id), cell)
    else:
        nb.cells.append(cell)
    return nb


def _hostile():
    names = sorted(f[:-3] for f in os.listdir(FIXTURES) if f.endswith(".py"))
    if not SANDBOX:
        names.remove("attacker")  # without isolation it would damage the grader's files
    return names


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = str(tmp_path_factory.mktemp("grading") / "exercises")
    shutil.copytree(COURSE, course, ignore=shutil.ignore_patterns(
        "gradebook.db", "autograded", "feedback", "submitted", "grades.csv", "__pycache__"))
    sub = os.path.join(course, "submitted")

    def put(learner, name, nb_or_path, filename=None):
        dest = os.path.join(sub, learner, name)
        os.makedirs(dest, exist_ok=True)
        target = os.path.join(dest, filename or f"{name}.ipynb")
        if isinstance(nb_or_path, str):
            shutil.copy(nb_or_path, target)
        else:
            nbformat.write(nb_or_path, target)
        return target

    for name in SETS:
        put("solution", name, _nb_path("source", name))
        put("stub", name, _nb_path("release", name))
    victim_file = put("victim", PS1, _nb_path("source", PS1))
    for fixture in _hostile():
        put(fixture, PS1, _inject(PS1, fixture + ".py"))
    put("corrupt", PS1, os.path.join(FIXTURES, "corrupt_notebook.txt"))
    put("wrong_name", PS1, _nb_path("source", PS1), filename="ps1_final_version.ipynb")
    victim_bytes = open(victim_file, "rb").read()

    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, os.path.join(course, "bin", "grade.py"), "--course-dir", course,
         "grade", "--cell-timeout", str(CELL_TIMEOUT)],
        capture_output=True, text=True, timeout=1200)
    elapsed = time.time() - t0
    print(proc.stdout[-4000:], proc.stderr[-4000:], f"graded in {elapsed:.0f} s")
    return {"course": course, "proc": proc, "victim_file": victim_file, "victim_bytes": victim_bytes}


def _scores(course):
    """{(learner, set): (auto score, max auto score)} over autograded (code) cells, from the gradebook."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{os.path.join(course, 'gradebook.db')}", course_id="steplab") as gb:
        for assignment in gb.assignments:
            for submission in gb.assignment_submissions(assignment.name):
                got = total = 0.0
                for nb in submission.notebooks:
                    for g in nb.grades:
                        if g.cell_type == "code" and g.max_score:
                            got += g.auto_score or 0.0
                            total += g.max_score
                out[(submission.student.id, assignment.name)] = (got, total)
    return out


def _text_files(root):
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            yield path, open(path, errors="replace").read()


def _solution_lines(name):
    """Lines strictly inside solution and hidden-test blocks of a source notebook."""
    nb = nbformat.read(_nb_path("source", name), as_version=4)
    lines, public = [], set()
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution"):
            lines += [ln for ln in cell.source.splitlines() if len(ln.strip()) > 25]
            continue
        inside = False
        for line in cell.source.splitlines():
            if "### BEGIN" in line:
                inside = True
            elif "### END" in line:
                inside = False
            elif inside and len(line.strip()) > 12:
                lines.append(line.strip())
            elif not inside:
                public.add(line.strip())
    return [ln for ln in lines if ln not in public]  # a line also given to learners is no secret


# ------------------------------------------------------------------ release


def test_release_is_current(tmp_path):
    """Regenerating the release from source gives the committed notebooks (cells compared)."""
    course = tmp_path / "exercises"
    shutil.copytree(COURSE, course, ignore=shutil.ignore_patterns(
        "gradebook.db", "autograded", "feedback", "submitted", "release", "grades.csv", "__pycache__"))
    grade.release(str(course), into=str(tmp_path / "fresh"), db=str(tmp_path / "g.db"), quiet=True)
    for name in SETS:
        fresh = nbformat.read(tmp_path / "fresh" / name / f"{name}.ipynb", as_version=4)
        committed = nbformat.read(_nb_path("release", name), as_version=4)
        strip = lambda nb: [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]  # noqa: E731
        assert strip(fresh) == strip(committed), f"exercises/release/{name} is stale: run `make release`"


@pytest.mark.parametrize("name", SETS)
def test_release_has_no_solution_or_hidden_test(name):
    text = open(_nb_path("release", name)).read()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    lines = _solution_lines(name)
    assert lines, "the source has solution lines"
    leaked = [ln for ln in lines if ln in text]
    assert not leaked, leaked[:5]


@pytest.mark.parametrize("name", SETS)
def test_sources_have_points_hidden_tests_and_a_manual_answer(name):
    nb = nbformat.read(_nb_path("source", name), as_version=4)
    meta = [c.metadata.get("nbgrader", {}) for c in nb.cells]
    tests = [m for m in meta if m.get("grade") and not m.get("solution")]
    assert tests and all(m.get("points", 0) > 0 for m in tests)
    assert any("BEGIN HIDDEN TESTS" in c.source for c in nb.cells)
    assert any(m.get("grade") and m.get("solution") for m in meta), "a manually graded answer"


# ------------------------------------------------------------------ grading


def test_grading_run_completes(graded):
    proc = graded["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.exists(os.path.join(graded["course"], "grades.csv"))


def test_sources_score_full_marks(graded):
    scores = _scores(graded["course"])
    for name in SETS:
        got, total = scores[("solution", name)]
        assert total > 0 and got == total, (name, got, total)
    assert scores[("victim", PS1)][0] == scores[("victim", PS1)][1]


def test_released_stubs_score_zero(graded):
    scores = _scores(graded["course"])
    for name in SETS:
        got, total = scores[("stub", name)]
        assert total > 0 and got == 0, (name, got, total)


def test_grades_csv_has_every_submission(graded):
    import csv

    rows = list(csv.DictReader(open(os.path.join(graded["course"], "grades.csv"))))
    seen = {(r["student_id"], r["assignment"]): r for r in rows}
    for learner in ["corrupt", "wrong_name", *_hostile()]:
        assert (learner, PS1) in seen, learner
    assert seen[("corrupt", PS1)]["grading_note"] == "the notebook file is corrupt"
    assert float(seen[("corrupt", PS1)]["raw_score"]) == 0
    assert float(seen[("wrong_name", PS1)]["raw_score"]) == 0
    assert seen[("os_exit", PS1)]["grading_note"] == "the kernel died"


def test_broken_submissions_score_nothing_they_did_not_earn(graded):
    scores = _scores(graded["course"])
    full = scores[("solution", PS1)][1]
    # Nothing gradable: a dead kernel, an unreadable file, no notebook of the expected name.
    for learner in ("os_exit", "corrupt", "wrong_name"):
        assert scores[(learner, PS1)][0] == 0, learner
    # A cell that raises or loops (interrupted at the cell timeout) costs only that cell:
    # nbgrader runs every cell, so the correct solutions after it keep their points.
    for learner in ("exception", "endless_loop"):
        assert scores[(learner, PS1)][0] == full, learner
    # Deleting gradient_descent costs the tests that call it (parts 1 and 4) and nothing else.
    assert scores[("delete_functions", PS1)][0] == full - 3 - 2
    # Patching numpy does not turn wrong answers into points in the hidden tests.
    assert scores[("monkeypatch_numpy", PS1)][0] <= 2, scores[("monkeypatch_numpy", PS1)]
    # sys.exit at the end only stops that cell; correct answers before it keep their points.
    assert scores[("sys_exit", PS1)][0] == full
    # Rebinding np and the test's names fails the visible tests that use them, not the hidden ones.
    got = scores[("rebind_names", PS1)][0]
    assert got == full - 3, got  # the three visible tests that use `problem`
    assert scores[("huge_output", PS1)][0] == full


def test_huge_output_is_capped(graded):
    path = os.path.join(graded["course"], "autograded", "huge_output", PS1, f"{PS1}.ipynb")
    assert os.path.getsize(path) < 2_000_000
    assert "output beyond" in open(path).read()


def test_no_hidden_test_in_autograded_or_feedback(graded):
    course = graded["course"]
    hidden = []
    for name in SETS:
        for cell in nbformat.read(_nb_path("source", name), as_version=4).cells:
            if "BEGIN HIDDEN TESTS" in cell.source:
                body = cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
                hidden += [ln.strip() for ln in body.splitlines() if len(ln.strip()) > 20]
    assert hidden
    files = list(_text_files(os.path.join(course, "feedback"))) + list(_text_files(os.path.join(course, "autograded")))
    assert any(p.endswith(".html") for p, _ in files), "feedback HTML was generated"
    for path, text in files:
        assert "HIDDEN TESTS" not in text, path
        leaked = [ln for ln in hidden if ln in text]
        assert not leaked, (path, leaked[:3])


def test_failed_hidden_test_shows_no_traceback(graded):
    path = os.path.join(graded["course"], "autograded", "stub", PS1, f"{PS1}.ipynb")
    nb = json.load(open(path))
    cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "test_gd_fixed_hidden")
    assert [o["output_type"] for o in cell["outputs"]] == ["error"]
    assert cell["outputs"][0]["traceback"] == [
        f"{cell['outputs'][0]['ename']}: a test in this cell failed (hidden tests are not shown)"]


@pytest.mark.skipif(not SANDBOX, reason="kernel isolation needs root, unshare, mount and setpriv")
def test_attacker_changes_nobody_else(graded):
    course = graded["course"]
    assert open(graded["victim_file"], "rb").read() == graded["victim_bytes"]
    for path, text in _text_files(course):
        if f"{os.sep}attacker{os.sep}" in path:
            continue  # the attacker's own notebook and feedback quote its code
        assert "PWNED" not in text and not path.endswith("PWNED_BY_ATTACKER"), path
    for path, text in _text_files(os.path.join(ROOT, "exercises")):
        assert not path.endswith("PWNED_BY_ATTACKER"), path
    con = sqlite3.connect(os.path.join(course, "gradebook.db"))
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    scores = _scores(course)
    assert scores[("victim", PS1)][0] == scores[("victim", PS1)][1]
    # The attacker's notebook ran (as an unprivileged uid): it found files, and the only ones it
    # could overwrite were in its own private scratch directory.
    nb = nbformat.read(os.path.join(course, "autograded", "attacker", PS1, f"{PS1}.ipynb"), as_version=4)
    report = next(o.text for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("name") == "stdout" and "overwritten:" in o.text)
    found = int(report.split(" found;")[0])
    written = eval(report.split("overwritten:")[1])  # a list literal printed by the fixture
    assert found > 0
    written = {os.path.normpath(os.path.join("/tmp/work", p)) for p in written}
    assert written <= {f"/tmp/work/{PS1}.ipynb"}, written


def test_check_exits_nonzero_on_a_failing_visible_test(tmp_path):
    ok = subprocess.run([sys.executable, os.path.join(COURSE, "bin", "grade.py"), "check",
                         _nb_path("source", PS1)], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stdout[-2000:]
    bad = subprocess.run([sys.executable, os.path.join(COURSE, "bin", "grade.py"), "check",
                          _nb_path("release", PS1)], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "FAIL  test_gd_fixed_visible" in bad.stdout
    # a hidden test's body is not in the release: the self-check must not report it as passed
    hidden = [ln for ln in bad.stdout.splitlines() if "hidden" in ln.split("(")[0]]
    assert hidden and all(ln.startswith("HIDDEN") for ln in hidden), bad.stdout
