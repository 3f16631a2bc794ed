"""One AdamW step on 1M and 10M float32 parameters, against the memory-bandwidth bound.

The step must read params, grads, m, v and write params, m, v: 7 arrays of N float32.
The bound is those bytes divided by the copy bandwidth measured here with np.copyto
(a copy reads one array and writes one). Compared:

    steplab pure     adamw(...).update + apply_updates (new arrays, one pass per primitive)
    numpy naive      the textbook expressions, with their temporaries
    steplab inplace  adamw_step_inplace (in place, blocked so temporaries stay in cache)

The table is printed twice: with glibc's default allocator settings, and again in a child
process whose allocator keeps freed memory (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_).
By default glibc hands large freed arrays back to the operating system, so every new array
of a pure step is page-faulted in again; that, more than the extra passes, is what the pure
API costs here.

Run: .venv/bin/python benchmarks/optim_step.py
"""
import os
import subprocess
import sys
import time

import numpy as np

from steplab import optim

HYPER = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
LR = 1e-3


def best_time(fn, repeat: int) -> float:
    """Shortest wall time of fn() over `repeat` runs, after one warm-up call (the machine is shared)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.min(times))


def copy_bandwidth(n_bytes: int = 1 << 28, repeat: int = 7) -> float:
    """Bytes moved per second (read + write) by np.copyto on arrays far larger than cache."""
    src = np.ones(n_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    t = best_time(lambda: np.copyto(dst, src), repeat)
    return 2 * src.nbytes / t


def naive_adamw(p, g, m, v, t):
    b1, b2, eps, wd = HYPER["beta1"], HYPER["beta2"], HYPER["eps"], HYPER["weight_decay"]
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    p = p - LR * (m_hat / (np.sqrt(v_hat) + eps) + wd * p)
    return p, m, v


def bench(n: int, bandwidth: float, repeat: int) -> dict:
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal(n, dtype=np.float32)}
    grads = {"w": rng.standard_normal(n, dtype=np.float32)}

    opt = optim.adamw(LR, **HYPER)
    pure = {"params": params, "state": opt.init(params)}

    def step_pure():
        updates, pure["state"] = opt.update(grads, pure["state"], pure["params"])
        pure["params"] = optim.apply_updates(pure["params"], updates)

    naive = {"p": params["w"].copy(), "m": np.zeros(n, np.float32), "v": np.zeros(n, np.float32), "t": 0}

    def step_naive():
        naive["t"] += 1
        naive["p"], naive["m"], naive["v"] = naive_adamw(naive["p"], grads["w"], naive["m"], naive["v"], naive["t"])

    fast_params = {"w": params["w"].copy()}
    fast = {"state": opt.init(fast_params)}

    def step_inplace():
        fast["state"] = optim.adamw_step_inplace(fast_params, grads, fast["state"], LR, **HYPER)

    bound = 7 * n * 4 / bandwidth
    times = {
        "steplab pure": best_time(step_pure, repeat),
        "numpy naive": best_time(step_naive, repeat),
        "steplab inplace": best_time(step_inplace, repeat),
    }
    # the three implementations took the same number of steps from the same start
    assert pure["state"][0].count == naive["t"] == fast["state"][0].count
    np.testing.assert_allclose(pure["params"]["w"], naive["p"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast_params["w"], naive["p"], rtol=1e-5, atol=1e-6)
    return {"bound": bound, **times}


KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2**31 - 1), "MALLOC_TRIM_THRESHOLD_": str(2**32)}


def main():
    tuned = all(os.environ.get(k) == v for k, v in KEEP_FREED_MEMORY.items())
    print("allocator keeps freed memory" if tuned else "glibc default allocator settings")
    # one bandwidth for both tables, measured by the parent process
    bandwidth = float(os.environ.get("STEPLAB_COPY_BANDWIDTH", 0.0)) or copy_bandwidth()
    print(f"copy bandwidth (np.copyto, 256 MB, read + write): {bandwidth / 1e9:.1f} GB/s")
    print(f"{'N':>6} {'implementation':<16} {'ms':>8} {'x bound':>8}")
    for n, repeat in ((1_000_000, 30), (10_000_000, 10)):
        result = bench(n, bandwidth, repeat)
        bound = result.pop("bound")
        label = f"{n // 1_000_000}M"
        print(f"{label:>6} {'bound (7 arrays)':<16} {bound * 1e3:8.2f} {1.0:8.2f}")
        for name, t in result.items():
            print(f"{label:>6} {name:<16} {t * 1e3:8.2f} {t / bound:8.2f}")
    if not tuned:
        print()
        sys.stdout.flush()
        subprocess.run([sys.executable, __file__], env={**os.environ, **KEEP_FREED_MEMORY, "STEPLAB_COPY_BANDWIDTH": repr(bandwidth)}, check=True)


if __name__ == "__main__":
    main()
