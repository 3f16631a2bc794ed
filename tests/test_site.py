"""The built website, read in headless Chromium the way a learner reads it.

The book is built once per session (the `built_book` fixture). The html folder
is served over a localhost http.server thread and every page in _toc.yml is
opened in Debian's Chromium through Playwright. Each page must load with all
its resources, typeset every formula with the MathJax shipped in the build,
show every image, show no traceback, link only to pages and anchors that exist,
and request nothing from any host but localhost.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
import urllib.parse
from pathlib import Path

import pytest
import yaml

from conftest import BUILD_DIR, HTML_DIR, ROOT, skip_or_fail

pytestmark = pytest.mark.site

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = BUILD_DIR / "screenshots"
LOCAL_SCHEMES = ("data:", "blob:", "about:")
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\(?:frac|theta|eta|nabla|mathbb|sum)\b")
# The page's text, without code, scripts and typeset math.
PROSE_JS = """() => {
    const c = document.querySelector('main') || document.body;
    const clone = c.cloneNode(true);
    clone.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight')
         .forEach(e => e.remove());
    return clone.textContent;
}"""


def toc_docnames() -> list[str]:
    """Every page of the book, in reading order, from _toc.yml."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [str(Path(n).with_suffix("")) if n.endswith((".md", ".ipynb")) else n for n in names]


DOCNAMES = toc_docnames()


def quiz_docnames() -> list[str]:
    """Notebook pages with a skill check (a <stem>.quiz.json beside the notebook)."""
    return [d for d in DOCNAMES if (ROOT / f"{d}.quiz.json").exists() and (ROOT / f"{d}.ipynb").exists()]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("STEPLAB_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


# --------------------------------------------------------------------------- the build


def test_book_builds_without_warnings(built_book):
    log = built_book["log"]
    warnings = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b:", line)]
    assert built_book["returncode"] == 0, "jupyter-book build failed; see _build/build.log:\n" + log[-4000:]
    assert not warnings, "the build warned:\n" + "\n".join(warnings[:40])
    for doc in DOCNAMES:
        assert (built_book["html"] / f"{doc}.html").is_file(), f"{doc}.html was not built"


def test_math_is_served_from_the_build(built_book):
    """MathJax ships inside the build; no page points at a CDN for it."""
    html = built_book["html"]
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for doc in DOCNAMES:
        text = (html / f"{doc}.html").read_text(encoding="utf-8")
        srcs = re.findall(r'<script[^>]*\bsrc="([^"]+)"', text)
        external = [s for s in srcs if re.match(r"(https?:)?//", s)]
        assert not external, f"{doc}.html loads scripts from the network: {external}"
        assert "require.min.js" not in text and "html-manager" not in text, f"{doc}.html loads widget JS"
        assert "application/vnd.jupyter.widget-state+json" not in text, f"{doc}.html embeds dead widget state"


def test_lesson_pages_show_reading_time(built_book):
    lessons = [d for d in DOCNAMES if d.startswith("chapters/")]
    if not lessons:
        pytest.skip("the table of contents lists no lesson yet")
    for doc in lessons:
        text = (built_book["html"] / f"{doc}.html").read_text(encoding="utf-8")
        m = re.search(r'<p class="reading-time">Reading time: about (\d+) min', text)
        assert m, f"{doc}.html has no reading time under its title"
        assert int(m.group(1)) >= 1


# --------------------------------------------------------------------------- the browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(built_book):
    # A build with warnings still writes the site (--keep-going): check what was written,
    # and let test_book_builds_without_warnings report the warnings.
    if not (built_book["html"] / "index.html").is_file():
        pytest.fail("the book did not build; see _build/build.log")
    handler = functools.partial(_QuietHandler, directory=str(built_book["html"]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def playwright_and_chromium():
    """Playwright's sync entry point and the Chromium to drive; skips (fails under CI) without them."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("Playwright is not installed (pip install -e '.[test]')")
    exe = chromium_path()
    if exe is None:
        skip_or_fail("Chromium is not installed (apt-get install chromium, or set STEPLAB_CHROMIUM)")
    return sync_playwright, exe


@pytest.fixture(scope="module")
def browser_context():
    sync_playwright, exe = playwright_and_chromium()
    profile = tempfile.mkdtemp(prefix="steplab-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=exe, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


class PageVisit:
    """One page opened in the browser, with every request it made recorded."""

    def __init__(self, context, base: str, docname: str):
        self.base = base
        self.url = urllib.parse.urljoin(base, f"{docname}.html")
        self.page = context.new_page()
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} -> {r.status}"))
        # Nothing may leave the machine: record every request, let only localhost through.
        self.page.route("**/*", self._route)
        self.response = self.page.goto(self.url, wait_until="load", timeout=60_000)
        # Generous: on a loaded two-core machine a page of web views can take over 30 s to go quiet.
        self.page.wait_for_load_state("networkidle", timeout=60_000)
        self.page.evaluate(
            """async () => {
                if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
                    await MathJax.startup.promise;
                }
            }"""
        )

    def _route(self, route):
        if self.is_local(route.request.url):
            route.continue_()
        else:
            route.abort()

    def is_local(self, url: str) -> bool:
        return url.startswith(self.base) or url.startswith("file://") or url.startswith(LOCAL_SCHEMES)

    def close(self):
        self.page.close()


_file_ids: dict[Path, set[str]] = {}


def _ids_in(path: Path) -> set[str]:
    if path not in _file_ids:
        text = path.read_text(encoding="utf-8", errors="replace")
        _file_ids[path] = set(re.findall(r'\b(?:id|name)="([^"]+)"', text))
    return _file_ids[path]


@pytest.mark.parametrize("docname", DOCNAMES)
def test_page(docname, server, browser_context):
    visit = PageVisit(browser_context, server, docname)
    page = visit.page
    try:
        assert visit.response is not None and visit.response.status == 200, f"{docname}: no page"

        # Math: every formula Sphinx marked is typeset by MathJax, and no TeX is left raw.
        untypeset = page.evaluate(
            """() => [...document.querySelectorAll('span.math, div.math')]
                    .filter(e => !e.querySelector('mjx-container'))
                    .map(e => e.textContent.slice(0, 80))"""
        )
        assert not untypeset, f"{docname}: formulas not typeset: {untypeset[:5]}"
        n_math = page.evaluate("() => document.querySelectorAll('span.math, div.math').length")
        n_mjx = page.evaluate("() => document.querySelectorAll('mjx-container').length")
        assert n_mjx >= n_math
        # Quizzes typeset their own math 500 ms after drawing: poll for up to 10 s.
        for _ in range(40):
            raw = RAW_TEX.findall(page.evaluate(PROSE_JS))
            if not raw:
                break
            page.wait_for_timeout(250)
        assert not raw, f"{docname}: raw TeX left in the text: {raw[:5]}"

        # Images: every <img> decoded with a non-zero size.
        broken = page.evaluate(
            """async () => {
                const imgs = [...document.images];
                await Promise.all(imgs.map(i => i.complete ? null :
                    new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })));
                return imgs.filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute('src'));
            }"""
        )
        assert not broken, f"{docname}: images that do not load: {broken}"

        # No cell shows an error.
        tracebacks = page.evaluate(
            """() => [...document.querySelectorAll('.cell_output, .output')]
                    .filter(e => e.matches('.traceback, .error') ||
                                 /Traceback \\(most recent call last\\)/.test(e.textContent))
                    .map(e => e.textContent.slice(0, 200))"""
        )
        assert not tracebacks, f"{docname}: a cell shows an error: {tracebacks[:2]}"

        # Internal links: the target file exists and so does the anchor.
        hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
        dead = []
        for href in set(hrefs):
            if not href.startswith(server):
                continue
            parsed = urllib.parse.urlsplit(href)
            rel = urllib.parse.unquote(parsed.path)[1:]
            target = HTML_DIR / rel
            if rel == "" or rel.endswith("/"):
                target = target / "index.html"
            if not target.is_file():
                dead.append(href)
                continue
            frag = urllib.parse.unquote(parsed.fragment)
            if frag and target.suffix == ".html" and frag not in _ids_in(target):
                dead.append(href)
        assert not dead, f"{docname}: links to missing pages or anchors: {sorted(dead)[:10]}"

        # Checked last, so that requests made after load (quiz scripts, late fonts) count too.
        outside = [u for u in visit.requests if not visit.is_local(u)]
        assert not outside, f"{docname} requested resources from outside the machine: {outside}"
        assert not visit.failed, f"{docname}: resources failed to load: {visit.failed}"

        if docname in _screenshot_pages():
            SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT_DIR / (docname.replace("/", "__") + ".png")))
    finally:
        visit.close()


def _screenshot_pages() -> set[str]:
    lessons = [d for d in DOCNAMES if d.startswith("chapters/")]
    firsts = {}
    for d in lessons:
        firsts.setdefault(d.split("/")[1], d)
    return {DOCNAMES[0], "bibliography", *firsts.values()}


@pytest.mark.parametrize("docname", quiz_docnames() or [pytest.param("none", marks=pytest.mark.skip("no skill check in the book yet"))])
def test_skill_check_answers(docname, server, browser_context):
    """Clicking a correct answer of the first multiple-choice question shows its feedback."""
    questions = json.loads((ROOT / f"{docname}.quiz.json").read_text(encoding="utf-8"))
    mc = [q for q in questions if q.get("type") == "multiple_choice"]
    if not mc:
        pytest.skip(f"{docname}: the skill check has no multiple-choice question")
    visit = PageVisit(browser_context, server, docname)
    page = visit.page
    try:
        try:
            page.wait_for_selector(".Quiz label.MCButton", timeout=15_000)
        except Exception:
            pytest.fail(f"{docname}: no skill check drawn on the page (did the notebook run to its end?)")
        n_questions = page.evaluate("() => document.querySelectorAll('.Quiz').length")
        assert n_questions == len(questions), f"{docname}: {n_questions} questions shown, {len(questions)} in the JSON"
        # jupyterquiz draws one .Quiz per question: the question, its .Answer labels, a .Feedback.
        first = page.locator(".Quiz", has=page.locator(".MultipleChoiceQn")).first
        correct = first.locator('label.MCButton[data-correct="true"]').first
        expected_feedback = correct.get_attribute("data-feedback")
        correct.click()
        feedback = first.locator(".Feedback")
        page.wait_for_function(
            "el => el.classList.contains('correct')", arg=feedback.element_handle(), timeout=5_000
        )
        shown = feedback.inner_text().strip()
        assert shown, f"{docname}: no feedback after a correct answer"
        if expected_feedback is None:
            assert shown == "Correct!"
        else:
            # The feedback may contain math that MathJax has typeset; compare its plain words.
            prose = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", " ", expected_feedback, flags=re.S)
            words = re.findall(r"[A-Za-z]{4,}", prose)[:5]
            assert all(w in shown for w in words), f"{docname}: feedback {shown!r} does not match {expected_feedback!r}"
        page.wait_for_timeout(800)  # jupyterquiz typesets its math 500 ms after drawing
        outside = [u for u in visit.requests if not visit.is_local(u)]
        assert not outside, f"{docname}: the skill check requested {outside}"
    finally:
        visit.close()


def test_request_recorder_catches_outside_requests(server, browser_context):
    """The recorder that guards every page does see a request to another host (and blocks it)."""
    visit = PageVisit(browser_context, server, DOCNAMES[0])
    try:
        visit.page.evaluate("() => { const i = new Image(); i.src = 'https://cdn.example.org/x.png'; }")
        visit.page.wait_for_timeout(500)
        outside = [u for u in visit.requests if not visit.is_local(u)]
        assert outside == ["https://cdn.example.org/x.png"]
    finally:
        visit.close()
