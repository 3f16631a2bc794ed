"""Start an IPython kernel for one learner's submission, out of reach of the course directory.

The grader launches this file as the kernel (see ``grade.py``, which writes a kernelspec
pointing here). Two stages:

1. In the grader's mount namespace (as root): read the connection file and the learner's
   working directory into memory, then re-execute itself under ``unshare --mount``.
2. In a private mount namespace (still root): put fresh size-limited tmpfs mounts over
   /tmp, /var/tmp and /dev/shm; hide the course directory and /root behind empty read-only
   tmpfs mounts (the Python installation is bound back in, read-only, when it lives there);
   write a scratch copy of the learner's files to /tmp/work; set resource limits; drop to an
   unprivileged uid of the learner's own (setpriv, no capabilities, no new privileges) and
   exec ipykernel in /tmp/work.

The learner's code therefore runs as a uid that owns nothing outside its private /tmp, cannot
remount anything (no CAP_SYS_ADMIN), cannot see the gradebook, other learners' submissions or
their autograded copies, and cannot signal or ptrace the grader or another learner's kernel
(a different uid per learner).

Environment (set by grade.py):
    STEPLAB_SANDBOX        "namespace" (default) or "none" (no isolation; grade.py warns)
    STEPLAB_SANDBOX_UID    the uid (and gid) the kernel runs as
    STEPLAB_SANDBOX_HIDE   paths to hide, separated by os.pathsep
"""

import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys

TMP_SIZE = "256m"
MAX_COPY_BYTES = 64 * 2**20
LIMITS = {
    resource.RLIMIT_AS: 6 * 2**30,
    resource.RLIMIT_FSIZE: 64 * 2**20,
    resource.RLIMIT_NPROC: 256,
    resource.RLIMIT_CORE: 0,
}


def _split_args(argv):
    """Return (connection_file, other kernel arguments)."""
    rest = list(argv)
    if "-f" not in rest:
        raise SystemExit("sandbox_kernel: missing '-f <connection file>'")
    i = rest.index("-f")
    conn = rest[i + 1]
    del rest[i : i + 2]
    return conn, rest


def _read_tree(root):
    """Regular files under root as {relative path: bytes}, at most MAX_COPY_BYTES in total."""
    files, total = {}, 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".ipynb_checkpoints")]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            size = os.path.getsize(path)
            if total + size > MAX_COPY_BYTES:
                continue
            with open(path, "rb") as fh:
                files[os.path.relpath(path, root)] = fh.read()
            total += size
    return files


def _mount(*args):
    subprocess.run(["mount", *args], check=True)


def _under(path, parent):
    path, parent = os.path.realpath(path), os.path.realpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def stage1(argv):
    mode = os.environ.get("STEPLAB_SANDBOX", "namespace")
    conn, rest = _split_args(argv)
    if mode == "none":
        os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", conn, *rest])
    payload = {
        "connection": open(conn).read(),
        "files": {k: v.hex() for k, v in _read_tree(os.getcwd()).items()},
        "args": rest,
    }
    # The payload goes through a pipe: the connection file may live where the sandbox hides.
    r, w = os.pipe()
    data = json.dumps(payload).encode()
    if os.fork() == 0:
        os.close(r)
        with os.fdopen(w, "wb") as fh:
            fh.write(data)
        os._exit(0)
    os.close(w)
    os.set_inheritable(r, True)
    os.execvp(
        "unshare",
        ["unshare", "--mount", "--propagation", "private",
         sys.executable, os.path.abspath(__file__), "--inside", str(r)],
    )


def stage2(fd):
    with os.fdopen(int(fd), "rb") as fh:
        payload = json.loads(fh.read())
    try:
        os.wait()
    except ChildProcessError:
        pass
    uid = int(os.environ["STEPLAB_SANDBOX_UID"])
    hide = [p for p in os.environ.get("STEPLAB_SANDBOX_HIDE", "").split(os.pathsep) if p]
    hide = [os.path.realpath(p) for p in hide + ["/root"] if os.path.exists(p)]
    # What the kernel needs to read even when it lives under a hidden path.
    expose = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix)}
    spec = importlib.util.find_spec("steplab")  # the library may be an editable install
    if spec is not None:
        for loc in spec.submodule_search_locations or [os.path.dirname(spec.origin)]:
            expose.add(os.path.dirname(os.path.realpath(loc)))

    os.chdir("/")
    tmps = [t for t in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(t)]
    # Park what the kernel must still read (the interpreter, the venv, steplab) on a staging
    # tmpfs before /tmp and the hidden folders are covered: a clone or a venv may live under
    # /tmp or under a hidden folder.
    stage = "/mnt"
    os.makedirs(stage, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "size=1m,mode=700", "tmpfs", stage)
    staged = []
    for i, path in enumerate(sorted(expose)):
        if any(_under(path, h) for h in hide + tmps):
            dst = os.path.join(stage, str(i))
            os.makedirs(dst)
            _mount("--bind", path, dst)
            staged.append((dst, path))
    for tmp in tmps:
        _mount("-t", "tmpfs", "-o", f"size={TMP_SIZE},mode=1777,nosuid,nodev", "tmpfs", tmp)
    for h in sorted(hide, key=len):
        if any(_under(h, t) for t in tmps):
            continue  # already replaced by the private /tmp
        _mount("-t", "tmpfs", "-o", "size=1m,mode=755,nosuid,nodev", "tmpfs", h)
    for dst, path in staged:
        os.makedirs(path, exist_ok=True)
        _mount("--move", dst, path)
        _mount("-o", "remount,bind,ro", path)
    for h in hide:
        if not any(_under(h, t) for t in tmps):
            _mount("-o", "remount,ro", h)

    work, home = "/tmp/work", "/tmp/home"
    for d in (work, home):
        os.makedirs(d)
    for rel, hexdata in payload["files"].items():
        path = os.path.join(work, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(bytes.fromhex(hexdata))
    conn = "/tmp/kernel.json"
    with open(conn, "w") as fh:
        fh.write(payload["connection"])
    for base in (work, home):
        for dirpath, dirnames, filenames in os.walk(base):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.chown(name, uid, uid)
    os.chown(conn, uid, uid)
    os.chmod(conn, 0o600)

    for key, limit in LIMITS.items():
        resource.setrlimit(key, (limit, limit))
    env = {
        "PATH": os.path.dirname(sys.executable) + ":/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "IPYTHONDIR": os.path.join(home, ".ipython"),
        "MPLCONFIGDIR": os.path.join(home, ".matplotlib"),
        "MPLBACKEND": "Agg",
        "JUPYTER_RUNTIME_DIR": os.path.join(home, "runtime"),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    for key in ("STEPLAB_MNIST", "PYTHONHASHSEED"):
        if key in os.environ:
            env[key] = os.environ[key]
    os.chdir(work)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the kernel's own streams are not the notebook's; keep the grader's log clean
        os.dup2(devnull, fd)
    setpriv = shutil.which("setpriv")
    os.execve(
        setpriv,
        [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
         "--inh-caps=-all", "--bounding-set=-all",
         sys.executable, "-m", "ipykernel_launcher", "-f", conn, *payload["args"]],
        env,
    )


def available():
    """Whether this machine can run the namespace sandbox (root, unshare, mount, setpriv)."""
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "mount", "setpriv")):
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private",
         "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--inside":
        stage2(sys.argv[2])
    else:
        stage1(sys.argv[1:])
