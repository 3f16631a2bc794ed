"""Skill checks in a notebook: jupyterquiz's quiz, with its formulas typeset in JupyterLab offline.

    from steplab.quiz import display_quiz
    display_quiz("01_intuition.quiz.json")

JupyterLab 4 renders its own math and offers no global ``MathJax.typeset``; jupyterquiz then
fails on ``MathJax.version`` or fetches MathJax from a CDN. The course's lab serves MathJax 3
under ``<base_url>static/mathjax/`` (``lab/jupyter_server_config.py``), and the script below
loads it once, before jupyterquiz typesets. A page that has MathJax or loads its own (the
website) is left as it is.
"""

from IPython.display import Javascript, display
from jupyterquiz import display_quiz as _jupyterquiz_display_quiz

# The stand-in MathJax object: jupyterquiz reads `version` and calls `typeset` on it. MathJax
# keeps an object that has a `version`, reads its `config`, and replaces `typeset` when ready;
# the containers asked for before then are typeset in `ready`.
LOAD_MATHJAX = r"""
(function () {
  var current = window.MathJax;
  if (current && (typeof current.typeset === 'function' || current.steplabPending)) return;
  if (document.querySelector('script[src*="mathjax" i]')) return;
  var data = document.getElementById('jupyter-config-data');
  if (!data) return;
  var base = JSON.parse(data.textContent).baseUrl || '/';
  var pending = [];
  window.MathJax = {
    version: '3', _: {}, steplabPending: true,
    typeset: function (elements) { pending.push.apply(pending, elements || []); },
    config: {
      loader: {versionWarnings: false},
      tex: {inlineMath: [['\\(', '\\)']]},
      startup: {
        typeset: false,
        ready: function () {
          window.MathJax.startup.defaultReady();
          window.MathJax.startup.promise.then(function () {
            return window.MathJax.typesetPromise(pending);
          });
        }
      }
    }
  };
  var script = document.createElement('script');
  script.src = base + 'static/mathjax/tex-chtml.js';
  script.async = true;
  document.head.appendChild(script);
})();
"""


def display_quiz(ref, **kwargs):
    """Show jupyterquiz's quiz ``ref`` (a JSON file, URL or list), loading MathJax first if the page lacks it."""
    display(Javascript(LOAD_MATHJAX))
    _jupyterquiz_display_quiz(ref, **kwargs)
