"""The nbgrader round trip: release, autograde (honest, empty and hostile submissions), feedback.

One grading run, in a temporary copy of the course directory, is shared by every test in this
module: learner `solution` submits every source notebook (solutions and hidden tests), learner
`stub` every released notebook, learner `victim` the set-1 solution, and one learner per file in
tests/grading_fixtures/ a broken or hostile set-1 notebook.
"""

import atexit
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COURSE = os.path.join(ROOT, "exercises")
FIXTURES = os.path.join(ROOT, "tests", "grading_fixtures")
sys.path.insert(0, os.path.join(COURSE, "bin"))

import grade  # noqa: E402
import grader  # noqa: E402
import sandbox_kernel  # noqa: E402

pytestmark = pytest.mark.grading
SETS = grade.sets(COURSE)
PS1 = "ps1_gradient_descent"
CELL_TIMEOUT = 20
SANDBOX = sandbox_kernel.available()
CGROUPS = SANDBOX and bool(sandbox_kernel.cgroup_dirs("test-probe"))
sandbox_kernel.remove_cgroups([d for d in sandbox_kernel.stale_cgroups() if d.endswith("test-probe")])
MEMORY = 2**30  # each learner's kernel, all its processes together (the resources fixture needs more)


def _nb_path(kind, name):
    return os.path.join(COURSE, kind, name, f"{name}.ipynb")


def _inject(name, fixture):
    """Set 1 from source or release with the fixture's code cell added at the start or the end."""
    text = open(os.path.join(FIXTURES, fixture)).read()
    header = text.splitlines()[0]
    base = "source" if "base: source" in header else "release"
    nb = nbformat.read(_nb_path(base, PS1), as_version=4)
    if "with: " in header:  # planted on top of another fixture's code (wrong answers)
        other = header.split("with: ")[1].split(",")[0].strip()
        text = open(os.path.join(FIXTURES, other + ".py")).read() + "\n" + text
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


def _plant(course):
    """A copy of the course at `course` with every learner's submissions; returns the victim's file."""
    shutil.copytree(COURSE, course, ignore=shutil.ignore_patterns(
        "gradebook.db", "autograded", "feedback", "submitted", "grades.csv", "grading_state.json", "__pycache__"))
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
    return victim_file


def _start_grading(course):
    """Plant the submissions and start `grade.py grade` on them, without waiting."""
    victim_file = _plant(course)
    victim_bytes = open(victim_file, "rb").read()  # before any learner's code runs
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    args = [sys.executable, os.path.join(course, "bin", "grade.py"), "--course-dir", course,
            "grade", "--cell-timeout", str(CELL_TIMEOUT)]
    popen = subprocess.Popen(args, stdout=out, stderr=err, text=True,
                             env={**os.environ, "STEPLAB_SANDBOX_MEMORY": str(MEMORY)})
    atexit.register(lambda: popen.poll() is None and popen.kill())  # an aborted session leaves no grader
    return {"course": course, "args": args, "popen": popen, "out": out, "err": err, "t0": time.time(),
            "victim_file": victim_file, "victim_bytes": victim_bytes}


_EARLY = {}  # the grading run that start_early() began


def start_early():
    """Called once collection is done (tests/suite_plan.py): the sandboxed grading of every
    submission runs in the background while the notebooks run, and `graded` waits for it."""
    root = tempfile.mkdtemp(prefix="steplab-grading-")
    _EARLY.update(root=root, run=_start_grading(os.path.join(root, "exercises")))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    run = _EARLY.pop("run", None) or _start_grading(str(tmp_path_factory.mktemp("grading") / "exercises"))
    try:
        run["popen"].wait(timeout=1800)
    except subprocess.TimeoutExpired:
        run["popen"].kill()
        run["popen"].wait()
    run["out"].seek(0), run["err"].seek(0)
    proc = subprocess.CompletedProcess(run["args"], run["popen"].returncode, run["out"].read(), run["err"].read())
    print(proc.stdout[-4000:], proc.stderr[-4000:], f"graded in {time.time() - run['t0']:.0f} s after its start")
    yield {"course": run["course"], "proc": proc, "victim_file": run["victim_file"],
           "victim_bytes": run["victim_bytes"]}
    if "root" in _EARLY:
        shutil.rmtree(_EARLY.pop("root"), ignore_errors=True)


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


@pytest.mark.parametrize("name", SETS)
def test_every_test_cell_has_a_grader_test(name):
    """The grader awards every autograded point: one grader test per test cell, and no other."""
    nb = nbformat.read(_nb_path("source", name), as_version=4)
    cells = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
             if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")}
    tests = grader.load(os.path.join(COURSE, "grader", f"{name}.py"))
    assert set(tests) == set(cells)
    for gid, cell in cells.items():
        hidden = "BEGIN HIDDEN TESTS" in cell.source
        assert tests[gid][1] == (not hidden), f"{gid}: a test that shows its messages has no hidden part"
        if hidden:  # the notebook keeps a pointer, never the hidden test itself
            body = cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
            assert all(not ln.strip() or ln.strip().startswith("#") for ln in body.splitlines()), gid


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
    # hidden-test markers in a learner's own notebook: left out with a note, the run goes on
    assert seen[("markers", PS1)]["grading_note"] == "the notebook contains hidden-test markers"
    assert float(seen[("markers", PS1)]["raw_score"]) == 0


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
    # sys.exit at the end only stops that cell; correct answers before it keep their points.
    assert scores[("sys_exit", PS1)][0] == full
    # Rebinding np, the tests' names and AssertionError in the notebook changes nothing: the grader
    # builds its own problems and compares with its own numpy.
    assert scores[("rebind_names", PS1)][0] == full
    assert scores[("huge_output", PS1)][0] == full
    assert scores[("read_hidden", PS1)][0] == full


ATTACKS = ("monkeypatch_numpy", "hooks", "patched_builtins")


@pytest.mark.parametrize("attack", ATTACKS)
def test_in_kernel_attacks_score_no_more_than_wrong_answers(graded, attack):
    """Hooks, patched numpy and builtins, fake modules, a trace function: planted on top of wrong
    answers, none of them gains a point over the wrong answers alone."""
    scores = _scores(graded["course"])
    baseline = scores[("wrong_answers", PS1)][0]
    assert baseline < scores[("solution", PS1)][1] / 2, "the wrong answers are mostly wrong"
    assert scores[(attack, PS1)][0] <= baseline, (attack, scores[(attack, PS1)], baseline)


def test_hidden_tests_are_out_of_the_kernels_reach(graded):
    """The kernel never receives hidden-test source: a notebook that searches the file system for
    the grader's files and spies on every cell and request its kernel runs finds no test code,
    and what it echoes (into stdout and into an earlier cell's display) reaches no feedback."""
    course = graded["course"]
    nb = nbformat.read(os.path.join(course, "autograded", "read_hidden", PS1, f"{PS1}.ipynb"), as_version=4)
    text = json.dumps(nb)
    assert "FOUND 0" in text, "the grader's files are hidden from the kernel"
    assert "SPY" in text, "the spy hook ran"
    for root in ("autograded", "feedback"):
        for path, content in _text_files(os.path.join(course, root)):
            assert "__steplab_channel__" not in content and "@test(" not in content, path


def test_huge_output_is_capped(graded):
    path = os.path.join(graded["course"], "autograded", "huge_output", PS1, f"{PS1}.ipynb")
    assert os.path.getsize(path) < 2_000_000
    assert "output beyond" in open(path).read()


def _grader_lines():
    """Lines of the grader's test files that no notebook shows (a solution's line is the learner's own)."""
    public = "".join(open(_nb_path(kind, name)).read() for name in SETS for kind in ("release", "source"))
    lines = []
    for name in SETS:
        for line in open(os.path.join(COURSE, "grader", f"{name}.py")):
            line = line.strip()
            if len(line) > 20 and json.dumps(line)[1:-1] not in public and line not in public:
                lines.append(line)
    return lines


def test_no_hidden_test_in_autograded_or_feedback(graded):
    course = graded["course"]
    hidden = _grader_lines()
    assert len(hidden) > 100
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
    assert cell["outputs"][0]["ename"] == "NotImplementedError"
    assert cell["outputs"][0]["traceback"] == [
        "NotImplementedError: a hidden test in test_gd_fixed_hidden failed (hidden tests are not shown)"]


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


def test_check_names_the_exercise_and_an_untouched_stub(tmp_path, capsys):
    """`make check` names a failing cell by its exercise and what it defines or calls, not by a 0-based
    index, and says an untouched stub is not implemented yet instead of an empty NotImplementedError."""
    nb = nbformat.v4.new_notebook()
    answer = {"nbgrader": {"solution": True, "grade": False, "grade_id": "step", "locked": False}}
    test = {"nbgrader": {"solution": False, "grade": True, "grade_id": "test_step", "points": 2, "locked": True}}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Set\n\n## 1. One step (2 points)"),
        nbformat.v4.new_code_cell("def step(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()",
                                  metadata=answer),
        nbformat.v4.new_code_cell("y = step(1.0)"),
        nbformat.v4.new_code_cell("assert step(1.0) == 0.5", metadata=test),
        nbformat.v4.new_markdown_cell("## 2. A helper"),
        nbformat.v4.new_code_cell("def helper():\n    return 1\nhelper() / 0"),
    ]
    path = tmp_path / "set.ipynb"
    nbformat.write(nb, path)
    assert grade.check(str(path)) == 3
    lines = capsys.readouterr().out.splitlines()
    assert 'FAIL  a cell in "1. One step (2 points)": step not implemented yet' in lines
    assert 'FAIL  test_step (2 points) in "1. One step (2 points)": step not implemented yet' in lines
    assert 'FAIL  the cell defining helper in "2. A helper": ZeroDivisionError: division by zero' in lines
    assert not any("cell 2" in ln or "NotImplementedError:" in ln for ln in lines), lines


def _outputs(course, learner):
    nb = nbformat.read(os.path.join(course, "autograded", learner, PS1, f"{PS1}.ipynb"), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.skipif(not SANDBOX, reason="kernel isolation needs root, unshare, mount and setpriv")
def test_resource_attacks_leave_the_others_grades_alone(graded):
    """A 20 GiB allocation, children holding more than the memory limit together, a fork bomb and a
    full /tmp in one kernel: the attack is contained and every other learner keeps full marks."""
    scores = _scores(graded["course"])
    for name in SETS:
        assert scores[("solution", name)][0] == scores[("solution", name)][1], name
    assert scores[("victim", PS1)][0] == scores[("victim", PS1)][1]
    out = _outputs(graded["course"], "resources")
    assert "20 GiB: MemoryError" in out
    forks = int(out.split("fork stopped after ")[1].split()[0])
    assert forks < sandbox_kernel.PIDS_LIMIT, forks
    assert "full /tmp after" in out
    if CGROUPS:  # 3 x 600 MiB against a 1 GiB limit for all of them
        assert int(out.split("memory children killed: ")[1].split()[0]) >= 1, out


@pytest.mark.skipif(not SANDBOX, reason="kernel isolation needs root, unshare, mount and setpriv")
def test_nothing_outlives_a_kernel(graded):
    """No file in a host directory, no SysV segment, no process, no cgroup is left by any kernel."""
    out = _outputs(graded["course"], "traces")
    written = eval(out.split("traces:")[1].split(" segment:")[0])  # a list literal printed by the fixture
    assert {os.path.realpath(d) for d in written} <= {"/tmp", "/var/tmp", "/dev/shm"}, written  # private tmpfs only
    for d in ("/run/lock", "/var/lock", "/var/tmp", "/dev/shm", "/tmp", "/var/crash"):
        assert not os.path.exists(os.path.join(d, "steplab_trace")), d
    ipcs = subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout
    assert "0x005731ab" not in ipcs
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        if grade.UID_BASE - 1 <= uid < grade.UID_BASE + 1000:
            left.append(pid)
    assert not left, left
    assert not [d for d in sandbox_kernel.stale_cgroups() if not d.endswith("probe")]


def _grade(course, *args, python=sys.executable):
    return subprocess.run([python, os.path.join(course, "bin", "grade.py"), "--course-dir", course, "grade",
                           "--cell-timeout", str(CELL_TIMEOUT), *args],
                          capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "STEPLAB_SANDBOX_MEMORY": str(MEMORY)})


def _csv_rows(course):
    import csv

    with open(os.path.join(course, "grades.csv")) as fh:
        return sorted(tuple(sorted(r.items())) for r in csv.DictReader(fh))


@pytest.fixture(scope="module")
def serial(graded, tmp_path_factory):
    """A second course graded with --jobs 1: four of the parallel run's PS1 learners."""
    course = str(tmp_path_factory.mktemp("serial") / "exercises")
    shutil.copytree(graded["course"], course, ignore=shutil.ignore_patterns(
        "gradebook.db", "autograded", "feedback", "submitted", "grades.csv", "grading_state.json", "__pycache__"))
    for learner in ("solution", "stub", "wrong_answers", "hooks"):
        shutil.copytree(os.path.join(graded["course"], "submitted", learner, PS1),
                        os.path.join(course, "submitted", learner, PS1))
    first = _grade(course, "--jobs", "1")
    rows = _csv_rows(course)
    again = _grade(course, "--jobs", "1")
    return {"course": course, "first": first, "again": again, "rows": rows}


def test_parallel_grading_equals_serial_grading(graded, serial):
    assert serial["first"].returncode == 0, serial["first"].stderr[-3000:]
    parallel, one = _scores(graded["course"]), _scores(serial["course"])
    for learner in ("solution", "stub", "wrong_answers", "hooks"):
        assert one[(learner, PS1)] == parallel[(learner, PS1)], learner


def test_grading_again_changes_nothing_and_grades_only_newcomers(serial):
    course = serial["course"]
    assert serial["again"].returncode == 0, serial["again"].stderr[-3000:]
    assert "graded in" not in serial["again"].stderr, "nothing was regraded"
    assert _csv_rows(course) == serial["rows"], "the same grades.csv"
    shutil.copytree(os.path.join(course, "submitted", "solution", PS1), os.path.join(course, "submitted", "late", PS1))
    late = _grade(course)
    assert late.returncode == 0, late.stderr[-3000:]
    graded_now = [ln.split("/")[0] for ln in late.stderr.splitlines() if " graded in " in ln]
    assert graded_now == ["late"], graded_now
    scores = _scores(course)
    assert scores[("late", PS1)][0] == scores[("late", PS1)][1] > 0
    rows = [r for r in _csv_rows(course) if dict(r)["student_id"] != "late"]
    assert rows == serial["rows"], "the others' rows are unchanged"


@pytest.mark.skipif(not SANDBOX, reason="kernel isolation needs root, unshare, mount and setpriv")
def test_canary_refuses_a_sandbox_that_cannot_start_a_kernel(tmp_path):
    """A virtualenv reached through a symlink in /tmp (which the sandbox replaces by its own): no
    kernel can start, so grading stops before it records anything, saying why."""
    course = str(tmp_path / "exercises")
    shutil.copytree(COURSE, course, ignore=shutil.ignore_patterns(
        "gradebook.db", "autograded", "feedback", "submitted", "grades.csv", "grading_state.json", "__pycache__"))
    os.makedirs(os.path.join(course, "submitted", "someone", PS1))
    shutil.copy(_nb_path("source", PS1), os.path.join(course, "submitted", "someone", PS1))
    os.symlink(sys.prefix, tmp_path / "venv")
    python = str(tmp_path / "venv" / "bin" / os.path.basename(sys.executable))
    proc = _grade(course, python=python)
    assert proc.returncode != 0
    assert "grading stopped before recording anything" in proc.stderr + proc.stdout
    for left in ("gradebook.db", "grades.csv", "autograded", "feedback"):
        assert not os.path.exists(os.path.join(course, left)), left


LIMITS_TESTS = '''
import numpy as np
from grader import test

@test("t_hangs")
def _(learner):
    learner.call("hang")

@test("t_crashes")
def _(learner):
    learner.call("crash")

@test("t_not_data")
def _(learner):
    learner.data("not_data")

@test("t_after")
def _(learner):
    assert np.array_equal(learner.data("double", np.arange(3)), [0, 2, 4])

@test("t_late")
def _(learner):
    assert learner.data("double", 1) == 2
'''


def _test_cell(gid, source="pass"):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": gid, "locked": True, "points": 1,
                                 "schema_version": 3, "solution": False}
    return cell


def test_a_call_that_hangs_crashes_or_returns_no_data_costs_only_its_test(tmp_path):
    """The grader's side of the channel, in process with an ordinary kernel: a call that hangs is
    interrupted at the per-call limit, one that kills the kernel gets a new kernel with the notebook
    replayed, one that returns an object where data is expected fails; the next tests still run."""
    from grading_ext import GradedExecute

    (tmp_path / "limits.py").write_text(LIMITS_TESTS)
    code = ("import os, time\n"
            "def hang():\n    while True:\n        time.sleep(0.1)\n"
            "def crash():\n    os._exit(1)\n"
            "def not_data():\n    return (x for x in range(3))\n"
            "def double(x):\n    return 2 * x\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)] + [
        _test_cell(g) for g in ("t_hangs", "t_crashes", "t_not_data", "t_after", "t_missing")])
    ex = GradedExecute(grader_dir=str(tmp_path), timeout=30, call_timeout=3, kernel_name="python3")
    ex.preprocess(nb, {"nbgrader": {"assignment": "limits"}, "metadata": {"path": str(tmp_path)}})
    kinds = {c.metadata["nbgrader"]["grade_id"]: [o.get("ename") for o in c.outputs] for c in nb.cells[1:]}
    assert kinds == {"t_hangs": ["Timeout"], "t_crashes": ["KernelDied"], "t_not_data": ["NotData"],
                     "t_after": [None], "t_missing": ["Missing"]}, kinds


def test_the_notebook_has_one_wall_limit(tmp_path):
    """Cells under the per-cell limit still cannot take the notebook past its wall limit: what is
    left is not run, and the grader's tests that are left fail with Timeout."""
    from grading_ext import GradedExecute

    (tmp_path / "limits.py").write_text(LIMITS_TESTS)
    cells = [nbformat.v4.new_code_cell("def double(x):\n    return 2 * x")]
    cells += [nbformat.v4.new_code_cell("import time\ntime.sleep(2)") for _ in range(5)]
    nb = nbformat.v4.new_notebook(cells=cells + [_test_cell("t_late")])
    ex = GradedExecute(grader_dir=str(tmp_path), timeout=30, notebook_timeout=5, kernel_name="python3")
    t0 = time.time()
    ex.preprocess(nb, {"nbgrader": {"assignment": "limits"}, "metadata": {"path": str(tmp_path)}})
    assert time.time() - t0 < 30
    assert not nb.cells[-2].get("outputs") and nb.cells[-2].get("execution_count") is None, "the last sleep never ran"
    assert [o.get("ename") for o in nb.cells[-1].outputs] == ["Timeout"]


def test_feedback_names_only_error_kinds_from_a_fixed_list():
    """The class name of a learner's exception is the learner's to choose: a name outside the
    fixed list is reported as Error, so no chosen text reaches the feedback."""
    assert grader.LearnerError("ValueError").kind == "ValueError"
    assert grader.LearnerError("secret_answer_is_42").kind == "Error"
    out = grader.outputs("test_x_hidden", (False, "secret_answer_is_42", "a message"), hidden=True)
    assert out[0]["ename"] == "Error" and "secret" not in json.dumps(out) and "message" not in json.dumps(out)
    shown = grader.outputs("test_x_visible", (False, "AssertionError", "lr must be positive"), hidden=False)
    assert "lr must be positive" in shown[0]["traceback"][0]
