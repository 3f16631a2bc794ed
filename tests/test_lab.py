"""The lessons in JupyterLab, the way `make lab` serves them, in headless Chromium.

One JupyterLab server for the module, started from this environment with the
project's lab settings (``JUPYTER_CONFIG_PATH=lab/``) on a loopback port. One lesson
per chapter is opened and run top to bottom; then: no cell shows an error, the MyST
theorem boxes render (jupyterlab-myst), every skill-check formula is typeset, and so is the
feedback after each answer, dragging the explorer's slider redraws its figure, nothing is
requested from another host, and the console has no "Unsatisfied version" warning from an
extension built for another JupyterLab. The lab's user settings live in a temporary folder (all cells rendered,
autosave off), so the tracked notebooks are never written.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, skip_or_fail, venv_env
from test_site import CHROMIUM_ARGS, playwright_and_chromium

pytestmark = pytest.mark.lab

LESSONS = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("chapters/*/01_intuition.ipynb"))
VERSION_WARNING = re.compile(r"Unsatisfied version|No satisfying version")
# User settings for the test's lab: every cell rendered (no windowing), nothing saved.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}
PROMPTS_JS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
    .map(e => e.textContent.trim())"""
ALL_RAN_JS = f"() => {{ const p = ({PROMPTS_JS})(); return p.length > 0 && p.every(t => /^\\[\\d+\\]:$/.test(t)); }}"
ERRORS_JS = """() => [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(e => e.textContent).filter(t => /Traceback \\(most recent call last\\)|^\\w*Error\\b/m.test(t))
    .map(t => t.slice(0, 300))"""
# An element's text with its typeset formulas (MathJax's mjx-container) taken out: what is
# left must hold no TeX delimiter (TEX).
UNTYPESET_JS = ("(el => { const c = el.cloneNode(true); "
                "c.querySelectorAll('mjx-container').forEach(e => e.remove()); return c.textContent; })")
QUIZ_TEXT_JS = f"() => [...document.querySelectorAll('.Quiz')].map({UNTYPESET_JS})"


# The explorer's figure (an ipywidgets Image, PNG bytes from the kernel), as a digest of its bytes.
FIGURE_DIGEST_JS = """async () => {
    const img = document.querySelector('.jp-OutputArea-output .widget-image');
    if (!img || !img.src) return null;
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', bytes);
    return [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, '0')).join('');
}"""
# Quiz i's feedback: its text outside typeset formulas, and how many formulas are typeset.
FEEDBACK_JS = f"""i => {{ const fb = document.querySelectorAll('.Quiz')[i].querySelector('.Feedback');
    return {{text: {UNTYPESET_JS}(fb), typeset: fb.querySelectorAll('mjx-container').length}}; }}"""
TEX = re.compile(r"\\\(|\\\[|\$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    for name, values in SETTINGS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def lab():
    """A JupyterLab server on 127.0.0.1 from this environment, with the project's lab/ settings."""
    jupyter = Path(sys.executable).parent / "jupyter-lab"
    if not jupyter.exists():
        skip_or_fail(f"JupyterLab is not installed next to {sys.executable} (pip install -e '.[lab]')")
    tmp = Path(tempfile.mkdtemp(prefix="steplab-lab-"))
    _write_settings(tmp / "settings")
    env = venv_env()
    env.update(JUPYTER_CONFIG_PATH=str(ROOT / "lab"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [str(jupyter), "--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.root_dir={ROOT}",
           f"--IdentityProvider.token={token}",
           # checkpoints in the temporary folder: no .ipynb_checkpoints left beside the lessons
           f"--FileCheckpoints.root_dir={tmp / 'checkpoints'}"] + (["--allow-root"] if os.geteuid() == 0 else [])
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (tmp / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        yield {"base": base, "token": token}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    sync_playwright, exe = playwright_and_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class LabVisit:
    """One lesson opened in the lab and run top to bottom, with its requests and console recorded."""

    def __init__(self, browser, lab, path: str):
        self.base = lab["base"]
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.requests: list[str] = []
        self.console: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.route("**/*", lambda r: r.continue_() if self.is_local(r.request.url) else r.abort())
        # ?reset: a fresh workspace, with no tab left from the lesson before.
        self.page.goto(f"{self.base}lab/tree/{path}?reset&token={lab['token']}", timeout=90_000)
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        self._start_kernel()
        self._run_all()
        try:
            self.page.wait_for_function(ALL_RAN_JS, timeout=180_000, polling=250)
        except Exception:
            prompts = self.page.evaluate(PROMPTS_JS)
            self.close()
            pytest.fail(f"{path}: the cells did not all run in 180 s; prompts: {prompts}")
        self.page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)

    def _run_all(self):
        """Run > Run All Cells, again if the lab was not ready to take it."""
        started = "() => [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')].some(e => /\\[[*\\d]/.test(e.textContent))"
        for _ in range(3):
            self.page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click()  # the notebook is current
            self.page.click("#jp-MainMenu .lm-MenuBar-itemLabel:text-is('Run')")
            self.page.click(".lm-Menu-item:has-text('Run All Cells')")
            try:
                self.page.wait_for_function(started, timeout=10_000)
                return
            except Exception:
                self.page.keyboard.press("Escape")
        pytest.fail("Run All Cells did not start the lesson")

    def _start_kernel(self):
        """Accept the kernel dialog when the lab asks, and wait for an idle kernel."""
        for _ in range(60):
            if self.page.locator(".jp-Dialog .jp-mod-accept").count():
                self.page.click(".jp-Dialog .jp-mod-accept")
            if self.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count():
                return
            self.page.wait_for_timeout(500)
        pytest.fail("the lesson's kernel did not start")

    def is_local(self, url: str) -> bool:
        return url.startswith(self.base) or url.startswith(("data:", "blob:", "about:"))

    def close(self):
        self.page.close()


def _poll(page, script, done, seconds: float, arg=None):
    """Evaluate ``script`` (which may be async) until ``done(value)`` or the time is up; the last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = page.evaluate(script, arg)
        if done(value) or time.monotonic() > deadline:
            return value
        page.wait_for_timeout(250)


def check_slider_redraws(page, path: str) -> None:
    """Drag the explorer's first slider with the mouse: the kernel must send a new figure."""
    before = _poll(page, FIGURE_DIGEST_JS, bool, 20)
    assert before, f"{path}: the explorer shows no figure (no ipywidgets Image in the outputs)"
    handle = page.locator(".jp-OutputArea-output .widget-slider .noUi-handle").first
    handle.scroll_into_view_if_needed()
    value = handle.get_attribute("aria-valuenow")
    for dx in (60, -60):  # left when the slider starts at its maximum
        box = handle.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
        if handle.get_attribute("aria-valuenow") != value:
            break
    moved = handle.get_attribute("aria-valuenow")
    assert moved != value, f"{path}: the explorer's first slider did not move when dragged"
    after = _poll(page, FIGURE_DIGEST_JS, lambda digest: digest != before, 20)
    assert after != before, f"{path}: the slider moved from {value} to {moved}, the figure was not redrawn in 20 s"


def check_feedback_typeset(page, path: str, questions: list) -> None:
    """Answer every question (each choice of a multiple-choice one, a listed value of a numeric
    one): the feedback shown must hold no raw TeX, and be typeset where its text has math."""
    for i, question in enumerate(questions):
        quiz, seen = page.locator(".Quiz").nth(i), []
        if question["type"] == "numeric":
            answer = next(a for a in question["answers"] if "value" in a)
            expected_math = bool(TEX.search(answer.get("feedback", "")))
            field = quiz.locator(".Input-text").first
            field.click()
            field.type(str(answer["value"]))
            field.press("Enter")
            seen.append(_poll(page, FEEDBACK_JS, lambda fb: fb["text"].strip(), 5, arg=i))
        else:
            expected_math = any(TEX.search(a.get("feedback", "")) for a in question["answers"])
            buttons = quiz.locator(".MCButton")
            for j in range(buttons.count()):
                buttons.nth(j).click()
                page.wait_for_timeout(300)
                seen.append(page.evaluate(FEEDBACK_JS, i))
        raw = [fb["text"][:120] for fb in seen if TEX.search(fb["text"]) or not fb["text"].strip()]
        assert not raw, f"{path}: question {i + 1}'s feedback is empty or shows raw TeX: {raw[:2]}"
        if expected_math:
            assert any(fb["typeset"] for fb in seen), f"{path}: question {i + 1}'s feedback formulas were not typeset"


@pytest.mark.parametrize("path", LESSONS)
def test_lesson_runs_in_the_lab(path, lab, browser):
    original = (ROOT / path).read_bytes()
    visit = LabVisit(browser, lab, path)
    page = visit.page
    try:
        errors = page.evaluate(ERRORS_JS)
        assert not errors, f"{path}: a cell shows an error: {errors[:2]}"

        source = (ROOT / path).read_text(encoding="utf-8")
        n_prf = len(re.findall(r"\{prf:(?:theorem|lemma|definition|proposition|corollary)\}", source))
        raw = page.evaluate("""() => [...document.querySelectorAll('.jp-MarkdownCell .myst')]
            .map(e => e.textContent).filter(t => /\\{prf:|^:::|```\\{/m.test(t)).map(t => t.slice(0, 120))""")
        assert page.locator(".jp-MarkdownCell .myst").count() > 0, f"{path}: jupyterlab-myst drew no markdown cell"
        assert not raw, f"{path}: MyST directives shown as raw text: {raw[:2]}"
        boxes = page.evaluate("""() => document.querySelectorAll(
            '.jp-MarkdownCell .myst aside.myst-proof').length""")
        assert boxes >= n_prf, f"{path}: {boxes} theorem boxes drawn for {n_prf} theorem directives"

        questions = json.loads((ROOT / path).with_suffix("").with_suffix(".quiz.json").read_text(encoding="utf-8"))
        page.wait_for_function("n => document.querySelectorAll('.Quiz').length === n", arg=len(questions),
                               timeout=20_000)
        page.wait_for_function("() => document.querySelectorAll('.Quiz mjx-container').length > 0", timeout=20_000)
        page.wait_for_timeout(800)  # jupyterquiz typesets 500 ms after drawing
        untypeset = [t[:200] for t in page.evaluate(QUIZ_TEXT_JS) if TEX.search(t)]
        assert not untypeset, f"{path}: skill-check formulas left as raw TeX: {untypeset[:2]}"
        # jupyterlab-myst draws the markdown cells (.myst) and typesets their math with KaTeX.
        markdown_raw = page.evaluate("""() => [...document.querySelectorAll('.jp-MarkdownCell .myst')]
            .map(e => { const c = e.cloneNode(true); c.querySelectorAll('.katex, mjx-container, code, pre').forEach(x => x.remove());
                        return c.textContent; }).filter(t => /\\\\\\(|\\$[^$\\s][^$]*\\$/.test(t)).map(t => t.slice(0, 120))""")
        assert not markdown_raw, f"{path}: the lesson's own formulas are no longer typeset: {markdown_raw[:2]}"

        check_feedback_typeset(page, path, questions)
        check_slider_redraws(page, path)

        outside = [u for u in visit.requests if not visit.is_local(u)]
        assert not outside, f"{path}: the lab requested resources from outside the machine: {outside}"
        warnings = [m for m in visit.console if VERSION_WARNING.search(m)]
        assert not warnings, f"{path}: extensions built for another JupyterLab: {warnings[:3]}"
    finally:
        visit.close()
    assert (ROOT / path).read_bytes() == original, f"{path} was written by the lab"
