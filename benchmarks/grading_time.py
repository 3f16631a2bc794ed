"""Wall time of `grade.py grade` for L learners x 5 problem sets, at several --jobs. Run on demand:

    .venv/bin/python benchmarks/grading_time.py [--learners 50] [--jobs 1 2] [--sets all]

Every learner submits the source notebook (solutions) of every set, in a fresh copy of the
course per run, so each run grades L x 5 notebooks in the sandbox (when the machine allows it)
and runs every grader test. Prints, per --jobs, the total wall time, the time per notebook, and
checks that every submission got full marks (parallel grading must not change a grade).
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COURSE = os.path.join(ROOT, "exercises")


def one_run(learners, jobs, names):
    work = tempfile.mkdtemp(prefix="steplab-grading-bench-")
    course = os.path.join(work, "exercises")
    shutil.copytree(COURSE, course, ignore=shutil.ignore_patterns(
        "gradebook.db", "autograded", "feedback", "submitted", "grades.csv", "grading_state.json", "__pycache__"))
    for i in range(learners):
        for name in names:
            dest = os.path.join(course, "submitted", f"learner{i:03d}", name)
            os.makedirs(dest)
            shutil.copy(os.path.join(COURSE, "source", name, f"{name}.ipynb"), dest)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(course, "bin", "grade.py"), "--course-dir", course,
                           "grade", "--jobs", str(jobs)], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    with open(os.path.join(course, "grades.csv")) as fh:
        rows = [r for r in csv.DictReader(fh) if r["assignment"] in names]
    full = all(r["grading_note"] == "graded" for r in rows) and len(rows) == learners * len(names)
    shutil.rmtree(work, ignore_errors=True)
    return elapsed, full


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=50)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sets", nargs="+", default=None, help="problem sets (default: all five)")
    args = parser.parse_args()
    names = args.sets or sorted(os.listdir(os.path.join(COURSE, "source")))
    n = args.learners * len(names)
    print(f"{args.learners} learners x {len(names)} sets = {n} notebooks, {os.cpu_count()} cores")
    print("| --jobs | wall time | per notebook | all graded |")
    print("|---|---|---|---|")
    for jobs in args.jobs:
        elapsed, full = one_run(args.learners, jobs, names)
        print(f"| {jobs} | {elapsed / 60:.1f} min | {elapsed / n:.1f} s | {'yes' if full else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
