"""Shared fixtures: the repository root and the built book.

Notebooks under tests/ are fixtures for other tests (hostile submissions and
the like), never tests themselves: nbval must not collect them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "_build"
HTML_DIR = BUILD_DIR / "html"

collect_ignore_glob = ["*.ipynb", "**/*.ipynb"]


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip locally when a tool is missing; under CI a missing tool is a failure."""
    if on_ci():
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


def venv_env() -> dict:
    """The environment with this interpreter's bin/ first on PATH (jupyter tools, alembic)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def built_book() -> dict:
    """Build the book once per session with `jupyter-book build . --all -W -n --keep-going`.

    `--all` re-reads every page, so warnings from an earlier failed build are
    reported again instead of hidden by Sphinx's incremental build; notebooks
    still come from the jupyter-cache, so only changed (or failing) notebooks
    are executed again. Returns the return code, the log, the html directory
    and the wall time.
    """
    jb = Path(sys.executable).parent / "jupyter-book"
    if not jb.exists():
        skip_or_fail(f"jupyter-book is not installed next to {sys.executable}")
    start = time.perf_counter()
    proc = subprocess.run(
        [str(jb), "build", str(ROOT), "--all", "-W", "-n", "--keep-going"],
        cwd=ROOT,
        env=venv_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - start
    log = proc.stdout + "\n" + proc.stderr
    (BUILD_DIR).mkdir(exist_ok=True)
    (BUILD_DIR / "build.log").write_text(log)
    return {
        "returncode": proc.returncode,
        "log": log,
        "html": HTML_DIR,
        "seconds": seconds,
    }
