"""Every figure on the built site says what it shows to a reader who cannot see it.

A figure is an image in a page's article (a cell's plot, a picture in the text). Its
alt text must be a description: present, several words long, and not a file name or
path (which is what a plot gets when its cell has no `mystnb: image: alt` metadata).
Read from the built HTML, so no browser is needed.
"""

from __future__ import annotations

import html.parser
import re

import pytest

from test_site import DOCNAMES

pytestmark = pytest.mark.site

MIN_WORDS = 6
PATH_LIKE = re.compile(r"(^|[\s/\\])[\w.-]+\.(png|jpe?g|svg|gif|webp|pdf)\b|[\w.-]+/[\w.-]+/|^[\w.-]+$", re.I)


class _Images(html.parser.HTMLParser):
    """The <img> tags inside the page's <article>, with their alt text (None when absent)."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.images: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "article":
            self.depth += 1
        elif tag == "img" and self.depth:
            a = dict(attrs)
            self.images.append((a.get("src", ""), a.get("alt")))

    def handle_endtag(self, tag):
        if tag == "article" and self.depth:
            self.depth -= 1


def figures(path) -> list[tuple[str, str | None]]:
    parser = _Images()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.images


def alt_problem(alt: str | None) -> str | None:
    """Why `alt` is not a description of a figure, or None when it is one."""
    if alt is None or not alt.strip():
        return "no alt text"
    if PATH_LIKE.search(alt.strip()):
        return f"alt text is a file name or path: {alt!r}"
    if len(alt.split()) < MIN_WORDS:
        return f"alt text too short to describe a figure: {alt!r}"
    return None


@pytest.mark.parametrize(
    "alt, ok",
    [
        (None, False),
        ("", False),
        ("../_images/5f1c0e0b7a.png", False),
        ("_build/jupyter_execute/chapters/01_gradient_descent/01_intuition_4_0.png", False),
        ("figure.svg", False),
        ("A plot", False),
        ("Loss against step on a log scale: the curve for the larger step size falls faster.", True),
    ],
)
def test_alt_checker(alt, ok):
    assert (alt_problem(alt) is None) == ok


def test_every_figure_has_a_description(built_book):
    problems, n_images = [], 0
    for doc in DOCNAMES:
        for src, alt in figures(built_book["html"] / f"{doc}.html"):
            n_images += 1
            why = alt_problem(alt)
            if why:
                problems.append(f"{doc}: {src.rsplit('/', 1)[-1]}: {why}")
    assert n_images, "no figure on the site: the check looked at nothing"
    assert not problems, f"{len(problems)} of {n_images} figures lack a description:\n" + "\n".join(problems)
