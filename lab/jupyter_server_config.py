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
