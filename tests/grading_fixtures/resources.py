# base: source, at: end
# A 20 GiB allocation, three children that together hold more than the learner's memory limit,
# a fork bomb (whose children sleep rather than spin, to spare the machine) and a full /tmp.
import os, time
import numpy
try:
    big = numpy.ones(20 * 2**30 // 8)
    print("20 GiB: allocated")
except MemoryError:
    print("20 GiB: MemoryError")
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        hold = numpy.ones(600 * 2**20 // 8)  # 600 MiB, touched
        time.sleep(4)
        os._exit(0)
    children.append(pid)
killed = sum(os.WIFSIGNALED(status) for status in (os.waitpid(pid, 0)[1] for pid in children))
print("memory children killed:", killed)
forks, stopped = [], "not stopped"
try:
    while len(forks) < 5000:
        pid = os.fork()
        if pid == 0:
            os.execv("/bin/sleep", ["sleep", "60"])  # small children: the bomb tests the process limit
        forks.append(pid)
except OSError as exc:
    stopped = type(exc).__name__
for pid in forks:  # at the process limit the kernel cannot even start a thread to print
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print("fork stopped after", len(forks), stopped)
try:
    for i in range(100):  # files of at most 60 MiB (the per-file limit is 64 MiB) until /tmp is full
        with open(f"/tmp/fill{i}", "wb") as fh:
            for _ in range(60):
                fh.write(b"\0" * 2**20)
except OSError as exc:
    print("full /tmp after", i, "files:", type(exc).__name__)
