"""Accessibility of the built website, measured by axe-core in headless Chromium.

Every page in _toc.yml is opened and checked in both colour schemes (the theme follows
the browser's `prefers-color-scheme`, which the test switches in the open page, and marks
the page with `data-theme`), once the page's late content is drawn (skill checks, web views, the
companion's controls, with the notes panel open). axe-core, vendored in tests/axe/
(`make vendor` fetches it again and checks its hash), is injected into the page and
run with all its rules; any violation of critical or serious impact fails the test,
listed with its rule, its elements and axe's explanation. Every page's counts by
impact are written to _build/a11y.json.
"""

from __future__ import annotations

import json

import pytest

from conftest import BUILD_DIR, ROOT
from test_site import DOCNAMES, PageVisit, browser_context, server  # noqa: F401  (fixtures)
from test_site_companion import LESSON, miss_in_lesson

pytestmark = pytest.mark.site

AXE = ROOT / "tests" / "axe" / "axe.min.js"
FAILING = ("critical", "serious")
IMPACTS = ("critical", "serious", "moderate", "minor")
REPORT = BUILD_DIR / "a11y.json"

# Wait for what the page draws after load: a skill check, the explorers' web views.
SETTLE_JS = """async () => {
    const until = (test, ms) => new Promise(resolve => {
        const t0 = performance.now();
        (function poll() {
            if (test() || performance.now() - t0 > ms) resolve();
            else setTimeout(poll, 100);
        })();
    });
    const quizzes = document.querySelectorAll('[id^="quiz"], .Quiz').length;
    if (quizzes) await until(() => document.querySelector('.Quiz input, .Quiz label.MCButton'), 15000);
    const views = document.querySelectorAll('.steplab-web-view').length;
    await until(() => document.querySelectorAll('.steplab-web-view[data-rendered="true"]').length >= views, 30000);
    const toggle = document.querySelector('.companion-notes-toggle');
    if (toggle && toggle.getAttribute('aria-expanded') !== 'true') toggle.click();
    await new Promise(r => setTimeout(r, 800));   // jupyterquiz typesets its math 500 ms after drawing
}"""

RUN_AXE_JS = """async () => {
    const results = await axe.run(document, { resultTypes: ['violations'] });
    return results.violations.map(v => ({
        id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map(n => ({ target: n.target.join(' '), summary: n.failureSummary,
                                   html: n.html.slice(0, 160) })),
    }));
}"""

SCHEMES = ("light", "dark")
_report: dict[str, dict] = {}
_scans: dict[str, dict[str, list[dict]]] = {}


def scan_both(page) -> dict[str, list[dict]]:
    """The open page's axe violations in each colour scheme, the scheme switched in place."""
    found = {}
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        page.wait_for_function("s => document.documentElement.dataset.theme === s", arg=scheme, timeout=10_000)
        page.evaluate(SETTLE_JS)
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.add_script_tag(path=str(AXE))
        found[scheme] = page.evaluate(RUN_AXE_JS)
    return found


def open_visit(context, base: str, docname: str) -> PageVisit:
    """PageVisit, tried twice: on a loaded machine a long page can miss the 30 s for its network
    to settle once (a timing, not an accessibility, failure); a second miss fails the test."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return PageVisit(context, base, docname)
    except PlaywrightTimeout:
        for page in context.pages:
            if page.url.endswith(f"{docname}.html"):
                page.close()
        return PageVisit(context, base, docname)


def scans(context, base: str, docname: str) -> dict[str, list[dict]]:
    """The page's violations in each colour scheme, from one load of the page."""
    if docname not in _scans:
        visit = open_visit(context, base, docname)
        try:
            _scans[docname] = scan_both(visit.page)
        finally:
            visit.close()
    return _scans[docname]


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}, {len(v['nodes'])} elements): {v['help']}")
        for n in v["nodes"][:6]:
            summary = " ".join(n["summary"].split())[:300]
            lines.append(f"    {n['target']}: {n['html']}\n      {summary}")
    return "\n".join(lines)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("docname", DOCNAMES)
def test_page_has_no_serious_accessibility_violation(docname, scheme, server, browser_context):
    violations = scans(browser_context, server, docname)[scheme]
    counts = {i: sum(len(v["nodes"]) for v in violations if v["impact"] == i) for i in IMPACTS}
    _report.setdefault(docname, {})[scheme] = counts
    BUILD_DIR.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(_report, indent=1))
    bad = [v for v in violations if v["impact"] in FAILING]
    assert not bad, f"{docname} ({scheme}): axe-core finds\n" + describe(bad)


def test_practice_page_with_a_question_due_has_no_serious_violation(server, browser_context):
    """The practice page holds no card on an empty queue: miss a question first, then scan its card."""
    if LESSON is None:
        pytest.skip("no lesson with a skill check in the book yet")
    miss_in_lesson(browser_context, server, LESSON, "multiple_choice")
    visit = PageVisit(browser_context, server, "practice")
    page = visit.page
    try:
        page.wait_for_selector(".companion-practice-card .Quiz label.MCButton", timeout=15_000)
        found = scan_both(page)
        page.evaluate("() => localStorage.clear()")
    finally:
        visit.close()
    bad = {s: [v for v in found[s] if v["impact"] in FAILING] for s in SCHEMES}
    assert not any(bad.values()), "practice page with a card: axe-core finds\n" + "\n".join(
        f"{s}:\n{describe(v)}" for s, v in bad.items() if v)


def test_axe_reports_a_planted_violation(server, browser_context):
    """The scan sees what it should: an unlabelled input and low-contrast text planted in a page."""
    visit = PageVisit(browser_context, server, DOCNAMES[0])
    page = visit.page
    try:
        page.evaluate(
            """() => {
                const main = document.querySelector('main');
                main.insertAdjacentHTML('afterbegin',
                    '<input type="number" class="planted">' +
                    '<p class="planted" style="color:#bbb;background:#fff">faint text</p>');
            }"""
        )
        page.add_script_tag(path=str(AXE))
        ids = {v["id"] for v in page.evaluate(RUN_AXE_JS) if v["impact"] in FAILING}
        assert {"label", "color-contrast"} <= ids, ids
    finally:
        visit.close()
