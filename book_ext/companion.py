"""The learner's companion: notes, skill-check scores, a practice queue, progress, overviews.

What a learner does is kept in their own browser (localStorage) by
``assets/companion.js``; nothing is sent anywhere. This extension gives that
script what it needs to know about the book:

* in every page's ``<head>``, before the theme's scripts, a small inline script
  that puts an in-memory stand-in for ``window.localStorage`` in place when the
  browser refuses storage (the theme reads its colour mode from localStorage and
  would otherwise stop with an error), and ``window.STEPLAB_PAGE``: the page's
  name, title, kind and whether it has notes and a skill check;
* under each lesson's title, after the reading time: the heading count, a slot
  for the skill-check score and, when a narration was rendered, the audio player;
* ``_static/companion-data.js``: every skill-check question of the course (the
  ``<lesson>.quiz.json`` files), assigned to a global so that the practice page
  reads it from ``file://`` too, where ``fetch()`` of a local file fails;
* ``_static/companion-quiz.js`` and ``companion-quiz.css``: jupyterquiz's own
  renderer and styles, so the practice page draws questions with the same engine
  as the lessons do.

Directives: ``chapter-overview`` (the chapter's parts, filled from ``_toc.yml``),
``course-progress`` (the contents page's lessons with their marks and a reset
button) and ``practice-queue`` (where the practice page draws its questions).

Configuration: ``companion_course`` (the localStorage namespace, default
``"steplab"``), ``companion_notes_pages`` (fnmatch patterns of pages with a
notes panel, default ``["chapters/*"]``), ``companion_audio`` (render the
narrations, default ``True``).
"""

from __future__ import annotations

import fnmatch
import html
import json
import re
from pathlib import Path

import yaml
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from . import narration

logger = logging.getLogger(__name__)

STORAGE_VERSION = 1
DATA_FILE = "companion-data.js"
QUIZ_JS_FILE = "companion-quiz.js"
QUIZ_CSS_FILE = "companion-quiz.css"
# jupyterquiz's renderer files, in the order its own display() concatenates them (sorted by name).
QUIZ_JS_SOURCES = ("helpers.js", "multiple_choice.js", "numeric.js", "show_questions.js", "string.js")

# Runs before any other script on the page, so it is kept small and free of dependencies.
STORAGE_SHIM = """(function () {
  try {
    var s = window.localStorage, k = "__companion_probe__";
    s.setItem(k, k); s.removeItem(k);
  } catch (err) {
    var m = Object.create(null);
    var mem = {
      getItem: function (k) { return k in m ? m[k] : null; },
      setItem: function (k, v) { m[k] = String(v); },
      removeItem: function (k) { delete m[k]; },
      clear: function () { m = Object.create(null); },
      key: function (i) { var ks = Object.keys(m); return i < ks.length ? ks[i] : null; },
      get length() { return Object.keys(m).length; }
    };
    try { Object.defineProperty(window, "localStorage", { value: mem, configurable: true }); }
    catch (err2) { /* storage stays unusable; companion.js reports it */ }
    window.STEPLAB_STORAGE_FALLBACK = String(err && err.name || err);
  }
})();"""


# jupyterquiz typesets its questions 500 ms after drawing them. When the page's deferred
# MathJax has not finished starting by then, MathJax.version is undefined and the timer
# throws, or MathJax.typeset is missing and jupyterquiz loads MathJax from a CDN. The
# guard makes the timer wait (every 200 ms, for at most 20 s) until MathJax is ready.
_MATHJAX_RACE = "setTimeout(function(){\n            var version = MathJax.version;\n"
_MATHJAX_GUARD = (
    "setTimeout(function retypeset(){\n"
    "            if (!MathJax.version || (MathJax.version[0] == '3' && !MathJax.typeset)) {\n"
    "                retypeset.tries = (retypeset.tries || 0) + 1;\n"
    "                if (retypeset.tries < 100) setTimeout(retypeset, 200);\n"
    "                return;\n"
    "            }\n"
    "            var version = MathJax.version;\n"
)


def guard_mathjax_race(js: str) -> str:
    """jupyterquiz's script with its typesetting timer made safe while MathJax loads."""
    return js.replace(_MATHJAX_RACE, _MATHJAX_GUARD)


def on_doctree_read_quiz(app, doctree: nodes.document) -> None:
    for node in doctree.findall(nodes.raw):
        text = node.astext()
        if _MATHJAX_RACE in text:
            node.replace_self(nodes.raw("", guard_mathjax_race(text), format=node.get("format")))


# --------------------------------------------------------------------------- the table of contents


def toc_parts(toc_path: Path) -> tuple[str, list[dict]]:
    """The root page and the parts of a jb-book ``_toc.yml``: ``[{caption, docs}]`` in reading order."""
    toc = yaml.safe_load(Path(toc_path).read_text(encoding="utf-8"))
    parts = []
    for part in toc.get("parts", []):
        docs: list[str] = []
        _walk(part.get("chapters"), docs)
        parts.append({"caption": part.get("caption", ""), "docs": docs})
    if toc.get("chapters"):
        docs = []
        _walk(toc["chapters"], docs)
        parts.append({"caption": "", "docs": docs})
    return _docname(toc["root"]), parts


def _walk(entries, out: list[str]) -> None:
    for entry in entries or []:
        if "file" in entry:
            out.append(_docname(entry["file"]))
        _walk(entry.get("sections"), out)


def _docname(file: str) -> str:
    return re.sub(r"\.(md|ipynb|rst)$", "", file)


def part_of(parts: list[dict], docname: str) -> dict | None:
    return next((p for p in parts if docname in p["docs"]), None)


def _toc_path(app) -> Path:
    path = Path(str(app.config["external_toc_path"]))
    return path if path.is_absolute() else Path(app.srcdir) / path


# --------------------------------------------------------------------------- what a page is


def quiz_path(srcdir, docname: str) -> Path:
    """A lesson's skill check is the ``<lesson>.quiz.json`` beside its notebook."""
    return Path(srcdir) / f"{docname}.quiz.json"


def page_kind(srcdir, docname: str) -> str:
    if Path(docname).name == "theory":
        return "theory"
    if quiz_path(srcdir, docname).is_file():
        return "lesson"
    return "page"


def count_headings(doctree: nodes.Node) -> int:
    """Section headings below the page title.

    Only sections nested in sections count: sphinx-proof wraps a theorem's body in
    a section node too, which is no heading.
    """
    outline = (nodes.section, nodes.document)
    n = sum(1 for s in doctree.findall(nodes.section) if isinstance(s.parent, outline))
    return max(0, n - 1)


def _notes_wanted(app, docname: str) -> bool:
    return any(fnmatch.fnmatch(docname, pat) for pat in app.config.companion_notes_pages)


def _pages(env) -> dict:
    if not hasattr(env, "companion_pages"):
        env.companion_pages = {}
    return env.companion_pages


def header_html(headings: int, kind: str, audio: str | None) -> str:
    """The line under a lesson's title: heading count, score slot, audio player."""
    parts = [f'<span class="companion-headings">{headings} headings</span>']
    if kind == "lesson":
        parts.append('<span class="companion-score" data-companion-score hidden></span>')
    out = '<div class="companion-header">' + "".join(parts) + "</div>"
    if audio:
        out += (
            '<div class="companion-audio">'
            '<span class="companion-audio-label" id="companion-audio-label">'
            "Listen: a spoken summary of this lesson</span>"
            f'<audio controls preload="none" aria-labelledby="companion-audio-label" '
            f'src="{html.escape(audio)}"></audio></div>'
        )
    return out


def on_doctree_read(app, doctree: nodes.document) -> None:
    docname = app.env.docname
    kind = page_kind(app.srcdir, docname)
    headings = count_headings(doctree)
    audio = None
    if kind in ("lesson", "theory") and app.config.companion_audio:
        audio = narration.planned_audio(app, docname)
    _pages(app.env)[docname] = {"kind": kind, "headings": headings, "audio": audio}
    if not _notes_wanted(app, docname) or kind == "page":
        return
    raw = nodes.raw("", header_html(headings, kind, audio and Path(audio).name), format="html")
    section = doctree.next_node(nodes.section)
    if section is None:
        doctree.insert(0, raw)
        return
    after = next(
        (i for i, child in enumerate(section.children)
         if isinstance(child, nodes.paragraph) and "reading-time" in child["classes"]),
        next((i for i, child in enumerate(section.children) if isinstance(child, nodes.title)), -1),
    )
    section.insert(after + 1, raw)


def on_purge_doc(app, env, docname) -> None:
    _pages(env).pop(docname, None)


def on_merge_info(app, env, docnames, other) -> None:
    _pages(env).update({d: v for d, v in _pages(other).items() if d in docnames})


# --------------------------------------------------------------------------- directives


class companion_placeholder(nodes.General, nodes.Element):
    """Filled in at doctree-resolved, when every page of the book has been read."""


class ChapterOverview(SphinxDirective):
    """The parts of the chapter this page opens, read from _toc.yml.

    ``:problem-set:`` names the chapter's folder in ``exercises/release/``.
    """

    option_spec = {"problem-set": directives.unchanged}

    def run(self):
        self.env.metadata.setdefault(self.env.docname, {})["companion_overview"] = True
        node = companion_placeholder(what="overview", problem_set=self.options.get("problem-set", ""))
        return [node]


class CourseProgress(SphinxDirective):
    """Every chapter's lessons with the learner's marks, and the reset button."""

    def run(self):
        return [companion_placeholder(what="progress")]


class PracticeQueue(SphinxDirective):
    """Where the practice page draws the questions that are due."""

    def run(self):
        self.env.metadata.setdefault(self.env.docname, {})["companion_practice"] = True
        return [nodes.raw("", PRACTICE_HTML, format="html")]


PRACTICE_HTML = (
    '<div id="companion-practice" class="companion-practice">'
    "<noscript><p>The practice queue needs JavaScript.</p></noscript></div>"
)


def _link(app, fromdoc: str, todoc: str, text: str) -> nodes.reference:
    ref = nodes.reference("", "", internal=True, refuri=app.builder.get_relative_uri(fromdoc, todoc))
    ref += nodes.Text(text)
    return ref


def _title(env, docname: str) -> str:
    title = env.titles.get(docname)
    return title.astext() if title is not None else docname


def _minutes(env, docname: str) -> int | None:
    return env.metadata.get(docname, {}).get("reading_time", {}).get("minutes")


def _status(docname: str, what: str) -> nodes.raw:
    return nodes.raw(
        "", f'<span class="companion-mark" data-companion-{what}="{html.escape(docname)}"></span>',
        format="html",
    )


def _table(header: list[str], rows: list[list[nodes.Node]], widths: list[int]) -> nodes.table:
    table = nodes.table(classes=["companion-overview-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for w in widths:
        group += nodes.colspec(colwidth=w)
    thead = nodes.thead()
    group += thead
    thead += _row([nodes.Text(h) for h in header])
    tbody = nodes.tbody()
    group += tbody
    for cells in rows:
        tbody += _row(cells)
    return table


def _row(cells: list[nodes.Node]) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        para = nodes.paragraph()
        para += cell
        entry += para
        row += entry
    return row


def problem_set_link(app, name: str) -> tuple[str, str] | None:
    """The title and repository address of ``exercises/release/<name>/<name>.ipynb``."""
    rel = f"exercises/release/{name}/{name}.ipynb"
    if not (Path(app.srcdir) / rel).is_file():
        return None
    m = re.match(r"ps(\d+)_(.*)", name)
    title = f"Problem set {m.group(1)}: {m.group(2).replace('_', ' ')}" if m else name
    opts = app.config.html_theme_options
    repo = opts.get("repository_url", "").rstrip("/")
    if not repo:  # no repository configured (book_ext/launch.py): name the file, link nothing
        return title, ""
    branch = opts.get("repository_branch", "main")
    return title, f"{repo}/blob/{branch}/{rel}"


def overview_nodes(app, docname: str, node: companion_placeholder) -> list[nodes.Node]:
    env = app.env
    _, parts = toc_parts(_toc_path(app))
    part = part_of(parts, docname)
    if part is None:
        logger.warning(f"chapter-overview: {docname} is not in the table of contents", location=node)
        return []
    pages = _pages(env)
    lessons = [d for d in part["docs"] if d != docname and pages.get(d, {}).get("kind") == "lesson"]
    theory = [d for d in part["docs"] if pages.get(d, {}).get("kind") == "theory"]
    rows = []
    for doc in lessons:
        minutes = _minutes(env, doc)
        rows.append([
            _link(app, docname, doc, _title(env, doc)),
            nodes.Text(f"{minutes} min" if minutes else "-"),
            nodes.Text(str(pages[doc]["headings"])),
            _status(doc, "quiz"),
        ])
    out: list[nodes.Node] = [
        _table(["Part", "Reading time", "Headings", "Your skill check"], rows, [52, 16, 12, 20])
    ]
    for doc in theory:
        para = nodes.paragraph(classes=["companion-overview-theory"])
        para += nodes.strong(text="Theory notebook: ")
        para += _link(app, docname, doc, _title(env, doc))
        minutes = _minutes(env, doc)
        if minutes:
            para += nodes.Text(f" ({minutes} min, {pages[doc]['headings']} headings)")
        out.append(para)
    name = node["problem_set"]
    if name:
        found = problem_set_link(app, name)
        if found is None:
            logger.warning(f"chapter-overview: no problem set exercises/release/{name}/", location=node)
        else:
            title, url = found
            para = nodes.paragraph(classes=["companion-overview-problems"])
            para += nodes.strong(text="Problem set: ")
            if url:
                para += nodes.reference("", title, refuri=url)
            else:
                para += nodes.Text(f"{title}, ")
                para += nodes.literal(text=f"exercises/release/{name}/")
            if "problem_sets" in env.all_docs:
                para += nodes.Text(" (how to work on it: ")
                para += _link(app, docname, "problem_sets", _title(env, "problem_sets"))
                para += nodes.Text(")")
            out.append(para)
    return out


def progress_nodes(app, docname: str) -> list[nodes.Node]:
    env = app.env
    _, parts = toc_parts(_toc_path(app))
    pages = _pages(env)
    out: list[nodes.Node] = []
    for part in parts:
        docs = [d for d in part["docs"] if pages.get(d, {}).get("kind") in ("lesson", "theory")]
        if not docs:
            continue
        container = nodes.container(classes=["companion-progress-part"])
        heading = nodes.paragraph(classes=["companion-progress-caption"])
        heading += nodes.strong(text=part["caption"])
        container += heading
        items = nodes.bullet_list(classes=["companion-progress-list"])
        for doc in docs:
            item = nodes.list_item()
            para = nodes.paragraph()
            para += _link(app, docname, doc, _title(env, doc))
            para += _status(doc, "read")
            if pages[doc]["kind"] == "lesson":
                para += _status(doc, "quiz")
            item += para
            items += item
        container += items
        out.append(container)
    out.append(nodes.raw("", PROGRESS_CONTROLS, format="html"))
    return out


PROGRESS_CONTROLS = (
    '<div class="companion-progress-controls">'
    '<p class="companion-progress-summary" data-companion-summary aria-live="polite"></p>'
    '<button type="button" class="companion-button" data-companion-reset>'
    "Reset progress: read marks, scores and the practice queue</button></div>"
)


def on_doctree_resolved(app, doctree, docname) -> None:
    for node in list(doctree.findall(companion_placeholder)):
        if node["what"] == "overview":
            node.replace_self(overview_nodes(app, docname, node))
        else:
            node.replace_self(progress_nodes(app, docname))


def on_env_get_outdated(app, env, added, changed, removed) -> list[str]:
    """Overview and contents pages list other pages: rebuild them when any page changes."""
    if not (added or changed or removed):
        return []
    return [d for d, meta in env.metadata.items()
            if meta.get("companion_overview") or d == env.config.root_doc]


# --------------------------------------------------------------------------- per page


def page_info(app, pagename: str) -> dict:
    info = _pages(app.env).get(pagename, {})
    kind = info.get("kind", "page")
    meta = app.env.metadata.get(pagename, {})
    if meta.get("companion_overview"):
        kind = "overview"
    if meta.get("companion_practice"):
        kind = "practice"
    return {
        "course": app.config.companion_course,
        "version": STORAGE_VERSION,
        "doc": pagename,
        "title": _title(app.env, pagename),
        "kind": kind,
        "notes": _notes_wanted(app, pagename) and pagename in _pages(app.env),
        "quiz": kind == "lesson",
        "data": f"_static/{DATA_FILE}",
    }


def _inline_json(value) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


def drop_repeated_scripts(script_files: list) -> None:
    """Keep the first of scripts that differ only in priority.

    sphinx-thebe registers its inline configuration (``const THEBE_JS_URL = ...``)
    twice, and the second ``const`` declaration is a script error on every page.
    """
    seen, keep = set(), []
    for js in script_files:
        key = (js.filename or None, tuple(sorted(js.attributes.items())))  # inline: None or ""
        if key not in seen:
            seen.add(key)
            keep.append(js)
    script_files[:] = keep


def on_html_page_context(app, pagename, templatename, context, doctree) -> None:
    if isinstance(context.get("script_files"), list):
        drop_repeated_scripts(context["script_files"])
    if doctree is None:
        return
    info = page_info(app, pagename)
    script = f"<script>{STORAGE_SHIM}\nwindow.STEPLAB_PAGE = {_inline_json(info)};</script>"
    context["metatags"] = context.get("metatags", "") + "\n" + script
    if info["kind"] == "practice":
        app.add_css_file(QUIZ_CSS_FILE)
        app.add_js_file(DATA_FILE)
        app.add_js_file(QUIZ_JS_FILE)


# --------------------------------------------------------------------------- the data files


def course_data(app) -> dict:
    """Every skill-check question of the course, keyed by ``<docname>#<index>``."""
    env = app.env
    root, parts = toc_parts(_toc_path(app))
    questions, pages = {}, []
    for part in parts:
        for doc in part["docs"]:
            info = _pages(env).get(doc, {})
            entry = {"doc": doc, "title": _title(env, doc), "part": part["caption"],
                     "kind": info.get("kind", "page")}
            path = quiz_path(app.srcdir, doc)
            if entry["kind"] == "lesson":
                quiz = json.loads(path.read_text(encoding="utf-8"))
                entry["questions"] = len(quiz)
                for i, q in enumerate(quiz):
                    questions[f"{doc}#{i}"] = q
            pages.append(entry)
    return {"version": STORAGE_VERSION, "course": app.config.companion_course,
            "pages": pages, "questions": questions}


def quiz_engine_js() -> str:
    import jupyterquiz

    js_dir = Path(jupyterquiz.__file__).parent / "js"
    return guard_mathjax_race("\n".join((js_dir / name).read_text(encoding="utf-8") for name in QUIZ_JS_SOURCES))


def quiz_engine_css() -> str:
    import jupyterquiz

    return (Path(jupyterquiz.__file__).parent / "styles.css").read_text(encoding="utf-8")


def on_build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    data = _inline_json(course_data(app))
    (static / DATA_FILE).write_text(f"window.STEPLAB_COURSE = {data};\n", encoding="utf-8")
    (static / QUIZ_JS_FILE).write_text(quiz_engine_js(), encoding="utf-8")
    (static / QUIZ_CSS_FILE).write_text(quiz_engine_css(), encoding="utf-8")
    if app.config.companion_audio:
        narration.render_all(app, {d: v["audio"] for d, v in _pages(app.env).items() if v.get("audio")})


def setup(app):
    app.add_config_value("companion_course", "steplab", "html")
    app.add_config_value("companion_notes_pages", ["chapters/*"], "env")
    app.add_config_value("companion_audio", True, "env")
    app.add_node(companion_placeholder)
    app.add_directive("chapter-overview", ChapterOverview)
    app.add_directive("course-progress", CourseProgress)
    app.add_directive("practice-queue", PracticeQueue)
    # After reading_time's handler, so that the header goes under the reading time.
    app.connect("doctree-read", on_doctree_read, priority=600)
    app.connect("doctree-read", on_doctree_read_quiz)
    app.connect("doctree-resolved", on_doctree_resolved)
    app.connect("env-purge-doc", on_purge_doc)
    app.connect("env-merge-info", on_merge_info)
    app.connect("env-get-outdated", on_env_get_outdated)
    # Late, so that every other extension has added its scripts.
    app.connect("html-page-context", on_html_page_context, priority=900)
    app.connect("build-finished", on_build_finished)
    app.add_css_file("companion.css")
    app.add_js_file("companion.js", loading_method="defer")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
