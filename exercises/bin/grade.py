"""Release, grade and self-check the course's nbgrader problem sets.

    python exercises/bin/grade.py release [--into DIR]
    python exercises/bin/grade.py grade [--learner ID ...] [--cell-timeout S] [--no-sandbox]
    python exercises/bin/grade.py check NOTEBOOK [--cell-timeout S]

``release`` runs ``nbgrader generate_assignment`` for every set in source/.
``grade`` registers every set, autogrades each learner's submission of each set in a
separate nbgrader run (so a dead kernel or a corrupt notebook costs only that submission,
which is recorded with zero points), strips hidden tests from the autograded notebooks,
exports grades.csv and generates feedback. Learner kernels run in the sandbox of
sandbox_kernel.py when the machine allows it.
``check`` executes one notebook in the current environment and exits 1 when a test cell
fails or a cell raises (``nbgrader validate`` always exits 0).
"""

import argparse
import csv
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time

BIN = os.path.dirname(os.path.abspath(__file__))
COURSE = os.path.dirname(BIN)
sys.path.insert(0, BIN)

import sandbox_kernel  # noqa: E402

KERNEL_NAME = "steplab-sandbox"
UID_BASE = 61000
HIDDEN_RE = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", re.S)
HIDDEN_NOTE = "# Hidden tests run here when the notebook is graded; they are not shown."
LEARNER_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def sets(course):
    src = os.path.join(course, "source")
    return sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)) and not d.startswith("."))


# nbgrader runs `alembic` from PATH: the interpreter's own bin directory (the venv) comes first.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def api(course, **overrides):
    """An in-process NbGraderAPI for the course (one import of nbgrader, not one per call)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config, PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=course).load_config()
    cfg.CourseDirectory.root = course
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        cfg[section][key] = value
    coursedir = CourseDirectory(config=Config(cfg))
    return NbGraderAPI(coursedir=coursedir, config=Config(cfg))


def _run(result, what):
    if not result["success"]:
        raise SystemExit(f"{what} failed:\n{result.get('log', '')[-3000:]}\n{result.get('error', '')}")
    return result


# ---------------------------------------------------------------- release

def release(course, into=None, db=None, quiet=False):
    """generate_assignment for every set, into release/ (or into DIR)."""
    overrides = {}
    if into:
        overrides["CourseDirectory.release_directory"] = os.path.abspath(into)
    if db:
        overrides["CourseDirectory.db_url"] = f"sqlite:///{os.path.abspath(db)}"
    nbg = api(course, **overrides)
    for name in sets(course):
        result = _run(nbg.generate_assignment(name, force=True, create=True), f"generate_assignment {name}")
        if not quiet:
            print(f"released {name}")
    return result


# ---------------------------------------------------------------- grade

def strip_hidden(nb):
    """Remove hidden tests, and every output they produced, from a notebook (in place).

    Returns the number of cells changed. A failed hidden cell keeps an error output
    (ename only) so the feedback still shows that it failed, never why.
    """
    changed = 0
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(src)
        if "BEGIN HIDDEN TESTS" not in src:
            continue
        cell["source"] = HIDDEN_RE.sub(HIDDEN_NOTE, src)
        if "BEGIN HIDDEN TESTS" in cell["source"]:  # unterminated marker: drop everything after it
            cell["source"] = cell["source"].split("### BEGIN HIDDEN TESTS")[0] + HIDDEN_NOTE
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            ename = str(errors[0].get("ename", "Error"))[:80]
            cell["outputs"] = [{
                "output_type": "error", "ename": ename, "evalue": "",
                "traceback": [f"{ename}: a test in this cell failed (hidden tests are not shown)"],
            }]
        else:
            cell["outputs"] = []
        changed += 1
    return changed


def strip_hidden_file(path):
    with open(path) as fh:
        nb = json.load(fh)
    if strip_hidden(nb):
        with open(path, "w") as fh:
            json.dump(nb, fh, indent=1)


def leaks(root):
    """Files under root that still show a hidden test marker."""
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                text = open(path, errors="replace").read()
            except OSError:
                continue
            if "BEGIN HIDDEN TESTS" in text or "END HIDDEN TESTS" in text:
                found.append(path)
    return found


def zero_submission(course, name, learner):
    """Record a submission that could not be autograded: every grade zero, nothing to grade by hand."""
    from nbgrader.api import Gradebook

    url = f"sqlite:///{os.path.join(course, 'gradebook.db')}"
    with Gradebook(url, course_id="steplab") as gb:
        gb.update_or_create_student(learner)
        sub = gb.update_or_create_submission(name, learner)
        for notebook in sub.notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.manual_score = None
                grade.needs_manual_grade = False
        gb.db.commit()


def kill_uid(uid):
    """Kill what a learner's kernel left behind: every process of that learner's own uid."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as fh:
                uids = next(line for line in fh if line.startswith("Uid:")).split()[1:]
        except (OSError, StopIteration):
            continue
        if str(uid) in uids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def write_kernelspec(root, sandboxed):
    spec_dir = os.path.join(root, "kernels", KERNEL_NAME)
    os.makedirs(spec_dir, exist_ok=True)
    argv = [sys.executable, os.path.join(BIN, "sandbox_kernel.py"), "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "steplab sandbox", "language": "python",
            "env": {"STEPLAB_SANDBOX": "namespace" if sandboxed else "none"}}
    with open(os.path.join(spec_dir, "kernel.json"), "w") as fh:
        json.dump(spec, fh)


def grade(course, learners=None, cell_timeout=None, sandbox=True):
    sandboxed = sandbox and sandbox_kernel.available()
    if sandbox and not sandboxed:
        print("WARNING: kernel isolation is not available here (it needs root, unshare, mount and "
              "setpriv). Submissions run with the grader's rights and could change the gradebook "
              "or other learners' files. Grade untrusted work only where isolation works "
              "(e.g. as root in CI, or in a container).", file=sys.stderr)
    names = sets(course)
    work = tempfile.mkdtemp(prefix="steplab-grade-")
    saved_env = dict(os.environ)
    try:
        # A fresh clone has no gradebook: register every set (the release goes to scratch).
        release(course, into=os.path.join(work, "release"), quiet=True)
        write_kernelspec(work, sandboxed)
        os.environ["JUPYTER_PATH"] = work + os.pathsep + os.environ.get("JUPYTER_PATH", "")
        os.environ["STEPLAB_SANDBOX_HIDE"] = course
        overrides = {"Execute.kernel_name": KERNEL_NAME}
        if cell_timeout:
            overrides["Execute.timeout"] = int(cell_timeout)
        nbg = api(course, **overrides)
        submitted = os.path.join(course, "submitted")
        found = sorted(os.listdir(submitted)) if os.path.isdir(submitted) else []
        if not found:
            print(f"no submissions: put them at {submitted}/<learner>/<set>/<set>.ipynb")
        notes = {}
        for i, learner in enumerate(found):
            if learners and learner not in learners:
                continue
            if not LEARNER_RE.match(learner) or not os.path.isdir(os.path.join(submitted, learner)):
                print(f"skipping {learner!r}: not a learner directory", file=sys.stderr)
                continue
            os.environ["STEPLAB_SANDBOX_UID"] = str(UID_BASE + i)
            for name in names:
                if os.path.isdir(os.path.join(submitted, learner, name)):
                    notes[(learner, name)] = grade_one(nbg, course, name, learner)
            if sandboxed:
                kill_uid(UID_BASE + i)
        csv_path = os.path.join(course, "grades.csv")
        export(course, csv_path, notes)
        for name in names:
            if any(n == name and note.startswith("graded") for (_, n), note in notes.items()):
                _run(nbg.generate_feedback(name, force=True), f"generate_feedback {name}")
        for (learner, name), note in notes.items():
            if not note.startswith("graded"):
                out = os.path.join(course, "feedback", learner, name)
                os.makedirs(out, exist_ok=True)
                with open(os.path.join(out, "GRADING_NOTE.txt"), "w") as fh:
                    fh.write(f"This submission could not be autograded and scored zero: {note}\n")
        for sub in ("autograded", "feedback"):
            bad = leaks(os.path.join(course, sub))
            if bad:
                raise SystemExit(f"hidden tests would leak through: {bad}")
        for (learner, name), note in sorted(notes.items()):
            print(f"{learner:>20s} {name:28s} {note}")
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(work, ignore_errors=True)
    return notes


FAILURES = (
    (r"DeadKernelError|Kernel died|kernel died", "the kernel died"),
    (r"NotJSONError|does not appear to be JSON|JSONDecodeError|Unreadable Notebook|NBFormatError|"
     r"ValidationError", "the notebook file is corrupt"),
    (r"No notebooks found", "no notebook with the expected name"),
    (r"CellTimeoutError|TimeoutError", "a cell timed out"),
)


def grade_one(nbg, course, name, learner):
    t0 = time.time()
    result = nbg.autograde(name, learner, force=True, create=True)
    autograded = os.path.join(course, "autograded", learner, name)
    log = (result.get("log") or "") + (result.get("error") or "")
    if not result["success"]:
        reason = next((text for pattern, text in FAILURES if re.search(pattern, log)), "autograde failed")
        shutil.rmtree(autograded, ignore_errors=True)
        zero_submission(course, name, learner)
        print(f"{learner}/{name}: {reason}; recorded with zero points", file=sys.stderr)
        return reason
    for dirpath, _, filenames in os.walk(autograded):
        for fname in filenames:
            if fname.endswith(".ipynb"):
                strip_hidden_file(os.path.join(dirpath, fname))
    unknown = re.findall(r"Skipping unknown notebook: (\S+)", log)
    note = "graded"
    if unknown:
        note = "graded; ignored wrongly named " + ", ".join(os.path.basename(u) for u in unknown)
    print(f"{learner}/{name}: {note} in {time.time() - t0:.1f} s", file=sys.stderr)
    return note


def export(course, csv_path, notes):
    """nbgrader's CSV export plus a column saying how each submission was graded."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    url = f"sqlite:///{os.path.join(course, 'gradebook.db')}"
    with Gradebook(url, course_id="steplab") as gb:
        CsvExportPlugin(to=csv_path).export(gb)
    add_notes(csv_path, notes)


def add_notes(csv_path, notes):
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    fields = list(rows[0].keys()) + ["grading_note"]
    for row in rows:
        row["grading_note"] = notes.get((row["student_id"], row["assignment"]), "no submission")
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------- check

def cell_name(cells, i):
    """A cell as the learner sees it: the function it defines, else the heading above it."""
    match = re.search(r"^def (\w+)\(", cells[i].source, re.M)
    if match:
        return f"`{match.group(1)}`"
    for cell in reversed(cells[:i]):
        heading = re.search(r"^#+ +(.+)$", cell.source, re.M) if cell.cell_type == "markdown" else None
        if heading:
            return f"the cell under \"{heading.group(1).strip()}\""
    return f"code cell {sum(c.cell_type == 'code' for c in cells[:i + 1])}"


def error_text(error):
    if error.ename == "NotImplementedError" and not error.evalue:
        return "not implemented yet"
    return f"{error.ename}: {error.evalue}"


def check(path, cell_timeout=120):
    """Run a notebook; print one line per test cell; return the number of failures."""
    import nbformat
    from nbclient import NotebookClient

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001  (any unreadable file is the learner's to fix)
        print(f"FAIL  cannot read {path}: {exc}")
        return 1
    client = NotebookClient(nb, timeout=cell_timeout, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    client.execute()
    failures = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        label = meta.get("grade_id") if meta.get("grade") else cell_name(nb.cells, i)
        if meta.get("grade") and not meta.get("solution"):
            pts = meta.get("points", 0)
            code = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
            if not code:  # a hidden test: its body is removed from the release, so it proves nothing here
                print(f"HIDDEN  {label} ({pts} points): run by the grader on your submission")
                continue
            print(f"{'FAIL' if errors else 'PASS'}  {label} ({pts} points)"
                  + (f": {error_text(errors[0])}" if errors else ""))
            failures += bool(errors)
        elif errors:
            print(f"FAIL  {label}: {error_text(errors[0])}")
            failures += 1
    print(f"{failures} failing cell(s)" if failures else "all visible tests pass")
    return failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course-dir", default=COURSE)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release")
    p.add_argument("--into")
    p.add_argument("--db", help="gradebook to register the sets in (default: the course's)")
    p = sub.add_parser("grade")
    p.add_argument("--learner", action="append")
    p.add_argument("--cell-timeout", type=float)
    p.add_argument("--no-sandbox", action="store_true")
    p = sub.add_parser("check")
    p.add_argument("notebook")
    p.add_argument("--cell-timeout", type=int, default=120)
    args = parser.parse_args(argv)
    course = os.path.abspath(args.course_dir)
    if args.command == "release":
        release(course, into=args.into, db=args.db)
    elif args.command == "grade":
        grade(course, learners=args.learner, cell_timeout=args.cell_timeout, sandbox=not args.no_sandbox)
    else:
        return 1 if check(args.notebook, args.cell_timeout) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
