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

The kernel runs in its own pid and IPC namespaces (it is pid 1 there: when it ends, everything it
started ends, and its SysV segments go with the namespace), inside one memory and pids cgroup
(``MEMORY_LIMIT`` for all its processes together) when the machine has a writable cgroup file
system; otherwise only the per-process resource limits apply (``cgroup_dirs`` returns []). Every
mount but its private tmpfs ones is read-only inside the namespace.

The learner's code therefore runs as a uid that owns nothing outside its private /tmp, cannot
remount anything (no CAP_SYS_ADMIN), cannot see the gradebook, other learners' submissions or
their autograded copies, and cannot signal or ptrace the grader or another learner's kernel
(a different uid per learner).

Environment (set by grade.py):
    STEPLAB_SANDBOX        "namespace" (default) or "none" (no isolation; grade.py warns)
    STEPLAB_SANDBOX_UID    the uid (and gid) the kernel runs as
    STEPLAB_SANDBOX_HIDE   paths to hide, separated by os.pathsep
    STEPLAB_SANDBOX_MEMORY the memory limit of one kernel and all its processes, in bytes
"""

import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

TMP_SIZE = "256m"
MAX_COPY_BYTES = 64 * 2**20
# The whole kernel and every process it starts together (a cgroup); STEPLAB_SANDBOX_MEMORY in bytes.
MEMORY_LIMIT = int(os.environ.get("STEPLAB_SANDBOX_MEMORY", 4 * 2**30))
PIDS_LIMIT = 256
LIMITS = {
    resource.RLIMIT_AS: 6 * 2**30,
    resource.RLIMIT_FSIZE: 64 * 2**20,
    resource.RLIMIT_NPROC: PIDS_LIMIT,
    resource.RLIMIT_CORE: 0,
}
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_PREFIX = "steplab-"


# ------------------------------------------------------------------ one memory limit for the learner


def _own_cgroups():
    """{controller: this process's cgroup path} from /proc/self/cgroup ("" for cgroup v2)."""
    out = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                out[c] = path
    return out


def _write(path, text):
    with open(path, "w") as fh:
        fh.write(text)


def cgroup_dirs(name):
    """New cgroups ``steplab-<name>`` (memory and pids) below this process's own, with the limits
    set; [] when the machine gives none (no cgroup file system, or not writable)."""
    own, made = _own_cgroups(), []
    try:
        if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):  # cgroup v2
            parent = CGROUP_ROOT + own.get("", "/")
            enabled = open(os.path.join(parent, "cgroup.subtree_control")).read().split()
            if not {"memory", "pids"} <= set(enabled):
                return []
            d = os.path.join(parent, CGROUP_PREFIX + name)
            os.makedirs(d, exist_ok=True)
            made.append(d)
            _write(os.path.join(d, "memory.max"), str(MEMORY_LIMIT))
            _write(os.path.join(d, "memory.swap.max"), "0")
            _write(os.path.join(d, "pids.max"), str(PIDS_LIMIT))
            return made
        for controller, files in (("memory", {"memory.limit_in_bytes": MEMORY_LIMIT,
                                              "memory.memsw.limit_in_bytes": MEMORY_LIMIT}),
                                  ("pids", {"pids.max": PIDS_LIMIT})):
            if controller not in own:
                raise OSError(f"no {controller} cgroup")
            d = os.path.join(CGROUP_ROOT, controller + own[controller].rstrip("/"), CGROUP_PREFIX + name)
            os.makedirs(d, exist_ok=True)
            made.append(d)
            for fname, value in files.items():
                if os.path.exists(os.path.join(d, fname)):
                    _write(os.path.join(d, fname), str(value))
        return made
    except OSError:
        remove_cgroups(made)
        return []


def remove_cgroups(dirs):
    """Kill what is left in the cgroups and remove them."""
    for d in dirs:
        for _ in range(50):
            try:
                pids = open(os.path.join(d, "cgroup.procs")).read().split()
            except OSError:
                break
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            try:
                os.rmdir(d)
                break
            except OSError:
                time.sleep(0.1)


def stale_cgroups():
    """The course's cgroups under this process's own (left by kernels that are gone)."""
    own, found = _own_cgroups(), []
    bases = ([CGROUP_ROOT + own.get("", "/")] if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
             else [os.path.join(CGROUP_ROOT, c + own[c].rstrip("/")) for c in ("memory", "pids") if c in own])
    for base in bases:
        try:
            found += [os.path.join(base, d) for d in os.listdir(base) if d.startswith(CGROUP_PREFIX)]
        except OSError:
            pass
    return found


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
    # One memory and process limit for everything the kernel starts; its children inherit it.
    for d in cgroup_dirs(f"{os.environ.get('STEPLAB_SANDBOX_UID', 'x')}-{os.getpid()}"):
        _write(os.path.join(d, "cgroup.procs"), str(os.getpid()))
    # Own pid and IPC namespaces: when the kernel (pid 1 there) ends, every process it started
    # and every SysV segment it made end with it; --kill-child ends it when the grader kills unshare.
    os.execvp(
        "unshare",
        ["unshare", "--mount", "--propagation", "private", "--pid", "--ipc", "--fork", "--kill-child",
         "--mount-proc", sys.executable, os.path.abspath(__file__), "--inside", str(r)],
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
    _read_only_except(tmps)

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


def _mount_points():
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return [p.encode().decode("unicode_escape") for p in points]


def _read_only_except(writable):
    """Every mount but the private tmpfs ones (and /proc, /sys) read-only: no world-writable host
    directory (/run/lock, /var/crash, ...) is left for files that outlive the kernel."""
    for point in _mount_points():
        if point in writable or any(_under(point, w) for w in writable) or point.startswith(("/proc", "/sys")):
            continue
        subprocess.run(["mount", "-o", "remount,bind,ro", point], capture_output=True)


def available():
    """Whether this machine can run the namespace sandbox (root, unshare, mount, setpriv)."""
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "mount", "setpriv")):
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--pid", "--ipc", "--fork", "--mount-proc",
         "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--inside":
        stage2(sys.argv[2])
    else:
        stage1(sys.argv[1:])
