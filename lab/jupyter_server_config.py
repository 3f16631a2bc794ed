# JupyterLab as a learner meets it: `make lab` puts this folder on JUPYTER_CONFIG_PATH.
c = get_config()  # noqa: F821 (Jupyter defines it when it loads this file)

# The instructor tools (nbgrader) belong to `make instructor-lab`, not to a learner's lab.
c.ServerApp.jpserver_extensions = {
    "nbgrader.server_extensions." + name: False
    for name in ("formgrader", "validate_assignment", "assignment_list", "course_list")
}
# No update checks: the course runs offline (the news prompt is disabled in labconfig/).
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
# Kernels talk to the server over local sockets instead of unencrypted TCP.
c.KernelManager.transport = "ipc"

# The skill checks typeset with a MathJax served from here (/static/mathjax/, see steplab.quiz):
# JupyterLab's own MathJax is bundled and has no `MathJax.typeset` for jupyterquiz to call.
def _mathjax_dir():
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        return str(distribution("sphinx-mathjax-offline").locate_file("sphinx-mathjax-offline/static"))
    except PackageNotFoundError:
        return None


if _mathjax_dir():
    c.ServerApp.extra_static_paths = [_mathjax_dir()]
