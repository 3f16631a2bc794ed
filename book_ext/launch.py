"""Launch buttons only for a real repository; otherwise the download button and a local-run note.

One setting: the environment variable ``STEPLAB_REPOSITORY_URL`` (``https://github.com/OWNER/REPO``)
when the book is built. With it, notebook pages get Binder and Colab buttons and the header a
link to the repository; without it, neither (no button may point at a repository that does
not exist), and each notebook page ends with a short note on running it locally.

A notebook opened in Colab has no steplab, so every lesson starts (after its title) with an
install cell, tagged ``remove-cell``: when ``import steplab`` fails it pip-installs the course
from the repository named in the cell; in the course's environment the import succeeds and
nothing else runs. The build checks that each notebook's install cell names the configured
repository (a warning, so an error under ``-W``, says which do not); to point them all at a
repository::

    python -m book_ext.launch https://github.com/OWNER/REPO
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ENV = "STEPLAB_REPOSITORY_URL"
_URL = re.compile(r"^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
INSTALL_MARK = "# Outside the course's environment (Colab, a fresh kernel) this installs steplab."
# The repository the install cells name until a real one is configured.
DEFAULT_REPOSITORY = "https://github.com/steplab-course/steplab"
RUN_LOCALLY = (
    '<div class="admonition note steplab-run-locally"><p class="admonition-title">Run this notebook</p>'
    "<p>Download it (the download button at the top of the page), or, in a clone of the course's "
    "repository, run <code>make install</code> and then <code>make lab</code>: JupyterLab opens with "
    "every notebook, and the explorers' sliders recompute live.</p></div>"
)


def repository_url(environ=None) -> str | None:
    """The configured repository, or None; a malformed value is an error, not a silent fallback."""
    import os

    value = (environ if environ is not None else os.environ).get(ENV, "").strip().rstrip("/")
    if not value:
        return None
    if value.endswith(".git"):
        value = value[:-4]
    if not _URL.match(value):
        raise ValueError(f"{ENV} must look like https://github.com/OWNER/REPO, got {value!r}")
    return value


def install_cell_source(url: str) -> str:
    return (
        f"{INSTALL_MARK}\n"
        "try:\n"
        "    import steplab\n"
        "except ImportError:\n"
        "    import subprocess, sys\n"
        f'    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "steplab[course] @ git+{url}"], check=True)\n'
        "    import steplab"
    )


def install_cell_url(nb: dict) -> str | None:
    """The repository named by a notebook's install cell (None when it has none)."""
    for cell in nb.get("cells", []):
        source = "".join(cell.get("source", []))
        if cell.get("cell_type") == "code" and source.startswith(INSTALL_MARK):
            m = re.search(r"@ git\+(\S+?)\"", source)
            return m.group(1) if m else None
    return None


def set_install_cells(paths, url: str) -> list[Path]:
    """Insert or rewrite the install cell (after the title cell) of each notebook; returns those changed."""
    changed = []
    for path in map(Path, paths):
        nb = json.loads(path.read_text(encoding="utf-8"))
        lines = install_cell_source(url).split("\n")
        cell = {
            "cell_type": "code", "execution_count": None, "metadata": {"tags": ["remove-cell"]}, "outputs": [],
            "source": [line + "\n" for line in lines[:-1]] + [lines[-1]],
        }
        cells = nb["cells"]
        at = next((i for i, c in enumerate(cells) if "".join(c.get("source", [])).startswith(INSTALL_MARK)), None)
        if at is not None:
            if cells[at]["source"] == cell["source"]:
                continue
            cell["id"] = cells[at].get("id", "steplab-install")
            cells[at] = cell
        else:
            cell["id"] = "steplab-install"  # nbformat 4.5: every cell has an id
            cells.insert(1 if cells and cells[0]["cell_type"] == "markdown" else 0, cell)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        changed.append(path)
    return changed


def on_config_inited(app, config) -> None:
    url = repository_url()
    options = dict(config.html_theme_options)
    if url:
        options["repository_url"] = url
        options["use_repository_button"] = True
        options["launch_buttons"] = {
            **options.get("launch_buttons", {}),
            "binderhub_url": "https://mybinder.org",
            "colab_url": "https://colab.research.google.com",
        }
    else:
        options["use_repository_button"] = False
        options.pop("repository_url", None)
        launch = dict(options.get("launch_buttons", {}))
        for key in ("binderhub_url", "colab_url", "jupyterhub_url", "jupyterlite_url"):
            launch.pop(key, None)
        options["launch_buttons"] = launch
    config.html_theme_options = options
    app.env_steplab_repository = url  # read by the page handlers below


def on_doctree_read(app, doctree) -> None:
    url = app.env_steplab_repository
    if not url:
        return
    path = Path(app.env.doc2path(app.env.docname))
    if path.suffix != ".ipynb":
        return
    named = install_cell_url(json.loads(path.read_text(encoding="utf-8")))
    if named != url:
        from sphinx.util import logging

        logging.getLogger(__name__).warning(
            f"{path.name}: its install cell names {named!r}, not {ENV}={url!r}; run "
            f"`python -m book_ext.launch {url}`", location=app.env.docname,
        )


def on_html_page_context(app, pagename, templatename, context, doctree) -> None:
    if app.env_steplab_repository or doctree is None or not str(app.env.doc2path(pagename)).endswith(".ipynb"):
        return
    context["body"] = context.get("body", "") + RUN_LOCALLY


def setup(app):
    app.connect("config-inited", on_config_inited)
    app.connect("doctree-read", on_doctree_read)
    app.connect("html-page-context", on_html_page_context)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m book_ext.launch https://github.com/OWNER/REPO")
    target = repository_url({ENV: sys.argv[1]})
    root = Path(__file__).resolve().parent.parent
    for p in set_install_cells(sorted(root.glob("chapters/*/*.ipynb")), target):
        print(f"rewrote {p.relative_to(root)}")
