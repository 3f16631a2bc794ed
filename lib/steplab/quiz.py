"""The lessons' skill checks: jupyterquiz, with its formulas typeset offline in JupyterLab too.

jupyterquiz draws a quiz with JavaScript and typesets it with the page's global
MathJax (``MathJax.typeset``). The book's pages have one. JupyterLab 4 typesets
with its own bundled MathJax, which leaves a global without ``typeset``; jupyterquiz
then loads MathJax from a CDN, and offline the formulas stay raw TeX. In a Jupyter
page, `show_quiz` first loads the MathJax that the Jupyter server serves from the
project's lab configuration (``lab/jupyter_server_config.py``: ``/static/mathjax/``)
and draws the quiz once it is ready; on the site it draws the quiz at once, as
jupyterquiz alone does.
"""

from __future__ import annotations

from pathlib import Path

from IPython.display import Javascript, display
from IPython.utils.capture import capture_output

# Runs `draw` (jupyterquiz's script) once a MathJax with `typeset` is on the page.
_LOADER = """
(function () {
  function draw() {
%(quiz)s
  }
  var config = document.getElementById('jupyter-config-data');
  if (!config || (window.MathJax && window.MathJax.typeset)) { draw(); return; }
  if (!window.steplabMathJax) {
    var base = JSON.parse(config.textContent).baseUrl || '/';
    window.steplabMathJax = new Promise(function (resolve) {
      window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']]}, startup: {typeset: false}};
      var script = document.createElement('script');
      script.src = base + 'static/mathjax/tex-chtml.js';
      script.onload = function () { window.MathJax.startup.promise.then(resolve); };
      script.onerror = function () {
        console.warn('The skill check shows raw TeX: this Jupyter server does not serve ' + script.src +
                     '. Start the lab with `make lab` (it uses the project\\'s lab/ configuration).');
        window.MathJax = undefined;
        resolve();
      };
      document.head.appendChild(script);
    });
  }
  window.steplabMathJax.then(draw);
})();
"""


def show_quiz(path: str | Path, **options) -> None:
    """Display the skill check in ``path`` (a jupyterquiz JSON file) with typeset formulas.

    ``options`` go to ``jupyterquiz.display_quiz`` unchanged.
    """
    from jupyterquiz import display_quiz

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"show_quiz: path {str(path)!r} is not a file")
    with capture_output() as captured:
        display_quiz(str(path), **options)
    for output in captured.outputs:
        script = output.data.get("application/javascript")
        if script is None:
            display(output.data, metadata=output.metadata, raw=True)
        else:
            display(Javascript(_LOADER % {"quiz": script}))
