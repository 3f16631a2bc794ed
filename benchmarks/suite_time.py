"""Where one `make test` spends its time, and how often each notebook is executed.

Runs the suite once (``make test``, or the pytest arguments given after ``--``)
with ``STEPLAB_SUITE_REPORT`` set, so the suite's own plugin (tests/nbcache.py)
records the time per phase and every nbval execution; the site build's log
(``_build/build.log``) says which notebooks the build executed itself. Prints
the wall time, the time per phase, the ratio of the wall time to the phases'
sum, and the executions per notebook (the goal is 1: nbval's, reused by the
build through the execution cache). Then it runs ``make book`` once more and
reports its wall time and how many notebooks it executed (the goal: none, in
under 30 s).

    python benchmarks/suite_time.py                 # the whole suite, as `make test`
    python benchmarks/suite_time.py bash .ci/run    # CI's entry point (install included)
    python benchmarks/suite_time.py --json out.json --no-book
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXECUTING = re.compile(r"^(?P<path>\S+\.ipynb): Executing notebook", re.MULTILINE)


def build_executions(log: str) -> collections.Counter:
    """Notebooks the book build executed itself (it logs one line per execution)."""
    found = collections.Counter()
    for match in EXECUTING.finditer(log):
        path = Path(match["path"])
        found[str(path.relative_to(ROOT)) if path.is_absolute() else str(path)] += 1
    return found


def run_suite(command: list[str]) -> tuple[dict, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        env = dict(os.environ, STEPLAB_SUITE_REPORT=str(report_path))
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, env=env)
        wall = time.perf_counter() - start
        if not report_path.exists():
            raise SystemExit(f"{' '.join(command)} wrote no suite report (exit {proc.returncode})")
        return json.loads(report_path.read_text()), wall, proc.returncode


def time_book() -> dict:
    """``make book`` after the suite: its wall time and the notebooks it executed itself."""
    start = time.perf_counter()
    proc = subprocess.run(["make", "book"], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    executed = build_executions(proc.stdout + proc.stderr)
    return {"wall_seconds": wall, "exit": proc.returncode, "executed": sorted(executed)}


def summarize(report: dict, wall: float) -> dict:
    log_path = ROOT / "_build" / "build.log"
    built = build_executions(log_path.read_text()) if log_path.exists() else collections.Counter()
    notebooks = {
        nb: {"nbval": 1, "build": built.get(nb, 0), "seconds": info["seconds"], "cached": info["cached"]}
        for nb, info in sorted(report["notebooks"].items())
        if nb.startswith("chapters/")
    }
    phases = report["phase_seconds"]
    return {
        "wall_seconds": wall,
        "pytest_seconds": report["wall_seconds"],
        "phase_seconds": phases,
        "ratio_wall_to_phases": wall / max(sum(phases.values()), 1e-9),
        "notebooks": notebooks,
        "max_executions_per_notebook": max((n["nbval"] + n["build"] for n in notebooks.values()), default=0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--no-book", action="store_true", help="do not time `make book` after the suite")
    parser.add_argument("command", nargs="*", help="the suite command (default: make test)")
    args = parser.parse_args()
    report, wall, code = run_suite(args.command or ["make", "test"])
    summary = summarize(report, wall)
    print(f"\nwall time {wall:.0f} s (pytest {summary['pytest_seconds']:.0f} s), exit {code}")
    for name, seconds in sorted(summary["phase_seconds"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<10} {seconds:7.0f} s")
    print(f"  wall / sum of phases = {summary['ratio_wall_to_phases']:.2f}")
    print(f"\n{'notebook':<58} {'nbval':>5} {'build':>5} {'s':>6}")
    for nb, info in summary["notebooks"].items():
        print(f"{nb:<58} {info['nbval']:>5} {info['build']:>5} {info['seconds']:6.1f}")
    print(f"most executions of one notebook: {summary['max_executions_per_notebook']}")
    if not args.no_book:
        summary["book_after_suite"] = book = time_book()
        print(f"\nmake book afterwards: {book['wall_seconds']:.0f} s, exit {book['exit']}, "
              f"{len(book['executed'])} notebook(s) executed {book['executed'] or ''}")
        code = code or book["exit"]
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
