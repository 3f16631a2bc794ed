"""book_ext/launch.py: launch buttons only for a configured repository; the notebooks' install cells."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from book_ext import launch
from conftest import ROOT


def test_repository_url_is_one_setting_checked_for_its_form():
    assert launch.repository_url({}) is None
    assert launch.repository_url({launch.ENV: "  "}) is None
    assert launch.repository_url({launch.ENV: "https://github.com/me/course.git"}) == "https://github.com/me/course"
    assert launch.repository_url({launch.ENV: "https://github.com/me/course/"}) == "https://github.com/me/course"
    with pytest.raises(ValueError, match="STEPLAB_REPOSITORY_URL must look like"):
        launch.repository_url({launch.ENV: "github.com/me/course"})


def test_every_lesson_has_an_install_cell_after_its_title():
    lessons = sorted(ROOT.glob("chapters/*/*.ipynb"))
    assert lessons
    for path in lessons:
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert nb["cells"][0]["cell_type"] == "markdown", path.name
        cell = nb["cells"][1]
        assert "".join(cell["source"]).startswith(launch.INSTALL_MARK), f"{path.name}: no install cell after the title"
        assert cell["metadata"].get("tags") == ["remove-cell"]
        assert launch.install_cell_url(nb) == launch.DEFAULT_REPOSITORY


def test_set_install_cells_points_them_at_a_repository_once(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Title"]},
                    {"cell_type": "code", "metadata": {}, "source": ["x = 1"], "outputs": [], "execution_count": None}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 4}
    path = tmp_path / "lesson.ipynb"
    path.write_text(json.dumps(nb))
    assert launch.set_install_cells([path], "https://github.com/a/b") == [path]
    assert launch.install_cell_url(json.loads(path.read_text())) == "https://github.com/a/b"
    assert launch.set_install_cells([path], "https://github.com/a/b") == []  # already there
    launch.set_install_cells([path], "https://github.com/c/d")
    cells = json.loads(path.read_text())["cells"]
    assert len(cells) == 3 and launch.install_cell_url({"cells": cells}) == "https://github.com/c/d"


def test_the_install_cell_does_nothing_where_steplab_imports():
    source = launch.install_cell_source("https://github.com/a/b")
    # pip would fail here (no network to GitHub): the cell must not reach it.
    proc = subprocess.run([sys.executable, "-c", source + "\nprint(steplab.__name__)"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "steplab"


class _Config:
    def __init__(self):
        self.html_theme_options = {"launch_buttons": {"notebook_interface": "jupyterlab", "thebe": False,
                                                      "binderhub_url": "https://mybinder.org"},
                                   "repository_url": "https://github.com/executablebooks/jupyter-book"}


class _App:
    pass


def test_buttons_follow_the_setting(monkeypatch):
    monkeypatch.delenv(launch.ENV, raising=False)
    app, config = _App(), _Config()
    launch.on_config_inited(app, config)
    opts = config.html_theme_options
    assert "binderhub_url" not in opts["launch_buttons"] and "colab_url" not in opts["launch_buttons"]
    assert opts["use_repository_button"] is False and "repository_url" not in opts
    assert app.env_steplab_repository is None
    monkeypatch.setenv(launch.ENV, "https://github.com/me/course")
    app, config = _App(), _Config()
    launch.on_config_inited(app, config)
    opts = config.html_theme_options
    assert opts["repository_url"] == "https://github.com/me/course" and opts["use_repository_button"] is True
    assert opts["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert opts["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert opts["launch_buttons"]["notebook_interface"] == "jupyterlab"
