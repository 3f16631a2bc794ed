"""Release, grade and self-check the course's nbgrader problem sets.

    python exercises/bin/grade.py release [--into DIR]
    python exercises/bin/grade.py grade [--learner ID ...] [--jobs N] [--regrade] [--cell-timeout S] [--no-sandbox]
    python exercises/bin/grade.py check NOTEBOOK [--cell-timeout S]

``release`` runs ``nbgrader generate_assignment`` for every set in source/.
``grade`` first starts one kernel in the sandbox (a canary: when it cannot start, nothing is
recorded), registers every set, then grades each learner in a worker process of its own
(``--jobs`` at a time, default the number of cores): one nbgrader autograde run per set, so a
dead kernel or a corrupt notebook costs only that submission (recorded with zero points). In
each run the notebook executes in the learner's sandboxed kernel (sandbox_kernel.py) and the
grader's tests (grader/<set>.py) award the test cells' points from outside it
(grading_ext.GradedExecute). Hidden-test markers are checked before anything is exported;
then grades.csv and the feedback are written. A submission graded before, unchanged, with
unchanged tests, is not graded again (``--regrade`` forces it; ``--learner`` regrades those).
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
import subprocess
import sys
import tempfile
import time

BIN = os.path.dirname(os.path.abspath(__file__))
COURSE = os.path.dirname(BIN)
sys.path.insert(0, BIN)

import grader  # noqa: E402
import sandbox_kernel  # noqa: E402

KERNEL_NAME = "steplab-sandbox"
UID_BASE = 61000
HIDDEN_RE = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", re.S)
HIDDEN_NOTE = "# Hidden tests: the grader runs them on your functions; they are not shown."
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
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "this cell")
            cell["outputs"] = grader.outputs(gid, (False, str(errors[0].get("ename", "")), ""), hidden=True)
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
    # Interrupts go as messages: the kernel may run in its own pid namespace, out of reach of signals.
    spec = {"argv": argv, "display_name": "steplab sandbox", "language": "python", "interrupt_mode": "message",
            "env": {"STEPLAB_SANDBOX": "namespace" if sandboxed else "none"}}
    with open(os.path.join(spec_dir, "kernel.json"), "w") as fh:
        json.dump(spec, fh)


def canary(work, course):
    """Run one trivial notebook in the learners' kernel before anything is recorded; stop with a
    clear error when that kernel cannot start (a missing interpreter, a virtualenv reached through
    a symlink that the sandbox hides, no unshare) instead of recording every learner as a dead kernel."""
    import nbformat
    from nbclient import NotebookClient

    folder = os.path.join(work, "canary")
    os.makedirs(folder)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import numpy, steplab\nprint(6 * 7)")])
    os.environ["STEPLAB_SANDBOX_UID"] = str(UID_BASE - 1)
    client = NotebookClient(nb, timeout=120, startup_timeout=60, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": folder}})
    try:
        client.execute()
        ok = any("42" in o.get("text", "") for o in nb.cells[0].outputs)
        why = "" if ok else f"the test cell gave {nb.cells[0].outputs!r}"
    except Exception as exc:  # noqa: BLE001  (any failure to start means: do not grade)
        ok, why = False, f"{type(exc).__name__}: {str(exc)[:500]}"
    finally:
        cleanup_learner(UID_BASE - 1)
    if not ok:
        raise SystemExit(
            "grading stopped before recording anything: the learners' kernel cannot start in its "
            f"sandbox ({why}). Check that the interpreter ({sys.executable}) and its environment are "
            f"not reached through a path the sandbox hides ({course}, /root, /tmp), and that unshare, "
            "mount and setpriv work; or grade with --no-sandbox on trusted submissions.")


def cleanup_learner(uid):
    """Kill what a learner's kernels left behind and remove their cgroups."""
    kill_uid(uid)
    sandbox_kernel.remove_cgroups([d for d in sandbox_kernel.stale_cgroups()
                                   if os.path.basename(d).startswith(f"{sandbox_kernel.CGROUP_PREFIX}{uid}-")])


STATE = "grading_state.json"


def submission_hash(course, learner, name):
    """What a grade depends on: the submission, the set's source and its grader tests."""
    import hashlib

    h = hashlib.sha256()
    paths = [os.path.join(course, "grader", f"{name}.py"), os.path.join(course, "source", name, f"{name}.ipynb")]
    for dirpath, _, filenames in sorted(os.walk(os.path.join(course, "submitted", learner, name))):
        paths += [os.path.join(dirpath, f) for f in sorted(filenames)]
    for path in paths:
        h.update(path.encode())
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def _load_state(course):
    try:
        with open(os.path.join(course, STATE)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def grade(course, learners=None, cell_timeout=None, sandbox=True, jobs=None, regrade=False):
    """Grade every submission (or those of ``learners``); a submission already graded, unchanged,
    with unchanged tests, is kept as it is unless ``regrade``."""
    sandboxed = sandbox and sandbox_kernel.available()
    if sandbox and not sandboxed:
        print("WARNING: kernel isolation is not available here (it needs root, unshare, mount and "
              "setpriv). Submissions run with the grader's rights and could change the gradebook "
              "or other learners' files. Grade untrusted work only where isolation works "
              "(e.g. as root in CI, or in a container).", file=sys.stderr)
    elif sandboxed and not sandbox_kernel.cgroup_dirs("probe"):
        print("WARNING: no writable cgroup file system: each kernel process is limited on its own "
              "(address space, process count), not all of a learner's processes together.", file=sys.stderr)
    sandbox_kernel.remove_cgroups([d for d in sandbox_kernel.stale_cgroups() if d.endswith("probe")])
    names = sets(course)
    work = tempfile.mkdtemp(prefix="steplab-grade-")
    saved_env = dict(os.environ)
    try:
        write_kernelspec(work, sandboxed)
        os.environ["JUPYTER_PATH"] = work + os.pathsep + os.environ.get("JUPYTER_PATH", "")
        # The course is hidden from kernels, and whatever else the instructor lists (another clone).
        os.environ["STEPLAB_SANDBOX_HIDE"] = os.pathsep.join([course, os.environ.get("STEPLAB_SANDBOX_HIDE", "")])
        canary(work, course)
        # A fresh clone has no gradebook: register every set (the release goes to scratch).
        release(course, into=os.path.join(work, "release"), quiet=True)
        submitted = os.path.join(course, "submitted")
        found = sorted(os.listdir(submitted)) if os.path.isdir(submitted) else []
        if not found:
            print(f"no submissions: put them at {submitted}/<learner>/<set>/<set>.ipynb")
        state = _load_state(course)
        todo = []
        for i, learner in enumerate(found):
            if not LEARNER_RE.match(learner) or not os.path.isdir(os.path.join(submitted, learner)):
                print(f"skipping {learner!r}: not a learner directory", file=sys.stderr)
                continue
            if learners and learner not in learners:
                continue
            mine = [n for n in names if os.path.isdir(os.path.join(submitted, learner, n))]
            if not regrade:  # only what is new or changed since the last run
                mine = [n for n in mine if state.get(learner, {}).get(n, {}).get("hash")
                        != submission_hash(course, learner, n)]
            if mine:
                todo.append((UID_BASE + i, learner, mine))
        for learner, done in run_workers(course, todo, cell_timeout, jobs).items():
            for name, note in done.items():
                state.setdefault(learner, {})[name] = {"hash": submission_hash(course, learner, name), "note": note}
        notes = {(learner, name): entry["note"] for learner, sets_ in state.items() for name, entry in sets_.items()
                 if os.path.isdir(os.path.join(submitted, learner, name))}
        export(course, os.path.join(course, "grades.csv"), notes)
        feedback(course, names, notes)
        with open(os.path.join(course, STATE), "w") as fh:
            json.dump(state, fh, indent=1, sort_keys=True)
        for (learner, name), note in sorted(notes.items()):
            print(f"{learner:>20s} {name:28s} {note}")
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(work, ignore_errors=True)
    return notes


def run_workers(course, todo, cell_timeout, jobs):
    """Grade each learner in a process of its own, ``jobs`` at a time: {learner: {set: note}}."""
    import concurrent.futures

    def one(item):
        uid, learner, names = item
        cmd = [sys.executable, os.path.abspath(__file__), "--course-dir", course, "worker", learner,
               "--uid", str(uid), *names]
        if cell_timeout:
            cmd += ["--cell-timeout", str(cell_timeout)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(proc.stderr[-2000:])
        try:
            return learner, json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):  # the worker itself failed: zero, with a note, and go on
            for name in names:
                zero_submission(course, name, learner)
            return learner, {n: "autograde failed" for n in names}

    todo = sorted(todo, key=lambda item: -len(item[2]))  # the longest first: the pool ends together
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as pool:
        return dict(pool.map(one, todo))


def worker(course, learner, uid, names, cell_timeout=None):
    """Autograde one learner's sets, one nbgrader run each, in this process; print the notes as JSON."""
    os.environ["STEPLAB_SANDBOX_UID"] = str(uid)
    overrides = {"Execute.kernel_name": KERNEL_NAME}
    if cell_timeout:
        overrides["Execute.timeout"] = int(cell_timeout)
    if os.environ.get("STEPLAB_NOTEBOOK_TIMEOUT"):
        overrides["GradedExecute.notebook_timeout"] = float(os.environ["STEPLAB_NOTEBOOK_TIMEOUT"])
    nbg = api(course, **overrides)
    notes = {}
    try:
        for name in names:
            notes[name] = grade_one(nbg, course, name, learner)
    finally:
        cleanup_learner(uid)
    print(json.dumps(notes))


def feedback(course, names, notes):
    """nbgrader's feedback for every set with a graded submission; a note for the others. Feedback
    that would still show a hidden-test marker is removed, with a note, instead of stopping."""
    nbg = api(course)
    for name in names:
        if any(n == name and note.startswith("graded") for (_, n), note in notes.items()):
            _run(nbg.generate_feedback(name, force=True), f"generate_feedback {name}")
    for (learner, name), note in notes.items():
        out = os.path.join(course, "feedback", learner, name)
        if note.startswith("graded") and leaks(out):
            shutil.rmtree(out, ignore_errors=True)
            note = "its feedback showed hidden-test markers and was withheld"
        if not note.startswith("graded"):
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, "GRADING_NOTE.txt"), "w") as fh:
                fh.write(f"This submission could not be autograded and scored zero: {note}\n")


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
    if leaks(autograded):  # markers the learner wrote: never let them reach the CSV or feedback
        shutil.rmtree(autograded, ignore_errors=True)
        zero_submission(course, name, learner)
        print(f"{learner}/{name}: hidden-test markers in the notebook; recorded with zero points", file=sys.stderr)
        return "the notebook contains hidden-test markers"
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

def _heading(cells, i):
    """The last markdown heading above cell i (the exercise the cell belongs to), or None."""
    for cell in reversed(cells[:i]):
        if cell.cell_type == "markdown":
            heads = [ln.lstrip("#").strip() for ln in cell.source.splitlines() if ln.startswith("#")]
            if heads:
                return heads[-1]
    return None


def _defines(source):
    """The functions and classes a cell defines at its top level."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def _label(cells, i):
    """A cell named as a learner finds it: its test id or what it defines, and its exercise."""
    cell = cells[i]
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
    names = _defines(cell.source)
    what = grade_id or (f"the cell defining {', '.join(names)}" if names else "a cell")
    heading = _heading(cells, i)
    return f'{what} in "{heading}"' if heading else what


def _stubs(cells):
    """Names defined by answer cells that still raise NotImplementedError (untouched stubs)."""
    return [name for c in cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
            and "raise NotImplementedError" in c.source for name in _defines(c.source)]


def _reason(error, source, stubs):
    """What went wrong in words: an untouched stub is "not implemented yet"."""
    if error.ename == "NotImplementedError" and not str(error.evalue).strip():
        called = [n for n in stubs if re.search(rf"\b{re.escape(n)}\b", source)]
        return f"{', '.join(called)} not implemented yet" if called else "not implemented yet"
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
    stubs = _stubs(nb.cells)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        reason = _reason(errors[0], cell.source, stubs) if errors else ""
        if meta.get("grade") and not meta.get("solution"):
            pts = meta.get("points", 0)
            heading = _heading(nb.cells, i)
            label = f"{meta.get('grade_id')} ({pts} points)" + (f' in "{heading}"' if heading else "")
            code = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
            if not code:  # a hidden test: its body is removed from the release, so it proves nothing here
                print(f"HIDDEN  {label}: run by the grader on your submission")
                continue
            print(f"{'FAIL' if errors else 'PASS'}  {label}" + (f": {reason}" if errors else ""))
            failures += bool(errors)
        elif errors:
            print(f"FAIL  {_label(nb.cells, i)}: {reason}")
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
    p.add_argument("--learner", action="append", help="grade only these learners (again)")
    p.add_argument("--cell-timeout", type=float)
    p.add_argument("--no-sandbox", action="store_true")
    p.add_argument("--jobs", type=int, help="learners graded at once (default: the number of cores)")
    p.add_argument("--regrade", action="store_true", help="grade again submissions already graded")
    p = sub.add_parser("worker", help="(internal) grade one learner's sets in this process")
    p.add_argument("learner")
    p.add_argument("names", nargs="+")
    p.add_argument("--uid", type=int, required=True)
    p.add_argument("--cell-timeout", type=float)
    p = sub.add_parser("check")
    p.add_argument("notebook")
    p.add_argument("--cell-timeout", type=int, default=120)
    args = parser.parse_args(argv)
    course = os.path.abspath(args.course_dir)
    if args.command == "release":
        release(course, into=args.into, db=args.db)
    elif args.command == "grade":
        grade(course, learners=args.learner, cell_timeout=args.cell_timeout, sandbox=not args.no_sandbox,
              jobs=args.jobs, regrade=args.regrade or bool(args.learner))
    elif args.command == "worker":
        worker(course, args.learner, args.uid, args.names, args.cell_timeout)
    else:
        return 1 if check(args.notebook, args.cell_timeout) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
