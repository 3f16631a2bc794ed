# base: source, at: end
# Leave traces that would outlive the kernel: a file in every world-writable directory, a SysV
# shared-memory segment, and a process that keeps changing its pid under its own subreaper.
import ctypes, os, time
written = []
for d in ("/run/lock", "/var/lock", "/var/tmp", "/dev/shm", "/tmp", "/var/crash", "/run/shm"):
    try:
        with open(os.path.join(d, "steplab_trace"), "w") as fh:
            fh.write("trace")
        written.append(d)
    except OSError:
        pass
libc = ctypes.CDLL(None, use_errno=True)
segment = libc.shmget(0x5731AB, 4096, 0o1666)  # IPC_CREAT | 0o666
if os.fork() == 0:
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    for _ in range(100000):
        if os.fork():
            os._exit(0)  # the parent leaves; the child goes on under a new pid
        time.sleep(0.2)
    os._exit(0)
print("traces:", written, "segment:", segment)
