"""The companion extension's Python parts: the table of contents, page facts, narrations, audio."""

from __future__ import annotations

import json
import os
import re
import wave
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document

from book_ext import companion, narration

ROOT = Path(__file__).resolve().parent.parent


def rst(text: str):
    parser = Parser()
    doc = new_document("test", get_default_settings(Parser))
    parser.parse(text, doc)
    return doc


def test_toc_parts_in_reading_order(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: intro\nparts:\n"
        "  - caption: One\n    chapters:\n      - file: a/overview.md\n      - file: a/01_x\n"
        "        sections:\n          - file: a/01_y.ipynb\n"
        "  - caption: Two\n    chapters:\n      - file: b/theory\n"
    )
    root, parts = companion.toc_parts(toc)
    assert root == "intro"
    assert parts == [
        {"caption": "One", "docs": ["a/overview", "a/01_x", "a/01_y"]},
        {"caption": "Two", "docs": ["b/theory"]},
    ]
    assert companion.part_of(parts, "a/01_y")["caption"] == "One"
    assert companion.part_of(parts, "c/missing") is None


def test_the_course_toc_opens_each_chapter_with_its_overview():
    _, parts = companion.toc_parts(ROOT / "_toc.yml")
    chapters = [p for p in parts if p["caption"].startswith("Chapter")]
    assert chapters
    for part in chapters:
        assert part["docs"][0].endswith("/overview"), part["caption"]
        assert (ROOT / f"{part['docs'][0]}.md").read_text().count("{chapter-overview}") == 1


def test_heading_count_leaves_out_the_title():
    doc = rst("Title\n=====\n\nA\n-\n\ntext\n\nB\n-\n\nB1\n~~\n\nmore\n")
    assert companion.count_headings(doc) == 3
    assert companion.count_headings(rst("just a paragraph\n")) == 0
    # A section inside another element (sphinx-proof's theorem body) is no heading.
    doc = rst("Title\n=====\n\nA\n-\n\ntext\n")
    box = nodes.container()
    box += nodes.section()
    doc.children[0].children[-1] += box
    assert companion.count_headings(doc) == 1


def test_page_kind(tmp_path):
    (tmp_path / "ch").mkdir()
    (tmp_path / "ch" / "01_x.quiz.json").write_text("[]")
    assert companion.page_kind(tmp_path, "ch/01_x") == "lesson"
    assert companion.page_kind(tmp_path, "ch/theory") == "theory"
    assert companion.page_kind(tmp_path, "ch/02_y") == "page"


def test_header_html():
    lesson = companion.header_html(7, "lesson", "01_x.narration.wav")
    assert '<span class="companion-headings">7 headings</span>' in lesson
    assert "data-companion-score" in lesson
    assert 'src="01_x.narration.wav"' in lesson and "aria-labelledby" in lesson
    theory = companion.header_html(3, "theory", None)
    assert "data-companion-score" not in theory and "<audio" not in theory


def test_problem_set_link(tmp_path):
    nb = tmp_path / "exercises" / "release" / "ps2_sgd_minibatches" / "ps2_sgd_minibatches.ipynb"
    nb.parent.mkdir(parents=True)
    nb.write_text("{}")
    app = SimpleNamespace(srcdir=str(tmp_path), config=SimpleNamespace(html_theme_options={
        "repository_url": "https://github.com/o/r/", "repository_branch": "dev"}))
    title, url = companion.problem_set_link(app, "ps2_sgd_minibatches")
    assert title == "Problem set 2: sgd minibatches"
    assert url == "https://github.com/o/r/blob/dev/exercises/release/ps2_sgd_minibatches/ps2_sgd_minibatches.ipynb"
    assert companion.problem_set_link(app, "ps9_missing") is None
    app.config.html_theme_options = {}  # no repository configured: no link to a placeholder
    assert companion.problem_set_link(app, "ps2_sgd_minibatches") == ("Problem set 2: sgd minibatches", "")


def test_inline_json_cannot_close_its_script():
    text = companion._inline_json({"q": "a </script><script>alert(1)</script>"})
    assert "</script>" not in text
    assert json.loads(text) == {"q": "a </script><script>alert(1)</script>"}


def test_storage_shim_is_plain_es5():
    # It runs before every other script, in every browser the theme supports.
    shim = companion.STORAGE_SHIM
    assert "=>" not in shim and "let " not in shim and "const " not in shim
    assert "localStorage" in shim and "STEPLAB_STORAGE_FALLBACK" in shim


def test_quiz_engine_is_jupyterquiz_own():
    js = companion.quiz_engine_js()
    for name in ("function show_questions", "class MCQuestion", "class NumericQuestion", "function check_mc"):
        assert name in js
    assert "cdn." not in companion.quiz_engine_css()
    # The typesetting timer is guarded (the text jupyterquiz ships is what the guard looks for).
    assert js.count("setTimeout(retypeset, 200)") == 1


def test_mathjax_race_guard_in_a_page():
    doc = new_document("t", get_default_settings(Parser))
    script = "<script>" + companion._MATHJAX_RACE + "if (version[0] == '2') {}</script>"
    doc += nodes.raw("", script, format="html")
    companion.on_doctree_read_quiz(None, doc)
    (raw,) = list(doc.findall(nodes.raw))
    assert raw.astext() == "<script>" + companion._MATHJAX_GUARD + "if (version[0] == '2') {}</script>"
    assert raw["format"] == "html"


# --------------------------------------------------------------------------- narrations

NARRATIONS = sorted(ROOT.glob("chapters/*/*.narration.txt"))


@pytest.mark.parametrize("path", NARRATIONS, ids=lambda p: p.parent.name + "/" + p.name)
def test_narration_is_written_for_listening(path):
    text = path.read_text(encoding="utf-8")
    words = text.split()
    assert 150 <= len(words) <= 250, f"{path.name}: {len(words)} words"
    assert (path.parent / path.name.replace(".narration.txt", ".ipynb")).is_file()
    # No code, markup or symbols a speech engine would spell out.
    bad = re.findall(r"[`$\\_{}\[\]<>=^|#*]|\w\(|\.\w+\(|\d/\d", text)
    assert not bad, f"{path.name}: not written for listening: {sorted(set(bad))}"


def test_every_chapter_is_narrated():
    for chapter in ("01_gradient_descent", "02_stochastic_optimization", "03_adaptive_learning_rates",
                    "04_learning_rate_schedules"):
        folder = ROOT / "chapters" / chapter
        lessons = [q.name.replace(".quiz.json", "") for q in sorted(folder.glob("0*.quiz.json"))]
        assert len(lessons) == 6
        for name in [*lessons, "theory"]:
            assert (folder / f"{name}.narration.txt").is_file(), f"{chapter}/{name}"


def test_write_wav_halves_the_rate(tmp_path):
    samples = np.arange(-1000, 1000, dtype="<i2")
    seconds = narration.write_wav(tmp_path / "a" / "x.wav", samples, 22050)
    with wave.open(str(tmp_path / "a" / "x.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 11025)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert len(frames) == 1000 and seconds == pytest.approx(1000 / 11025)
    # Averaged in pairs: (-1000 + -999) // 2, ...
    assert frames[0] == -1000 and frames[-1] == (998 + 999) // 2


def test_speech_engine_speaks_in_proportion_to_the_text():
    speech, reason = narration.engine()
    if speech is None:
        pytest.skip(f"no speech engine here: {reason}")
    short = speech.samples("The step size must stay below two over L.")
    long = speech.samples("The step size must stay below two over L. " * 4)
    assert short.dtype == np.int16 and np.abs(short).max() > 1000
    seconds = len(short) / speech.rate
    assert 1.0 < seconds < 6.0
    assert 3.0 < len(long) / len(short) < 5.0


def test_audio_is_synthesized_again_only_when_its_script_changed(tmp_path, monkeypatch):
    (tmp_path / "src" / "ch").mkdir(parents=True)
    script = tmp_path / "src" / "ch" / "01_x.narration.txt"
    script.write_text("Words to say.")
    said = []

    class Speech:
        rate = 22050

        def samples(self, text):
            said.append(text)
            return np.zeros(100, dtype=np.int16)

    monkeypatch.setattr(narration, "engine", lambda: (Speech(), ""))
    app = SimpleNamespace(srcdir=str(tmp_path / "src"), outdir=str(tmp_path / "html"))
    audio = {"ch/01_x": "ch/01_x.narration.wav"}
    narration.render_all(app, audio)
    narration.render_all(app, audio)  # nothing changed: not synthesized again
    assert said == ["Words to say."]
    script.write_text("Other words.")
    later = (tmp_path / "html" / "ch" / "01_x.narration.wav").stat().st_mtime + 10
    os.utime(script, (later, later))
    narration.render_all(app, audio)
    assert said == ["Words to say.", "Other words."]


def test_repeated_scripts_are_dropped():
    from sphinx.builders.html._assets import _JavaScript

    thebe = "const THEBE_JS_URL = 1"
    # Registered once through the registry (filename "") and once directly (None).
    files = [_JavaScript(None, body=thebe), _JavaScript("a.js"), _JavaScript("", body=thebe, priority=501),
             _JavaScript(None, body="other")]
    companion.drop_repeated_scripts(files)
    assert [(js.filename, js.attributes.get("body")) for js in files] == [
        (None, thebe), ("a.js", None), (None, "other")]


def test_without_a_speech_engine_the_build_says_so_once(tmp_path, monkeypatch, caplog):
    (tmp_path / "ch").mkdir()
    for name in ("01_x", "02_y"):
        (tmp_path / "ch" / f"{name}.narration.txt").write_text("Words to say.")
    app = SimpleNamespace(srcdir=str(tmp_path))
    monkeypatch.setattr(narration, "engine", lambda: (None, "ImportError: no espeakng_loader"))
    monkeypatch.setattr(narration, "_said_unavailable", False)
    with caplog.at_level("INFO"):
        assert narration.planned_audio(app, "ch/01_x") is None
        assert narration.planned_audio(app, "ch/02_y") is None
    said = [r for r in caplog.records if "no speech engine" in r.getMessage()]
    assert len(said) == 1 and "no espeakng_loader" in said[0].getMessage()


def test_with_a_speech_engine_narrated_pages_get_audio(tmp_path, monkeypatch):
    (tmp_path / "ch").mkdir()
    (tmp_path / "ch" / "01_x.narration.txt").write_text("Words to say.")
    app = SimpleNamespace(srcdir=str(tmp_path))
    monkeypatch.setattr(narration, "engine", lambda: (object(), ""))
    assert narration.planned_audio(app, "ch/01_x") == "ch/01_x.narration.wav"
    assert narration.planned_audio(app, "ch/02_unnarrated") is None
