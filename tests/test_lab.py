"""The learner's lab in headless Chromium: `make lab`'s JupyterLab runs a lesson of each chapter.

One JupyterLab server, started from this environment with the course's lab/ settings on a
loopback port, serves a copy of the chapters in a temporary directory (JupyterLab autosaves
outputs into the notebooks it runs, and the repository's notebooks stay clean).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, skip_or_fail, venv_env
from test_site import browser_context  # noqa: F401 (the fixture: headless Chromium, one profile)

pytestmark = pytest.mark.lab

TOKEN = "steplab-lab-test"
LESSONS = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("chapters/*/01_intuition.ipynb"))
EXPLORER_LESSON = "chapters/01_gradient_descent/01_intuition.ipynb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory):
    jupyter = Path(sys.executable).parent / "jupyter"
    if importlib.util.find_spec("jupyterlab") is None or not jupyter.exists():
        skip_or_fail("JupyterLab is not installed (pip install -e '.[course,lab]')")
    tmp = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "chapters", tmp / "root" / "chapters")
    # Own user settings: every cell stays in the page (no windowing), whatever the user has set.
    tracker = tmp / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    env = dict(
        venv_env(), JUPYTER_CONFIG_PATH=str(ROOT / "lab"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
    )
    port = free_port()
    cmd = [
        str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
        f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp / 'root'}",
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp / "root", stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (tmp / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class LabLesson:
    """A lesson opened in the lab, every cell run, with its console and requests recorded."""

    def __init__(self, context, url: str, notebook: str):
        self.console: list[str] = []
        self.outside: list[str] = []
        self.page = context.new_page()
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.route("**/*", self._route)
        # `reset`: a fresh workspace, with this lesson as the only open tab.
        self.page.goto(f"{url}/lab/tree/{notebook}?reset&token={TOKEN}", timeout=180_000)
        self.page.wait_for_function(
            "() => window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell')", timeout=180_000
        )
        # The kernel must be idle before Run All, or the command runs against no session.
        self.page.wait_for_function(
            """() => { const w = window.jupyterapp.shell.currentWidget;
                return w && w.sessionContext && w.sessionContext.session
                    && w.sessionContext.session.kernel && w.sessionContext.kernelDisplayStatus === 'idle'; }""",
            timeout=180_000,
        )
        panel_id = self.page.evaluate("() => window.jupyterapp.shell.currentWidget.id")
        self.panel = self.page.locator(f"[id='{panel_id}']")
        self.panel.locator(".jp-Notebook").click(position={"x": 5, "y": 5})
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        # Every code cell has a number in its prompt, and none is queued or running.
        self.page.wait_for_function(
            """(id) => { const p = [...document.getElementById(id).querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                .map(e => e.textContent);
                return p.length && p.every(t => /\\[\\d+\\]/.test(t)); }""",
            arg=panel_id, timeout=300_000, polling=1000,
        )
        self.page.wait_for_timeout(3000)  # jupyterquiz typesets 500 ms after drawing; MathJax loads

    def _route(self, route):
        host = route.request.url.split("/")[2] if "://" in route.request.url else ""
        if route.request.url.startswith(("data:", "blob:")) or host.split(":")[0] in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()


@pytest.fixture(scope="module")
def lessons(browser_context, lab_url):
    opened: dict[str, LabLesson] = {}

    def open_lesson(notebook: str) -> LabLesson:
        if notebook not in opened:
            opened[notebook] = LabLesson(browser_context, lab_url, notebook)
        return opened[notebook]

    yield open_lesson
    for lesson in opened.values():
        lesson.page.close()


@pytest.mark.parametrize("notebook", LESSONS)
def test_lesson_runs_in_the_lab(lessons, notebook):
    lesson = lessons(notebook)
    page = lesson.panel
    errors = page.evaluate(
        """(panel) => [...panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"],'
            + '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
            .map(e => e.textContent.slice(0, 300))"""
    )
    assert errors == []
    # jupyterlab-myst draws the theorem boxes (sphinx-proof's directives) as admonitions.
    source = (ROOT / notebook).read_text(encoding="utf-8")
    if "{prf:theorem}" in source:
        assert page.locator(".jp-MarkdownCell .admonition, .jp-MarkdownCell aside").count() > 0
        assert "{prf:theorem}" not in page.locator(".jp-Notebook").inner_text()
    # The skill check: drawn, and every formula typeset.
    quiz = page.locator("[data-shufflequestions]").first
    assert quiz.count() == 1
    text = quiz.inner_text()
    assert page.locator(".Quiz").count() > 0
    assert "\\(" not in text and "\\)" not in text, text[:500]
    if "\\(" in (ROOT / notebook.replace(".ipynb", ".quiz.json")).read_text(encoding="utf-8"):
        assert quiz.locator("mjx-container").count() > 0
    # jupyterquiz says this when the page has no MathJax.typeset, then asks a CDN for MathJax.
    assert not [m for m in lesson.console if "Trying to force load MathJax" in m]
    assert lesson.outside == []
    assert [m for m in lesson.console if m.startswith("pageerror")] == []


def test_explorer_slider_redraws_in_the_lab(lessons):
    lesson = lessons(EXPLORER_LESSON)
    # The first explorer: a widget output with the figure (an ipywidgets Image) and its sliders.
    explorer = lesson.panel.locator(".jp-OutputArea-output", has=lesson.page.locator(".widget-image")).first
    figure = explorer.locator("img.widget-image").first
    before = figure.get_attribute("src")
    assert before
    slider = explorer.locator(".noUi-handle").first
    slider.focus()
    for _ in range(3):
        lesson.page.keyboard.press("ArrowRight")
    figure.evaluate(
        """(img, before) => new Promise((resolve, reject) => {
            const t0 = Date.now();
            (function poll() {
                if (img.src !== before) resolve();
                else if (Date.now() - t0 > 60000) reject(new Error('the figure was not redrawn'));
                else setTimeout(poll, 200);
            })(); })""",
        before,
    )


# The prebuilt extensions of ipywidgets (jupyterlab_widgets 3.0.17) and nbgrader 0.9.6 were built
# against JupyterLab 4.5-4.6, while jupyterlab-myst 2.7 holds JupyterLab below 4.5. Strict: when
# one consistent set is pinned, this test passes and the mark must go.
@pytest.mark.xfail(strict=True, reason="extensions built for JupyterLab >= 4.5 in a JupyterLab 4.4 lab")
def test_lab_loads_with_consistent_extension_versions(lessons):
    lesson = lessons(EXPLORER_LESSON)
    unsatisfied = [m for m in lesson.console if "Unsatisfied version" in m]
    assert unsatisfied == [], "\n".join(unsatisfied)
