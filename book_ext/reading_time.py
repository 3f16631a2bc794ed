"""Estimated reading time for each page, computed when the book is built.

A page is read at three speeds:

* prose at ``PROSE_WPM`` = 200 words per minute (technical text, read once carefully);
* mathematics at ``MATH_SPM`` = 60 symbols per minute, where a symbol is a LaTeX
  command (``\\theta``), a single letter, a number or an operator, because every
  symbol of a formula has to be read;
* code at ``CODE_TPM`` = 100 tokens per minute, where a token is an identifier
  or a number in a code cell's source (outputs are not counted).

The estimate is rounded up to whole minutes and shown as a line under the
page title of every page whose name matches ``reading_time_pages`` (fnmatch
patterns, default ``["chapters/*"]``). The counts are also stored in
``env.metadata[docname]["reading_time"]`` and passed to the HTML templates as
``reading_time``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass

from docutils import nodes

PROSE_WPM = 200
MATH_SPM = 60
CODE_TPM = 100

_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*", re.UNICODE)
_MATH_SYMBOL = re.compile(r"\\[A-Za-z]+|\\.|[A-Za-z]|\d+(?:\.\d+)?|[=<>+\-*/^|!]")
_CODE_TOKEN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")

# Math commands that only format (spacing, fonts, delimiters' sizes) are not read as symbols.
_SILENT_COMMANDS = {
    "\\left", "\\right", "\\big", "\\Big", "\\bigg", "\\Bigg", "\\bigl", "\\bigr",
    "\\Bigl", "\\Bigr", "\\quad", "\\qquad", "\\mathrm", "\\mathbf", "\\mathbb",
    "\\mathcal", "\\boldsymbol", "\\text", "\\operatorname", "\\displaystyle",
    "\\begin", "\\end", "\\label", "\\nonumber", "\\tag", "\\,", "\\;", "\\:", "\\!",
    "\\\\",
}


def count_prose_words(text: str) -> int:
    """Words in running text: runs of letters or digits, with inner apostrophes or hyphens."""
    return len(_WORD.findall(text))


def count_math_symbols(latex: str) -> int:
    """Symbols a reader reads in a LaTeX formula: commands, letters, numbers, operators."""
    return sum(1 for tok in _MATH_SYMBOL.findall(latex) if tok not in _SILENT_COMMANDS)


def count_code_tokens(source: str) -> int:
    """Identifiers and numbers in code; comments count as code too."""
    return len(_CODE_TOKEN.findall(source))


@dataclass(frozen=True)
class ReadingTime:
    prose_words: int
    math_symbols: int
    code_tokens: int

    @property
    def minutes(self) -> float:
        return (
            self.prose_words / PROSE_WPM
            + self.math_symbols / MATH_SPM
            + self.code_tokens / CODE_TPM
        )

    @property
    def rounded_minutes(self) -> int:
        """Whole minutes, rounded up, at least 1 for a page with any content."""
        if self.prose_words + self.math_symbols + self.code_tokens == 0:
            return 0
        return max(1, math.ceil(self.minutes))

    def as_dict(self) -> dict:
        return {
            "prose_words": self.prose_words,
            "math_symbols": self.math_symbols,
            "code_tokens": self.code_tokens,
            "minutes": self.rounded_minutes,
        }


def _is_cell_output(node: nodes.Node) -> bool:
    """myst-nb marks the containers of code-cell outputs with nb_element."""
    return isinstance(node, nodes.Element) and node.get("nb_element") in {
        "cell_code_output",
        "cell_code_outputs",
    }


_SKIPPED = (
    nodes.comment,
    nodes.raw,
    nodes.system_message,
    nodes.substitution_definition,
    nodes.target,
    nodes.image,
    nodes.title,
)


def measure(doctree: nodes.Node) -> ReadingTime:
    """Count prose words, math symbols and code tokens in a doctree.

    Titles are not counted (a reader takes them in at a glance); outputs of code
    cells, raw HTML, comments and images are not counted.
    """
    prose = math_symbols = code = 0
    stack = [doctree]
    while stack:
        node = stack.pop()
        if isinstance(node, _SKIPPED) or _is_cell_output(node):
            continue
        if isinstance(node, (nodes.math, nodes.math_block)):
            math_symbols += count_math_symbols(node.astext())
            continue
        if isinstance(node, (nodes.literal_block, nodes.doctest_block)):
            code += count_code_tokens(node.astext())
            continue
        if isinstance(node, nodes.Text):
            prose += count_prose_words(node.astext())
            continue
        stack.extend(reversed(node.children))
    return ReadingTime(prose, math_symbols, code)


def reading_time_node(rt: ReadingTime) -> nodes.paragraph:
    text = (
        f"Reading time: about {rt.rounded_minutes} min "
        f"({rt.prose_words} words, {rt.math_symbols} math symbols, "
        f"{rt.code_tokens} code tokens)"
    )
    para = nodes.paragraph(classes=["reading-time"])
    para += nodes.Text(text)
    return para


def _wanted(app, docname: str) -> bool:
    return any(fnmatch.fnmatch(docname, pat) for pat in app.config.reading_time_pages)


def on_doctree_read(app, doctree: nodes.document) -> None:
    docname = app.env.docname
    if not _wanted(app, docname):
        return
    rt = measure(doctree)
    app.env.metadata.setdefault(docname, {})["reading_time"] = rt.as_dict()
    section = doctree.next_node(nodes.section)
    if section is None:
        doctree.insert(0, reading_time_node(rt))
        return
    title_index = next(
        (i for i, child in enumerate(section.children) if isinstance(child, nodes.title)), -1
    )
    section.insert(title_index + 1, reading_time_node(rt))


def on_html_page_context(app, pagename, templatename, context, doctree) -> None:
    info = app.env.metadata.get(pagename, {}).get("reading_time")
    if info:
        context["reading_time"] = info


def setup(app):
    app.add_config_value("reading_time_pages", ["chapters/*"], "env")
    app.connect("doctree-read", on_doctree_read)
    app.connect("html-page-context", on_html_page_context)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
