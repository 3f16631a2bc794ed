"""Execution time of each lesson notebook alone, one after the other, as the book runs them.

The suite's own per-notebook times (``suite_time.py``) are taken while the sandboxed
grading runs beside the notebooks, so they measure two cores shared three ways. This
runs each notebook by itself in a fresh kernel (kernel start included), with the book
build's environment (web views embedded) and one BLAS thread, and prints a table per
chapter, the slowest cell of each notebook, and the slowest notebook. Run on demand:

    .venv/bin/python benchmarks/notebook_time.py [--repeat 1] [chapters/01_gradient_descent ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ["01_intuition", "02_definitions", "03_core_theory_1", "04_core_theory_2",
         "05_core_theory_3", "06_advanced", "theory"]


def run_notebook(path: Path) -> tuple[float, float, str]:
    """Wall time of one execution (kernel start included) and its slowest cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    slowest, slowest_src = 0.0, ""
    t0 = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            t = time.perf_counter()
            client.execute_cell(cell, index)
            seconds = time.perf_counter() - t
            if seconds > slowest:
                slowest, slowest_src = seconds, cell.source.splitlines()[0][:60]
    return time.perf_counter() - t0, slowest, slowest_src


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", type=Path,
                        default=sorted((ROOT / "chapters").glob("0*_*")))
    parser.add_argument("--repeat", type=int, default=1, help="executions per notebook (the minimum is kept)")
    args = parser.parse_args()
    # The book build's kernels embed the web views (book_ext/web_views.py); the Makefile's BLAS threads.
    from steplab.explore.web import EMBED_ENV

    os.environ[EMBED_ENV] = "embed"
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    times, notes = {}, []
    for chapter in args.chapters:
        for part in PARTS:
            path = chapter / f"{part}.ipynb"
            if not path.exists():
                continue
            best = min((run_notebook(path) for _ in range(args.repeat)), key=lambda r: r[0])
            times[chapter.name, part] = best[0]
            notes.append(f"{chapter.name}/{part}: {best[0]:.1f} s, slowest cell {best[1]:.1f} s ({best[2]})")
            print(notes[-1], file=sys.stderr, flush=True)
    print(f"{os.cpu_count()} cores; each notebook alone, kernel start included, min of {args.repeat}\n")
    print("| notebook | " + " | ".join(f"chapter {int(c.name[:2])}" for c in args.chapters) + " |")
    print("|---|" + "---|" * len(args.chapters))
    for part in PARTS:
        cells = [f"{times[c.name, part]:.1f} s" if (c.name, part) in times else "" for c in args.chapters]
        print(f"| {part} | " + " | ".join(cells) + " |")
    (chapter, part), worst = max(times.items(), key=lambda kv: kv[1])
    print(f"\nslowest: {chapter}/{part}, {worst:.1f} s; total {sum(times.values()):.0f} s")


if __name__ == "__main__":
    main()
