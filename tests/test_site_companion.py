"""The learner's companion on the built site, driven in headless Chromium.

Notes, scores, the practice queue and the progress marks live in the browser's
localStorage; each test starts from an empty storage and checks what a learner
would see after a reload. Every page visit also checks that nothing was
requested from outside the machine.
"""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import pytest

from conftest import HTML_DIR, ROOT, skip_or_fail
from test_site import (  # noqa: F401  (server and browser_context are fixtures)
    DOCNAMES,
    PageVisit,
    browser_context,
    quiz_docnames,
    server,
)

pytestmark = pytest.mark.site

LESSONS = quiz_docnames()
LESSON = LESSONS[0] if LESSONS else None
NARRATED = [d for d in DOCNAMES if (ROOT / f"{d}.narration.txt").is_file()]
DATA_PREFIX = "window.STEPLAB_COURSE = "


def questions_of(doc: str) -> list[dict]:
    return json.loads((ROOT / f"{doc}.quiz.json").read_text(encoding="utf-8"))


def first_of_type(doc: str, kind: str) -> int:
    return next(i for i, q in enumerate(questions_of(doc)) if q["type"] == kind)


def open_page(context, base: str, doc: str, clear: bool = False) -> PageVisit:
    visit = PageVisit(context, base, doc)
    if clear:
        visit.page.evaluate("() => localStorage.clear()")
        visit.page.reload(wait_until="load")
    return visit


def assert_stayed_local(visit: PageVisit) -> None:
    outside = [u for u in visit.requests if not visit.is_local(u)]
    assert not outside, f"requests left the machine: {outside}"
    assert not visit.failed, f"resources failed to load: {visit.failed}"


def answer(page, qnum: int, question: dict, right: bool) -> None:
    """Answer question `qnum` of the skill check on the page, rightly or wrongly."""
    quiz = page.locator(f'.Quiz[data-qnum="{qnum}"]').first
    if question["type"] in ("multiple_choice", "many_choice"):
        flag = "true" if right else "false"
        labels = quiz.locator(f'label.MCButton[data-correct="{flag}"]')
        for i in range(labels.count() if right else 1):
            labels.nth(i).click()
        return
    value = numeric_answer(question, right)
    box = quiz.locator("input.Input-text")
    box.click()
    box.type(value)
    box.press("Enter")


def numeric_answer(question: dict, right: bool) -> str:
    for a in question["answers"]:
        if a.get("correct") and right:
            if "value" in a:
                return repr(a["value"])
            lo, hi = a["range"]
            return repr((lo + hi) / 2)
    return "-987654"  # no skill check in the course has this as an answer


def wait_text(page, selector: str, pattern: str, timeout: int = 5_000) -> str:
    page.wait_for_function(
        "([s, p]) => { const e = document.querySelector(s); return e && new RegExp(p).test(e.textContent); }",
        arg=[selector, pattern], timeout=timeout,
    )
    return page.locator(selector).first.inner_text()


def note_box(page):
    return page.get_by_role("textbox", name=re.compile("Notes on"))


def open_notes(page):
    """Open the notes panel with its button; return the note's text box."""
    page.get_by_role("button", name=re.compile("^Notes")).click()
    return note_box(page)


@pytest.fixture(scope="module")
def lesson():
    if LESSON is None:
        pytest.skip("no lesson with a skill check in the book yet")
    return LESSON


# --------------------------------------------------------------------------- what the build writes


def test_course_data_holds_every_question(built_book):
    text = (HTML_DIR / "_static" / "companion-data.js").read_text(encoding="utf-8")
    assert text.startswith(DATA_PREFIX)
    data = json.loads(text[len(DATA_PREFIX):].rstrip().rstrip(";"))
    expected = {f"{doc}#{i}": q for doc in LESSONS for i, q in enumerate(questions_of(doc))}
    assert data["questions"] == expected
    assert [p["doc"] for p in data["pages"]] == DOCNAMES[1:]


def test_lesson_header_counts_headings(built_book):
    for doc in LESSONS:
        text = (HTML_DIR / f"{doc}.html").read_text(encoding="utf-8")
        m = re.search(r'<span class="companion-headings">(\d+) headings</span>', text)
        assert m, f"{doc}: no heading count in the lesson header"
        article = text[text.index('<article class="bd-article">'):text.index("</article>")]
        assert int(m.group(1)) == len(re.findall(r"<h[2-6]\b", article)), doc


def test_overview_pages_list_their_chapter(built_book):
    overviews = [d for d in DOCNAMES if d.endswith("/overview")]
    assert overviews, "no chapter overview page in the table of contents"
    for doc in overviews:
        chapter = Path(doc).parent.as_posix()
        text = (HTML_DIR / f"{doc}.html").read_text(encoding="utf-8")
        for lesson_doc in [d for d in LESSONS if d.startswith(chapter + "/")]:
            name = Path(lesson_doc).name
            assert f'href="{name}.html"' in text, f"{doc} does not link to {lesson_doc}"
            assert f'data-companion-quiz="{lesson_doc}"' in text, f"{doc}: no skill-check status for {lesson_doc}"
        assert 'href="theory.html"' in text, f"{doc} does not link to its theory notebook"
        declared = ":problem-set:" in (ROOT / f"{doc}.md").read_text(encoding="utf-8")
        assert ("exercises/release/" in text) == declared, f"{doc}: its problem set is shown only if declared"


# --------------------------------------------------------------------------- notes


def test_note_survives_reload_and_is_exported(lesson, server, browser_context):
    visit = open_page(browser_context, server, lesson, clear=True)
    page = visit.page
    try:
        note = "Step below 2/L; check the loss ratio.\nSecond line."
        open_notes(page).fill(note)
        assert wait_text(page, "#companion-notes-count", f"^{len(note)} / 8000")
        page.reload(wait_until="load")
        assert open_notes(page).input_value() == note

        with page.expect_download() as download:
            page.get_by_role("button", name="Export all notes").click()
        exported = Path(download.value.path()).read_text(encoding="utf-8")
        title = page.evaluate("() => STEPLAB_PAGE.title")
        section = exported.split(f"## {title}\n", 1)
        assert len(section) == 2, exported
        assert section[1].lstrip().startswith(f"<{server}{lesson}.html>")
        assert note in section[1]

        # "Clear" asks first: dismissed, the note stays; accepted, it is gone after a reload.
        page.once("dialog", lambda d: d.dismiss())
        page.get_by_role("button", name="Clear this note").click()
        assert note_box(page).input_value() == note
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Clear this note").click()
        page.reload(wait_until="load")
        assert open_notes(page).input_value() == ""
        assert_stayed_local(visit)
    finally:
        visit.close()


def test_notes_panel_works_from_the_keyboard(lesson, server, browser_context):
    visit = open_page(browser_context, server, lesson, clear=True)
    page = visit.page
    try:
        toggle = page.get_by_role("button", name="Notes", exact=True)
        assert toggle.get_attribute("aria-expanded") == "false"
        toggle.focus()
        page.keyboard.press("Enter")
        assert toggle.get_attribute("aria-expanded") == "true"
        # Opening puts the cursor in the note; typing saves it; Escape closes and returns focus.
        assert page.evaluate("() => document.activeElement.id") == "companion-notes-text"
        page.keyboard.type("typed from the keyboard")
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", "the focused note has no visible focus ring"
        page.keyboard.press("Escape")
        assert page.locator("#companion-notes").is_hidden()
        assert page.evaluate("() => document.activeElement.classList.contains('companion-notes-toggle')")
        assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") != "none"
        page.reload(wait_until="load")
        assert open_notes(page).input_value() == "typed from the keyboard"
    finally:
        visit.close()


CONTRAST_JS = """(selectors) => {
    const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
        const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = el => {
        for (let e = el; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
        }
        return [255, 255, 255];
    };
    const out = [];
    for (const sel of selectors) {
        for (const el of document.querySelectorAll(sel)) {
            if (!el.offsetParent && getComputedStyle(el).position !== 'fixed') continue;
            const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
            out.push([sel, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]);
        }
    }
    return out;
}"""
COMPANION_TEXT = [
    ".companion-button", ".companion-notes-heading", ".companion-notes-privacy", ".companion-notes-count",
    ".companion-notes-text", ".companion-headings", ".companion-score a", ".companion-quiz-score",
    ".companion-earlier", ".companion-audio-label", ".companion-badge", ".companion-mark",
    ".companion-practice-status", ".companion-practice-source",
]


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_companion_text_has_enough_contrast(mode, lesson, server, browser_context):
    """WCAG AA: 4.5:1 for the companion's text and controls, in both colour schemes."""
    visit = open_page(browser_context, server, lesson, clear=True)
    try:
        page = visit.page
        page.wait_for_selector(".companion-quiz-score")
        answer(page, 1, questions_of(lesson)[1], right=False)
        open_notes(page).fill("a note")
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_selector(".companion-badge-read")
        found = {}
        for doc in (lesson, "practice", DOCNAMES[0]):
            if doc != lesson:
                page.goto(server + f"{doc}.html", wait_until="load")
            page.evaluate(f"() => {{ document.documentElement.dataset.theme = '{mode}'; }}")
            page.wait_for_timeout(300)
            for sel, ratio in page.evaluate(CONTRAST_JS, COMPANION_TEXT):
                found[sel] = min(ratio, found.get(sel, ratio))
        expected = {".companion-button", ".companion-notes-text", ".companion-headings", ".companion-quiz-score",
                    ".companion-earlier", ".companion-badge", ".companion-mark", ".companion-practice-status"}
        assert expected <= set(found), f"not measured: {sorted(expected - set(found))}"
        low = {sel: round(r, 2) for sel, r in found.items() if r < 4.5}
        assert not low, f"{mode} mode: contrast below 4.5:1: {low}"
    finally:
        visit.close()


def test_note_is_cut_at_the_limit(lesson, server, browser_context):
    visit = open_page(browser_context, server, lesson, clear=True)
    page = visit.page
    try:
        box = open_notes(page)
        box.fill("x" * 9000)
        assert len(box.input_value()) == 8000
        assert wait_text(page, "#companion-notes-count", "^8000 / 8000")
    finally:
        visit.close()


# --------------------------------------------------------------------------- scores and the practice queue


def test_score_survives_reload_and_retry_clears_it(lesson, server, browser_context):
    questions = questions_of(lesson)
    visit = open_page(browser_context, server, lesson, clear=True)
    page = visit.page
    try:
        page.wait_for_selector(".companion-quiz-score")
        answer(page, 0, questions[0], right=True)
        answer(page, 1, questions[1], right=False)
        total = len(questions)
        expected = rf"1/{total} \(2 of {total} answered\)"
        wait_text(page, ".companion-quiz-score", expected)
        page.reload(wait_until="load")
        wait_text(page, ".companion-quiz-score", expected)
        wait_text(page, "[data-companion-score]", "Skill check: " + expected)
        # A second, right answer to a question first answered wrongly does not change the score.
        answer(page, 1, questions[1], right=True)
        page.wait_for_timeout(200)
        wait_text(page, ".companion-quiz-score", expected)
        page.get_by_role("button", name="Retry the skill check").click()
        wait_text(page, ".companion-quiz-score", rf"0/{total} \(0 of {total} answered\)")
        page.reload(wait_until="load")
        wait_text(page, ".companion-quiz-score", rf"0/{total} \(0 of {total} answered\)")
        assert_stayed_local(visit)
    finally:
        visit.close()


def practice_cards(page) -> list[str]:
    page.wait_for_selector(".companion-practice-status")
    return page.evaluate(
        "() => [...document.querySelectorAll('.companion-practice-card')].map(c => c.dataset.question)"
    )


def next_round(page) -> None:
    page.get_by_role("button", name="Start the next round").click()


def miss_in_lesson(context, server, lesson: str, kind: str) -> tuple[dict, str]:
    """Answer the lesson's first question of this type wrongly, from empty storage."""
    qnum = first_of_type(lesson, kind)
    question = questions_of(lesson)[qnum]
    visit = open_page(context, server, lesson, clear=True)
    try:
        visit.page.wait_for_selector(".companion-quiz-score")
        answer(visit.page, qnum, question, right=False)
        wait_text(visit.page, ".companion-quiz-score", "answered")
    finally:
        visit.close()
    return question, f"{lesson}#{qnum}"


def test_wrong_answer_is_practised_until_right_twice(lesson, server, browser_context):
    question, qid = miss_in_lesson(browser_context, server, lesson, "multiple_choice")
    visit = open_page(browser_context, server, "practice")
    page = visit.page
    try:
        assert practice_cards(page) == [qid]
        card = page.locator(f'.companion-practice-card[data-question="{qid}"]')
        # The card is drawn from the build's data, with the lesson's question text.
        assert card.locator(".Quiz").count() == 1
        card.locator('label.MCButton[data-correct="true"]').first.click()
        wait_text(page, ".companion-practice-outcome", "box 2")
        page.reload(wait_until="load")
        assert practice_cards(page) == [], "a question in box 2 came back in the same round"
        next_round(page)
        assert practice_cards(page) == [], "a question in box 2 came back after one round"
        next_round(page)
        assert practice_cards(page) == [qid]
        page.locator('.companion-practice-card label.MCButton[data-correct="true"]').first.click()
        wait_text(page, ".companion-practice-outcome", "leaves the queue")
        page.reload(wait_until="load")
        wait_text(page, ".companion-practice-status", "No question is waiting")
        assert_stayed_local(visit)
    finally:
        visit.close()


def test_wrong_answer_in_practice_goes_back_to_box_one(lesson, server, browser_context):
    question, qid = miss_in_lesson(browser_context, server, lesson, "numeric")
    visit = open_page(browser_context, server, "practice")
    page = visit.page
    try:
        assert practice_cards(page) == [qid]
        answer(page, 0, question, right=True)
        wait_text(page, ".companion-practice-outcome", "box 2")
        next_round(page)
        next_round(page)
        answer(page, 0, question, right=False)
        wait_text(page, ".companion-practice-outcome", "back to box 1")
        next_round(page)
        assert practice_cards(page) == [qid]
        answer(page, 0, question, right=True)
        wait_text(page, ".companion-practice-outcome", "box 2")
    finally:
        visit.close()


# --------------------------------------------------------------------------- progress


def test_progress_marks_appear_and_reset(lesson, server, browser_context):
    visit = open_page(browser_context, server, lesson, clear=True)
    page = visit.page
    try:
        page.wait_for_selector(".companion-quiz-score")
        link = ".bd-sidebar-primary nav a.current"  # the sidebar's link to the page itself
        page.wait_for_timeout(500)
        assert page.locator(f"{link} .companion-badge-read").count() == 0, "read before reaching the end"
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_selector(f"{link} .companion-badge-read", timeout=5_000)
        assert page.locator(f"{link} .companion-badge-passed").count() == 0
        for i, q in enumerate(questions_of(lesson)):
            answer(page, i, q, right=True)
        wait_text(page, ".companion-quiz-score", "passed")
        page.wait_for_selector(f"{link} .companion-badge-passed", timeout=5_000)
    finally:
        visit.close()

    visit = open_page(browser_context, server, DOCNAMES[0])
    page = visit.page
    try:
        assert page.locator(f'[data-companion-read="{lesson}"]').inner_text() == "read"
        assert re.search(r"passed", page.locator(f'[data-companion-quiz="{lesson}"]').inner_text())
        assert page.locator(".companion-badge-read").count() == 1
        wait_text(page, "[data-companion-summary]", r"read 1 of \d+ pages and passed 1 of")
        page.get_by_role("button", name=re.compile("^Reset progress")).click()
        assert page.locator(f'[data-companion-read="{lesson}"]').inner_text() == "not read yet"
        assert page.locator(f'[data-companion-quiz="{lesson}"]').inner_text() == "skill check not taken"
        assert page.locator(".companion-badge").count() == 0
        page.reload(wait_until="load")
        assert page.locator(".companion-badge").count() == 0
        assert page.locator(f'[data-companion-read="{lesson}"]').inner_text() == "not read yet"
        assert_stayed_local(visit)
    finally:
        visit.close()


# --------------------------------------------------------------------------- storage refused, file://


DENY_STORAGE = """
Object.defineProperty(window, 'localStorage', {
  configurable: true,
  get() { throw new DOMException("The operation is insecure.", "SecurityError"); },
});
"""


def denied_page(context):
    """A page whose every use of localStorage throws, as with storage turned off."""
    page = context.new_page()
    page.add_init_script(DENY_STORAGE)
    return page


def test_every_page_loads_with_storage_refused(server, browser_context):
    for doc in DOCNAMES:
        errors: list[str] = []
        page = denied_page(browser_context)
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        local = (server, "data:", "blob:", "about:")
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(local) else route.abort())
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(server + f"{doc}.html", wait_until="load", timeout=60_000)
            page.wait_for_timeout(1_500)  # for errors from timers (jupyterquiz typesets after 500 ms)
            assert not errors, f"{doc}: script errors with storage refused: {errors}"
            outside = [u for u in requests if not u.startswith(local)]
            assert not outside, f"{doc} requested {outside}"
            # The page saw storage refused (the shim records the error it caught).
            assert page.evaluate("() => window.STEPLAB_STORAGE_FALLBACK") == "SecurityError", doc
            if doc == LESSON:
                open_notes(page).fill("kept in memory")
                assert page.locator(".companion-message").inner_text().startswith("Your browser does not let")
                assert not errors, errors
        finally:
            page.close()


def test_practice_page_reads_its_questions_from_file_url(lesson, browser_context, built_book):
    base = HTML_DIR.as_uri() + "/"
    visit = PageVisit(browser_context, base, "practice")
    page = visit.page
    try:
        n = page.evaluate("() => Object.keys(window.STEPLAB_COURSE.questions).length")
        assert n == sum(len(questions_of(d)) for d in LESSONS)
        assert page.evaluate("() => typeof show_questions") == "function"
        wait_text(page, ".companion-practice-status", ".")
        assert_stayed_local(visit)
    finally:
        visit.close()


# --------------------------------------------------------------------------- audio


def test_narrated_lessons_have_audio_that_plays(built_book, server, browser_context):
    from book_ext import narration

    if narration.engine()[0] is None:
        skip_or_fail("the speech engine (espeakng-loader) is not installed")
    if not NARRATED:
        pytest.skip("no lesson has a narration yet")
    for doc in NARRATED:
        wav = HTML_DIR / f"{doc}.narration.wav"
        assert wav.is_file(), f"{doc}: no audio file"
        with wave.open(str(wav)) as w:
            seconds = w.getnframes() / w.getframerate()
        words = len((ROOT / f"{doc}.narration.txt").read_text(encoding="utf-8").split())
        assert 0.25 < seconds / words < 0.6, f"{doc}: {seconds:.1f} s for {words} words"
    visit = PageVisit(browser_context, server, NARRATED[0])
    page = visit.page
    try:
        label = page.locator(".companion-audio audio").get_attribute("aria-labelledby")
        assert page.locator(f"#{label}").inner_text().startswith("Listen")
        duration = page.evaluate(
            """async () => {
                const a = document.querySelector('.companion-audio audio');
                if (!(a.readyState >= 1)) await new Promise((ok, bad) => {
                    a.addEventListener('loadedmetadata', ok); a.addEventListener('error', bad); a.load(); });
                a.muted = true;
                await a.play();
                await new Promise(r => setTimeout(r, 600));
                const t = a.currentTime;
                a.pause();
                return [a.duration, t];
            }"""
        )
        with wave.open(str(HTML_DIR / f"{NARRATED[0]}.narration.wav")) as w:
            expected = w.getnframes() / w.getframerate()
        assert duration[0] == pytest.approx(expected, abs=0.1)
        assert duration[1] > 0, "the audio did not advance when played"
        assert_stayed_local(visit)
    finally:
        visit.close()
