"""The reading-time extension counts what a reader reads, at the stated rates."""

from __future__ import annotations

import pytest
from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document

from book_ext import reading_time as rt


def test_prose_words():
    assert rt.count_prose_words("The step size must be below two over L.") == 9
    # inner apostrophes and hyphens keep a word whole; punctuation is not a word
    assert rt.count_prose_words("Don't over-shoot -- it's a well-known trap!") == 6
    assert rt.count_prose_words("Łojasiewicz's condition") == 2
    assert rt.count_prose_words("  ...  ") == 0


def test_math_symbols():
    # \eta, <, 2, /, L: five symbols
    assert rt.count_math_symbols(r"\eta < 2/L") == 5
    # f ( \theta ) : parentheses are not read as symbols; f and \theta are
    assert rt.count_math_symbols(r"f(\theta)") == 2
    # formatting commands are silent: \left, \right, \mathbb
    assert rt.count_math_symbols(r"\left( \mathbb{E} x \right)") == 2
    # a number is one symbol, letters are read one by one
    assert rt.count_math_symbols(r"3.14 ab") == 3


def test_code_tokens():
    assert rt.count_code_tokens("params = opt.update(grads, state)") == 5
    assert rt.count_code_tokens("x = 1e-3 * 2") == 3
    assert rt.count_code_tokens("# only a comment") == 3


def test_minutes_at_stated_rates():
    t = rt.ReadingTime(prose_words=400, math_symbols=120, code_tokens=300)
    assert t.minutes == pytest.approx(400 / 200 + 120 / 60 + 300 / 100)
    assert t.rounded_minutes == 7
    assert rt.ReadingTime(1, 0, 0).rounded_minutes == 1  # any content takes a minute
    assert rt.ReadingTime(0, 0, 0).rounded_minutes == 0
    assert rt.ReadingTime(201, 0, 0).rounded_minutes == 2  # rounded up


def _parse(rst: str) -> nodes.document:
    settings = get_default_settings(Parser)
    settings.report_level = 5
    doc = new_document("<test>", settings)
    Parser().parse(rst, doc)
    return doc


def test_measure_separates_prose_math_and_code():
    doc = _parse(
        "Title words\n"
        "===========\n\n"
        "Gradient descent converges when :math:`\\eta < 2/L` holds.\n\n"
        ".. math::\n\n   x_{t+1} = x_t - \\eta g_t\n\n"
        "::\n\n   state = opt.init(params)\n"
    )
    t = rt.measure(doc)
    assert t.prose_words == 5  # the title is not counted; the math is not prose
    # x, t, +, 1, =, x, t, -, \eta, g, t: eleven symbols (subscript braces are not read)
    assert t.math_symbols == 5 + 11
    assert t.code_tokens == 4


def test_measure_skips_cell_outputs_comments_and_raw():
    doc = _parse("One two three.\n")
    out = nodes.container(nb_element="cell_code_output")
    out += nodes.literal_block("", "PASS  rate: 0.81 <= 0.82 lots of printed words")
    doc += out
    doc += nodes.comment("", "a comment with words")
    doc += nodes.raw("", "<div>quiz html</div>", format="html")
    t = rt.measure(doc)
    assert (t.prose_words, t.math_symbols, t.code_tokens) == (3, 0, 0)


def test_node_is_inserted_after_first_title():
    class Env:
        docname = "chapters/01/01_intuition"
        metadata: dict = {}

    class Config:
        reading_time_pages = ["chapters/*"]

    class App:
        env = Env()
        config = Config()

    doc = _parse("Title\n=====\n\nFirst paragraph here.\n")
    rt.on_doctree_read(App(), doc)
    section = doc.next_node(nodes.section)
    assert isinstance(section[0], nodes.title)
    assert "reading-time" in section[1]["classes"]
    assert section[1].astext().startswith("Reading time: about 1 min (3 words")
    assert App.env.metadata["chapters/01/01_intuition"]["reading_time"]["prose_words"] == 3

    Env.docname = "intro"
    doc2 = _parse("Title\n=====\n\nText.\n")
    rt.on_doctree_read(App(), doc2)
    assert not any("reading-time" in n.get("classes", []) for n in doc2.findall(nodes.paragraph))
